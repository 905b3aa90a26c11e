//! The Nix Archive (NAR) hash of a tree, in the SRI form `nix-hash --type sha256 --sri` prints.
//! NAR keeps only structure, contents, symlink targets and the executable bit: a second, widely
//! known digest of the root file system that anyone with Nix can recompute.

use crate::TreeError;
use base64::Engine as _;
use sha2::{Digest, Sha256};
use std::path::Path;

/// `sha256-<base64>` of the NAR serialisation of `root`.
pub fn nar_hash_sri(root: &Path) -> Result<String, TreeError> {
    let nar_error = |message: String| TreeError::Nar { path: root.to_path_buf(), message };
    let mut encoder = nix_nar::Encoder::new(root).map_err(|e| nar_error(e.to_string()))?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut encoder, &mut hasher).map_err(|e| nar_error(e.to_string()))?;
    Ok(format!("sha256-{}", base64::engine::general_purpose::STANDARD.encode(hasher.finalize())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nar_hash_of_a_known_tree() {
        // Oracle, recorded: Debian 12's nix-bin 2.8 on the same tree. Its nix-hash predates `--sri`;
        // `nix hash path --type sha256` prints the same SRI, and `nix-hash --type sha256` the hex.
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("t");
        std::fs::create_dir_all(root.join("bin")).unwrap();
        std::fs::write(root.join("hello"), b"hello\n").unwrap();
        std::fs::write(root.join("bin/run"), b"#!/bin/sh\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(root.join("bin/run"), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::os::unix::fs::symlink("hello", root.join("link")).unwrap();
        let sri = nar_hash_sri(&root).unwrap();
        assert_eq!(sri, RECORDED_NIX_HASH);
    }

    const RECORDED_NIX_HASH: &str = "sha256-2ZxvF1MQzzrMcD/heNMOhjMEapzG74qf67yFcCRCSZ8=";
}

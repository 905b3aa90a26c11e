//! The registry packages of a Cargo.lock (the `ceremony` tool's dependencies): what the `tools`
//! stage unpacks and a release inputs bundle carries, each pinned by its checksum.

use crate::Sha256Digest;

/// One registry package of Cargo.lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockedCrate {
    pub name: String,
    pub version: String,
    /// The SHA-256 of the .crate file.
    pub checksum: Sha256Digest,
}

/// The crates.io packages of a Cargo.lock, each with its checksum. Other sources (git, other
/// registries) are refused: nothing could check them.
pub fn locked_crates(cargo_lock: &str) -> Result<Vec<LockedCrate>, String> {
    const CRATES_IO: &str = "registry+https://github.com/rust-lang/crates.io-index";
    let err = |message: String| message;
    let value: toml::Value = toml::from_str(cargo_lock).map_err(|e| err(e.to_string()))?;
    let packages =
        value.get("package").and_then(|p| p.as_array()).ok_or_else(|| err("no [[package]]".into()))?;
    let mut crates = Vec::new();
    for p in packages {
        let field = |name: &str| p.get(name).and_then(|v| v.as_str());
        let (Some(name), Some(version)) = (field("name"), field("version")) else {
            return Err(err("a [[package]] without name or version".into()));
        };
        match field("source") {
            None => continue, // a workspace member
            Some(CRATES_IO) => {}
            Some(other) => {
                return Err(err(format!("{name} {version} comes from {other}; only crates.io is allowed")));
            }
        }
        let checksum = field("checksum")
            .filter(|c| c.len() == 64 && c.bytes().all(|b| b.is_ascii_hexdigit()))
            .ok_or_else(|| err(format!("{name} {version} has no valid checksum")))?;
        if !valid_crate_name(name) || !valid_crate_name(version) {
            return Err(err(format!("{name:?} {version:?} is not a crate name and version")));
        }
        crates.push(LockedCrate {
            name: name.into(),
            version: version.into(),
            checksum: Sha256Digest::try_from(checksum.to_lowercase()).expect("checked above"),
        });
    }
    Ok(crates)
}

fn valid_crate_name(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'+'))
}

impl LockedCrate {
    /// `<name>-<version>.crate`, as crates.io and cargo's cache name the file.
    pub fn file_name(&self) -> String {
        format!("{}-{}.crate", self.name, self.version)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cargo_lock_packages_from_crates_io_only_with_checksums() {
        let lock = format!(
            "version = 4\n\n[[package]]\nname = \"ceremony-tools\"\nversion = \"0.1.0\"\n\n[[package]]\nname = \"hex\"\nversion = \"0.4.3\"\nsource = \"registry+https://github.com/rust-lang/crates.io-index\"\nchecksum = \"{}\"\n",
            "ab".repeat(32)
        );
        let crates = locked_crates(&lock).unwrap();
        assert_eq!(
            crates,
            [LockedCrate {
                name: "hex".into(),
                version: "0.4.3".into(),
                checksum: Sha256Digest::try_from("ab".repeat(32)).unwrap()
            }]
        );

        let git = lock
            .replace("registry+https://github.com/rust-lang/crates.io-index", "git+https://example.org/x");
        let err = locked_crates(&git).unwrap_err().to_string();
        assert!(err.contains("hex 0.4.3 comes from git+https://example.org/x"), "{err}");

        let no_sum = lock.replace(&"ab".repeat(32), "");
        let err = locked_crates(&no_sum).unwrap_err().to_string();
        assert!(err.contains("hex 0.4.3 has no valid checksum"), "{err}");

        let escape = lock.replace("name = \"hex\"", "name = \"../../etc\"");
        assert!(locked_crates(&escape).is_err());
    }
}

//! The .crate files of the workspace's Cargo.lock (the `ceremony` tool's dependencies), each
//! found where a copy is kept: the store first (a release inputs bundle's crates are fetched
//! there by checksum, so a witness needs neither crates.io nor a cargo cache), then the caller's
//! cargo cache; only when neither has one does the caller's cargo fetch it
//! (`cargo fetch --locked`, from crates.io). Every file is checked against Cargo.lock's checksum
//! by whoever reads it: where it was found proves nothing.

use crate::compiler::{self, Compiler};
use crate::error::BuildError;
use ceremony_os_definition::{ImageDefinition, LockedCrate, locked_crates, relative_to};
use ceremony_os_runner::Runner;
use ceremony_os_store::Store;
use std::path::{Path, PathBuf};

/// The registry crates of `<workspace>/Cargo.lock`.
pub fn workspace_crates(workspace: &Path) -> Result<Vec<LockedCrate>, BuildError> {
    let cargo_lock = workspace.join("Cargo.lock");
    let text = std::fs::read_to_string(&cargo_lock).map_err(|e| BuildError::io(&cargo_lock, e))?;
    locked_crates(&text)
        .map_err(|message| BuildError::stage("tools", format!("{}: {message}", cargo_lock.display())))
}

/// The workspace the definition builds its `ceremony` tool from.
pub fn tools_workspace(definition_path: &Path, def: &ImageDefinition) -> PathBuf {
    relative_to(definition_path, &def.customize.tools_workspace)
}

/// A kept copy of `krate`'s .crate file: in the store, else in the caller's cargo cache.
fn kept_crate(store: &Store, cargo_home: &Path, krate: &LockedCrate) -> Option<PathBuf> {
    let object = store.object_path(&krate.checksum);
    if object.is_file() {
        return Some(object);
    }
    let mut registries: Vec<PathBuf> = std::fs::read_dir(cargo_home.join("registry/cache"))
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    registries.sort();
    registries.into_iter().map(|r| r.join(krate.file_name())).find(|p| p.is_file())
}

/// Every crate of `<workspace>/Cargo.lock` with a file holding it (unchecked), fetching with
/// `compiler`'s cargo what no store or cache keeps.
pub(crate) fn crate_files(
    store: &Store,
    runner: &Runner,
    compiler: &Compiler,
    workspace: &Path,
    progress: &dyn Fn(&str),
) -> Result<Vec<(LockedCrate, PathBuf)>, BuildError> {
    let crates = workspace_crates(workspace)?;
    let cargo_home = compiler::cargo_home();
    let missing = crates.iter().filter(|c| kept_crate(store, &cargo_home, c).is_none()).count();
    if missing > 0 {
        progress(&format!(
            "fetching {missing} .crate files that neither the store nor {} holds from crates.io (cargo fetch --locked)",
            cargo_home.display()
        ));
        compiler::fetch_crates(runner, compiler, &workspace.join("Cargo.toml"))?;
    }
    crates
        .into_iter()
        .map(|krate| {
            let file = kept_crate(store, &cargo_home, &krate).ok_or_else(|| {
                BuildError::stage(
                    "tools",
                    format!(
                        "{} {}: no .crate file in the store or under {} after cargo fetch",
                        krate.name,
                        krate.version,
                        cargo_home.display()
                    ),
                )
            })?;
            Ok((krate, file))
        })
        .collect()
}

/// For a release inputs bundle: every crate of the definition's tool workspace with a file
/// holding it (fetched with the pinned compiler's cargo when none is kept).
pub fn locate_crates(
    definition_path: &Path,
    def: &ImageDefinition,
    store: &Store,
    progress: &dyn Fn(&str),
) -> Result<Vec<(LockedCrate, PathBuf)>, BuildError> {
    let workspace = tools_workspace(definition_path, def);
    let runner = Runner::new(def.source_date_epoch());
    let compiler = compiler::find(&runner, &workspace)?;
    crate_files(store, &runner, &compiler, &workspace, progress)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_workspace_lock_is_all_crates_io_and_a_store_copy_comes_first() {
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let crates = workspace_crates(&workspace).unwrap();
        let cryptoki = crates.iter().find(|c| c.name == "cryptoki").expect("cryptoki is locked");

        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("store")).unwrap();
        let cargo_home = dir.path().join("cargo-home");
        let cached = cargo_home.join("registry/cache/index.crates.io-1/").join(cryptoki.file_name());
        assert_eq!(kept_crate(&store, &cargo_home, cryptoki), None);
        std::fs::create_dir_all(cached.parent().unwrap()).unwrap();
        std::fs::write(&cached, b"cached").unwrap();
        assert_eq!(kept_crate(&store, &cargo_home, cryptoki), Some(cached));
        let object = store.object_path(&cryptoki.checksum);
        std::fs::create_dir_all(object.parent().unwrap()).unwrap();
        std::fs::write(&object, b"kept").unwrap();
        assert_eq!(kept_crate(&store, &cargo_home, cryptoki), Some(object));
    }
}

//! From a lockfile to what the store must hold, in the order that keeps the lock honest: first
//! the archive state (each archive's InRelease and package indexes, fetched by their SHA-256),
//! then the lock's trust chain checked against them (`ceremony_os_debian::trust`), and only then
//! the packages. A hand-edited lock is refused before a single .deb is downloaded.

use crate::fetch::{FetchError, FetchItem};
use crate::store::{Expected, Store};
use ceremony_os_debian::trust::{TrustError, TrustReport};
use ceremony_os_definition::{ImageDefinition, LockedPackage, Lockfile};

/// How an InRelease item's label ends (after the suite).
const INRELEASE_LABEL: &str = " InRelease";

/// The mirror bases of the definition's archive `suite` (empty if the definition has no such
/// archive: then only the store and a vendor directory can supply its files).
fn mirrors(def: &ImageDefinition, suite: &str) -> Vec<String> {
    def.debian
        .archives
        .iter()
        .find(|a| a.suite.as_str() == suite)
        .map(|a| a.mirrors.urls().iter().map(|m| m.base(def.debian.snapshot)).collect())
        .unwrap_or_default()
}

/// Every archive's InRelease and package indexes. Indexes are fetched by hash
/// (`.../by-hash/SHA256/<hex>`), which a mirror keeps after the suite moves on.
pub fn archive_items(def: &ImageDefinition, lock: &Lockfile) -> Vec<FetchItem> {
    let mut items = Vec::new();
    for archive in &lock.archives {
        let mirrors = mirrors(def, &archive.suite);
        items.push(FetchItem {
            label: format!("{}{INRELEASE_LABEL}", archive.suite),
            path: archive.inrelease_path(),
            mirrors: mirrors.clone(),
            vendor_name: format!("dists_{}_InRelease", archive.suite),
            expected: Expected { sha256: archive.inrelease_sha256.clone(), size: archive.inrelease_size },
        });
        for index in &archive.indexes {
            let dir = index.path.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
            items.push(FetchItem {
                label: format!("{} {}", archive.suite, index.path),
                path: format!("dists/{}/{dir}/by-hash/SHA256/{}", archive.suite, index.sha256),
                mirrors: mirrors.clone(),
                vendor_name: format!("dists_{}_{}", archive.suite, index.path.replace('/', "_")),
                expected: Expected { sha256: index.sha256.clone(), size: index.size },
            });
        }
    }
    items
}

/// The suites whose InRelease a mirror served with other content than the lock names: the
/// archive has moved on since the lock was made (a mirror serves only its current InRelease;
/// older ones are kept by snapshot.debian.org).
pub fn moved_archives(error: &FetchError) -> Vec<&str> {
    let FetchError::Failed { failures, .. } = error else { return Vec::new() };
    failures
        .iter()
        .filter(|f| f.attempts.iter().any(|a| a.other_content))
        .filter_map(|f| f.label.strip_suffix(INRELEASE_LABEL))
        .collect()
}

/// The given packages, each from its archive's mirrors.
pub fn package_items<'a>(
    def: &ImageDefinition,
    packages: impl IntoIterator<Item = &'a LockedPackage>,
) -> Vec<FetchItem> {
    packages
        .into_iter()
        .map(|p| FetchItem {
            label: p.spec(),
            path: p.path.clone(),
            mirrors: mirrors(def, &p.archive),
            vendor_name: p.file_name().to_string(),
            expected: Expected { sha256: p.sha256.clone(), size: p.size },
        })
        .collect()
}

/// Check the lock's trust chain against the archive files in the store.
pub fn check_trust(store: &Store, lock: &Lockfile, keyring: &[u8]) -> Result<TrustReport, TrustError> {
    ceremony_os_debian::trust::verify_lock(lock, keyring, &|sha256, size| {
        let expected = Expected { sha256: sha256.clone(), size };
        match store.has_verified(&expected) {
            Ok(true) => std::fs::read(store.object_path(sha256)).ok(),
            _ => None,
        }
    })
}

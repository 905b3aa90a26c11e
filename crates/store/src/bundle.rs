//! Release inputs bundles: every input of a release in one directory that any static HTTP server,
//! a disc or an object store can serve, so that a witness needs neither Debian's archive nor
//! crates.io, years later. Written by `ceremony-os vendor DIR`; read through `--vendor DIR|URL`.
//!
//! ```text
//! DIR/ceremony-os-bundle.json   the index: what the bundle holds (kind, size, SHA-256, suite)
//! DIR/SHA256SUMS                every file below, for `sha256sum -c`
//! DIR/archive/<sha256>          InRelease files and package indexes, by digest: the locked
//!                               states and any that re-vouched for them
//! DIR/debs/<file>.deb           the locked .debs
//! DIR/crates/<name>-<ver>.crate every crate of the tool's Cargo.lock
//! ```
//!
//! Nothing in a bundle is trusted, its index included: every file is fetched by the digest the
//! lock, a signed Release or Cargo.lock names, and checked before it enters the store. The index
//! only says what to ask for: which other signed states of an archive the bundle holds, and the
//! sizes of the crates (Cargo.lock records none). Paths are never taken from it.

use crate::fetch::{Bundle, FetchItem, FetchOptions, download_unpinned};
use crate::store::{Expected, Store, StoreError, open_regular};
use ceremony_os_definition::{LockedCrate, Sha256Digest};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

pub const BUNDLE_INDEX: &str = "ceremony-os-bundle.json";
pub const BUNDLE_FORMAT: &str = "ceremony-os-bundle/1";
pub const SHA256SUMS: &str = "SHA256SUMS";
/// No bundle index is larger than this (the default image's is about 100 KB).
const INDEX_LIMIT: u64 = 16 << 20;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleIndex {
    pub format: String,
    /// SHA-256 of the lockfile the bundle was made for.
    pub lockfile_sha256: String,
    /// SHA-256 of the Cargo.lock whose crates it carries.
    pub cargo_lock_sha256: String,
    /// Sorted by path.
    pub files: Vec<BundleEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleEntry {
    pub path: String,
    pub kind: EntryKind,
    pub size: u64,
    pub sha256: Sha256Digest,
    /// For archive files: the suite.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suite: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    Inrelease,
    Index,
    Deb,
    Crate,
}

/// Where an archive file (InRelease or index) lives in a bundle.
pub fn archive_path(sha256: &Sha256Digest) -> String {
    format!("archive/{}", sha256.as_hex())
}

/// Where a .deb lives in a bundle.
pub fn deb_path(file_name: &str) -> String {
    format!("debs/{file_name}")
}

/// Where a crate lives in a bundle.
pub fn crate_path(krate: &LockedCrate) -> String {
    format!("crates/{}", krate.file_name())
}

#[derive(Debug, thiserror::Error)]
pub enum VendorError {
    #[error("{label} is not in the store; run `ceremony-os fetch` first")]
    Missing { label: String },
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{}: SHA-256 {actual}, but Cargo.lock says {expected} for {label}", path.display())]
    Crate { label: String, path: PathBuf, expected: String, actual: String },
}

/// One file a bundle is to hold.
#[derive(Debug, Clone)]
pub struct BundleFile {
    pub item: FetchItem,
    pub kind: EntryKind,
    pub suite: Option<String>,
}

/// What `write_bundle` did.
#[derive(Debug, Clone, Serialize)]
pub struct BundleWritten {
    pub files: usize,
    pub copied: usize,
    pub bytes: u64,
    pub index_sha256: String,
}

/// Write a bundle into `dir` (created if missing): the store's `files` and the `crates` (each a
/// .crate file checked against Cargo.lock's checksum while it is copied), then the index and
/// `SHA256SUMS`. Files already in `dir` with the right digest are left alone; every other file is
/// written under a temporary name and renamed, the index and `SHA256SUMS` last.
pub fn write_bundle(
    store: &Store,
    files: &[BundleFile],
    crates: &[(LockedCrate, PathBuf)],
    lockfile_sha256: &str,
    cargo_lock_sha256: &str,
    dir: &Path,
) -> Result<BundleWritten, VendorError> {
    let mut entries: Vec<BundleEntry> = Vec::new();
    let mut copied = 0;
    for file in files {
        let item = &file.item;
        let entry = BundleEntry {
            path: item.bundle_path.clone(),
            kind: file.kind,
            size: item.expected.size,
            sha256: item.expected.sha256.clone(),
            suite: file.suite.clone(),
        };
        if entries.contains(&entry) {
            continue;
        }
        if !store.has_verified(&item.expected)? {
            return Err(VendorError::Missing { label: item.label.clone() });
        }
        let dest = dir.join(&item.bundle_path);
        if crate::store::verify_file(&dest, &item.expected).is_err() {
            let mut source = open_regular(&store.object_path(&item.expected.sha256))?;
            copy_checked(&mut source, &dest, &mut |_| Ok(()))?;
            copied += 1;
        }
        entries.push(entry);
    }
    for (krate, source) in crates {
        let dest = dir.join(crate_path(krate));
        let mut input = open_regular(source)?;
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        copy_checked(&mut input, &dest, &mut |chunk: &[u8]| {
            hasher.update(chunk);
            size += chunk.len() as u64;
            Ok(())
        })?;
        let actual = hex::encode(hasher.finalize());
        if actual != krate.checksum.as_hex() {
            let _ = std::fs::remove_file(&dest);
            return Err(VendorError::Crate {
                label: format!("{} {}", krate.name, krate.version),
                path: source.clone(),
                expected: krate.checksum.to_string(),
                actual,
            });
        }
        copied += 1;
        entries.push(BundleEntry {
            path: crate_path(krate),
            kind: EntryKind::Crate,
            size,
            sha256: Sha256Digest::try_from(actual).expect("a SHA-256 in hex"),
            suite: None,
        });
    }
    entries.sort();
    let bytes = entries.iter().map(|e| e.size).sum();
    let index = BundleIndex {
        format: BUNDLE_FORMAT.into(),
        lockfile_sha256: lockfile_sha256.into(),
        cargo_lock_sha256: cargo_lock_sha256.into(),
        files: entries,
    };
    let index_text = format!("{}\n", serde_json::to_string_pretty(&index).expect("an index serializes"));
    let index_sha256 = hex::encode(Sha256::digest(index_text.as_bytes()));
    let mut sums = String::new();
    let mut listed: Vec<(&str, String)> =
        index.files.iter().map(|e| (e.path.as_str(), e.sha256.to_string())).collect();
    listed.push((BUNDLE_INDEX, index_sha256.clone()));
    listed.sort();
    for (path, sha256) in listed {
        sums.push_str(&format!("{sha256}  {path}\n"));
    }
    for (name, text) in [(BUNDLE_INDEX, &index_text), (SHA256SUMS, &sums)] {
        let dest = dir.join(name);
        copy_checked(&mut text.as_bytes(), &dest, &mut |_| Ok(()))?;
    }
    Ok(BundleWritten { files: index.files.len() + 2, copied, bytes, index_sha256 })
}

/// Copy `input` to `dest` through a temporary file beside it (synced, then renamed), passing each
/// chunk to `inspect`.
fn copy_checked(
    input: &mut dyn Read,
    dest: &Path,
    inspect: &mut dyn FnMut(&[u8]) -> Result<(), VendorError>,
) -> Result<(), VendorError> {
    let io = |path: &Path, source| VendorError::Io { path: path.to_path_buf(), source };
    let parent = dest.parent().expect("a bundle file has a directory");
    std::fs::create_dir_all(parent).map_err(|e| io(parent, e))?;
    let mut tmp = tempfile::NamedTempFile::new_in(parent).map_err(|e| io(parent, e))?;
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = input.read(&mut buf).map_err(|e| io(dest, e))?;
        if n == 0 {
            break;
        }
        inspect(&buf[..n])?;
        tmp.write_all(&buf[..n]).map_err(|e| io(tmp.path(), e))?;
    }
    tmp.as_file().sync_all().map_err(|e| io(tmp.path(), e))?;
    tmp.persist(dest).map_err(|e| io(dest, e.error))?;
    Ok(())
}

/// A bundle's index and its SHA-256, read from a directory or a URL. Untrusted: see the module
/// documentation for what it is used for.
pub fn read_index(bundle: &Bundle, options: &FetchOptions) -> Result<(BundleIndex, Sha256Digest), String> {
    let bytes = match bundle {
        Bundle::Dir(dir) => {
            let path = dir.join(BUNDLE_INDEX);
            let mut file = open_regular(&path).map_err(|e| e.to_string())?;
            let mut bytes = Vec::new();
            (&mut file)
                .take(INDEX_LIMIT + 1)
                .read_to_end(&mut bytes)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            if bytes.len() as u64 > INDEX_LIMIT {
                return Err(format!("{}: larger than {INDEX_LIMIT} bytes", path.display()));
            }
            bytes
        }
        Bundle::Url(base) => download_unpinned(&format!("{base}{BUNDLE_INDEX}"), INDEX_LIMIT, options)
            .map_err(|e| format!("{base}{BUNDLE_INDEX}: {e}"))?,
    };
    let digest = Sha256Digest::from_bytes(&Sha256::digest(&bytes).into());
    let index: BundleIndex = serde_json::from_slice(&bytes)
        .map_err(|e| format!("{bundle}: {BUNDLE_INDEX} is not a bundle index: {e}"))?;
    if index.format != BUNDLE_FORMAT {
        return Err(format!(
            "{bundle}: {BUNDLE_INDEX} has format {:?}, this ceremony-os reads {BUNDLE_FORMAT:?}",
            index.format
        ));
    }
    Ok((index, digest))
}

/// The fetch items for the crates, with the sizes the bundles' indexes give; a crate that no index
/// lists is left out (the `tools` stage then asks cargo for it).
pub fn crate_items(crates: &[LockedCrate], indexes: &[BundleIndex]) -> Vec<FetchItem> {
    crates
        .iter()
        .filter_map(|krate| {
            let sha256 = krate.checksum.clone();
            let size = indexes
                .iter()
                .flat_map(|i| &i.files)
                .find(|e| e.kind == EntryKind::Crate && e.sha256 == sha256)?
                .size;
            Some(FetchItem {
                label: format!("crate {} {}", krate.name, krate.version),
                path: String::new(),
                mirrors: Vec::new(),
                bundle_path: crate_path(krate),
                expected: Expected { sha256, size },
            })
        })
        .collect()
}

//! `ceremony-os lock`: resolve the definition's package sets with apt against the first mirror
//! that serves a verifiable Release, and pin every .deb of the closure by SHA-256.

use crate::apt::{AptRoot, AptSource};
use crate::deb822::{self, Paragraph};
use crate::print_uris::{self, PlannedDownload};
use ceremony_os_definition::{
    ArchiveState, ImageDefinition, LOCK_FORMAT_VERSION, LockedPackage, LockedSet, Lockfile, PackageSet,
    Sha256Digest, Variant,
};
use ceremony_os_runner::{RunError, Runner};
use sha2::{Digest, Sha256};
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("archive keyring {} is not readable: {source} (install debian-archive-keyring, or fix debian.keyring)", path.display())]
    Keyring { path: PathBuf, source: std::io::Error },
    #[error("no mirror served a verified index for {suite}:\n{}", format_attempts(.attempts))]
    AllMirrorsFailed { suite: String, attempts: Vec<(String, String)> },
    #[error("resolving the {set} set with apt failed: {source}")]
    Resolve { set: &'static str, source: RunError },
    #[error("{0}")]
    Run(#[from] RunError),
    #[error("{context}: {source}")]
    Io { context: String, source: std::io::Error },
    #[error("apt's package index is malformed: {0}")]
    Index(#[from] deb822::Deb822Error),
    #[error("{0}")]
    PrintUris(#[from] print_uris::PrintUrisError),
    #[error("apt planned to download {path}, which no index stanza describes")]
    NotInIndex { path: String },
    #[error("index stanza for {path} has no valid {field} field")]
    BadStanza { path: String, field: &'static str },
    #[error("{path}: apt planned {planned} bytes but the index says {indexed}")]
    SizeMismatch { path: String, planned: u64, indexed: u64 },
}

fn format_attempts(attempts: &[(String, String)]) -> String {
    attempts
        .iter()
        .map(|(m, e)| format!("  {m}: {}", e.trim().replace('\n', "\n    ")))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Resolve both package sets of `def` into a lockfile. `keyring` is the resolved keyring path;
/// `progress` receives human-readable progress lines.
pub fn resolve_lock(
    def: &ImageDefinition,
    keyring: &Path,
    progress: &mut dyn FnMut(&str),
) -> Result<Lockfile, LockError> {
    std::fs::metadata(keyring)
        .map_err(|source| LockError::Keyring { path: keyring.to_path_buf(), source })?;
    let runner = Runner::new(def.source_date_epoch());
    let work = tempfile::Builder::new()
        .prefix("ceremony-os-lock-")
        .tempdir()
        .map_err(|source| LockError::Io { context: "creating a temporary apt root".into(), source })?;
    let components: Vec<String> = def.debian.components.iter().map(|c| c.to_string()).collect();
    let architecture = def.image.architecture.debian_name();

    let mut attempts = Vec::new();
    let mut chosen = None;
    for (index, mirror) in def.debian.mirrors.urls().iter().enumerate() {
        let base = mirror.base(def.debian.snapshot);
        progress(&format!("resolving against {base}"));
        let root = work.path().join(format!("mirror-{index}"));
        let source = AptSource {
            mirror_base: &base,
            suite: def.debian.suite.as_str(),
            components: &components,
            architecture,
            keyring,
        };
        let apt = AptRoot::create(&root, &source, runner.clone()).map_err(|source| LockError::Io {
            context: format!("creating apt root {}", root.display()),
            source,
        })?;
        match apt.update(|line| tracing::debug!("apt: {line}")) {
            Ok(()) => {
                chosen = Some((base, apt));
                break;
            }
            Err(e) => {
                progress(&format!("  {base} failed; trying the next mirror"));
                attempts.push((base, e.to_string()));
            }
        }
    }
    let Some((base, apt)) = chosen else {
        return Err(LockError::AllMirrorsFailed { suite: def.debian.suite.to_string(), attempts });
    };

    let inrelease = apt
        .inrelease_path()
        .map_err(|source| LockError::Io { context: "finding InRelease".into(), source })?;
    let inrelease_bytes = std::fs::read(&inrelease)
        .map_err(|source| LockError::Io { context: format!("reading {}", inrelease.display()), source })?;
    let archive = archive_state(&inrelease_bytes)?;
    if let Some((first, _)) = attempts.first() {
        progress(&format!(
            "warning: {first} was unreachable; resolved against {base} (Release dated {}), not the snapshot {}",
            archive.release_date, def.debian.snapshot
        ));
    }

    let index_text = apt.dumpavail()?;
    let paragraphs = deb822::parse(&index_text)?;
    let index = PackageIndex::new(&paragraphs);

    let mut lock_set = |name: &'static str, set: &PackageSet| -> Result<LockedSet, LockError> {
        let mut request: BTreeSet<String> = set.include.names().iter().map(|n| n.to_string()).collect();
        if set.variant == Variant::Minbase {
            request.extend(index.minbase_packages());
        }
        progress(&format!("resolving the {name} set ({} packages requested)", request.len()));
        let request: Vec<String> = request.into_iter().collect();
        let planned = apt.print_uris(&request).map_err(|source| LockError::Resolve { set: name, source })?;
        let planned = print_uris::parse(&planned, &base)?;
        let packages = index.lock(&planned)?;
        progress(&format!("  {name}: {} packages", packages.len()));
        Ok(LockedSet { variant: set.variant, include: set.include.sorted_strings(), packages })
    };
    let image = lock_set("image", &def.packages.image)?;
    let toolchain = lock_set("toolchain", &def.packages.toolchain)?;

    Ok(Lockfile {
        lock_version: LOCK_FORMAT_VERSION,
        suite: def.debian.suite.to_string(),
        components,
        architecture: def.image.architecture,
        snapshot: def.debian.snapshot,
        source_date_epoch: def.source_date_epoch(),
        archive,
        image,
        toolchain,
    })
}

/// Digest and `Date:` of a (verified) InRelease file.
fn archive_state(inrelease: &[u8]) -> Result<ArchiveState, LockError> {
    let digest: [u8; 32] = Sha256::digest(inrelease).into();
    let text = String::from_utf8_lossy(inrelease);
    let release = deb822::parse(deb822::strip_clearsign(&text))?;
    let release_date = release
        .first()
        .and_then(|p| p.get("Date"))
        .ok_or(LockError::BadStanza { path: "InRelease".into(), field: "Date" })?
        .to_string();
    Ok(ArchiveState { release_date, inrelease_sha256: Sha256Digest::from_bytes(&digest) })
}

/// The package index apt resolved against, keyed by archive path.
#[derive(Debug)]
pub struct PackageIndex<'a> {
    by_path: HashMap<&'a str, &'a Paragraph>,
    paragraphs: &'a [Paragraph],
}

impl<'a> PackageIndex<'a> {
    pub fn new(paragraphs: &'a [Paragraph]) -> Self {
        let by_path = paragraphs.iter().filter_map(|p| Some((p.get("Filename")?, p))).collect();
        PackageIndex { by_path, paragraphs }
    }

    /// mmdebstrap's minbase additions: every `Essential: yes` and `Priority: required` package,
    /// and apt.
    pub fn minbase_packages(&self) -> BTreeSet<String> {
        let mut names: BTreeSet<String> = self
            .paragraphs
            .iter()
            .filter(|p| p.get("Essential") == Some("yes") || p.get("Priority") == Some("required"))
            .filter_map(|p| p.get("Package").map(str::to_string))
            .collect();
        names.insert("apt".into());
        names
    }

    /// Pin every planned download by the index's SHA-256, sorted.
    pub fn lock(&self, planned: &[PlannedDownload]) -> Result<Vec<LockedPackage>, LockError> {
        let mut packages = Vec::with_capacity(planned.len());
        for download in planned {
            let stanza = self
                .by_path
                .get(download.path.as_str())
                .ok_or_else(|| LockError::NotInIndex { path: download.path.clone() })?;
            let field = |name: &'static str| {
                stanza.get(name).ok_or(LockError::BadStanza { path: download.path.clone(), field: name })
            };
            let size: u64 = field("Size")?
                .parse()
                .map_err(|_| LockError::BadStanza { path: download.path.clone(), field: "Size" })?;
            if size != download.size {
                return Err(LockError::SizeMismatch {
                    path: download.path.clone(),
                    planned: download.size,
                    indexed: size,
                });
            }
            let sha256 = Sha256Digest::try_from(field("SHA256")?.to_string())
                .map_err(|_| LockError::BadStanza { path: download.path.clone(), field: "SHA256" })?;
            packages.push(LockedPackage {
                name: field("Package")?.to_string(),
                version: field("Version")?.to_string(),
                architecture: field("Architecture")?.to_string(),
                size,
                sha256,
                path: download.path.clone(),
            });
        }
        packages.sort();
        Ok(packages)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PRINT_URIS: &str = include_str!("../tests/fixtures/print-uris-xorriso-squashfs.txt");
    const DUMPAVAIL: &str = include_str!("../tests/fixtures/dumpavail-excerpt.txt");

    #[test]
    fn recorded_resolution_pins_every_planned_deb() {
        let paragraphs = deb822::parse(DUMPAVAIL).unwrap();
        let index = PackageIndex::new(&paragraphs);
        let planned = print_uris::parse(PRINT_URIS, "http://deb.debian.org/debian/").unwrap();
        let locked = index.lock(&planned).unwrap();
        assert_eq!(locked.len(), planned.len());
        let squashfs = locked.iter().find(|p| p.name == "squashfs-tools").unwrap();
        assert_eq!(squashfs.version, "1:4.5.1-1", "the version keeps its epoch");
        assert_eq!(squashfs.architecture, "amd64");
        assert_eq!(squashfs.path, "pool/main/s/squashfs-tools/squashfs-tools_4.5.1-1_amd64.deb");
        let mut names: Vec<&str> = locked.iter().map(|p| p.name.as_str()).collect();
        let sorted = {
            let mut s = names.clone();
            s.sort();
            s
        };
        assert_eq!(names, sorted);
        names.dedup();
        assert_eq!(names.len(), locked.len());
        assert!(!names.contains(&"xorriso-tcltk"), "only what apt planned is locked");
    }

    #[test]
    fn a_download_missing_from_the_index_is_an_error() {
        let paragraphs = deb822::parse(DUMPAVAIL).unwrap();
        let index = PackageIndex::new(&paragraphs);
        let planned = [PlannedDownload { path: "pool/main/n/nope/nope_1_amd64.deb".into(), size: 1 }];
        assert!(matches!(index.lock(&planned), Err(LockError::NotInIndex { .. })));
        let mut planned = print_uris::parse(PRINT_URIS, "http://deb.debian.org/debian/").unwrap();
        planned[0].size += 1;
        assert!(matches!(index.lock(&planned), Err(LockError::SizeMismatch { .. })));
    }

    #[test]
    fn minbase_adds_essential_required_and_apt() {
        let text = "Package: bash\nEssential: yes\nPriority: required\n\nPackage: libc6\nPriority: required\n\nPackage: vim\nPriority: optional\n";
        let paragraphs = deb822::parse(text).unwrap();
        let names: Vec<String> = PackageIndex::new(&paragraphs).minbase_packages().into_iter().collect();
        assert_eq!(names, ["apt", "bash", "libc6"]);
    }
}

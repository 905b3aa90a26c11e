//! `ceremony-os lock`: resolve the definition's package sets with apt against every archive of
//! the definition (the first mirror set that serves verifiable Release files), and pin every .deb
//! of the closure by SHA-256, each with the archive whose index lists it. The InRelease files and
//! package indexes apt verified are returned with the lock, to be kept in the store: they are what
//! the lock's trust chain is checked against later (`crate::trust`).

use crate::apt::{AptRoot, AptSources};
use crate::deb822::{self, Paragraph};
use crate::print_uris::{self, PlannedDownload};
use ceremony_os_definition::{
    ArchiveState, ImageDefinition, LOCK_FORMAT_VERSION, LockedIndex, LockedPackage, LockedSet, Lockfile,
    PackageSet, Sha256Digest, Variant, snapshot_run_after,
};
use ceremony_os_runner::{RunError, Runner};
use sha2::{Digest, Sha256};
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("archive keyring {} is not readable: {source} (fix debian.keyring)", path.display())]
    Keyring { path: PathBuf, source: std::io::Error },
    #[error("no mirror set served verified indexes for every archive:\n{}", format_attempts(.attempts))]
    AllMirrorsFailed { attempts: Vec<(String, String)> },
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
    #[error("apt planned to download {path}, which no index of that mirror's archives describes")]
    NotInIndex { path: String },
    #[error("index stanza for {path} has no valid {field} field")]
    BadStanza { path: String, field: &'static str },
    #[error("{path}: apt planned {planned} bytes but the index says {indexed}")]
    SizeMismatch { path: String, planned: u64, indexed: u64 },
    #[error("{0}")]
    Trust(#[from] crate::trust::TrustError),
}

fn format_attempts(attempts: &[(String, String)]) -> String {
    attempts
        .iter()
        .map(|(m, e)| format!("  {m}: {}", e.trim().replace('\n', "\n    ")))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A file of the archive state, to be kept in the store: an InRelease file or a package index.
#[derive(Debug, Clone)]
pub struct ArchiveFile {
    /// For messages: `bookworm InRelease`, `bookworm main/binary-amd64/Packages.xz`.
    pub label: String,
    pub bytes: Vec<u8>,
}

#[derive(Debug)]
pub struct Resolved {
    pub lock: Lockfile,
    pub files: Vec<ArchiveFile>,
}

/// Resolve both package sets of `def` into a lockfile. `keyring` is the resolved keyring path;
/// `progress` receives human-readable progress lines.
pub fn resolve_lock(
    def: &ImageDefinition,
    keyring: &Path,
    progress: &mut dyn FnMut(&str),
) -> Result<Resolved, LockError> {
    let keyring_bytes = std::fs::read(keyring)
        .map_err(|source| LockError::Keyring { path: keyring.to_path_buf(), source })?;
    // apt takes a signed-by value that is not an absolute path for a fingerprint.
    let keyring = &keyring
        .canonicalize()
        .map_err(|source| LockError::Keyring { path: keyring.to_path_buf(), source })?;
    let runner = Runner::new(def.source_date_epoch());
    let work = tempfile::Builder::new()
        .prefix("ceremony-os-lock-")
        .tempdir()
        .map_err(|source| LockError::Io { context: "creating a temporary apt root".into(), source })?;
    let architecture = def.image.architecture.debian_name();
    let archives = &def.debian.archives;
    let rounds = archives.iter().map(|a| a.mirrors.urls().len()).max().unwrap_or(0);

    // Round n uses each archive's n-th mirror (or its last one).
    let mut attempts = Vec::new();
    let mut chosen = None;
    for round in 0..rounds {
        let bases: Vec<String> = archives
            .iter()
            .map(|a| {
                let urls = a.mirrors.urls();
                urls[round.min(urls.len() - 1)].base(def.debian.snapshot)
            })
            .collect();
        progress(&format!("resolving against {}", bases.join(", ")));
        let root = work.path().join(format!("round-{round}"));
        let sources = AptSources {
            archives: archives
                .iter()
                .zip(&bases)
                .map(|(a, base)| {
                    (base.clone(), a.suite.as_str(), a.components.iter().map(|c| c.to_string()).collect())
                })
                .collect(),
            architecture,
            keyring,
        };
        let apt = AptRoot::create(&root, &sources, runner.clone()).map_err(|source| LockError::Io {
            context: format!("creating apt root {}", root.display()),
            source,
        })?;
        match apt.update(|line| tracing::debug!("apt: {line}")) {
            Ok(()) => {
                chosen = Some((round, bases, apt));
                break;
            }
            Err(e) => {
                progress("  failed; trying the next mirrors");
                attempts.push((bases.join(", "), e.to_string()));
            }
        }
    }
    let Some((round, bases, apt)) = chosen else {
        return Err(LockError::AllMirrorsFailed { attempts });
    };
    if !attempts.is_empty() {
        progress(&format!(
            "warning: the first mirrors were unreachable; resolved against {} (not a snapshot of {})",
            bases.join(", "),
            def.debian.snapshot
        ));
    }

    // Every archive's InRelease and indexes, exactly as apt verified them.
    let mut files = Vec::new();
    let mut states = Vec::new();
    let mut indexes = Vec::new();
    for archive in archives {
        let suite = archive.suite.as_str();
        let urls = archive.mirrors.urls();
        let from_snapshot = urls[round.min(urls.len() - 1)].is_snapshot();
        let read = |suffix: String| -> Result<Vec<u8>, LockError> {
            let path = apt
                .list_file(&suffix)
                .map_err(|source| LockError::Io { context: format!("{suite}: finding {suffix}"), source })?;
            std::fs::read(&path)
                .map_err(|source| LockError::Io { context: format!("reading {}", path.display()), source })
        };
        let inrelease = read(format!("_dists_{suite}_InRelease"))?;
        let release = crate::trust::verified_release(&inrelease, &keyring_bytes, suite)?;
        let mut locked_indexes = Vec::new();
        for component in &archive.components {
            let path = format!("{component}/binary-{architecture}/Packages.xz");
            let bytes = read(format!("_dists_{suite}_{}", path.replace('/', "_")))?;
            let index = LockedIndex { path: path.clone(), size: bytes.len() as u64, sha256: sha256(&bytes) };
            release.check_index(&index)?;
            indexes.push((suite.to_string(), crate::trust::parse_index(&bytes, &format!("{suite} {path}"))?));
            files.push(ArchiveFile { label: format!("{suite} {path}"), bytes });
            locked_indexes.push(index);
        }
        // What to ask snapshot.debian.org for later: the time this state was fetched at when it
        // came from there; otherwise the first snapshot run surely after its Date: (no clock).
        let snapshot_time =
            if from_snapshot { def.debian.snapshot } else { snapshot_run_after(&release.date) };
        states.push(ArchiveState {
            suite: suite.to_string(),
            components: archive.components.iter().map(|c| c.to_string()).collect(),
            release_date: release.date.clone(),
            snapshot_time: Some(snapshot_time),
            inrelease_sha256: sha256(&inrelease),
            inrelease_size: inrelease.len() as u64,
            indexes: locked_indexes,
        });
        files.push(ArchiveFile { label: format!("{suite} InRelease"), bytes: inrelease });
    }

    let all_paragraphs: Vec<&Paragraph> = indexes.iter().flat_map(|(_, p)| p.iter()).collect();
    let mut lock_set = |name: &'static str, set: &PackageSet| -> Result<LockedSet, LockError> {
        let mut request: BTreeSet<String> = set.include.names().iter().map(|n| n.to_string()).collect();
        if set.variant == Variant::Minbase {
            request.extend(minbase_packages(&all_paragraphs));
        }
        progress(&format!("resolving the {name} set ({} packages requested)", request.len()));
        let request: Vec<String> = request.into_iter().collect();
        let planned = apt.print_uris(&request).map_err(|source| LockError::Resolve { set: name, source })?;
        let base_refs: Vec<&str> = bases.iter().map(String::as_str).collect();
        let planned = print_uris::parse(&planned, &base_refs)?;
        let packages =
            lock_planned(&planned, archives.iter().map(|a| a.suite.as_str()).collect(), &bases, &indexes)?;
        progress(&format!("  {name}: {} packages", packages.len()));
        Ok(LockedSet { variant: set.variant, include: set.include.sorted_strings(), packages })
    };
    let image = lock_set("image", &def.packages.image)?;
    let toolchain = lock_set("toolchain", &def.packages.toolchain)?;

    Ok(Resolved {
        lock: Lockfile {
            lock_version: LOCK_FORMAT_VERSION,
            suite: def.debian.suite.to_string(),
            architecture: def.image.architecture,
            snapshot: def.debian.snapshot,
            source_date_epoch: def.source_date_epoch(),
            keyring_sha256: sha256(&keyring_bytes),
            archives: states,
            image,
            toolchain,
        },
        files,
    })
}

fn sha256(bytes: &[u8]) -> Sha256Digest {
    Sha256Digest::from_bytes(&Sha256::digest(bytes).into())
}

/// mmdebstrap's minbase additions: every `Essential: yes` and `Priority: required` package, and
/// apt.
pub fn minbase_packages(paragraphs: &[&Paragraph]) -> BTreeSet<String> {
    let mut names: BTreeSet<String> = paragraphs
        .iter()
        .filter(|p| p.get("Essential") == Some("yes") || p.get("Priority") == Some("required"))
        .filter_map(|p| p.get("Package").map(str::to_string))
        .collect();
    names.insert("apt".into());
    names
}

/// Pin each planned download by the index of the first archive (in definition order) on the same
/// mirror base whose index lists its path.
fn lock_planned(
    planned: &[PlannedDownload],
    suites: Vec<&str>,
    bases: &[String],
    indexes: &[(String, Vec<Paragraph>)],
) -> Result<Vec<LockedPackage>, LockError> {
    let by_suite: Vec<(&str, PackageIndex<'_>)> = suites
        .iter()
        .map(|suite| {
            let paragraphs: Vec<&Paragraph> =
                indexes.iter().filter(|(s, _)| s == suite).flat_map(|(_, p)| p.iter()).collect();
            (*suite, PackageIndex::new(paragraphs))
        })
        .collect();
    let mut packages = Vec::with_capacity(planned.len());
    for download in planned {
        let base = &bases[download.base];
        let found = by_suite
            .iter()
            .zip(bases)
            .filter(|(_, b)| *b == base)
            .find_map(|((suite, index), _)| index.stanza(&download.path).map(|stanza| (*suite, stanza)));
        let Some((suite, stanza)) = found else {
            return Err(LockError::NotInIndex { path: download.path.clone() });
        };
        packages.push(PackageIndex::pin(download, stanza, suite)?);
    }
    packages.sort();
    Ok(packages)
}

/// One archive's package index, keyed by archive path.
#[derive(Debug)]
pub struct PackageIndex<'a> {
    by_path: HashMap<&'a str, &'a Paragraph>,
}

impl<'a> PackageIndex<'a> {
    pub fn new(paragraphs: Vec<&'a Paragraph>) -> Self {
        let by_path = paragraphs.into_iter().filter_map(|p| Some((p.get("Filename")?, p))).collect();
        PackageIndex { by_path }
    }

    pub fn stanza(&self, path: &str) -> Option<&'a Paragraph> {
        self.by_path.get(path).copied()
    }

    /// Pin one planned download by its index stanza.
    pub fn pin(
        download: &PlannedDownload,
        stanza: &Paragraph,
        archive: &str,
    ) -> Result<LockedPackage, LockError> {
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
        Ok(LockedPackage {
            name: field("Package")?.to_string(),
            version: field("Version")?.to_string(),
            architecture: field("Architecture")?.to_string(),
            size,
            sha256,
            path: download.path.clone(),
            archive: archive.to_string(),
        })
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
        let indexes = vec![("bookworm".to_string(), paragraphs)];
        let bases = vec!["http://deb.debian.org/debian/".to_string()];
        let planned = print_uris::parse(PRINT_URIS, &["http://deb.debian.org/debian/"]).unwrap();
        let locked = lock_planned(&planned, vec!["bookworm"], &bases, &indexes).unwrap();
        assert_eq!(locked.len(), planned.len());
        let squashfs = locked.iter().find(|p| p.name == "squashfs-tools").unwrap();
        assert_eq!(squashfs.version, "1:4.5.1-1", "the version keeps its epoch");
        assert_eq!(squashfs.architecture, "amd64");
        assert_eq!(squashfs.archive, "bookworm");
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
        let indexes = vec![("bookworm".to_string(), paragraphs)];
        let bases = vec!["http://x/".to_string()];
        let planned =
            [PlannedDownload { path: "pool/main/n/nope/nope_1_amd64.deb".into(), size: 1, base: 0 }];
        assert!(matches!(
            lock_planned(&planned, vec!["bookworm"], &bases, &indexes),
            Err(LockError::NotInIndex { .. })
        ));
        let mut planned = print_uris::parse(PRINT_URIS, &["http://deb.debian.org/debian/"]).unwrap();
        planned[0].size += 1;
        let bases = vec!["http://deb.debian.org/debian/".to_string()];
        assert!(matches!(
            lock_planned(&planned, vec!["bookworm"], &bases, &indexes),
            Err(LockError::SizeMismatch { .. })
        ));
    }

    #[test]
    fn minbase_adds_essential_required_and_apt() {
        let text = "Package: bash\nEssential: yes\nPriority: required\n\nPackage: libc6\nPriority: required\n\nPackage: vim\nPriority: optional\n";
        let paragraphs = deb822::parse(text).unwrap();
        let refs: Vec<&Paragraph> = paragraphs.iter().collect();
        let names: Vec<String> = minbase_packages(&refs).into_iter().collect();
        assert_eq!(names, ["apt", "bash", "libc6"]);
    }
}

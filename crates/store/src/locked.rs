//! From a lockfile to what the store must hold, in the order that keeps the lock honest: first
//! the archive state (each archive's InRelease and package indexes, fetched by their SHA-256),
//! then the lock's trust chain checked against them (`ceremony_os_debian::trust`), and only then
//! the packages. A hand-edited lock is refused before a single .deb is downloaded.
//!
//! Where an archive's locked state can be had from no source (mirrors serve only the current
//! InRelease; snapshot.debian.org may be out of reach; no bundle holds it), the archive is
//! **re-vouched**: its current signed state (then other snapshot states, then those a bundle
//! holds) is fetched by name, its signature checked with the definition's keyring, and each locked
//! package of that archive is accepted when that state's signed index lists it with the same
//! name, version, architecture, size and SHA-256. The ISO is the same bytes. A package no state
//! lists any more is named with what replaced it.

use crate::bundle::{self, BundleIndex, EntryKind};
use crate::fetch::{
    Bundle, FetchError, FetchItem, FetchObserver, FetchOptions, FetchReport, Sources, download_unpinned,
    fetch,
};
use crate::store::{Expected, Store, StoreError};
use ceremony_os_debian::trust::{self, TrustError, TrustReport, Voucher};
use ceremony_os_definition::{
    ArchiveState, ImageDefinition, LockedCrate, LockedIndex, LockedPackage, Lockfile, Sha256Digest,
};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// No InRelease is larger than this (bookworm's is 151 KB).
const INRELEASE_LIMIT: u64 = 32 << 20;

/// The mirror bases of the definition's archive `suite` for the locked `state`, in the
/// definition's order; a snapshot mirror gives one base per time of `state.snapshot_times()`
/// (empty if the definition has no such archive: then only the store and bundles can serve it).
fn mirrors(def: &ImageDefinition, suite: &str, state: Option<&ArchiveState>) -> Vec<String> {
    let Some(archive) = def.debian.archives.iter().find(|a| a.suite.as_str() == suite) else {
        return Vec::new();
    };
    let times = state.map(ArchiveState::snapshot_times).unwrap_or_else(|| vec![def.debian.snapshot]);
    archive
        .mirrors
        .urls()
        .iter()
        .flat_map(|m| {
            if m.is_snapshot() {
                times.iter().map(|t| m.base(*t)).collect()
            } else {
                vec![m.base(def.debian.snapshot)]
            }
        })
        .collect()
}

/// The current-state mirrors of `suite` (no snapshot), then its snapshot bases.
fn current_mirrors_first(def: &ImageDefinition, state: &ArchiveState) -> Vec<String> {
    let Some(archive) = def.debian.archives.iter().find(|a| a.suite.as_str() == state.suite) else {
        return Vec::new();
    };
    let (snapshots, current): (Vec<_>, Vec<_>) = archive.mirrors.urls().iter().partition(|m| m.is_snapshot());
    let mut bases: Vec<String> = current.iter().map(|m| m.base(def.debian.snapshot)).collect();
    for m in snapshots {
        bases.extend(state.snapshot_times().iter().map(|t| m.base(*t)));
    }
    bases
}

fn inrelease_item(
    def: &ImageDefinition,
    state: &ArchiveState,
    sha256: &Sha256Digest,
    size: u64,
    label: String,
) -> FetchItem {
    FetchItem {
        label,
        path: state.inrelease_path(),
        mirrors: mirrors(def, &state.suite, Some(state)),
        bundle_path: bundle::archive_path(sha256),
        expected: Expected { sha256: sha256.clone(), size },
    }
}

/// An index fetched by hash (`.../by-hash/SHA256/<hex>`), which a mirror keeps a while after the
/// suite moves on.
fn index_item(state: &ArchiveState, index: &LockedIndex, mirrors: Vec<String>, label: String) -> FetchItem {
    let dir = index.path.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
    FetchItem {
        label,
        path: format!("dists/{}/{dir}/by-hash/SHA256/{}", state.suite, index.sha256),
        mirrors,
        bundle_path: bundle::archive_path(&index.sha256),
        expected: Expected { sha256: index.sha256.clone(), size: index.size },
    }
}

/// Every archive's locked InRelease and package indexes.
pub fn archive_items(def: &ImageDefinition, lock: &Lockfile) -> Vec<FetchItem> {
    let mut items = Vec::new();
    for state in &lock.archives {
        let label = format!("{} InRelease", state.suite);
        items.push(inrelease_item(def, state, &state.inrelease_sha256, state.inrelease_size, label));
        for index in &state.indexes {
            let label = format!("{} {}", state.suite, index.path);
            items.push(index_item(state, index, mirrors(def, &state.suite, Some(state)), label));
        }
    }
    items
}

/// The given packages, each from its archive's mirrors.
pub fn package_items<'a>(
    def: &ImageDefinition,
    lock: &Lockfile,
    packages: impl IntoIterator<Item = &'a LockedPackage>,
) -> Vec<FetchItem> {
    packages
        .into_iter()
        .map(|p| FetchItem {
            label: p.spec(),
            path: p.path.clone(),
            mirrors: mirrors(def, &p.archive, lock.archive(&p.archive)),
            bundle_path: bundle::deb_path(p.file_name()),
            expected: Expected { sha256: p.sha256.clone(), size: p.size },
        })
        .collect()
}

/// The archive files a bundle of this fetch holds: each archive's locked InRelease and indexes,
/// or, for an archive re-vouched, the states that vouched for it (its locked state is not had).
pub fn state_files(def: &ImageDefinition, lock: &Lockfile, report: &StateReport) -> Vec<bundle::BundleFile> {
    let file = |item: FetchItem, kind: EntryKind, suite: &str| bundle::BundleFile {
        item,
        kind,
        suite: Some(suite.to_string()),
    };
    let mut files = Vec::new();
    for state in &lock.archives {
        let suite = state.suite.as_str();
        let revouched_by = report
            .archives
            .iter()
            .find(|a| a.suite == suite)
            .map(|a| a.revouched_by.as_slice())
            .unwrap_or_default();
        if revouched_by.is_empty() {
            files.push(file(
                inrelease_item(
                    def,
                    state,
                    &state.inrelease_sha256,
                    state.inrelease_size,
                    format!("{suite} InRelease"),
                ),
                EntryKind::Inrelease,
                suite,
            ));
            for index in &state.indexes {
                files.push(file(
                    index_item(state, index, Vec::new(), format!("{suite} {}", index.path)),
                    EntryKind::Index,
                    suite,
                ));
            }
        }
        for record in revouched_by {
            let v = &record.voucher;
            let label = format!("{suite} InRelease of {}", v.date);
            files.push(file(
                inrelease_item(def, state, &v.inrelease_sha256, v.inrelease_size, label),
                EntryKind::Inrelease,
                suite,
            ));
            for index in &v.indexes {
                files.push(file(
                    index_item(state, index, Vec::new(), format!("{suite} {} of {}", index.path, v.date)),
                    EntryKind::Index,
                    suite,
                ));
            }
        }
    }
    files
}

/// How one archive's state was established for this fetch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ArchiveRecord {
    pub suite: String,
    /// The locked state's `Date:` and InRelease digest.
    pub locked_date: String,
    pub locked_inrelease_sha256: Sha256Digest,
    /// Empty when the locked state itself was had; otherwise the signed states that vouched for
    /// the lock's packages of this archive, in the order they were used.
    pub revouched_by: Vec<VoucherRecord>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VoucherRecord {
    #[serde(flatten)]
    pub voucher: Voucher,
    /// Where its InRelease came from.
    pub source: String,
    /// How many of the archive's locked packages it vouched for (that an earlier one had not).
    pub packages: usize,
}

/// The archive state the lock's packages were checked against.
#[derive(Debug, Clone)]
pub struct StateReport {
    pub archives: Vec<ArchiveRecord>,
    pub trust: TrustReport,
    /// The bundles whose index could be read, with the index's SHA-256 and contents.
    pub bundle_indexes: Vec<(Bundle, Sha256Digest, BundleIndex)>,
    pub fetched: Vec<FetchReport>,
    pub warnings: Vec<String>,
}

impl StateReport {
    pub fn vouchers(&self) -> BTreeMap<String, Vec<Voucher>> {
        self.archives
            .iter()
            .filter(|a| !a.revouched_by.is_empty())
            .map(|a| (a.suite.clone(), a.revouched_by.iter().map(|v| v.voucher.clone()).collect()))
            .collect()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LockedError {
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Trust(#[from] TrustError),
    /// The locked state of an archive could be had from no source, and no signed state of it
    /// that could be had lists every locked package of it.
    #[error("{}", render_unvouched(.suite, .locked_date, .locked_failure, .tried, .missing))]
    Unvouched {
        suite: String,
        locked_date: String,
        /// Why the locked InRelease or an index could not be had.
        locked_failure: String,
        /// Each state asked for, and what it gave.
        tried: Vec<(String, String)>,
        /// The packages no state lists, each with the versions listed instead (empty when no
        /// other state could be read).
        missing: Vec<(String, Vec<String>)>,
    },
}

fn render_unvouched(
    suite: &str,
    locked_date: &str,
    locked_failure: &str,
    tried: &[(String, String)],
    missing: &[(String, Vec<String>)],
) -> String {
    let mut out = if missing.is_empty() {
        format!(
            "the inputs of archive {suite} cannot be had: its locked state (Release of {locked_date}) is served by no source, and no other signed state of it could be had to re-vouch for its packages"
        )
    } else {
        format!(
            "the inputs of archive {suite} cannot be had: its locked state (Release of {locked_date}) is served by no source, and {} of its locked packages are listed by no signed state that is:",
            missing.len()
        )
    };
    for (package, instead) in missing {
        let now = if instead.is_empty() {
            "no longer listed".to_string()
        } else {
            format!("replaced by {}", instead.join(", "))
        };
        out.push_str(&format!("\n  {package}: {now}"));
    }
    out.push_str("\nthe locked state:");
    for line in locked_failure.lines() {
        out.push_str(&format!("\n  {line}"));
    }
    if !tried.is_empty() {
        out.push_str("\nother signed states asked for:");
        for (source, outcome) in tried {
            out.push_str(&format!("\n  {source}: {outcome}"));
        }
    }
    out
}

/// Fetch the lock's archive state (re-vouching archives whose locked state cannot be had) and
/// check the lock's trust chain against it.
pub fn fetch_state(
    store: &Store,
    def: &ImageDefinition,
    lock: &Lockfile,
    keyring: &[u8],
    sources: &Sources,
    options: &FetchOptions,
    observer: &dyn FetchObserver,
) -> Result<StateReport, LockedError> {
    let mut warnings = Vec::new();
    let mut bundle_indexes = Vec::new();
    for b in &sources.bundles {
        match bundle::read_index(b, options) {
            Ok((index, digest)) => bundle_indexes.push((b.clone(), digest, index)),
            Err(e) => warnings.push(format!(
                "{b}: cannot read its index ({e}); only files named by the lock are asked of it"
            )),
        }
    }
    let mut fetched = Vec::new();
    let mut failures: BTreeMap<String, String> = BTreeMap::new();
    match fetch(store, &archive_items(def, lock), sources, options, observer) {
        Ok(report) => fetched.push(report),
        Err(FetchError::Failed { failures: list, .. }) => {
            for f in list {
                let suite = f.label.split(' ').next().unwrap_or("").to_string();
                let text = FetchError::Failed { total: 1, failures: vec![f] }.to_string();
                let text = text.split_once('\n').map_or(text.as_str(), |(_, rest)| rest).to_string();
                failures
                    .entry(suite)
                    .and_modify(|t: &mut String| {
                        t.push('\n');
                        t.push_str(&text)
                    })
                    .or_insert(text);
            }
        }
        Err(e) => return Err(e.into()),
    }
    let indexes: Vec<BundleIndex> = bundle_indexes.iter().map(|(_, _, i)| i.clone()).collect();
    let mut archives = Vec::new();
    for state in &lock.archives {
        let mut record = ArchiveRecord {
            suite: state.suite.clone(),
            locked_date: state.release_date.clone(),
            locked_inrelease_sha256: state.inrelease_sha256.clone(),
            revouched_by: Vec::new(),
        };
        if let Some(failure) = failures.get(&state.suite) {
            let revouch =
                Revouch { store, def, lock, state, keyring, sources, options, observer, bundles: &indexes };
            record.revouched_by = revouch.run(failure, &mut fetched)?;
            warnings.push(format!(
                "{}: the locked state (Release of {}) is served by no source; re-vouched by {}",
                state.suite,
                state.release_date,
                record
                    .revouched_by
                    .iter()
                    .map(|v| format!("the Release of {} ({})", v.voucher.date, v.source))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        archives.push(record);
    }
    let mut report = StateReport {
        archives,
        trust: TrustReport { archives: 0, packages: 0 },
        bundle_indexes,
        fetched,
        warnings,
    };
    report.trust = check_trust(store, lock, keyring, &report.vouchers())?;
    Ok(report)
}

/// Where the store remembers which states re-vouched for a locked state (their InRelease files
/// are store objects like any other), so that later runs, offline ones too, find them.
fn vouchers_file(store: &Store, state: &ArchiveState) -> std::path::PathBuf {
    store.root().join("vouchers").join(state.inrelease_sha256.as_hex())
}

fn remembered_vouchers(store: &Store, state: &ArchiveState) -> Vec<Expected> {
    let Ok(text) = std::fs::read_to_string(vouchers_file(store, state)) else { return Vec::new() };
    text.lines()
        .filter_map(|line| {
            let (sha256, size) = line.split_once(' ')?;
            Some(Expected {
                sha256: Sha256Digest::try_from(sha256.to_string()).ok()?,
                size: size.parse().ok()?,
            })
        })
        .collect()
}

fn remember_vouchers(
    store: &Store,
    state: &ArchiveState,
    vouchers: &[VoucherRecord],
) -> Result<(), StoreError> {
    let path = vouchers_file(store, state);
    let text: String = vouchers
        .iter()
        .map(|v| format!("{} {}\n", v.voucher.inrelease_sha256, v.voucher.inrelease_size))
        .collect();
    let dir = path.parent().expect("a parent");
    let io = |source| StoreError::Io { path: path.clone(), source };
    std::fs::create_dir_all(dir).map_err(io)?;
    let tmp = dir.join(format!(".{}.tmp-{}", state.inrelease_sha256, std::process::id()));
    std::fs::write(&tmp, text).map_err(io)?;
    std::fs::rename(&tmp, &path).map_err(io)
}

struct Revouch<'a> {
    store: &'a Store,
    def: &'a ImageDefinition,
    lock: &'a Lockfile,
    state: &'a ArchiveState,
    keyring: &'a [u8],
    sources: &'a Sources,
    options: &'a FetchOptions,
    observer: &'a dyn FetchObserver,
    bundles: &'a [BundleIndex],
}

impl Revouch<'_> {
    /// Candidate states in order: each current mirror's InRelease, each snapshot time's, then
    /// the other states the bundles hold; until every locked package of the archive is listed.
    fn run(
        &self,
        locked_failure: &str,
        fetched: &mut Vec<FetchReport>,
    ) -> Result<Vec<VoucherRecord>, LockedError> {
        let suite = &self.state.suite;
        let all = self.lock.all_packages();
        let mut remaining: Vec<&LockedPackage> =
            all.iter().copied().filter(|p| &p.archive == suite).collect();
        let mut latest: Vec<ceremony_os_debian::deb822::Paragraph> = Vec::new();
        let mut tried = Vec::new();
        let mut vouchers: Vec<VoucherRecord> = Vec::new();
        // States that re-vouched for this one before, kept in the store, come first.
        let mut candidates: Vec<(String, Option<Expected>)> = remembered_vouchers(self.store, self.state)
            .into_iter()
            .map(|expected| (bundle::archive_path(&expected.sha256), Some(expected)))
            .collect();
        let mut any_state_read = false;
        if !self.sources.offline {
            for base in current_mirrors_first(self.def, self.state) {
                candidates.push((format!("{base}{}", self.state.inrelease_path()), None));
            }
        }
        for index in self.bundles {
            for entry in &index.files {
                if entry.kind == EntryKind::Inrelease
                    && entry.suite.as_deref() == Some(suite)
                    && entry.sha256 != self.state.inrelease_sha256
                {
                    candidates.push((
                        bundle::archive_path(&entry.sha256),
                        Some(Expected { sha256: entry.sha256.clone(), size: entry.size }),
                    ));
                }
            }
        }
        // An archive no locked package comes from still needs one signed state standing in.
        for (source, expected) in candidates {
            if remaining.is_empty() && !vouchers.is_empty() {
                break;
            }
            let got = match &expected {
                None => self.unpinned(&source),
                Some(expected) => self.kept_state(&source, expected, fetched),
            };
            let (bytes, sha256, origin) = match got {
                Ok(got) => got,
                Err(reason) => {
                    tried.push((source, reason));
                    continue;
                }
            };
            if sha256 == self.state.inrelease_sha256
                || vouchers.iter().any(|v| v.voucher.inrelease_sha256 == sha256)
            {
                continue;
            }
            let release = match trust::check_voucher(&bytes, self.keyring, self.state) {
                Ok(release) => release,
                Err(e) => {
                    tried.push((source, format!("refused: {e}")));
                    continue;
                }
            };
            let expected = Expected { sha256: sha256.clone(), size: bytes.len() as u64 };
            self.store.insert_bytes(&bytes, &expected)?;
            let mut voucher = Voucher {
                inrelease_sha256: sha256,
                inrelease_size: bytes.len() as u64,
                date: release.date.clone(),
                indexes: Vec::new(),
            };
            let mut paragraphs = Vec::new();
            let mut index_error = None;
            for locked_index in &self.state.indexes {
                let Some((hash, size)) = release.sha256.get(&locked_index.path) else {
                    index_error = Some(format!("its Release lists no {}", locked_index.path));
                    break;
                };
                let Ok(hash) = Sha256Digest::try_from(hash.clone()) else {
                    index_error =
                        Some(format!("its Release lists {} with a malformed SHA-256", locked_index.path));
                    break;
                };
                let index = LockedIndex { path: locked_index.path.clone(), size: *size, sha256: hash };
                let label = format!("{suite} {} of {}", index.path, release.date);
                let base = origin.strip_suffix(&self.state.inrelease_path()).map(str::to_string);
                let item = index_item(self.state, &index, base.into_iter().collect(), label.clone());
                match fetch(self.store, &[item], self.sources, self.options, self.observer) {
                    Ok(report) => fetched.push(report),
                    Err(FetchError::Failed { failures, .. }) => {
                        index_error = Some(FetchError::Failed { total: 1, failures }.to_string());
                        break;
                    }
                    Err(e) => return Err(e.into()),
                }
                let bytes = std::fs::read(self.store.object_path(&index.sha256))
                    .map_err(|e| StoreError::Io { path: self.store.object_path(&index.sha256), source: e })?;
                paragraphs.extend(trust::parse_index(&bytes, &label)?);
                voucher.indexes.push(index);
            }
            if let Some(reason) = index_error {
                tried.push((origin, format!("the Release of {}: {reason}", release.date)));
                continue;
            }
            any_state_read = true;
            let before = remaining.len();
            let still: Vec<&LockedPackage> = trust::unlisted(remaining.iter().copied(), suite, &paragraphs)
                .into_iter()
                .map(|(p, _)| p)
                .collect();
            let vouched = before - still.len();
            if latest.is_empty() {
                latest = paragraphs;
            }
            if vouched == 0 && before > 0 {
                tried.push((
                    origin,
                    format!(
                        "the Release of {} lists none of the {before} packages still unvouched",
                        release.date
                    ),
                ));
                continue;
            }
            remaining = still;
            vouchers.push(VoucherRecord { voucher, source: origin, packages: vouched });
        }
        if remaining.is_empty() && !vouchers.is_empty() {
            remember_vouchers(self.store, self.state, &vouchers)?;
            return Ok(vouchers);
        }
        // With no state read, nothing is known of the packages: say only that.
        let missing = if any_state_read {
            trust::unlisted(remaining.iter().copied(), suite, &latest)
                .into_iter()
                .map(|(p, instead)| (p.spec(), instead))
                .collect()
        } else {
            Vec::new()
        };
        Err(LockedError::Unvouched {
            suite: suite.clone(),
            locked_date: self.state.release_date.clone(),
            locked_failure: locked_failure.to_string(),
            tried,
            missing,
        })
    }

    /// An InRelease by name: (bytes, SHA-256, URL).
    fn unpinned(&self, url: &str) -> Result<(Vec<u8>, Sha256Digest, String), String> {
        let bytes = download_unpinned(url, INRELEASE_LIMIT, self.options)?;
        let sha256 = Sha256Digest::from_bytes(&Sha256::digest(&bytes).into());
        Ok((bytes, sha256, url.to_string()))
    }

    /// A state the store or a bundle keeps, by its digest.
    fn kept_state(
        &self,
        path: &str,
        expected: &Expected,
        fetched: &mut Vec<FetchReport>,
    ) -> Result<(Vec<u8>, Sha256Digest, String), String> {
        let item = FetchItem {
            label: format!("{} InRelease {}", self.state.suite, expected.sha256),
            path: String::new(),
            mirrors: Vec::new(),
            bundle_path: path.to_string(),
            expected: expected.clone(),
        };
        let report = fetch(self.store, &[item], self.sources, self.options, self.observer)
            .map_err(|e| e.to_string())?;
        let origin = report.outcomes.first().map(|(_, o)| o.to_string()).unwrap_or_default();
        fetched.push(report);
        let bytes = std::fs::read(self.store.object_path(&expected.sha256)).map_err(|e| e.to_string())?;
        Ok((bytes, expected.sha256.clone(), origin))
    }
}

/// Check the lock's trust chain against the archive files in the store.
pub fn check_trust(
    store: &Store,
    lock: &Lockfile,
    keyring: &[u8],
    vouchers: &BTreeMap<String, Vec<Voucher>>,
) -> Result<TrustReport, TrustError> {
    trust::verify_lock(lock, keyring, vouchers, &|sha256, size| {
        let expected = Expected { sha256: sha256.clone(), size };
        match store.has_verified(&expected) {
            Ok(true) => std::fs::read(store.object_path(sha256)).ok(),
            _ => None,
        }
    })
}

/// Every input of the lock in the store: the archive state, the trust chain, then the packages.
#[derive(Debug, Clone)]
pub struct InputsReport {
    pub state: StateReport,
    pub packages: FetchReport,
}

impl InputsReport {
    /// The SHA-256 of the first bundle index, if any file came from a bundle.
    pub fn bundle_index_used(&self) -> Option<&Sha256Digest> {
        let used = self
            .packages
            .outcomes
            .iter()
            .chain(self.state.fetched.iter().flat_map(|r| &r.outcomes))
            .any(|(_, origin)| matches!(origin, crate::fetch::Origin::Bundle(_)));
        used.then(|| self.state.bundle_indexes.first().map(|(_, d, _)| d)).flatten()
    }
}

/// Fetch everything the lock names, verified: the archive state (re-vouched where need be), the
/// trust chain, then every locked .deb, and the `crates` of the tool's Cargo.lock that a bundle
/// holds (the `tools` stage takes them from the store; cargo fetches any other).
#[allow(clippy::too_many_arguments)]
pub fn fetch_inputs(
    store: &Store,
    def: &ImageDefinition,
    lock: &Lockfile,
    keyring: &[u8],
    crates: &[LockedCrate],
    sources: &Sources,
    options: &FetchOptions,
    observer: &dyn FetchObserver,
) -> Result<InputsReport, LockedError> {
    let state = fetch_state(store, def, lock, keyring, sources, options, observer)?;
    let mut items = package_items(def, lock, lock.all_packages());
    let indexes: Vec<BundleIndex> = state.bundle_indexes.iter().map(|(_, _, i)| i.clone()).collect();
    items.extend(bundle::crate_items(crates, &indexes));
    let packages = fetch(store, &items, sources, options, observer)?;
    Ok(InputsReport { state, packages })
}

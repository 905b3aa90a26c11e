//! The lock's trust chain, checked offline from files kept in the store:
//!
//! 1. the keyring is the one the lock was made with (its SHA-256);
//! 2. each archive's InRelease file is signed by a key of that keyring (`crate::openpgp`) and is
//!    the one the lock names (its SHA-256), for the suite the lock says;
//! 3. each package index the lock names is listed in that Release with the same SHA-256 and size;
//! 4. each locked package is in its archive's index at its path, with the same name, version,
//!    architecture, size and SHA-256;
//! 5. each package set is closed: every requested package (and, for `minbase`, every Essential or
//!    required package of the archives) is in it, and every Depends/Pre-Depends of every package
//!    in it is satisfied within it.
//!
//! So a hand-added entry (not in an index), an altered one (another digest or version), a removed
//! one (a dependency left unsatisfied), a wrong `inrelease_sha256` or a swapped index is refused,
//! naming the entry.
//!
//! **Re-vouching.** Mirrors serve only an archive's current InRelease, and Debian re-signs some
//! archives daily. When the locked InRelease of an archive can no longer be had, other signed
//! states of it ([`Voucher`]s: today's, or another snapshot's) stand in for it in steps 2-4: each
//! must be signed by the same keyring, be of the same suite and not older than the locked state,
//! and a locked package is accepted when one of their signed indexes lists it at its path with the
//! same name, version, architecture, size and SHA-256: the same bytes the locked state named.
//! The minbase part of step 5 (what the archive marks Essential or required) is checked only
//! against archives in their locked state: a later state may require more, which says nothing
//! about the lock.

use crate::deb822::{self, Paragraph};
use ceremony_os_definition::{
    ArchiveState, LockedIndex, LockedPackage, LockedSet, Lockfile, Sha256Digest, Variant,
};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Read;

#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    #[error("the keyring has SHA-256 {actual}, but the lock was made with keyring {expected}")]
    Keyring { expected: String, actual: String },
    #[error("{suite} InRelease: {message}")]
    Signature { suite: String, message: String },
    #[error("{suite} InRelease: {message}")]
    Release { suite: String, message: String },
    #[error("{what}: {message}")]
    Index { what: String, message: String },
    #[error(
        "{what}: not in the store ({sha256}); run `ceremony-os fetch` (or `ceremony-os lock` to record it)"
    )]
    Missing { what: String, sha256: String },
    #[error("{set}.packages {package}: {message}")]
    Package { set: &'static str, package: String, message: String },
    #[error("the {set} set is not closed: {message}")]
    Closure { set: &'static str, message: String },
}

/// A verified Release file: what it says about itself and its index files.
#[derive(Debug, Clone)]
pub struct Release {
    pub suite: String,
    pub date: String,
    /// Index path -> (SHA-256, size).
    pub sha256: HashMap<String, (String, u64)>,
}

/// Check `inrelease` is signed by a key of `keyring` and is the Release of `suite`; parse it.
pub fn verified_release(inrelease: &[u8], keyring: &[u8], suite: &str) -> Result<Release, TrustError> {
    let signed_text = crate::openpgp::verify_cleartext(inrelease, keyring)
        .map_err(|message| TrustError::Signature { suite: suite.into(), message })?;
    let bad = |message: String| TrustError::Release { suite: suite.into(), message };
    let paragraphs = deb822::parse(&signed_text).map_err(|e| bad(e.to_string()))?;
    let release = paragraphs.first().ok_or_else(|| bad("an empty Release".into()))?;
    let named = [release.get("Suite"), release.get("Codename")];
    if !named.contains(&Some(suite)) {
        return Err(bad(format!(
            "is the Release of suite {:?} (codename {:?}), not of {suite}",
            named[0].unwrap_or("?"),
            named[1].unwrap_or("?")
        )));
    }
    let date = release.get("Date").ok_or_else(|| bad("no Date field".into()))?.to_string();
    let mut sha256 = HashMap::new();
    for line in release.get("SHA256").unwrap_or("").lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if let [hash, size, path] = fields[..]
            && let Ok(size) = size.parse::<u64>()
        {
            sha256.insert(path.to_string(), (hash.to_ascii_lowercase(), size));
        }
    }
    Ok(Release { suite: suite.into(), date, sha256 })
}

impl Release {
    /// The index must be listed with the same SHA-256 and size.
    pub fn check_index(&self, index: &LockedIndex) -> Result<(), TrustError> {
        match self.sha256.get(&index.path) {
            Some((hash, size)) if hash == index.sha256.as_hex() && *size == index.size => Ok(()),
            Some((hash, size)) => Err(TrustError::Index {
                what: format!("{} {}", self.suite, index.path),
                message: format!(
                    "the lock says SHA-256 {} ({} bytes), the signed Release says {hash} ({size} bytes)",
                    index.sha256, index.size
                ),
            }),
            None => Err(TrustError::Index {
                what: format!("{} {}", self.suite, index.path),
                message: "not listed in the signed Release".into(),
            }),
        }
    }
}

/// Decompress (xz, or plain text) and parse a Packages index.
pub fn parse_index(bytes: &[u8], what: &str) -> Result<Vec<Paragraph>, TrustError> {
    let bad = |message: String| TrustError::Index { what: what.into(), message };
    let mut text = String::new();
    if bytes.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        liblzma::read::XzDecoder::new(bytes)
            .take(2 << 30)
            .read_to_string(&mut text)
            .map_err(|e| bad(format!("cannot decompress: {e}")))?;
    } else {
        text = String::from_utf8(bytes.to_vec()).map_err(|_| bad("not UTF-8 text".into()))?;
    }
    deb822::parse(&text).map_err(|e| bad(e.to_string()))
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A signed archive state standing in for the locked one (see the module documentation).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Voucher {
    pub inrelease_sha256: Sha256Digest,
    pub inrelease_size: u64,
    /// The state's `Date:`.
    pub date: String,
    /// The lock's index paths, with this state's digests.
    pub indexes: Vec<LockedIndex>,
}

/// Check that a voucher's InRelease (`inrelease`) is a later signed state of the locked archive
/// and return its Release.
pub fn check_voucher(inrelease: &[u8], keyring: &[u8], locked: &ArchiveState) -> Result<Release, TrustError> {
    let release = verified_release(inrelease, keyring, &locked.suite)?;
    let bad = |message: String| TrustError::Release { suite: locked.suite.clone(), message };
    let date = |text: &str| {
        ceremony_os_definition::Timestamp::parse_release_date(text).map_err(|e| bad(format!("Date: {e}")))
    };
    if date(&release.date)? < date(&locked.release_date)? {
        return Err(bad(format!(
            "is dated {}, earlier than the locked state ({}): an older state cannot vouch for the lock",
            release.date, locked.release_date
        )));
    }
    Ok(release)
}

/// The packages of `set` from archive `suite` that no stanza of `paragraphs` lists exactly as
/// locked, each with the versions those indexes list under its name instead (what replaced it).
pub fn unlisted<'a>(
    packages: impl IntoIterator<Item = &'a LockedPackage>,
    suite: &str,
    paragraphs: &[Paragraph],
) -> Vec<(&'a LockedPackage, Vec<String>)> {
    packages
        .into_iter()
        .filter(|p| p.archive == suite)
        .filter(|p| !paragraphs.iter().any(|stanza| lists_exactly(stanza, p)))
        .map(|p| {
            let mut instead: Vec<String> = paragraphs
                .iter()
                .filter(|s| {
                    s.get("Package") == Some(p.name.as_str())
                        && s.get("Architecture") == Some(&p.architecture)
                })
                .filter_map(|s| s.get("Version").map(str::to_string))
                .collect();
            instead.sort();
            instead.dedup();
            (p, instead)
        })
        .collect()
}

/// The fields of a locked package that a signed index must repeat, as (field, locked value).
fn locked_fields(p: &LockedPackage) -> [(&'static str, String); 5] {
    [
        ("Package", p.name.clone()),
        ("Version", p.version.clone()),
        ("Architecture", p.architecture.clone()),
        ("Size", p.size.to_string()),
        ("SHA256", p.sha256.to_string()),
    ]
}

fn lists_exactly(stanza: &Paragraph, p: &LockedPackage) -> bool {
    stanza.get("Filename") == Some(p.path.as_str())
        && locked_fields(p)
            .iter()
            .all(|(field, locked)| stanza.get(field).is_some_and(|v| v.eq_ignore_ascii_case(locked)))
}

/// What the chain check found, for the caller to report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustReport {
    pub archives: usize,
    pub packages: usize,
}

/// Check the whole chain. `read(sha256, size, what)` returns a verified store object's bytes, or
/// `None` when the store does not have it. `vouchers` names, per suite, the signed states that
/// stand in for a locked state that can no longer be had (empty: every archive in its locked
/// state).
pub fn verify_lock(
    lock: &Lockfile,
    keyring: &[u8],
    vouchers: &BTreeMap<String, Vec<Voucher>>,
    read: &dyn Fn(&Sha256Digest, u64) -> Option<Vec<u8>>,
) -> Result<TrustReport, TrustError> {
    let actual = sha256_hex(keyring);
    if actual != lock.keyring_sha256.as_hex() {
        return Err(TrustError::Keyring { expected: lock.keyring_sha256.to_string(), actual });
    }
    let object = |sha: &Sha256Digest, size: u64, what: String| {
        read(sha, size).ok_or(TrustError::Missing { what, sha256: sha.to_string() })
    };
    let mut indexes: BTreeMap<&str, Vec<Paragraph>> = BTreeMap::new();
    let mut locked_states: BTreeSet<&str> = BTreeSet::new();
    for archive in &lock.archives {
        if let Some(stand_ins) = vouchers.get(&archive.suite).filter(|v| !v.is_empty()) {
            let mut paragraphs = Vec::new();
            for voucher in stand_ins {
                let what = format!("{} InRelease of {}", archive.suite, voucher.date);
                let inrelease = object(&voucher.inrelease_sha256, voucher.inrelease_size, what)?;
                let release = check_voucher(&inrelease, keyring, archive)?;
                for index in &voucher.indexes {
                    release.check_index(index)?;
                    let what = format!("{} {} of {}", archive.suite, index.path, voucher.date);
                    let bytes = object(&index.sha256, index.size, what.clone())?;
                    paragraphs.extend(parse_index(&bytes, &what)?);
                }
            }
            indexes.insert(&archive.suite, paragraphs);
            continue;
        }
        locked_states.insert(&archive.suite);
        let inrelease = object(
            &archive.inrelease_sha256,
            archive.inrelease_size,
            format!("{} InRelease", archive.suite),
        )?;
        let release = verified_release(&inrelease, keyring, &archive.suite)?;
        if release.date != archive.release_date {
            return Err(TrustError::Release {
                suite: archive.suite.clone(),
                message: format!("is dated {}, the lock says {}", release.date, archive.release_date),
            });
        }
        let mut paragraphs = Vec::new();
        for index in &archive.indexes {
            release.check_index(index)?;
            let what = format!("{} {}", archive.suite, index.path);
            let bytes = object(&index.sha256, index.size, what.clone())?;
            paragraphs.extend(parse_index(&bytes, &what)?);
        }
        indexes.insert(&archive.suite, paragraphs);
    }
    let mut packages = 0;
    for (name, set) in [("image", &lock.image), ("toolchain", &lock.toolchain)] {
        check_set(name, set, &lock.archives, &indexes, &locked_states)?;
        packages += set.packages.len();
    }
    Ok(TrustReport { archives: lock.archives.len(), packages })
}

/// Steps 4 and 5 for one set.
fn check_set(
    set_name: &'static str,
    set: &LockedSet,
    archives: &[ArchiveState],
    indexes: &BTreeMap<&str, Vec<Paragraph>>,
    locked_states: &BTreeSet<&str>,
) -> Result<(), TrustError> {
    // Several states of one archive may list a path (re-vouching): any that lists it exactly will do.
    let mut by_path: HashMap<(&str, &str), Vec<&Paragraph>> = HashMap::new();
    for (suite, paragraphs) in indexes {
        for p in paragraphs {
            if let Some(path) = p.get("Filename") {
                by_path.entry((*suite, path)).or_default().push(p);
            }
        }
    }
    let mut stanzas = Vec::new();
    for p in &set.packages {
        let package = format!("{} {}", p.name, p.version);
        let err = |message: String| TrustError::Package { set: set_name, package: package.clone(), message };
        if !archives.iter().any(|a| a.suite == p.archive) {
            return Err(err(format!("archive {:?} is not in the lock", p.archive)));
        }
        let candidates = by_path
            .get(&(p.archive.as_str(), p.path.as_str()))
            .ok_or_else(|| err(format!("{} is not in the signed index of {}", p.path, p.archive)))?;
        let Some(stanza) = candidates.iter().find(|s| lists_exactly(s, p)) else {
            let stanza = candidates[0];
            let (field, locked) = locked_fields(p)
                .into_iter()
                .find(|(field, locked)| !stanza.get(field).is_some_and(|v| v.eq_ignore_ascii_case(locked)))
                .expect("a stanza at the path that does not list the package differs in a field");
            let indexed = stanza.get(field).unwrap_or("(missing)");
            return Err(err(format!(
                "{field} is {locked} in the lock, {indexed} in the signed index of {}",
                p.archive
            )));
        };
        stanzas.push(*stanza);
    }

    // Closure: what the set provides.
    let mut provided: HashMap<String, Vec<Option<String>>> = HashMap::new();
    for (p, stanza) in set.packages.iter().zip(&stanzas) {
        provided.entry(p.name.clone()).or_default().push(Some(p.version.clone()));
        for alternative in stanza.get("Provides").unwrap_or("").split(',') {
            if let Some(dep) = Dependency::parse(alternative) {
                provided.entry(dep.name).or_default().push(dep.version.map(|(_, v)| v));
            }
        }
    }
    let names: BTreeSet<&str> = set.packages.iter().map(|p| p.name.as_str()).collect();
    let mut required: Vec<(String, String)> =
        set.include.iter().map(|n| (n.clone(), "requested".to_string())).collect();
    if set.variant == Variant::Minbase {
        let all: Vec<&Paragraph> =
            indexes.iter().filter(|(suite, _)| locked_states.contains(*suite)).flat_map(|(_, p)| p).collect();
        required
            .extend(crate::resolve::minbase_packages(&all).into_iter().map(|n| (n, "minbase".to_string())));
    }
    for (name, why) in required {
        if !names.contains(name.as_str()) {
            return Err(TrustError::Closure { set: set_name, message: format!("{name} ({why}) is missing") });
        }
    }
    for (p, stanza) in set.packages.iter().zip(&stanzas) {
        for field in ["Pre-Depends", "Depends"] {
            for clause in stanza.get(field).unwrap_or("").split(',').filter(|c| !c.trim().is_empty()) {
                let satisfied =
                    clause.split('|').filter_map(Dependency::parse).any(|dep| dep.satisfied_by(&provided));
                if !satisfied {
                    return Err(TrustError::Closure {
                        set: set_name,
                        message: format!(
                            "{} {} needs {} ({field}), which no locked package satisfies",
                            p.name,
                            p.version,
                            clause.trim()
                        ),
                    });
                }
            }
        }
    }
    Ok(())
}

/// One alternative of a dependency: `name[:arch] [(relation version)]`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Dependency {
    name: String,
    version: Option<(String, String)>,
}

impl Dependency {
    fn parse(text: &str) -> Option<Dependency> {
        let text = text.trim();
        if text.is_empty() {
            return None;
        }
        let (name, rest) = match text.find('(') {
            Some(at) => (text[..at].trim(), Some(text[at + 1..].trim_end().trim_end_matches(')').trim())),
            None => (text.split_whitespace().next().unwrap_or(""), None),
        };
        let name = name.split(':').next().unwrap_or(name).trim().to_string();
        let version = rest.and_then(|r| {
            let relation: String = r.chars().take_while(|c| matches!(c, '<' | '>' | '=')).collect();
            let version = r[relation.len()..].trim().to_string();
            (!relation.is_empty() && !version.is_empty()).then_some((relation, version))
        });
        Some(Dependency { name, version })
    }

    fn satisfied_by(&self, provided: &HashMap<String, Vec<Option<String>>>) -> bool {
        let Some(versions) = provided.get(&self.name) else { return false };
        match &self.version {
            None => true,
            Some((relation, wanted)) => {
                versions.iter().flatten().any(|have| crate::version::satisfies(have, relation, wanted))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dependencies_parse_with_arch_qualifiers_and_relations() {
        assert_eq!(
            Dependency::parse(" libc6 (>= 2.34) "),
            Some(Dependency { name: "libc6".into(), version: Some((">=".into(), "2.34".into())) })
        );
        assert_eq!(Dependency::parse("perl:any"), Some(Dependency { name: "perl".into(), version: None }));
        assert_eq!(Dependency::parse(""), None);
        let mut provided = HashMap::new();
        provided.insert("libc6".to_string(), vec![Some("2.36-9+deb12u14".to_string())]);
        provided.insert("awk".to_string(), vec![None]);
        assert!(Dependency::parse("libc6 (>= 2.34)").unwrap().satisfied_by(&provided));
        assert!(!Dependency::parse("libc6 (>= 2.38)").unwrap().satisfied_by(&provided));
        assert!(Dependency::parse("awk").unwrap().satisfied_by(&provided));
        assert!(
            !Dependency::parse("awk (>= 1)").unwrap().satisfied_by(&provided),
            "an unversioned Provides satisfies no versioned dependency"
        );
    }
}

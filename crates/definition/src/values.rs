//! Validated scalar values of the image definition and lockfile. Each validates in `TryFrom`, so
//! the TOML deserializer reports a bad value at its own line and column.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Target architecture. Only amd64 is built today; the enum keeps the door open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Architecture {
    Amd64,
}

impl Architecture {
    /// The Debian architecture name.
    pub fn debian_name(self) -> &'static str {
        match self {
            Architecture::Amd64 => "amd64",
        }
    }
}

impl fmt::Display for Architecture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.debian_name())
    }
}

/// A Debian package name as Debian policy 5.6.1 allows: lowercase letters, digits, `+ - .`,
/// at least two characters, starting with a letter or digit.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PackageName(String);

impl PackageName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for PackageName {
    type Error = String;
    fn try_from(name: String) -> Result<Self, String> {
        let valid_start = name.chars().next().is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
        let valid_chars = name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '+' | '-' | '.'));
        if name.len() < 2 || !valid_start || !valid_chars {
            return Err(format!(
                "{name:?} is not a Debian package name (lowercase letters, digits, '+', '-', '.'; \
                 at least two characters, starting with a letter or digit)"
            ));
        }
        Ok(PackageName(name))
    }
}

impl From<PackageName> for String {
    fn from(n: PackageName) -> String {
        n.0
    }
}

impl fmt::Display for PackageName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A non-empty list of distinct package names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Vec<PackageName>", into = "Vec<PackageName>")]
pub struct PackageList(Vec<PackageName>);

impl PackageList {
    pub fn names(&self) -> &[PackageName] {
        &self.0
    }

    /// The names, sorted: the order in which they are recorded in a lockfile.
    pub fn sorted_strings(&self) -> Vec<String> {
        let mut names: Vec<String> = self.0.iter().map(|n| n.0.clone()).collect();
        names.sort();
        names
    }
}

impl TryFrom<Vec<PackageName>> for PackageList {
    type Error = String;
    fn try_from(names: Vec<PackageName>) -> Result<Self, String> {
        if names.is_empty() {
            return Err("the package list is empty: name at least one package".into());
        }
        let mut seen = std::collections::BTreeSet::new();
        for n in &names {
            if !seen.insert(n) {
                return Err(format!("package {n:?} is listed twice"));
            }
        }
        Ok(PackageList(names))
    }
}

impl From<PackageList> for Vec<PackageName> {
    fn from(l: PackageList) -> Self {
        l.0
    }
}

/// A simple identifier used in file names (image name, version, suite, component).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Token(String);

impl Token {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Token {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let ok = !s.is_empty()
            && s.len() <= 64
            && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '+' | '~'))
            && !s.starts_with(['.', '-']);
        if !ok {
            return Err(format!(
                "{s:?} is not allowed here: use 1-64 ASCII letters, digits or '.-_+~', \
                 not starting with '.' or '-'"
            ));
        }
        Ok(Token(s))
    }
}

impl From<Token> for String {
    fn from(t: Token) -> String {
        t.0
    }
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A Debian mirror base URL, optionally with a `{snapshot}` placeholder that is replaced by the
/// snapshot id (`20260712T000000Z`), as snapshot.debian.org URLs need.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct MirrorUrl(String);

impl MirrorUrl {
    pub const SNAPSHOT_PLACEHOLDER: &'static str = "{snapshot}";

    /// Whether this is a snapshot archive's URL (it names a time).
    pub fn is_snapshot(&self) -> bool {
        self.0.contains(Self::SNAPSHOT_PLACEHOLDER)
    }

    /// The base URL for a snapshot, always ending in `/`.
    pub fn base(&self, snapshot: crate::Timestamp) -> String {
        let mut url = self.0.replace(Self::SNAPSHOT_PLACEHOLDER, &snapshot.snapshot_id());
        if !url.ends_with('/') {
            url.push('/');
        }
        url
    }
}

impl TryFrom<String> for MirrorUrl {
    type Error = String;
    fn try_from(url: String) -> Result<Self, String> {
        let scheme_ok = ["http://", "https://", "file:///"].iter().any(|s| url.starts_with(s));
        if !scheme_ok {
            return Err(format!("mirror {url:?} must start with http://, https:// or file:///"));
        }
        let without_placeholder = url.replace(Self::SNAPSHOT_PLACEHOLDER, "");
        if without_placeholder.contains(['{', '}']) {
            return Err(format!(
                "mirror {url:?} has an unknown placeholder; the only one is {}",
                Self::SNAPSHOT_PLACEHOLDER
            ));
        }
        if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!("mirror {url:?} contains white space"));
        }
        if url.contains(['[', ']', '#']) {
            return Err(format!(
                "mirror {url:?} contains [, ] or #, which apt's sources.list gives a meaning"
            ));
        }
        if url_has_credentials(&url) {
            return Err("a mirror URL carries a user name or password (user@host): it would be \
                        written into logs, locks and manifests; use a mirror that needs none"
                .into());
        }
        Ok(MirrorUrl(url))
    }
}

/// Whether an `http(s)://` URL names a user or password (`user:pass@host`).
pub fn url_has_credentials(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    authority.contains('@')
}

impl From<MirrorUrl> for String {
    fn from(m: MirrorUrl) -> String {
        m.0
    }
}

impl fmt::Display for MirrorUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The ordered, non-empty mirror list: tried first to last.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Vec<MirrorUrl>", into = "Vec<MirrorUrl>")]
pub struct Mirrors(Vec<MirrorUrl>);

impl Mirrors {
    pub fn urls(&self) -> &[MirrorUrl] {
        &self.0
    }
}

impl TryFrom<Vec<MirrorUrl>> for Mirrors {
    type Error = String;
    fn try_from(urls: Vec<MirrorUrl>) -> Result<Self, String> {
        if urls.is_empty() {
            return Err("the mirror list is empty: name at least one mirror".into());
        }
        Ok(Mirrors(urls))
    }
}

impl From<Mirrors> for Vec<MirrorUrl> {
    fn from(m: Mirrors) -> Self {
        m.0
    }
}

/// The path of an OpenPGP keyring file. It ends up inside apt's `signed-by=` option, so it may
/// not hold anything apt's option syntax gives a meaning (white space, `[`, `]`, `=`, `,`, `#`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct KeyringPath(String);

impl KeyringPath {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for KeyringPath {
    type Error = String;
    fn try_from(path: String) -> Result<Self, String> {
        if path.is_empty() {
            return Err("the keyring path is empty".into());
        }
        if path.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!("keyring {path:?} contains white space"));
        }
        if path.contains(['[', ']', '=', ',', '#']) {
            return Err(format!("keyring {path:?} contains one of [ ] = , # (apt option syntax)"));
        }
        Ok(KeyringPath(path))
    }
}

impl From<KeyringPath> for String {
    fn from(k: KeyringPath) -> String {
        k.0
    }
}

/// A SHA-256 digest as 64 lowercase hex digits.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Sha256Digest(String);

impl Sha256Digest {
    pub fn from_bytes(bytes: &[u8; 32]) -> Self {
        use std::fmt::Write;
        let mut s = String::with_capacity(64);
        for b in bytes {
            let _ = write!(s, "{b:02x}");
        }
        Sha256Digest(s)
    }

    pub fn as_hex(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Sha256Digest {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        if s.len() != 64 || !s.bytes().all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)) {
            return Err(format!("{s:?} is not a SHA-256 digest (64 lowercase hex digits)"));
        }
        Ok(Sha256Digest(s))
    }
}

impl std::str::FromStr for Sha256Digest {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::try_from(s.to_string())
    }
}

impl From<Sha256Digest> for String {
    fn from(d: Sha256Digest) -> String {
        d.0
    }
}

impl fmt::Display for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_names_follow_policy() {
        for good in ["linux-image-amd64", "libstdc++6", "g++", "0ad", "xz-utils", "libc6.1"] {
            assert!(PackageName::try_from(good.to_string()).is_ok(), "{good}");
        }
        for bad in ["", "a", "Bash", "-foo", "foo bar", "foo_bar", "foo:amd64"] {
            assert!(PackageName::try_from(bad.to_string()).is_err(), "{bad}");
        }
    }

    #[test]
    fn mirror_base_substitutes_snapshot_and_ends_with_slash() {
        let t = crate::Timestamp::parse_rfc3339_utc("2026-07-12T00:00:00Z").unwrap();
        let m =
            MirrorUrl::try_from("http://snapshot.debian.org/archive/debian/{snapshot}".to_string()).unwrap();
        assert_eq!(m.base(t), "http://snapshot.debian.org/archive/debian/20260712T000000Z/");
        assert!(MirrorUrl::try_from("ftp://x/".to_string()).is_err());
        let err = MirrorUrl::try_from("http://user:secret@mirror.example/debian/".to_string()).unwrap_err();
        assert!(!err.contains("secret"), "the refusal does not echo the password: {err}");
        assert!(MirrorUrl::try_from("http://mirror.example/debian/@latest/".to_string()).is_ok());
        assert!(MirrorUrl::try_from("http://x/{date}/".to_string()).is_err());
    }

    #[test]
    fn digests_are_lowercase_hex() {
        assert!(Sha256Digest::try_from("a".repeat(64)).is_ok());
        assert!(Sha256Digest::try_from("A".repeat(64)).is_err());
        assert!(Sha256Digest::try_from("a".repeat(63)).is_err());
        assert_eq!(Sha256Digest::from_bytes(&[0xab; 32]).as_hex(), "ab".repeat(32));
    }
}

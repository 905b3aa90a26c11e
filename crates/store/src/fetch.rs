//! Filling the store from mirrors (in order), then release inputs bundles (in order): parallel,
//! retried with backoff, resumable, and verified before anything enters the store.

use crate::store::{Expected, Store, StoreError};
use std::collections::HashSet;
use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

/// One file to fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchItem {
    /// Human name for messages, e.g. `xorriso_1.5.4-4_amd64`.
    pub label: String,
    /// Path relative to a mirror base, e.g. `pool/main/x/xorriso/xorriso_1.5.4-4_amd64.deb`.
    pub path: String,
    /// Mirror base URLs ending in `/` (`http://`, `https://` or `file:///`), tried in order.
    pub mirrors: Vec<String>,
    /// The file's path in a release inputs bundle (see `crate::bundle`).
    pub bundle_path: String,
    pub expected: Expected,
}

/// A release inputs bundle (`ceremony-os vendor`): a directory, or any static HTTP(S) server
/// holding one. Nothing in it is trusted: every file is checked like a mirror's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bundle {
    Dir(PathBuf),
    /// Ends in `/`.
    Url(String),
}

impl Bundle {
    /// `http://` or `https://` is a URL, `file://` and anything else a directory. A URL with a
    /// user name or password is refused (it would be echoed in every message).
    pub fn parse(text: &str) -> Result<Bundle, String> {
        if text.starts_with("http://") || text.starts_with("https://") {
            if ceremony_os_definition::url_has_credentials(text) {
                return Err(
                    "a bundle URL carries a user name or password (user@host); serve the bundle without one"
                        .into(),
                );
            }
            let mut url = text.to_string();
            if !url.ends_with('/') {
                url.push('/');
            }
            return Ok(Bundle::Url(url));
        }
        let path = text.strip_prefix("file://").unwrap_or(text);
        if path.is_empty() {
            return Err("an empty bundle path".into());
        }
        Ok(Bundle::Dir(PathBuf::from(path)))
    }
}

impl std::fmt::Display for Bundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Bundle::Dir(d) => write!(f, "bundle {}", d.display()),
            Bundle::Url(u) => write!(f, "bundle {u}"),
        }
    }
}

/// Why a source was not asked: its host was found unreachable earlier by this command.
const SKIPPED_UNREACHABLE: &str = "skipped: unreachable earlier in this run";

/// Where files may come from besides each item's mirrors.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    /// Release inputs bundles, tried in order after the mirrors.
    pub bundles: Vec<Bundle>,
    /// Never use the definition's mirrors: only the store and the bundles.
    pub offline: bool,
    /// Hosts found unreachable so far, shared by every fetch made with these sources (and their
    /// clones), so one command retires a dead mirror once.
    pub unreachable: std::sync::Arc<Mutex<HashSet<String>>>,
}

#[derive(Debug, Clone)]
pub struct FetchOptions {
    pub jobs: usize,
    /// Extra tries per mirror after a transient failure.
    pub retries: u32,
    pub initial_backoff: Duration,
    pub connect_timeout: Duration,
}

impl Default for FetchOptions {
    fn default() -> Self {
        FetchOptions {
            jobs: 4,
            retries: 3,
            initial_backoff: Duration::from_millis(500),
            connect_timeout: Duration::from_secs(15),
        }
    }
}

/// Where a file came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Already in the store, and verified again now.
    Store,
    Mirror(String),
    Bundle(Bundle),
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::Store => f.write_str("store"),
            Origin::Mirror(m) => f.write_str(m),
            Origin::Bundle(b) => b.fmt(f),
        }
    }
}

/// Progress events. Called from worker threads.
pub trait FetchObserver: Sync {
    fn begin(&self, _items: usize, _bytes: u64) {}
    /// Bytes of payload received or verified.
    fn bytes(&self, _n: u64) {}
    fn finished(&self, _item: &FetchItem, _origin: &Origin) {}
    fn warning(&self, _message: &str) {}
}

#[derive(Debug, Clone)]
pub struct FetchReport {
    /// Every item with where it came from, in the order given.
    pub outcomes: Vec<(FetchItem, Origin)>,
    pub warnings: Vec<String>,
}

/// One failed try of one source.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub source: String,
    pub reason: String,
    /// The source served the file, but with another size or digest than expected (for an
    /// InRelease fetched by name: the archive has moved on since the lock was made).
    pub other_content: bool,
}

#[derive(Debug, Clone)]
pub struct ItemFailure {
    pub label: String,
    pub attempts: Vec<Attempt>,
}

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{}", render_failures(.failures, *.total))]
    Failed { total: usize, failures: Vec<ItemFailure> },
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn render_failures(failures: &[ItemFailure], total: usize) -> String {
    let mut out = format!("could not fetch {} of {total} files:", failures.len());
    for f in failures {
        out.push_str(&format!("\n  {}:", f.label));
        if f.attempts.is_empty() {
            out.push_str(" no source to try (offline and no bundle)");
        }
        for a in &f.attempts {
            out.push_str(&format!("\n    {}: {}", a.source, a.reason));
        }
    }
    out
}

/// Why one download failed, and whether trying the same source again may help.
enum Failure {
    Transient(String),
    /// The host could not be reached (refused, no route, DNS answering "try again"): retried like
    /// a transient failure; if it persists, the mirror is retired for the rest of the run.
    Unreachable(String),
    /// The source cannot give this file: try the next one. `host_down` retires the mirror.
    Permanent {
        reason: String,
        host_down: bool,
    },
    /// The source served other bytes than the expected ones: try the next one.
    OtherContent(String),
}

/// Fetch every item into the store. Items already present (and verifying) are skipped.
pub fn fetch(
    store: &Store,
    items: &[FetchItem],
    sources: &Sources,
    options: &FetchOptions,
    observer: &dyn FetchObserver,
) -> Result<FetchReport, FetchError> {
    let _lock = store.lock_for_fetch()?;
    observer.begin(items.len(), items.iter().map(|i| i.expected.size).sum());
    let agent = agent(options);
    let fetcher = Fetcher { store, sources, options, observer, agent, warnings: Mutex::new(Vec::new()) };

    let queue = Mutex::new((0..items.len()).rev().collect::<Vec<usize>>());
    let results: Mutex<Vec<Option<Result<Origin, ItemFailure>>>> = Mutex::new(vec![None; items.len()]);
    let store_error: Mutex<Option<StoreError>> = Mutex::new(None);
    std::thread::scope(|scope| {
        for _ in 0..options.jobs.max(1) {
            scope.spawn(|| {
                loop {
                    let Some(index) = queue.lock().expect("queue lock").pop() else {
                        break;
                    };
                    match fetcher.fetch_one(&items[index]) {
                        Ok(result) => results.lock().expect("results lock")[index] = Some(result),
                        Err(e) => {
                            store_error.lock().expect("error lock").get_or_insert(e);
                            queue.lock().expect("queue lock").clear();
                        }
                    }
                }
            });
        }
    });
    if let Some(e) = store_error.into_inner().expect("error lock") {
        return Err(e.into());
    }
    let mut outcomes = Vec::new();
    let mut failures = Vec::new();
    for (item, result) in items.iter().zip(results.into_inner().expect("results lock")) {
        match result.expect("every item was processed") {
            Ok(origin) => outcomes.push((item.clone(), origin)),
            Err(failure) => failures.push(failure),
        }
    }
    if !failures.is_empty() {
        return Err(FetchError::Failed { total: items.len(), failures });
    }
    Ok(FetchReport { outcomes, warnings: fetcher.warnings.into_inner().expect("warnings lock") })
}

struct Fetcher<'a> {
    store: &'a Store,
    sources: &'a Sources,
    options: &'a FetchOptions,
    observer: &'a dyn FetchObserver,
    agent: ureq::Agent,
    /// Hosts that could not be reached at all: not tried again in this run.
    warnings: Mutex<Vec<String>>,
}

impl Attempt {
    /// A source not asked: its host was retired earlier by this command.
    fn skipped(source: String) -> Attempt {
        Attempt { source, reason: SKIPPED_UNREACHABLE.into(), other_content: false }
    }
}

impl Fetcher<'_> {
    /// Retire `base`'s host for the rest of this command, saying so the first time.
    fn retire(&self, base: &str, reason: &str) {
        if self.sources.unreachable.lock().expect("unreachable hosts lock").insert(host_of(base).to_string())
        {
            self.warn(format!("{} is unreachable ({reason}); not trying it again", host_of(base)));
        }
    }

    /// Whether `base`'s host was found unreachable earlier by this command.
    fn retired(&self, base: &str) -> bool {
        self.sources.unreachable.lock().expect("unreachable hosts lock").contains(host_of(base))
    }

    fn warn(&self, message: String) {
        self.observer.warning(&message);
        self.warnings.lock().expect("warnings lock").push(message);
    }

    /// `Ok(Err(_))` is a per-item failure; `Err(_)` a store failure that stops everything.
    fn fetch_one(&self, item: &FetchItem) -> Result<Result<Origin, ItemFailure>, StoreError> {
        if self.store.has_verified(&item.expected)? {
            self.observer.bytes(item.expected.size);
            self.observer.finished(item, &Origin::Store);
            return Ok(Ok(Origin::Store));
        }
        let mut attempts = Vec::new();
        if !self.sources.offline {
            for base in &item.mirrors {
                let url = format!("{base}{}", item.path);
                if self.retired(base) {
                    attempts.push(Attempt::skipped(url));
                    continue;
                }
                match self.try_mirror(&url, base, item) {
                    Ok(()) => {
                        // A retired host was named once when it was retired.
                        for a in attempts.iter().filter(|a| a.reason != SKIPPED_UNREACHABLE) {
                            let Attempt { source, reason, .. } = a;
                            self.warn(format!("{}: {source} failed ({reason}); used {base}", item.label));
                        }
                        let origin = Origin::Mirror(base.clone());
                        self.observer.finished(item, &origin);
                        return Ok(Ok(origin));
                    }
                    Err((reason, other_content)) => {
                        attempts.push(Attempt { source: url, reason, other_content })
                    }
                }
            }
        }
        for bundle in &self.sources.bundles {
            let dir = match bundle {
                Bundle::Dir(dir) => dir,
                Bundle::Url(base) => {
                    let url = format!("{base}{}", item.bundle_path);
                    if self.retired(base) {
                        attempts.push(Attempt::skipped(url));
                        continue;
                    }
                    match self.try_mirror(&url, base, item) {
                        Ok(()) => {
                            let origin = Origin::Bundle(bundle.clone());
                            self.observer.finished(item, &origin);
                            return Ok(Ok(origin));
                        }
                        Err((reason, other_content)) => {
                            attempts.push(Attempt { source: url, reason, other_content });
                            continue;
                        }
                    }
                }
            };
            let candidate = dir.join(&item.bundle_path);
            match self.store.insert_file(&candidate, &item.expected) {
                Ok(_) => {
                    self.observer.bytes(item.expected.size);
                    let origin = Origin::Bundle(bundle.clone());
                    self.observer.finished(item, &origin);
                    return Ok(Ok(origin));
                }
                Err(StoreError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                    attempts.push(Attempt {
                        source: candidate.display().to_string(),
                        reason: "not present".into(),
                        other_content: false,
                    })
                }
                Err(e) => attempts.push(Attempt {
                    source: candidate.display().to_string(),
                    reason: format!("{e} (rejected, nothing kept)"),
                    other_content: matches!(e, StoreError::Hash { .. } | StoreError::Size { .. }),
                }),
            }
        }
        Ok(Err(ItemFailure { label: item.label.clone(), attempts }))
    }

    /// Try one mirror, retrying transient failures with exponential backoff. The error is the
    /// reason and whether the mirror served other content.
    fn try_mirror(&self, url: &str, base: &str, item: &FetchItem) -> Result<(), (String, bool)> {
        let mut backoff = self.options.initial_backoff;
        let mut tries = 0;
        loop {
            let outcome = if let Some(path) = url.strip_prefix("file://") {
                self.try_file(Path::new(path), item)
            } else {
                self.try_http(url, item)
            };
            match outcome {
                Ok(()) => return Ok(()),
                Err(Failure::Permanent { reason, host_down }) => {
                    if host_down {
                        self.retire(base, &reason);
                    }
                    return Err((reason, false));
                }
                Err(Failure::OtherContent(reason)) => return Err((reason, true)),
                Err(Failure::Transient(reason)) if tries >= self.options.retries => {
                    return Err((format!("{reason} (gave up after {} tries)", tries + 1), false));
                }
                Err(Failure::Unreachable(reason)) if tries >= self.options.retries => {
                    self.retire(base, &reason);
                    return Err((format!("{reason} (gave up after {} tries)", tries + 1), false));
                }
                Err(Failure::Transient(reason) | Failure::Unreachable(reason)) => {
                    tracing::info!("{url}: {reason}; retrying in {backoff:?}");
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(8));
                    tries += 1;
                }
            }
        }
    }

    fn try_file(&self, path: &Path, item: &FetchItem) -> Result<(), Failure> {
        match self.store.insert_file(path, &item.expected) {
            Ok(_) => {
                self.observer.bytes(item.expected.size);
                Ok(())
            }
            Err(StoreError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                Err(Failure::Permanent { reason: "not found".into(), host_down: false })
            }
            Err(e @ (StoreError::Hash { .. } | StoreError::Size { .. })) => {
                Err(Failure::OtherContent(format!("{e} (rejected, nothing kept)")))
            }
            Err(e) => {
                Err(Failure::Permanent { reason: format!("{e} (rejected, nothing kept)"), host_down: false })
            }
        }
    }

    fn try_http(&self, url: &str, item: &FetchItem) -> Result<(), Failure> {
        let size = item.expected.size;
        let partial = self.store.partial_path(&item.expected.sha256);
        let local_io = |e: std::io::Error| Failure::Permanent {
            reason: format!("local I/O error on {}: {e}", partial.display()),
            host_down: false,
        };
        let mut have = std::fs::metadata(&partial).map(|m| m.len()).unwrap_or(0);
        if have >= size {
            // Complete but never adopted (or too long): start over rather than trust it.
            let _ = std::fs::remove_file(&partial);
            have = 0;
        }
        let mut request = self.agent.get(url);
        if have > 0 {
            request = request.header("Range", &format!("bytes={have}-"));
        }
        let response = request.call().map_err(classify_ureq_error)?;
        let status = response.status().as_u16();
        let resumed = match status {
            200 => false,
            206 => {
                let content_range = header(&response, "content-range").unwrap_or_default();
                if !content_range.starts_with(&format!("bytes {have}-")) {
                    let _ = std::fs::remove_file(&partial);
                    return Err(Failure::Transient(format!(
                        "server answered the range request with {content_range:?}"
                    )));
                }
                true
            }
            404 | 410 => {
                return Err(Failure::Permanent {
                    reason: format!("HTTP {status}: not on this mirror"),
                    host_down: false,
                });
            }
            416 => {
                let _ = std::fs::remove_file(&partial);
                return Err(Failure::Transient("HTTP 416: range not satisfiable; restarting".into()));
            }
            429 | 500..=599 => return Err(Failure::Transient(format!("HTTP {status}"))),
            _ => {
                return Err(Failure::Permanent { reason: format!("HTTP {status}"), host_down: false });
            }
        };
        let start = if resumed { have } else { 0 };
        if let Some(announced) = header(&response, "content-length").and_then(|v| v.parse::<u64>().ok())
            && start + announced != size
        {
            {
                let _ = std::fs::remove_file(&partial);
                return Err(Failure::OtherContent(format!(
                    "size mismatch: the server announces {} bytes, the lock says {size} (rejected, nothing kept)",
                    start + announced
                )));
            }
        }
        let mut file = OpenOptions::new()
            .create(true)
            .write(true)
            .append(resumed)
            .truncate(!resumed)
            .open(&partial)
            .map_err(local_io)?;
        let mut body = response.into_body().into_reader();
        let mut received = start;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match body.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) => {
                    let _ = file.flush();
                    return Err(Failure::Transient(format!(
                        "connection broke after {received} of {size} bytes: {e}"
                    )));
                }
            };
            received += n as u64;
            if received > size {
                drop(file);
                let _ = std::fs::remove_file(&partial);
                return Err(Failure::OtherContent(format!(
                    "size mismatch: more than the {size} bytes the lock says (rejected, nothing kept)"
                )));
            }
            file.write_all(&buf[..n]).map_err(local_io)?;
            self.observer.bytes(n as u64);
        }
        file.flush().map_err(local_io)?;
        drop(file);
        if received < size {
            return Err(Failure::Transient(format!("truncated: got {received} of {size} bytes")));
        }
        match self.store.adopt(&partial, &item.expected) {
            Ok(_) => Ok(()),
            // A resumed file may have a stale prefix: one fresh download before blaming the mirror.
            Err(StoreError::Hash { .. }) if resumed => Err(Failure::Transient(
                "digest mismatch after resuming; downloading again from the start".into(),
            )),
            Err(e @ (StoreError::Hash { .. } | StoreError::Size { .. })) => {
                Err(Failure::OtherContent(format!("{e} (rejected, nothing kept)")))
            }
            Err(e) => Err(local_io(std::io::Error::other(e.to_string()))),
        }
    }
}

/// `scheme://host[:port]` of a URL: a host that cannot be reached is retired with all its paths
/// (a snapshot archive is asked at several times, each its own base URL).
fn host_of(url: &str) -> &str {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    let end = url[after_scheme..].find('/').map_or(url.len(), |i| after_scheme + i);
    &url[..end]
}

/// The agent every download uses.
fn agent(options: &FetchOptions) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(options.connect_timeout))
        .timeout_recv_response(Some(Duration::from_secs(60)))
        .user_agent(concat!("ceremony-os/", env!("CARGO_PKG_VERSION")))
        .build()
        .into()
}

/// Download a small file whose content is not known in advance (an archive's current InRelease,
/// a bundle's index): at most `limit` bytes, transient failures retried as `fetch` does. What it
/// returns is unchecked: the caller checks it (a signature, a digest) before use.
pub fn download_unpinned(url: &str, limit: u64, options: &FetchOptions) -> Result<Vec<u8>, String> {
    if let Some(path) = url.strip_prefix("file://") {
        let file = crate::store::open_regular(Path::new(path)).map_err(|e| e.to_string())?;
        return read_bounded(file, limit);
    }
    let agent = agent(options);
    let mut backoff = options.initial_backoff;
    let mut tries = 0;
    loop {
        let failure = match agent.get(url).call().map_err(classify_ureq_error) {
            Ok(response) => match response.status().as_u16() {
                200 => return read_bounded(response.into_body().into_reader(), limit),
                status @ (429 | 500..=599) => Failure::Transient(format!("HTTP {status}")),
                status => return Err(format!("HTTP {status}")),
            },
            Err(failure) => failure,
        };
        match failure {
            Failure::Transient(reason) | Failure::Unreachable(reason) if tries < options.retries => {
                tracing::info!("{url}: {reason}; retrying in {backoff:?}");
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(8));
                tries += 1;
            }
            Failure::Transient(reason) | Failure::Unreachable(reason) => {
                return Err(format!("{reason} (gave up after {} tries)", tries + 1));
            }
            Failure::Permanent { reason, .. } | Failure::OtherContent(reason) => return Err(reason),
        }
    }
}

fn read_bounded(reader: impl Read, limit: u64) -> Result<Vec<u8>, String> {
    let mut bytes = Vec::new();
    reader.take(limit + 1).read_to_end(&mut bytes).map_err(|e| format!("reading: {e}"))?;
    if bytes.len() as u64 > limit {
        return Err(format!("more than {limit} bytes: not what was asked for"));
    }
    Ok(bytes)
}

fn header(response: &ureq::http::Response<ureq::Body>, name: &str) -> Option<String> {
    response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string)
}

fn classify_ureq_error(e: ureq::Error) -> Failure {
    use std::io::ErrorKind;
    // std reports DNS failures as uncategorised I/O errors: recognise getaddrinfo's text. "Name or
    // service not known" means the name does not exist; "Temporary failure in name resolution"
    // means ask again later.
    let text = e.to_string();
    match &e {
        ureq::Error::HostNotFound => {
            Failure::Permanent { reason: format!("cannot reach the host: {e}"), host_down: true }
        }
        _ if text.contains("Name or service not known") => {
            Failure::Permanent { reason: format!("cannot reach the host: {e}"), host_down: true }
        }
        ureq::Error::ConnectionFailed => Failure::Unreachable(format!("cannot reach the host: {e}")),
        ureq::Error::Io(io)
            if matches!(
                io.kind(),
                ErrorKind::ConnectionRefused | ErrorKind::HostUnreachable | ErrorKind::NetworkUnreachable
            ) || text.contains("failed to lookup address") =>
        {
            Failure::Unreachable(format!("cannot reach the host: {e}"))
        }
        _ => Failure::Transient(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_and_bundles() {
        assert_eq!(
            host_of("http://snapshot.debian.org/archive/debian/20261203T000000Z/"),
            "http://snapshot.debian.org"
        );
        assert_eq!(host_of("http://127.0.0.1:8080/"), "http://127.0.0.1:8080");
        assert_eq!(host_of("file:///srv/mirror/"), "file://");
        assert_eq!(
            Bundle::parse("http://127.0.0.1:9/b").unwrap(),
            Bundle::Url("http://127.0.0.1:9/b/".into())
        );
        assert_eq!(Bundle::parse("file:///srv/b").unwrap(), Bundle::Dir(PathBuf::from("/srv/b")));
        assert_eq!(Bundle::parse("inputs").unwrap(), Bundle::Dir(PathBuf::from("inputs")));
        let err = Bundle::parse("https://me:hunter2@example.org/b/").unwrap_err();
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn only_a_name_that_does_not_exist_retires_a_mirror_at_once() {
        let missing =
            std::io::Error::other("failed to lookup address information: Name or service not known");
        assert!(matches!(
            classify_ureq_error(ureq::Error::Io(missing)),
            Failure::Permanent { host_down: true, .. }
        ));
        let try_again = std::io::Error::other(
            "failed to lookup address information: Temporary failure in name resolution",
        );
        assert!(matches!(classify_ureq_error(ureq::Error::Io(try_again)), Failure::Unreachable(_)));
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert!(matches!(classify_ureq_error(ureq::Error::Io(refused)), Failure::Unreachable(_)));
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert!(matches!(classify_ureq_error(ureq::Error::Io(reset)), Failure::Transient(_)));
    }
}

//! Shared helpers for the end-to-end tests: the `ceremony-os` command with a clean environment,
//! real .debs made with dpkg-deb, a definition + lockfile for them, and a small HTTP mirror on
//! 127.0.0.1 that can misbehave on purpose (404, tampered bytes, truncation, throttling).

#![allow(dead_code)] // each test binary uses a different part of this module
#![allow(clippy::unwrap_used)]

use ceremony_os_definition::{
    Architecture, ArchiveState, LOCK_FORMAT_VERSION, LockedIndex, LockedPackage, LockedSet, Lockfile,
    Sha256Digest, Timestamp, Variant,
};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The checkout this test runs from.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

/// The default image's artifact stem (`<name>-<version>-<architecture>`), as the build names its
/// files (`<stem>.iso`, `<stem>.rootfs.manifest`): taken from image/ceremony.toml, not spelled out.
pub fn default_stem() -> String {
    let definition = repo_root().join("image/ceremony.toml");
    ceremony_os_definition::ImageDefinition::load(&definition).unwrap().artifact_stem()
}

/// The store the image-building tests share (under target/tmp): the default image is built once
/// for all of them, and later test runs reuse its stages.
pub fn shared_image_store() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("image-store")
}

/// A copy of image/ (definition, lock, overlay) under `root`, whose tools workspace is this
/// checkout and whose lock is [`fetchable_image_lock`]; returns the definition's path.
pub fn image_copy(root: &Path, name: &str) -> PathBuf {
    let definition = plain_image_copy(root, name);
    std::fs::copy(fetchable_image_lock(), definition.with_extension("lock")).unwrap();
    definition
}

/// image/ copied as committed, with the tools workspace pointing at this checkout.
fn plain_image_copy(root: &Path, name: &str) -> PathBuf {
    let dir = root.join(name);
    let status =
        std::process::Command::new("cp").arg("-r").arg(repo_root().join("image")).arg(&dir).status().unwrap();
    assert!(status.success());
    let definition = dir.join("ceremony.toml");
    let text = std::fs::read_to_string(&definition).unwrap().replace(
        "tools_workspace = \"..\"",
        &format!("tools_workspace = {:?}", repo_root().display().to_string()),
    );
    std::fs::write(&definition, text).unwrap();
    definition
}

/// The lock the image tests build from: image/ceremony.lock while every input it names can still
/// be had (from its locked states or re-vouched by today's), else a lock of the same definition
/// made against today's archive.
///
/// Debian re-signs bookworm-updates every day and bookworm-security with every advisory; fetch
/// re-vouches the locked packages with today's signed indexes, so the committed lock stays
/// fetchable until one of its packages is superseded and deleted (older states are kept only by
/// snapshot.debian.org, which the CI machine cannot reach). Then these tests, which test the tool
/// and not the age of the committed lock, re-lock a copy of the definition (once per archive
/// state, kept under target/tmp) and say so on standard error. `lock.rs` reports whether the
/// committed lock is current.
pub fn fetchable_image_lock() -> PathBuf {
    static LOCK: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    LOCK.get_or_init(|| {
        let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
        // Test binaries of concurrent `cargo test` runs share the re-locked copy.
        let guard = std::fs::File::create(tmp.join("relocked-image.lock")).unwrap();
        guard.lock().unwrap();
        let committed = repo_root().join("image/ceremony.toml");
        let Err(why) = fetch_all(&committed) else { return committed.with_extension("lock") };
        // Only an archive that moved on is a reason to re-lock; any other refusal of the committed
        // lock (a broken trust chain, a package no mirror has) is a failure of the test.
        assert!(why.contains("cannot be had: its locked state"), "{why}");
        // The definition is copied afresh every time, so a kept lock is reused only while it is
        // the lock of today's definition and its inputs can still be fetched.
        let kept = std::fs::read(tmp.join("relocked-image/ceremony.lock")).ok();
        let _ = std::fs::remove_dir_all(tmp.join("relocked-image"));
        let relocked = plain_image_copy(&tmp, "relocked-image");
        if let Some(kept) = kept {
            std::fs::write(relocked.with_extension("lock"), kept).unwrap();
            if fetch_all(&relocked).is_ok() {
                eprintln!(
                    "image/ceremony.lock cannot be fetched; using the lock kept in {}:\n{why}",
                    relocked.display()
                );
                return relocked.with_extension("lock");
            }
        }
        let lock = ceremony_os(&shared_image_store()).arg("lock").arg(&relocked).output().unwrap();
        assert!(
            lock.status.success(),
            "re-locking {} failed:\n{}",
            relocked.display(),
            String::from_utf8_lossy(&lock.stderr)
        );
        if let Err(again) = fetch_all(&relocked) {
            panic!("a lock made just now cannot be fetched:\n{again}");
        }
        eprintln!("image/ceremony.lock cannot be fetched; re-locked {}:\n{why}", relocked.display());
        relocked.with_extension("lock")
    })
    .clone()
}

/// `ceremony-os fetch DEFINITION` into the shared image store: every locked input, verified.
fn fetch_all(definition: &Path) -> Result<(), String> {
    let out = ceremony_os(&shared_image_store())
        .arg("fetch")
        .arg(definition)
        .timeout(Duration::from_secs(1800))
        .output()
        .unwrap();
    if out.status.success() { Ok(()) } else { Err(String::from_utf8_lossy(&out.stderr).into_owned()) }
}

/// `ceremony-os build DEFINITION --output OUT --json EXTRA...`; panics with the log on failure,
/// returns the JSON report.
pub fn build_image(store: &Path, definition: &Path, out: &Path, extra: &[&str]) -> serde_json::Value {
    let output = ceremony_os(store)
        .arg("build")
        .arg(definition)
        .arg("--output")
        .arg(out)
        .arg("--json")
        .args(extra)
        .timeout(std::time::Duration::from_secs(1800))
        .output()
        .unwrap();
    assert!(output.status.success(), "build failed:\n{}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).unwrap()
}

/// `ceremony-os` with an environment that cannot reach the developer's own store or config.
pub fn ceremony_os(store: &Path) -> assert_cmd::Command {
    let mut cmd = assert_cmd::Command::new(env!("CARGO_BIN_EXE_ceremony-os"));
    cmd.env_remove("CEREMONY_OS_LOG").env("CEREMONY_OS_STORE", store).env("NO_COLOR", "1");
    cmd
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A real binary package built by dpkg-deb.
#[derive(Debug, Clone)]
pub struct TestDeb {
    pub name: String,
    pub version: String,
    pub bytes: Vec<u8>,
}

impl TestDeb {
    pub fn archive_path(&self) -> String {
        format!("pool/main/{}/{}/{}_{}_amd64.deb", &self.name[..1], self.name, self.name, self.version)
    }

    pub fn file_name(&self) -> String {
        format!("{}_{}_amd64.deb", self.name, self.version)
    }

    pub fn sha256(&self) -> String {
        sha256_hex(&self.bytes)
    }
}

/// Build a .deb with `payload` bytes of incompressible data, so sizes are real.
pub fn make_deb(work: &Path, name: &str, version: &str, payload: usize) -> TestDeb {
    let root = work.join(format!("{name}-src"));
    let doc = root.join("usr/share/doc").join(name);
    std::fs::create_dir_all(root.join("DEBIAN")).unwrap();
    std::fs::create_dir_all(&doc).unwrap();
    std::fs::write(
        root.join("DEBIAN/control"),
        format!(
            "Package: {name}\nVersion: {version}\nArchitecture: amd64\nMaintainer: Test <test@example.invalid>\nDescription: test package {name}\n"
        ),
    )
    .unwrap();
    let mut state = 0x9E37_79B9_7F4A_7C15u64 ^ name.len() as u64;
    let data: Vec<u8> = (0..payload)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    std::fs::write(doc.join("data"), data).unwrap();
    let out = work.join(format!("{name}.deb"));
    let status = std::process::Command::new("dpkg-deb")
        .args(["--root-owner-group", "-Zxz", "--build"])
        .arg(&root)
        .arg(&out)
        .env("SOURCE_DATE_EPOCH", "1783814400")
        .stdout(std::process::Stdio::null())
        .status()
        .expect("dpkg-deb runs");
    assert!(status.success(), "dpkg-deb --build failed");
    TestDeb { name: name.into(), version: version.into(), bytes: std::fs::read(out).unwrap() }
}

/// A signed one-suite archive of test packages: a throwaway OpenPGP key (made with gpg), the
/// keyring with its public key, a Packages index (xz) of the packages, and an InRelease that lists
/// the index and is clearsigned by the key, as Debian's are.
#[derive(Debug, Clone)]
pub struct TestArchive {
    pub debs: Vec<TestDeb>,
    pub keyring: Vec<u8>,
    pub index: Vec<u8>,
    pub inrelease: Vec<u8>,
    /// The signing key's GnuPG home (a later state is signed with the same key).
    gnupg: PathBuf,
}

/// The `Date:` of the first state of a test archive.
pub const TEST_RELEASE_DATE: &str = "Sat, 11 Jul 2026 10:16:37 UTC";

pub const INDEX_PATH: &str = "main/binary-amd64/Packages.xz";

fn run_ok(cmd: &mut std::process::Command) -> Vec<u8> {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

fn gpg(gnupg: &Path) -> std::process::Command {
    let mut c = std::process::Command::new("gpg");
    c.env("GNUPGHOME", gnupg).args(["--batch", "--quiet", "--pinentry-mode", "loopback", "--passphrase", ""]);
    c
}

impl TestArchive {
    /// A first state of an archive, signed by a key made here.
    pub fn new(work: &Path, debs: Vec<TestDeb>) -> Self {
        let gnupg = work.join("gnupg");
        std::fs::create_dir_all(&gnupg).unwrap();
        std::fs::set_permissions(&gnupg, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
        run_ok(gpg(&gnupg).args([
            "--quick-gen-key",
            "Test Archive <archive@example.invalid>",
            "ed25519",
            "sign",
            "never",
        ]));
        Self::signed(work, &gnupg, debs, TEST_RELEASE_DATE)
    }

    /// A later state of the same archive (the same key), listing `debs`, dated `date`.
    pub fn later(&self, work: &Path, debs: Vec<TestDeb>, date: &str) -> Self {
        std::fs::create_dir_all(work).unwrap();
        Self::signed(work, &self.gnupg, debs, date)
    }

    fn signed(work: &Path, gnupg: &Path, debs: Vec<TestDeb>, date: &str) -> Self {
        let keyring = run_ok(gpg(gnupg).args(["--export"]));
        let packages: String = debs
            .iter()
            .map(|d| {
                format!(
                    "Package: {}\nVersion: {}\nArchitecture: amd64\nMaintainer: Test <test@example.invalid>\nFilename: {}\nSize: {}\nSHA256: {}\nDescription: test package\n\n",
                    d.name,
                    d.version,
                    d.archive_path(),
                    d.bytes.len(),
                    d.sha256()
                )
            })
            .collect();
        let plain = work.join("Packages");
        std::fs::write(&plain, &packages).unwrap();
        let index = run_ok(std::process::Command::new("xz").args(["-c", "-9"]).arg(&plain));
        let release = format!(
            "Origin: Test\nLabel: Test\nSuite: bookworm\nCodename: bookworm\nDate: {date}\nArchitectures: amd64\nComponents: main\nSHA256:\n {} {} {INDEX_PATH}\n",
            sha256_hex(&index),
            index.len()
        );
        let release_path = work.join("Release");
        std::fs::write(&release_path, release).unwrap();
        let inrelease = run_ok(
            gpg(gnupg).args(["--digest-algo", "SHA256", "--clearsign", "--output", "-"]).arg(&release_path),
        );
        TestArchive { debs, keyring, index, inrelease, gnupg: gnupg.to_path_buf() }
    }

    /// Every file a mirror serves for this archive, by path below the mirror base.
    pub fn files(&self) -> Vec<(String, Vec<u8>)> {
        let mut files: Vec<(String, Vec<u8>)> =
            self.debs.iter().map(|d| (d.archive_path(), d.bytes.clone())).collect();
        files.push(("dists/bookworm/InRelease".into(), self.inrelease.clone()));
        files.push((format!("dists/bookworm/{INDEX_PATH}"), self.index.clone()));
        files.push((
            format!("dists/bookworm/main/binary-amd64/by-hash/SHA256/{}", sha256_hex(&self.index)),
            self.index.clone(),
        ));
        files
    }
}

/// Write `<dir>/ceremony.toml`, `<dir>/ceremony.lock` and the keyring for this archive and these
/// mirrors.
pub fn write_definition_and_lock(dir: &Path, mirrors: &[String], archive: &TestArchive) -> PathBuf {
    let debs = &archive.debs;
    let names: Vec<String> = debs.iter().map(|d| format!("{:?}", d.name)).collect();
    let mirror_list: Vec<String> = mirrors.iter().map(|m| format!("{m:?}")).collect();
    std::fs::write(dir.join("keyring.pgp"), &archive.keyring).unwrap();
    let definition = dir.join("ceremony.toml");
    std::fs::write(
        &definition,
        format!(
            r#"[image]
name = "test"
version = "1"
architecture = "amd64"

[debian]
suite = "bookworm"
snapshot = "2026-07-12T00:00:00Z"
keyring = "keyring.pgp"

[[debian.archive]]
suite = "bookworm"
components = ["main"]
mirrors = [{mirrors}]

[packages.image]
variant = "closure"
include = [{names}]

[packages.toolchain]
variant = "closure"
include = [{first:?}]

[customize]
tools_workspace = {workspace:?}

[kernel]
cmdline = "boot=live"
exclude_modules = ["drivers/net"]
initrd_modules = ["isofs"]

[squashfs]
compression = "zstd"
"#,
            workspace = repo_root(),
            mirrors = mirror_list.join(", "),
            names = names.join(", "),
            first = debs[0].name,
        ),
    )
    .unwrap();
    let locked = |d: &TestDeb| LockedPackage {
        name: d.name.clone(),
        version: d.version.clone(),
        architecture: "amd64".into(),
        size: d.bytes.len() as u64,
        sha256: Sha256Digest::try_from(d.sha256()).unwrap(),
        path: d.archive_path(),
        archive: "bookworm".into(),
    };
    let snapshot = Timestamp::parse_rfc3339_utc("2026-07-12T00:00:00Z").unwrap();
    let lock = Lockfile {
        lock_version: LOCK_FORMAT_VERSION,
        suite: "bookworm".into(),
        architecture: Architecture::Amd64,
        snapshot,
        source_date_epoch: snapshot.unix(),
        keyring_sha256: Sha256Digest::try_from(sha256_hex(&archive.keyring)).unwrap(),
        archives: vec![ArchiveState {
            suite: "bookworm".into(),
            components: vec!["main".into()],
            release_date: TEST_RELEASE_DATE.into(),
            inrelease_sha256: Sha256Digest::try_from(sha256_hex(&archive.inrelease)).unwrap(),
            inrelease_size: archive.inrelease.len() as u64,
            snapshot_time: None,
            indexes: vec![LockedIndex {
                path: INDEX_PATH.into(),
                size: archive.index.len() as u64,
                sha256: Sha256Digest::try_from(sha256_hex(&archive.index)).unwrap(),
            }],
        }],
        image: LockedSet {
            variant: Variant::Closure,
            include: debs.iter().map(|d| d.name.clone()).collect(),
            packages: debs.iter().map(locked).collect(),
        },
        toolchain: LockedSet {
            variant: Variant::Closure,
            include: vec![debs[0].name.clone()],
            packages: vec![locked(&debs[0])],
        },
    };
    std::fs::write(dir.join("ceremony.lock"), lock.render()).unwrap();
    definition
}

/// How the test mirror answers for one path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    Serve,
    NotFound,
    /// Serve the file with one byte flipped.
    Tamper,
    /// Announce the full length, send half, close the connection.
    Truncate,
}

#[derive(Debug, Clone)]
pub struct LoggedRequest {
    pub path: String,
    pub range: Option<String>,
}

#[derive(Debug, Default)]
struct ServerState {
    files: HashMap<String, Vec<u8>>,
    behaviour: HashMap<String, Behaviour>,
    all_not_found: bool,
    /// Bytes per 20 ms tick; `None` is full speed.
    throttle: Option<usize>,
    log: Vec<LoggedRequest>,
    /// Snapshot runs served as snapshot.debian.org does (`/archive/debian/<run>/...`).
    snapshot_runs: std::collections::BTreeSet<String>,
}

/// An HTTP/1.1 mirror on 127.0.0.1, one thread per connection, `Connection: close`.
#[derive(Debug)]
pub struct TestMirror {
    port: u16,
    state: Arc<Mutex<ServerState>>,
    stop: Arc<AtomicBool>,
}

impl TestMirror {
    pub fn start(archive: &TestArchive) -> Self {
        let mirror = Self::empty();
        mirror.serve_archive("", archive);
        mirror
    }

    /// A server with no file.
    pub fn empty() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(ServerState::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (state2, stop2) = (state.clone(), stop.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let state = state2.clone();
                std::thread::spawn(move || {
                    let _ = serve(stream, &state);
                });
            }
        });
        TestMirror { port, state, stop }
    }

    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    /// Serve the archive's files below `prefix` (`""` or `dir/`), beside what is served already:
    /// a moved-on mirror serves the new InRelease and index, and keeps old files until removed.
    pub fn serve_archive(&self, prefix: &str, archive: &TestArchive) {
        let mut state = self.state.lock().unwrap();
        for (path, bytes) in archive.files() {
            state.files.insert(format!("/{prefix}{path}"), bytes);
        }
    }

    /// Stop serving a path (below the base, no leading `/`): a superseded package deleted.
    pub fn remove(&self, path: &str) {
        self.state.lock().unwrap().files.remove(&format!("/{path}"));
    }

    /// Serve every regular file under `dir` below `prefix`: a static HTTP server for a bundle.
    pub fn serve_dir(&self, prefix: &str, dir: &Path) {
        let mut state = self.state.lock().unwrap();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for entry in std::fs::read_dir(&d).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                } else {
                    let relative = path.strip_prefix(dir).unwrap().to_str().unwrap().to_string();
                    state.files.insert(format!("/{prefix}{relative}"), std::fs::read(&path).unwrap());
                }
            }
        }
    }

    /// Serve `archive` as the snapshot run `run` (`20260711T150000Z`) at `/archive/debian/<run>/`;
    /// a request for any later time is redirected to the newest run at or before it, as
    /// snapshot.debian.org does.
    pub fn serve_snapshot_run(&self, run: &str, archive: &TestArchive) {
        self.serve_archive(&format!("archive/debian/{run}/"), archive);
        self.state.lock().unwrap().snapshot_runs.insert(run.to_string());
    }

    /// `{snapshot}` URL of this server laid out like snapshot.debian.org.
    pub fn snapshot_url(&self) -> String {
        format!("http://127.0.0.1:{}/archive/debian/{{snapshot}}/", self.port)
    }

    pub fn set_behaviour(&self, deb: &TestDeb, behaviour: Behaviour) {
        self.state.lock().unwrap().behaviour.insert(format!("/{}", deb.archive_path()), behaviour);
    }

    pub fn answer_404_to_everything(&self) {
        self.state.lock().unwrap().all_not_found = true;
    }

    pub fn throttle(&self, bytes_per_tick: Option<usize>) {
        self.state.lock().unwrap().throttle = bytes_per_tick;
    }

    pub fn requests(&self) -> Vec<LoggedRequest> {
        self.state.lock().unwrap().log.clone()
    }
}

impl Drop for TestMirror {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// Where snapshot.debian.org would send a request for `/archive/debian/<time>/<rest>`: the same
/// path in the newest run at or before `time`, when that is another run.
fn snapshot_redirect(state: &ServerState, path: &str) -> Option<String> {
    let rest = path.strip_prefix("/archive/debian/")?;
    let (time, rest) = rest.split_once('/')?;
    if state.snapshot_runs.contains(time) {
        return None;
    }
    let run = state.snapshot_runs.range(..time.to_string()).next_back()?;
    Some(format!("/archive/debian/{run}/{rest}"))
}

fn serve(mut stream: TcpStream, state: &Mutex<ServerState>) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let path = request_line.split_whitespace().nth(1).unwrap_or("/").to_string();
    let mut range = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" {
            break;
        }
        if let Some((k, v)) = line.split_once(':')
            && k.eq_ignore_ascii_case("range")
        {
            range = Some(v.trim().to_string());
        }
    }
    let (body, behaviour, throttle) = {
        let mut s = state.lock().unwrap();
        s.log.push(LoggedRequest { path: path.clone(), range: range.clone() });
        let behaviour = if s.all_not_found {
            Behaviour::NotFound
        } else {
            s.behaviour.get(&path).copied().unwrap_or(Behaviour::Serve)
        };
        let redirect = snapshot_redirect(&s, &path);
        if let Some(location) = redirect {
            drop(s);
            return write!(
                stream,
                "HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
        }
        (s.files.get(&path).cloned(), behaviour, s.throttle)
    };
    let Some(mut body) = body.filter(|_| behaviour != Behaviour::NotFound) else {
        return stream.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    };
    if behaviour == Behaviour::Tamper {
        let middle = body.len() / 2;
        body[middle] ^= 0xff;
    }
    let total = body.len();
    let start = range
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|n| n.parse::<usize>().ok())
        .filter(|&n| n < total);
    let (status, slice, extra) = match start {
        Some(n) => {
            ("206 Partial Content", &body[n..], format!("Content-Range: bytes {n}-{}/{total}\r\n", total - 1))
        }
        None => ("200 OK", &body[..], String::new()),
    };
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: application/vnd.debian.binary-package\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n",
        slice.len()
    )?;
    let to_send = if behaviour == Behaviour::Truncate { &slice[..slice.len() / 2] } else { slice };
    match throttle {
        None => stream.write_all(to_send)?,
        Some(per_tick) => {
            for chunk in to_send.chunks(per_tick) {
                stream.write_all(chunk)?;
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
    stream.flush()?;
    stream.shutdown(std::net::Shutdown::Both)
}

/// A Debian 13 (trixie) root made with mmdebstrap, kept under target/tmp between runs: "another
/// host" to build on. It has what a witness's machine needs to run `ceremony-os build`
/// (util-linux, git, CA certificates for crates.io) and faketime for the clock variation.
pub fn trixie_root() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("hosts/trixie");
    if root.join("etc/debian_version").exists() {
        return root;
    }
    let parent = root.parent().unwrap();
    std::fs::create_dir_all(parent).unwrap();
    let tmp = parent.join(".trixie-partial");
    let _ = std::fs::remove_dir_all(&tmp);
    let output = std::process::Command::new("mmdebstrap")
        .args([
            "--variant=minbase",
            "--include=util-linux,mount,git,ca-certificates,faketime",
            "--aptopt=Acquire::Retries \"5\"",
            "trixie",
        ])
        .arg(&tmp)
        .arg("http://deb.debian.org/debian")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "mmdebstrap trixie failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    std::fs::rename(&tmp, &root).unwrap();
    root
}

/// The compiler's sysroot as this test process finds it (`rustc --print sysroot`).
pub fn rust_sysroot() -> PathBuf {
    let out = std::process::Command::new("rustc")
        .args(["--print", "sysroot"])
        .current_dir(repo_root())
        .output()
        .unwrap();
    assert!(out.status.success());
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

/// OpenSSH's ssh-agent on a socket in a temporary directory (`socket`), killed when dropped.
pub struct SshAgent {
    child: std::process::Child,
    pub socket: PathBuf,
    _dir: tempfile::TempDir,
}

impl SshAgent {
    pub fn start() -> SshAgent {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("agent.sock");
        let child = std::process::Command::new("ssh-agent")
            .arg("-D")
            .arg("-a")
            .arg(&socket)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        for _ in 0..100 {
            if socket.exists() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        assert!(socket.exists(), "ssh-agent made no socket at {}", socket.display());
        SshAgent { child, socket, _dir: dir }
    }

    /// `ssh-add KEY` (the key file must be readable by its owner only, as ssh-keygen makes it).
    pub fn add(&self, key: &Path) {
        let added = std::process::Command::new("ssh-add")
            .arg(key)
            .env("SSH_AUTH_SOCK", &self.socket)
            .output()
            .unwrap();
        assert!(added.status.success(), "{}", String::from_utf8_lossy(&added.stderr));
    }
}

impl Drop for SshAgent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until a process descended from `ancestor` has `needle` in its command line; false if
/// `ancestor` exits or `timeout` passes first. Lets a test interrupt a build inside one program
/// however fast that program has become.
pub fn wait_for_descendant(ancestor: u32, needle: &str, timeout: Duration) -> bool {
    let parent_of = |pid: u32| -> Option<u32> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // "pid (comm) state ppid ...": comm may hold spaces and parentheses, so split after the last ')'.
        stat.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse().ok()
    };
    let descends = |mut pid: u32| {
        while pid > 1 {
            if pid == ancestor {
                return true;
            }
            match parent_of(pid) {
                Some(parent) => pid = parent,
                None => return false,
            }
        }
        false
    };
    let deadline = std::time::Instant::now() + timeout;
    while std::time::Instant::now() < deadline {
        if !Path::new(&format!("/proc/{ancestor}")).exists() {
            return false;
        }
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
            if pid == ancestor {
                continue;
            }
            let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else { continue };
            if String::from_utf8_lossy(&cmdline).contains(needle) && descends(pid) {
                return true;
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    false
}

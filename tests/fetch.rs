//! `ceremony-os fetch` and `vendor` against real .debs served by a local HTTP mirror.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod support;

use predicates::str::contains;
use std::path::Path;
use support::{
    Behaviour, TestArchive, TestDeb, TestMirror, ceremony_os, make_deb, write_definition_and_lock,
};

struct Setup {
    dir: tempfile::TempDir,
    debs: Vec<TestDeb>,
    archive: TestArchive,
}

impl Setup {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let debs = vec![
            make_deb(dir.path(), "alpha", "1.0-1", 20_000),
            make_deb(dir.path(), "bravo", "2:3.1-4", 50_000),
            make_deb(dir.path(), "charlie", "0.9-1+b1", 2_000_000),
        ];
        let archive = TestArchive::new(dir.path(), debs.clone());
        Setup { dir, debs, archive }
    }

    fn path(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join(name)
    }

    fn store(&self) -> std::path::PathBuf {
        self.path("store")
    }

    fn definition(&self, mirrors: &[String]) -> std::path::PathBuf {
        write_definition_and_lock(self.dir.path(), mirrors, &self.archive)
    }

    fn stored(&self, deb: &TestDeb) -> Option<Vec<u8>> {
        std::fs::read(self.store().join("sha256").join(deb.sha256())).ok()
    }
}

fn json_report(output: &[u8]) -> serde_json::Value {
    serde_json::from_slice(output).expect("fetch --json prints JSON")
}

fn origins(report: &serde_json::Value) -> Vec<(String, String)> {
    report["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["package"].as_str().unwrap().to_string(), f["origin"].as_str().unwrap().to_string()))
        .collect()
}

fn dir_is_empty(path: &Path) -> bool {
    std::fs::read_dir(path).map(|mut d| d.next().is_none()).unwrap_or(true)
}

#[test]
fn fetches_verifies_and_then_skips_what_is_stored() {
    let s = Setup::new();
    let mirror = TestMirror::start(&s.archive);
    let def = s.definition(&[mirror.base_url()]);

    let out = ceremony_os(&s.store()).args(["fetch", "--json"]).arg(&def).assert().success();
    let report = json_report(&out.get_output().stdout);
    assert!(origins(&report).iter().all(|(_, o)| o == "mirror"), "{report}");
    for deb in &s.debs {
        assert_eq!(s.stored(deb).as_deref(), Some(&deb.bytes[..]), "{} stored intact", deb.name);
    }
    let first_requests = mirror.requests().len();
    assert_eq!(first_requests, 5, "one request per file: InRelease, the index, three packages");

    let out = ceremony_os(&s.store()).args(["fetch", "--json"]).arg(&def).assert().success();
    let report = json_report(&out.get_output().stdout);
    assert!(origins(&report).iter().all(|(_, o)| o == "store"), "{report}");
    assert_eq!(mirror.requests().len(), first_requests, "nothing downloaded again");
}

#[test]
fn tampered_deb_is_rejected_and_not_stored() {
    let s = Setup::new();
    let mirror = TestMirror::start(&s.archive);
    mirror.set_behaviour(&s.debs[1], Behaviour::Tamper);
    let def = s.definition(&[mirror.base_url()]);

    let bravo = &s.debs[1];
    let assert = ceremony_os(&s.store()).arg("fetch").arg(&def).assert().failure();
    let stderr = String::from_utf8_lossy(&assert.get_output().stderr).to_string();
    assert!(stderr.contains("could not fetch 1 of 3 files"), "{stderr}");
    assert!(stderr.contains("bravo_2:3.1-4_amd64"), "names the package: {stderr}");
    assert!(
        stderr.contains(&format!("{}{}", mirror.base_url(), bravo.archive_path())),
        "names the mirror URL: {stderr}"
    );
    assert!(stderr.contains(&format!("expected {}", bravo.sha256())), "names the expected digest: {stderr}");
    let mut tampered = bravo.bytes.clone();
    let middle = tampered.len() / 2;
    tampered[middle] ^= 0xff;
    assert!(
        stderr.contains(&format!("got {}", support::sha256_hex(&tampered))),
        "names the actual digest: {stderr}"
    );
    assert!(s.stored(bravo).is_none(), "tampered file must not enter the store");
    assert!(dir_is_empty(&s.store().join("partial")), "nothing of the tampered file is kept");
    assert!(dir_is_empty(&s.store().join("tmp")));
    assert!(s.stored(&s.debs[0]).is_some(), "the good files are stored");
}

#[test]
fn truncated_download_is_rejected() {
    let s = Setup::new();
    let mirror = TestMirror::start(&s.archive);
    mirror.set_behaviour(&s.debs[2], Behaviour::Truncate);
    let def = s.definition(&[mirror.base_url()]);

    ceremony_os(&s.store())
        .args(["fetch", "--retries", "1"])
        .arg(&def)
        .assert()
        .failure()
        .stderr(contains("charlie_0.9-1+b1_amd64"))
        .stderr(contains("gave up after 2 tries"));
    assert!(s.stored(&s.debs[2]).is_none(), "a truncated file must not enter the store");
}

#[test]
fn mirror_answering_404_falls_back_to_the_next() {
    let s = Setup::new();
    let broken = TestMirror::start(&s.archive);
    broken.answer_404_to_everything();
    let good = TestMirror::start(&s.archive);
    let def = s.definition(&[broken.base_url(), good.base_url()]);

    let out = ceremony_os(&s.store()).args(["fetch", "--json"]).arg(&def).assert().success();
    let report = json_report(&out.get_output().stdout);
    for file in report["files"].as_array().unwrap() {
        assert_eq!(file["source"], good.base_url(), "{file}");
    }
    assert_eq!(broken.requests().len(), 5, "the first mirror was asked first, for every file");
    let warnings = report["warnings"].to_string();
    assert!(warnings.contains("HTTP 404"), "the fallback is reported: {warnings}");
}

#[test]
fn interrupted_fetch_resumes_where_it_stopped() {
    let s = Setup::new();
    let mirror = TestMirror::start(&s.archive);
    mirror.throttle(Some(8 * 1024)); // ~400 KB/s: charlie (2 MB) takes ~5 s
    let def = s.definition(&[mirror.base_url()]);
    let charlie = &s.debs[2];

    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ceremony-os"))
        .env("CEREMONY_OS_STORE", s.store())
        .args(["fetch", "--jobs", "1"])
        .arg(&def)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let partial = s.store().join("partial").join(charlie.sha256());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while std::fs::metadata(&partial).map(|m| m.len()).unwrap_or(0) < 200_000 {
        assert!(std::time::Instant::now() < deadline, "download never started");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let kept = std::fs::metadata(&partial).unwrap().len();
    assert!(kept > 0 && kept < charlie.bytes.len() as u64);
    assert!(s.stored(charlie).is_none(), "an interrupted download is not in the store");

    mirror.throttle(None);
    let before = mirror.requests().len();
    ceremony_os(&s.store()).arg("fetch").arg(&def).assert().success();
    assert_eq!(s.stored(charlie).as_deref(), Some(&charlie.bytes[..]));
    let resumed: Vec<_> =
        mirror.requests()[before..].iter().filter(|r| r.path.contains("charlie")).cloned().collect();
    assert_eq!(resumed.len(), 1, "{resumed:?}");
    let range = resumed[0].range.clone().expect("the second fetch sends a Range request");
    let from: u64 = range.trim_start_matches("bytes=").trim_end_matches('-').parse().unwrap();
    assert!(from >= kept.min(200_000) && from <= kept, "resumed from {from}, {kept} bytes were kept");
    assert!(!partial.exists(), "the partial file is consumed");
}

#[test]
fn offline_fetch_from_a_vendor_dir_needs_no_network() {
    let s = Setup::new();
    let mirror = TestMirror::start(&s.archive);
    let def = s.definition(&[mirror.base_url()]);
    let vendor = s.path("vendor");
    ceremony_os(&s.store()).arg("vendor").arg(&vendor).arg(&def).assert().success();
    let sums = std::fs::read_to_string(vendor.join("SHA256SUMS")).unwrap();
    let mut expected: Vec<String> =
        s.debs.iter().map(|d| format!("{}  {}", d.sha256(), d.file_name())).collect();
    expected.push(format!("{}  dists_bookworm_InRelease", support::sha256_hex(&s.archive.inrelease)));
    expected.push(format!(
        "{}  dists_bookworm_main_binary-amd64_Packages.xz",
        support::sha256_hex(&s.archive.index)
    ));
    expected.sort_by(|a, b| a[66..].cmp(&b[66..]));
    assert_eq!(sums.lines().collect::<Vec<_>>(), expected);
    for deb in &s.debs {
        assert_eq!(std::fs::read(vendor.join(deb.file_name())).unwrap(), deb.bytes);
    }

    drop(mirror); // the network is gone; a fresh store must fill from the vendor dir alone
    let before = std::time::Instant::now();
    let fresh_store = s.path("fresh-store");
    let out = ceremony_os(&fresh_store)
        .args(["fetch", "--offline", "--json", "--vendor"])
        .arg(&vendor)
        .arg(&def)
        .assert()
        .success();
    let report = json_report(&out.get_output().stdout);
    assert!(origins(&report).iter().all(|(_, o)| o == "vendor"), "{report}");
    assert!(before.elapsed() < std::time::Duration::from_secs(30));

    // A corrupted vendored file is refused, even offline.
    let store3 = s.path("store3");
    let victim = vendor.join(s.debs[0].file_name());
    let mut bytes = std::fs::read(&victim).unwrap();
    bytes[100] ^= 1;
    std::fs::write(&victim, bytes).unwrap();
    ceremony_os(&store3)
        .args(["fetch", "--offline", "--vendor"])
        .arg(&vendor)
        .arg(&def)
        .assert()
        .failure()
        .stderr(contains("SHA-256 mismatch"))
        .stderr(contains("alpha_1.0-1_amd64"));
    assert!(!store3.join("sha256").join(s.debs[0].sha256()).exists());
}

#[test]
fn stale_lock_is_refused() {
    let s = Setup::new();
    let def = s.definition(&["http://127.0.0.1:9/".to_string()]);
    let text = std::fs::read_to_string(&def).unwrap().replace("\"alpha\", ", "");
    std::fs::write(&def, text).unwrap();
    ceremony_os(&s.store())
        .arg("fetch")
        .arg(&def)
        .assert()
        .failure()
        .stderr(contains("is stale"))
        .stderr(contains("packages.image.include"));
}

#[test]
fn two_fetches_into_one_store_at_once_both_succeed() {
    let s = Setup::new();
    let mirror = TestMirror::start(&s.archive);
    mirror.throttle(Some(32 * 1024)); // long enough for the two processes to overlap
    let def = s.definition(&[mirror.base_url()]);
    let spawn = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_ceremony-os"))
            .env("CEREMONY_OS_STORE", s.store())
            .args(["fetch", "--json"])
            .arg(&def)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (first, second) = (spawn(), spawn());
    let outputs = [first.wait_with_output().unwrap(), second.wait_with_output().unwrap()];
    for out in &outputs {
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    for deb in &s.debs {
        assert_eq!(s.stored(deb).as_deref(), Some(&deb.bytes[..]));
    }
    let downloads = mirror.requests().len();
    assert_eq!(downloads, 5, "the second fetch found the files the first one stored");
}

#[test]
fn a_refusing_mirror_is_retried_then_retired_and_named_in_errors() {
    let s = Setup::new();
    let good = TestMirror::start(&s.archive);
    // Nothing listens on port 9 of the loopback: connections are refused.
    let refused = "http://127.0.0.1:9/".to_string();
    let def = s.definition(&[refused.clone(), good.base_url()]);
    let out = ceremony_os(&s.store())
        .args(["fetch", "--json", "--jobs", "1", "--retries", "1"])
        .arg(&def)
        .assert()
        .success();
    let report = json_report(&out.get_output().stdout);
    assert!(origins(&report).iter().all(|(_, o)| o == "mirror"), "{report}");
    let warnings = report["warnings"].to_string();
    assert_eq!(warnings.matches("not trying it again").count(), 1, "retired once: {warnings}");

    // With only that mirror, every file fails, and the message says why for each.
    let def = s.definition(&[refused]);
    let fresh = s.path("fresh-store");
    let out =
        ceremony_os(&fresh).args(["fetch", "--jobs", "1", "--retries", "1"]).arg(&def).assert().failure();
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    // The archive files come first: nothing else is tried once they cannot be had.
    assert!(stderr.contains("could not fetch 2 of 2 files"), "{stderr}");
    assert!(stderr.contains("bookworm InRelease") && stderr.contains("gave up after 2 tries"), "{stderr}");
    assert_eq!(stderr.matches("skipped: unreachable earlier in this run").count(), 1, "{stderr}");
    assert!(!stderr.contains("offline and no vendor directory"), "{stderr}");
}

/// Edit the lock's text and expect `fetch` to refuse it, naming `expected`, having asked the
/// mirror for nothing but the archive's signed files.
fn refused_lock(s: &Setup, mirror: &TestMirror, edit: &dyn Fn(&str) -> String, expected: &str) {
    let def = s.definition(&[mirror.base_url()]);
    let lock = def.with_extension("lock");
    std::fs::write(&lock, edit(&std::fs::read_to_string(&lock).unwrap())).unwrap();
    let before = mirror.requests().len();
    let out = ceremony_os(&s.store()).arg("fetch").arg(&def).assert().failure();
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    assert!(stderr.contains(expected), "expected {expected:?} in:\n{stderr}");
    let asked: Vec<String> = mirror.requests()[before..].iter().map(|r| r.path.clone()).collect();
    assert!(
        asked.iter().all(|p| p.contains("/dists/")),
        "a package was fetched for a refused lock: {asked:?}"
    );
}

#[test]
fn hand_edited_locks_are_refused_before_any_package_is_fetched() {
    let s = Setup::new();
    let mirror = TestMirror::start(&s.archive);
    let alpha = &s.debs[0];
    // A hand-added package (its digest is real, but no signed index lists it).
    let intruder = make_deb(s.dir.path(), "intruder", "1.0", 1000);
    refused_lock(
        &s,
        &mirror,
        &|lock| {
            format!(
                "{lock}\n[[image.packages]]\nname = \"intruder\"\nversion = \"1.0\"\narchitecture = \"amd64\"\nsize = {}\nsha256 = \"{}\"\npath = \"{}\"\narchive = \"bookworm\"\n",
                intruder.bytes.len(),
                intruder.sha256(),
                intruder.archive_path()
            )
        },
        "image.packages intruder 1.0: pool/main/i/intruder/intruder_1.0_amd64.deb is not in the signed index of bookworm",
    );
    // An altered digest.
    refused_lock(
        &s,
        &mirror,
        &|lock| lock.replacen(&alpha.sha256(), &"ab".repeat(32), 1),
        "alpha 1.0-1: SHA256 is abababab",
    );
    // A removed package that the set asked for.
    refused_lock(
        &s,
        &mirror,
        &|lock| {
            let start = lock.find("[[image.packages]]\nname = \"bravo\"").unwrap();
            let end = lock[start + 1..].find("[[").map(|e| e + start + 1).unwrap_or(lock.len());
            format!("{}{}", &lock[..start], &lock[end..])
        },
        "the image set is not closed: bravo (requested) is missing",
    );
    // A wrong InRelease digest (the store has no such object, and no mirror serves one).
    let inrelease = support::sha256_hex(&s.archive.inrelease);
    refused_lock(&s, &mirror, &|lock| lock.replace(&inrelease, &"cd".repeat(32)), "bookworm InRelease");
    // Another keyring than the one the lock was made with.
    let def = s.definition(&[mirror.base_url()]);
    std::fs::write(def.with_file_name("keyring.pgp"), b"not the keyring").unwrap();
    let out = ceremony_os(&s.store()).arg("fetch").arg(&def).assert().failure();
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    assert!(stderr.contains("but the lock was made with keyring"), "{stderr}");
}

/// The mirror serves a newer state of the archive than the lock names (what deb.debian.org does
/// a day after a lock is made): refused before any package is fetched, naming the archive and the
/// way out.
#[test]
fn an_archive_that_moved_on_is_named_with_the_way_out() {
    let s = Setup::new();
    std::fs::create_dir(s.path("later")).unwrap();
    let later = TestArchive::new(&s.path("later"), s.debs.clone());
    assert_ne!(later.inrelease, s.archive.inrelease, "the later state is signed anew");
    let mirror = TestMirror::start(&later);
    let def = s.definition(&[mirror.base_url()]);
    let out = ceremony_os(&s.store()).arg("fetch").arg(&def).assert().failure();
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    assert!(stderr.contains("bookworm InRelease:") && stderr.contains("SHA-256 mismatch"), "{stderr}");
    assert!(stderr.contains("The archive has moved on since this lock was made"), "{stderr}");
    assert!(stderr.contains("another InRelease is served for bookworm."), "{stderr}");
    assert!(stderr.contains(&format!("`ceremony-os lock {}`", def.display())), "{stderr}");
    assert!(mirror.requests().iter().all(|r| r.path.contains("/dists/")), "{:?}", mirror.requests());
    assert!(s.debs.iter().all(|deb| s.stored(deb).is_none()), "no package entered the store");
}

#[test]
fn a_keyring_value_apt_would_read_as_an_option_is_refused() {
    let s = Setup::new();
    let def = s.definition(&["http://127.0.0.1:9/".to_string()]);
    let text = std::fs::read_to_string(&def)
        .unwrap()
        .replace("keyring = \"keyring.pgp\"", "keyring = \"k trusted=yes\"");
    std::fs::write(&def, text).unwrap();
    let out = ceremony_os(&s.store()).arg("lock").arg(&def).assert().failure();
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    assert!(
        stderr.contains("keyring \"k trusted=yes\" contains white space") && stderr.contains("ceremony.toml"),
        "{stderr}"
    );
}

#[test]
fn a_fifo_in_the_vendor_directory_is_refused_without_hanging() {
    let s = Setup::new();
    let def = s.definition(&["http://127.0.0.1:9/".to_string()]);
    let vendor = s.path("vendor-with-fifo");
    std::fs::create_dir_all(&vendor).unwrap();
    let status =
        std::process::Command::new("mkfifo").arg(vendor.join("dists_bookworm_InRelease")).status().unwrap();
    assert!(status.success());
    let out = ceremony_os(&s.store())
        .args(["fetch", "--offline", "--vendor"])
        .arg(&vendor)
        .arg(&def)
        .timeout(std::time::Duration::from_secs(60))
        .assert()
        .failure();
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    assert!(stderr.contains("not a regular file"), "{stderr}");
}

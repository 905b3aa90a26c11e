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
        .map(|f| (f["label"].as_str().unwrap().to_string(), f["origin"].as_str().unwrap().to_string()))
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

/// `vendor` writes a release inputs bundle: the .debs, the archive state by digest, every crate
/// of Cargo.lock, an index and a SHA256SUMS that `sha256sum -c` accepts. A fresh store fills
/// from it offline (as a directory) and, with the mirror gone, over HTTP (as any static server
/// would serve it); a corrupted file in it is refused even so.
#[test]
fn a_bundle_fills_a_fresh_store_offline_from_a_directory_and_over_http() {
    let s = Setup::new();
    let mirror = TestMirror::start(&s.archive);
    let def = s.definition(&[mirror.base_url()]);
    let bundle = s.path("bundle");
    let out = ceremony_os(&s.store()).args(["vendor", "--json"]).arg(&bundle).arg(&def).assert().success();
    let written = json_report(&out.get_output().stdout);
    let sums = std::fs::read_to_string(bundle.join("SHA256SUMS")).unwrap();
    let check = std::process::Command::new("sha256sum")
        .args(["--check", "--strict", "SHA256SUMS"])
        .current_dir(&bundle)
        .output()
        .unwrap();
    assert!(check.status.success(), "sha256sum -c: {}", String::from_utf8_lossy(&check.stdout));
    for deb in &s.debs {
        assert!(sums.contains(&format!("{}  debs/{}", deb.sha256(), deb.file_name())), "{sums}");
    }
    let inrelease = support::sha256_hex(&s.archive.inrelease);
    assert!(sums.contains(&format!("{inrelease}  archive/{inrelease}")), "{sums}");
    let index = std::fs::read(bundle.join("ceremony-os-bundle.json")).unwrap();
    assert_eq!(written["index_sha256"].as_str().unwrap(), support::sha256_hex(&index));
    assert!(sums.contains(&format!("{}  ceremony-os-bundle.json", support::sha256_hex(&index))), "{sums}");
    let cargo_lock = std::fs::read_to_string(support::repo_root().join("Cargo.lock")).unwrap();
    let crates = ceremony_os_definition::locked_crates(&cargo_lock).unwrap();
    assert!(crates.len() > 100);
    for krate in &crates {
        assert!(
            sums.contains(&format!("{}  crates/{}", krate.checksum, krate.file_name())),
            "{} missing",
            krate.name
        );
    }

    drop(mirror); // the network is gone; a fresh store must fill from the bundle alone
    let fresh_store = s.path("fresh-store");
    let out = ceremony_os(&fresh_store)
        .args(["fetch", "--offline", "--json", "--vendor"])
        .arg(&bundle)
        .arg(&def)
        .assert()
        .success();
    let report = json_report(&out.get_output().stdout);
    let got = origins(&report);
    assert!(got.iter().all(|(_, o)| o == "bundle"), "{report}");
    assert!(
        got.iter().any(|(l, _)| *l
            == "crate cryptoki ".to_string()
                + &crates.iter().find(|c| c.name == "cryptoki").unwrap().version),
        "{report}"
    );
    assert_eq!(report["bundle_index_used"].as_str().unwrap(), support::sha256_hex(&index));
    for krate in &crates {
        assert!(
            fresh_store.join("sha256").join(krate.checksum.as_hex()).is_file(),
            "{} not in the store",
            krate.name
        );
    }

    // Over HTTP from a static server, the definition's mirror unreachable.
    let server = TestMirror::empty();
    server.serve_dir("release/", &bundle);
    let http_store = s.path("http-store");
    let out = ceremony_os(&http_store)
        .args(["fetch", "--json", "--retries", "0", "--vendor", "/nonexistent/bundle", "--vendor"])
        .arg(format!("{}release", server.base_url()))
        .arg(&def)
        .assert()
        .success();
    let report = json_report(&out.get_output().stdout);
    assert!(origins(&report).iter().all(|(_, o)| o == "bundle"), "{report}");
    assert!(
        report["warnings"].to_string().contains("/nonexistent/bundle"),
        "the unreadable bundle is named: {report}"
    );

    // A corrupted file in the bundle is refused, even offline.
    let store3 = s.path("store3");
    let victim = bundle.join("debs").join(s.debs[0].file_name());
    let mut bytes = std::fs::read(&victim).unwrap();
    bytes[100] ^= 1;
    std::fs::write(&victim, bytes).unwrap();
    ceremony_os(&store3)
        .args(["fetch", "--offline", "--vendor"])
        .arg(&bundle)
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
    assert!(stderr.contains("the inputs of archive bookworm cannot be had"), "{stderr}");
    assert!(stderr.contains("no other signed state of it could be had"), "{stderr}");
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
    // A wrong InRelease digest: no source serves that state, so the archive is re-vouched by the
    // state the mirror serves, which lists every locked package as locked.
    let inrelease = support::sha256_hex(&s.archive.inrelease);
    let def = s.definition(&[mirror.base_url()]);
    let lock = def.with_extension("lock");
    std::fs::write(&lock, std::fs::read_to_string(&lock).unwrap().replace(&inrelease, &"cd".repeat(32)))
        .unwrap();
    ceremony_os(&s.path("revouch-store"))
        .arg("fetch")
        .arg(&def)
        .assert()
        .success()
        .stderr(contains("bookworm re-vouched"));
    // Another keyring than the one the lock was made with.
    let def = s.definition(&[mirror.base_url()]);
    std::fs::write(def.with_file_name("keyring.pgp"), b"not the keyring").unwrap();
    let out = ceremony_os(&s.store()).arg("fetch").arg(&def).assert().failure();
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    assert!(stderr.contains("but the lock was made with keyring"), "{stderr}");
}

/// The mirror moves on as deb.debian.org does: a new InRelease, a new index, the old by-hash
/// index gone.
fn move_on(mirror: &TestMirror, from: &TestArchive, to: &TestArchive) {
    mirror.remove(&format!(
        "dists/bookworm/main/binary-amd64/by-hash/SHA256/{}",
        support::sha256_hex(&from.index)
    ));
    mirror.serve_archive("", to);
}

const LATER: &str = "Tue, 14 Jul 2026 08:00:00 UTC";

/// The archive moved on, every locked package kept: fetch re-vouches the archive with the
/// current signed state (same key), fetches every package, and says by which state.
#[test]
fn an_archive_that_moved_on_with_every_package_kept_is_revouched() {
    let s = Setup::new();
    let later = s.archive.later(&s.path("later"), s.debs.clone(), LATER);
    assert_ne!(later.inrelease, s.archive.inrelease, "the later state is signed anew");
    let mirror = TestMirror::start(&s.archive);
    let def = s.definition(&[mirror.base_url()]);
    move_on(&mirror, &s.archive, &later);
    let out = ceremony_os(&s.store()).args(["fetch", "--json"]).arg(&def).assert().success();
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    assert!(stderr.contains("bookworm re-vouched"), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "3 of its locked packages are listed, same SHA-256, by the Release of {LATER}"
        )),
        "{stderr}"
    );
    let report = json_report(&out.get_output().stdout);
    let vouched = &report["archives"][0]["revouched_by"][0];
    assert_eq!(vouched["date"], LATER, "{report}");
    assert_eq!(vouched["inrelease_sha256"], support::sha256_hex(&later.inrelease));
    assert_eq!(vouched["packages"], 3);
    for deb in &s.debs {
        assert_eq!(s.stored(deb).as_deref(), Some(&deb.bytes[..]), "{} stored intact", deb.name);
    }
    // `lock --check --offline` holds against what the store now keeps.
    ceremony_os(&s.store()).args(["lock", "--check", "--offline"]).arg(&def).assert().success();
}

/// A later state signed by another key, or dated before the locked one, vouches for nothing.
#[test]
fn a_state_signed_by_another_key_or_older_than_the_lock_is_refused() {
    let s = Setup::new();
    let stranger = TestArchive::new(&s.path("stranger"), s.debs.clone());
    let mirror = TestMirror::start(&s.archive);
    let def = s.definition(&[mirror.base_url()]);
    move_on(&mirror, &s.archive, &stranger);
    let out = ceremony_os(&s.store()).arg("fetch").arg(&def).assert().failure();
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    assert!(stderr.contains("the inputs of archive bookworm cannot be had"), "{stderr}");
    assert!(stderr.contains("refused"), "{stderr}");
    assert!(s.debs.iter().all(|deb| s.stored(deb).is_none()), "no package entered the store");

    let older = s.archive.later(&s.path("older"), s.debs.clone(), "Fri, 10 Jul 2026 08:00:00 UTC");
    let mirror = TestMirror::start(&s.archive);
    let def = s.definition(&[mirror.base_url()]);
    move_on(&mirror, &s.archive, &older);
    let out = ceremony_os(&s.store()).arg("fetch").arg(&def).assert().failure();
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    assert!(stderr.contains("refused") && stderr.contains("earlier"), "{stderr}");
}

/// One locked package superseded and deleted: named with what replaced it; then fetched from a
/// bundle made while it was current (served over HTTP).
#[test]
fn a_superseded_package_is_named_and_then_fetched_from_a_bundle() {
    let s = Setup::new();
    let mirror = TestMirror::start(&s.archive);
    let def = s.definition(&[mirror.base_url()]);
    let bundle = s.path("bundle");
    ceremony_os(&s.store()).arg("vendor").arg(&bundle).arg(&def).assert().success();

    let newer = make_deb(&s.path("newer"), "bravo", "2:3.1-5", 50_001);
    let debs = vec![s.debs[0].clone(), newer, s.debs[2].clone()];
    let later = s.archive.later(&s.path("later"), debs, LATER);
    move_on(&mirror, &s.archive, &later);
    mirror.remove(&s.debs[1].archive_path());

    let fresh = s.path("fresh-store");
    let out = ceremony_os(&fresh).arg("fetch").arg(&def).assert().failure();
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    assert!(stderr.contains("1 of its locked packages are listed by no signed state"), "{stderr}");
    assert!(stderr.contains("bravo_2:3.1-4_amd64: replaced by 2:3.1-5"), "{stderr}");
    assert!(s.debs.iter().all(|deb| !fresh.join("sha256").join(deb.sha256()).exists()), "nothing stored");

    let server = TestMirror::empty();
    server.serve_dir("", &bundle);
    let out = ceremony_os(&fresh)
        .args(["fetch", "--json", "--vendor"])
        .arg(server.base_url())
        .arg(&def)
        .assert()
        .success();
    let report = json_report(&out.get_output().stdout);
    let got = origins(&report);
    let origin = |label: &str| got.iter().find(|(l, _)| l == label).map(|(_, o)| o.clone());
    assert_eq!(origin("bookworm InRelease").as_deref(), Some("bundle"), "{report}");
    assert_eq!(origin("bravo_2:3.1-4_amd64").as_deref(), Some("bundle"), "{report}");
    assert_eq!(origin("alpha_1.0-1_amd64").as_deref(), Some("mirror"), "the mirrors come first: {report}");
    assert!(
        report["archives"][0]["revouched_by"].as_array().unwrap().is_empty(),
        "the bundle holds the locked state"
    );
    assert_eq!(std::fs::read(fresh.join("sha256").join(s.debs[1].sha256())).unwrap(), s.debs[1].bytes);
}

/// A local server laid out like snapshot.debian.org (runs at `/archive/debian/<run>/`, a time
/// redirected to the newest run at or before it): the locked state is asked for at the lock's
/// snapshot time (recorded, or six hours after its Date), not at the definition's snapshot,
/// which here falls in a later run.
#[test]
fn the_locked_state_is_fetched_from_a_snapshot_archive_at_the_locks_time() {
    let s = Setup::new();
    let newer = make_deb(&s.path("newer"), "bravo", "2:3.1-5", 50_001);
    let debs = vec![s.debs[0].clone(), newer, s.debs[2].clone()];
    let later = s.archive.later(&s.path("later"), debs, "Sat, 11 Jul 2026 20:00:00 UTC");
    let current = TestMirror::start(&later);
    let snapshot = TestMirror::empty();
    snapshot.serve_snapshot_run("20260711T150000Z", &s.archive);
    snapshot.serve_snapshot_run("20260711T210000Z", &later);
    let def = s.definition(&[current.base_url(), snapshot.snapshot_url()]);

    let out = ceremony_os(&s.store()).args(["fetch", "--json"]).arg(&def).assert().success();
    let report = json_report(&out.get_output().stdout);
    assert!(report["archives"][0]["revouched_by"].as_array().unwrap().is_empty(), "{report}");
    let asked: Vec<String> = snapshot.requests().iter().map(|r| r.path.clone()).collect();
    // No snapshot time recorded: the Date (10:16:37) plus six hours.
    assert!(
        asked.contains(&"/archive/debian/20260711T161637Z/dists/bookworm/InRelease".to_string()),
        "{asked:?}"
    );
    assert!(
        !asked.iter().any(|p| p.contains("20260712T000000Z")),
        "the definition's snapshot is not the lock's time: {asked:?}"
    );
    for deb in &s.debs {
        assert_eq!(s.stored(deb).as_deref(), Some(&deb.bytes[..]), "{} stored intact", deb.name);
    }

    // A recorded time is asked for first.
    let lock = def.with_extension("lock");
    let text = std::fs::read_to_string(&lock).unwrap().replacen(
        "inrelease_size",
        "snapshot_time = \"2026-07-11T15:30:00Z\"\ninrelease_size",
        1,
    );
    std::fs::write(&lock, text).unwrap();
    let fresh = s.path("fresh-store");
    ceremony_os(&fresh).arg("fetch").arg(&def).assert().success();
    let asked: Vec<String> = snapshot.requests().iter().map(|r| r.path.clone()).collect();
    assert!(
        asked.contains(&"/archive/debian/20260711T153000Z/dists/bookworm/InRelease".to_string()),
        "{asked:?}"
    );
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
    std::fs::create_dir_all(vendor.join("archive")).unwrap();
    let inrelease = vendor.join("archive").join(support::sha256_hex(&s.archive.inrelease));
    let status = std::process::Command::new("mkfifo").arg(inrelease).status().unwrap();
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

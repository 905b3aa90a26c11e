//! `ceremony-os lock` against the real Debian archive (deb.debian.org; the snapshot mirror listed
//! first is unreachable here, which also exercises the mirror fallback).

#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod support;

use std::path::PathBuf;

fn repo_file(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..").join(path)
}

fn names_in(lock: &ceremony_os_definition::Lockfile) -> Vec<&str> {
    lock.image.packages.iter().map(|p| p.name.as_str()).collect()
}

#[test]
fn lock_resolves_the_full_closure_deterministically() {
    let dir = tempfile::tempdir().unwrap();
    let definition = repo_file("image/ceremony.toml");
    let store = dir.path().join("store");
    let mut outputs = Vec::new();
    for run in ["a", "b"] {
        let out = dir.path().join(format!("{run}.lock"));
        support::ceremony_os(&store)
            .arg("lock")
            .arg(&definition)
            .arg("--lockfile")
            .arg(&out)
            .assert()
            .success();
        outputs.push(std::fs::read(&out).unwrap());
    }
    assert!(outputs[0] == outputs[1], "two lock runs against the same archive differ");

    let text = String::from_utf8(outputs[0].clone()).unwrap();
    let lock = ceremony_os_definition::Lockfile::parse(&text, &definition).unwrap();
    // What to ask snapshot.debian.org for later: the first run surely after each state's Date
    // (the definition's mirrors serve today's state, not a snapshot).
    for archive in &lock.archives {
        let date = ceremony_os_definition::Timestamp::parse_release_date(&archive.release_date).unwrap();
        assert_eq!(
            archive.snapshot_time.map(|t| t.unix()),
            Some(date.unix() + 6 * 3600),
            "{}",
            archive.suite
        );
    }
    let names = names_in(&lock);
    // Essential and Priority: required packages come with minbase, not only what was asked for.
    for essential in [
        "base-files",
        "base-passwd",
        "bash",
        "coreutils",
        "dash",
        "debianutils",
        "diffutils",
        "dpkg",
        "findutils",
        "grep",
        "gzip",
        "hostname",
        "init-system-helpers",
        "libc-bin",
        "login",
        "ncurses-bin",
        "perl-base",
        "sed",
        "sysvinit-utils",
        "tar",
        "util-linux",
        "mawk",
        "apt",
        "libc6",
    ] {
        assert!(names.contains(&essential), "{essential} missing from the image closure");
    }
    for requested in &lock.image.include {
        assert!(names.contains(&requested.as_str()), "requested {requested} missing");
    }
    assert!(names.iter().any(|n| n.starts_with("linux-image-6.1")), "the kernel the metapackage depends on");
    assert!(!names.contains(&"network-manager") && !names.contains(&"ifupdown"), "no network management");
    let toolchain: Vec<&str> = lock.toolchain.packages.iter().map(|p| p.name.as_str()).collect();
    for tool in
        ["xorriso", "squashfs-tools", "grub-pc-bin", "grub-efi-amd64-bin", "mtools", "libisoburn1", "libc6"]
    {
        assert!(toolchain.contains(&tool), "{tool} missing from the toolchain closure");
    }
    // A clock read would put today's date in the file.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let today = ceremony_os_definition::Timestamp::from_unix(now).to_string()[..10].to_string();
    assert!(!text.contains(&today), "the lock contains today's date {today}");

    // Security updates come in: the kernel and openssl are from bookworm-security.
    let security: Vec<&str> = lock
        .image
        .packages
        .iter()
        .filter(|p| p.archive == "bookworm-security")
        .map(|p| p.name.as_str())
        .collect();
    assert!(security.iter().any(|n| n.starts_with("linux-image-6.1")), "{security:?}");
    assert_eq!(lock.archives.len(), 3);

    // `lock --check` on the lock just made: its trust chain holds and it is current.
    let out = support::ceremony_os(&store)
        .args(["lock", "--check", "--lockfile"])
        .arg(dir.path().join("a.lock"))
        .arg(&definition)
        .assert()
        .success();
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    assert!(stderr.contains("trust chain holds: 3 archives") && stderr.contains("is up to date"), "{stderr}");
}

/// The committed lock's trust chain holds against the archive files it names (fetched by their
/// digests). Whether the archive has moved on since (bookworm-security changes every few days) is
/// what `lock --check` without `--offline` reports; it is printed here, not asserted.
///
/// Debian re-signs bookworm-updates daily, and only snapshot.debian.org keeps older states: where
/// it cannot be reached (as on the CI machine), the committed lock's InRelease files can no longer
/// be fetched a day after it was made, and the archives are re-vouched by today's signed states.
/// Once one of its packages is gone too, the check must fail for exactly that reason, naming the
/// package; the image tests build from a fresh lock instead (`support::fetchable_image_lock`).
#[test]
fn the_committed_lock_holds_its_trust_chain() {
    let dir = tempfile::tempdir().unwrap();
    let out = support::ceremony_os(&dir.path().join("store"))
        .args(["lock", "--check"])
        .arg(repo_file("image/ceremony.toml"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    eprintln!("lock --check on the committed lock:\n{stderr}");
    if stderr.contains("trust chain holds") {
        return;
    }
    assert!(stderr.contains("cannot be had: its locked state"), "{stderr}");
    assert!(stderr.contains("replaced by") || stderr.contains("no longer listed"), "{stderr}");
    let snapshot_unreachable = stderr
        .lines()
        .filter(|l| l.trim_start().starts_with("http://snapshot.debian.org/"))
        .all(|l| l.contains("cannot reach the host") || l.contains("skipped: unreachable"));
    assert!(
        snapshot_unreachable,
        "snapshot.debian.org answered, yet the locked state was not found:\n{stderr}"
    );
    eprintln!("a package of the committed lock is gone from the archive: re-lock it (`ceremony-os lock`)");
}

#[test]
fn lock_with_an_unreachable_archive_names_every_mirror() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(repo_file("image/ceremony.toml"))
        .unwrap()
        .replace("\"http://deb.debian.org/debian/\"", "\"http://127.0.0.1:9/debian/\"");
    let definition = dir.path().join("ceremony.toml");
    std::fs::write(&definition, text).unwrap();
    std::fs::create_dir_all(dir.path().join("keyring")).unwrap();
    std::fs::copy(
        repo_file("image/keyring/debian-bookworm-archive.pgp"),
        dir.path().join("keyring/debian-bookworm-archive.pgp"),
    )
    .unwrap();
    let out = support::ceremony_os(&dir.path().join("store")).arg("lock").arg(&definition).assert().failure();
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    assert!(stderr.contains("no mirror set served verified indexes for every archive"), "{stderr}");
    assert!(stderr.contains("snapshot.debian.org/archive/debian/20260712T000000Z/"), "{stderr}");
    assert!(stderr.contains("127.0.0.1:9/debian/"), "{stderr}");
    assert!(!dir.path().join("ceremony.lock").exists(), "no lock written on failure");
}

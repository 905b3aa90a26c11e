//! The fuzz corpora as ordinary tests: every case replayed, a seeded sweep of mutations of them
//! within a time bound, the decompression bombs read under a 1 GiB address space, and the
//! generated cases still the bytes the project's writers make.

use ceremony_os_fuzz::{TARGETS, corpus, is_bomb, keep_failure, mutate, run_one, seeds};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

fn failures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("fuzz-failures")
}

#[test]
fn every_corpus_case_is_read_without_a_panic() {
    let (mut failed, mut seen) = (Vec::new(), Vec::new());
    for target in TARGETS {
        let cases = corpus(target.name).unwrap();
        assert!(cases.len() >= 2, "{}: a corpus of at least two cases", target.name);
        for (name, bytes) in cases.iter().filter(|(name, _)| !is_bomb(name)) {
            match run_one(target, bytes) {
                Err(panic) => failed.push(format!("{}/{name}: {panic}", target.name)),
                Ok(outcome) => seen.push(format!("{}/{name}: {}", target.name, outcome.is_ok())),
            }
        }
    }
    assert!(failed.is_empty(), "cases that panicked:\n{}", failed.join("\n"));
    // The seeds made by the reference tools read as what they are; a reader that refused them
    // all would let every mutation stop at its first check.
    for readable in [
        "cpio/plain.cpio",
        "initrd/three-segments.img",
        "squashfs/xattrs-gzip.sqfs",
        "iso/small.iso",
        "deb/demo-xz.deb",
        "index/packages.xz",
        "inrelease/bookworm-updates.InRelease",
        "transcript/three-records.jsonl",
        "dsse/passed-alice-laptop.json",
    ] {
        assert!(seen.contains(&format!("{readable}: true")), "{readable} reads: {seen:?}");
    }
}

/// The same mutations on every run (the seed is fixed); the time bound only decides how many.
#[test]
fn seeded_mutations_of_every_corpus_are_read_without_a_panic() {
    let budget = Duration::from_millis(1500);
    let mut failed = Vec::new();
    let mut counts = Vec::new();
    for (i, target) in TARGETS.iter().enumerate() {
        let cases: Vec<_> = corpus(target.name).unwrap().into_iter().filter(|(n, _)| !is_bomb(n)).collect();
        let mut rng = mutate::Rng::new(i as u64 + 1);
        let (start, mut runs) = (Instant::now(), 0);
        while start.elapsed() < budget || runs < 20 {
            let (_, seed) = &cases[rng.below(cases.len())];
            let (_, other) = &cases[rng.below(cases.len())];
            let input = mutate::mutate(seed, other, &mut rng);
            runs += 1;
            if let Err(panic) = run_one(target, &input) {
                let kept = keep_failure(&failures_dir(), target.name, &input).unwrap();
                failed.push(format!(
                    "{} run {runs}: {panic} (input kept in {})",
                    target.name,
                    kept.display()
                ));
                break;
            }
        }
        counts.push(format!("{} {runs}", target.name));
    }
    assert!(failed.is_empty(), "mutations that panicked:\n{}", failed.join("\n"));
    eprintln!("mutations read: {}", counts.join(", "));
}

/// A reader that held a decompressed stream in memory would need more than the limit allows:
/// each bomb is read whole under a 1 GiB address space, to its end (the zeros read as padding;
/// the 1 GiB file hashed, then the missing trailer named). The deb's data.tar (held in memory by
/// design, after its SHA-256 was checked against the lock) shows that the limit bites.
#[test]
fn decompression_bombs_are_streamed_under_one_gib() {
    let replay = |target: &str, case: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_ceremony-os-fuzz"))
            .args(["replay", target])
            .arg(ceremony_os_fuzz::corpus_dir(target).join(case))
            .args(["--memory-limit-mib", "1024"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{case}: {out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let said = replay("initrd", "zstd-zeros-bomb.img");
    assert!(said.contains(": read in "), "{said}");
    let said = replay("initrd", "cpio-body-bomb.img");
    assert!(said.contains("byte 1073676404: the archive ends inside an entry"), "{said}");
    let said = replay("deb", "data-tar-bomb.deb");
    assert!(said.contains("out of memory"), "1 GiB held in memory under a 1 GiB limit: {said}");
}

#[test]
fn the_generated_cases_are_what_the_writers_make() {
    for (target, name, bytes) in seeds::generated() {
        let path = ceremony_os_fuzz::corpus_dir(target).join(name);
        let committed = std::fs::read(&path).unwrap_or_default();
        assert!(committed == bytes, "{} differs from what `ceremony-os-fuzz seeds` writes", path.display());
    }
}

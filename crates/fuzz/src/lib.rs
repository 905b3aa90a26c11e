//! Fuzz targets: one for every reader of bytes ceremony-os takes from outside (an ISO to compare,
//! the squashfs and initrd inside it, a .deb, Debian's indexes and signed Release, a ceremony
//! transcript, a witness's DSSE envelope, a trust file). A target hands the bytes to the reader
//! exactly as the commands do; the reader may refuse them (that is the point) but must never
//! panic, hang, or hold more memory than its limits allow.
//!
//! Each target has a corpus under `corpus/<target>/` (the crafted cases of past reviews among
//! them); `tests/corpus.rs` replays every case and a bounded, seeded sweep of mutations of them on
//! every test run; `ceremony-os-fuzz run` mutates for as long as asked, and `libfuzzer/` holds the
//! same targets for coverage-guided fuzzing with cargo-fuzz (docs/fuzzing.md).

use std::path::{Path, PathBuf};

pub mod mutate;
pub mod seeds;

/// A fuzz target: a name (its corpus directory) and the function that reads one input, saying
/// what it read or why the reader refused it.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    pub name: &'static str,
    /// What it reads, for `ceremony-os-fuzz list`.
    pub reads: &'static str,
    pub run: fn(&[u8]) -> Outcome,
}

/// What a reader made of an input: a summary, or its error.
pub type Outcome = Result<String, String>;

fn said<T: std::fmt::Debug, E: std::fmt::Display>(result: Result<T, E>) -> Outcome {
    result.map(|value| format!("{value:?}")).map_err(|e| e.to_string())
}

pub const TARGETS: &[Target] = &[
    Target { name: "iso", reads: "an ISO compared with the corpus's small ISO (every layer)", run: iso },
    Target { name: "squashfs", reads: "a squashfs image: tree, extended attributes", run: squashfs },
    Target { name: "cpio", reads: "one uncompressed newc cpio archive", run: cpio },
    Target {
        name: "initrd",
        reads: "an initrd: segments, decompression, the kernel's unpacking",
        run: initrd,
    },
    Target { name: "deb", reads: "a .deb: ar container, control.tar, data.tar", run: deb },
    Target { name: "deb822", reads: "deb822 paragraphs (Release, Packages)", run: deb822 },
    Target { name: "index", reads: "a Packages index, plain or xz", run: index },
    Target { name: "inrelease", reads: "a clearsigned InRelease against Debian's keyring", run: inrelease },
    Target {
        name: "transcript",
        reads: "a ceremony transcript (hash-chained JSON lines) and a head",
        run: transcript,
    },
    Target { name: "dsse", reads: "a witness's DSSE envelope, counted against a trust file", run: dsse },
    Target { name: "allowed-signers", reads: "an allowed_signers trust file", run: allowed_signers },
];

pub fn target(name: &str) -> Option<&'static Target> {
    TARGETS.iter().find(|t| t.name == name)
}

/// The corpus of `target` in this source tree.
pub fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus").join(target)
}

/// The limits the image readers run with here: the defaults but for the totals, so that one
/// input cannot take minutes (a 1 GiB bomb in the corpus is still decompressed and streamed).
fn limits() -> ceremony_os_verify::limits::Limits {
    ceremony_os_verify::limits::Limits {
        max_file_bytes: 2 << 30,
        max_total_bytes: 4 << 30,
        ..Default::default()
    }
}

/// Readers that take a path get the input in a file of their own thread.
fn scratch_file(bytes: &[u8], name: &str) -> PathBuf {
    static DIR: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    let dir = DIR.get_or_init(|| tempfile::tempdir().expect("a temporary directory"));
    let path = dir.path().join(format!("{:?}-{name}", std::thread::current().id()).replace(['(', ')'], ""));
    std::fs::write(&path, bytes).expect("the scratch file is written");
    path
}

fn iso(bytes: &[u8]) -> Outcome {
    let reference = scratch_file(include_bytes!("../corpus/iso/small.iso"), "reference.iso");
    let input = scratch_file(bytes, "input.iso");
    let report = ceremony_os_verify::compare::compare(&reference, &input, &limits(), &mut |_| {})
        .map_err(|e| e.to_string())?;
    Ok(report.render())
}

fn squashfs(bytes: &[u8]) -> Outcome {
    said(ceremony_os_verify::readers::squashfs(&scratch_file(bytes, "input.sqfs"), limits()))
}

fn cpio(bytes: &[u8]) -> Outcome {
    said(ceremony_os_verify::readers::cpio(bytes, limits()))
}

fn initrd(bytes: &[u8]) -> Outcome {
    said(ceremony_os_verify::readers::initrd(bytes, limits()))
}

fn deb(bytes: &[u8]) -> Outcome {
    let path = scratch_file(bytes, "input.deb");
    let control = ceremony_os_debian::deb::control_text(&path);
    let data = ceremony_os_debian::deb::data_tar(&path).map(|_| "data.tar read");
    Ok(format!("control: {:?}; data: {}", said(control), said(data).unwrap_or_else(|e| e)))
}

fn text(bytes: &[u8]) -> Result<&str, String> {
    std::str::from_utf8(bytes).map_err(|e| format!("not UTF-8: {e}"))
}

fn deb822(bytes: &[u8]) -> Outcome {
    said(ceremony_os_debian::deb822::parse(text(bytes)?).map(|p| p.len()))
}

fn index(bytes: &[u8]) -> Outcome {
    said(ceremony_os_debian::trust::parse_index(bytes, "Packages").map(|p| p.len()))
}

/// Debian's archive keyring, as the image definition pins it.
pub const DEBIAN_KEYRING: &[u8] = include_bytes!("../../../image/keyring/debian-bookworm-archive.pgp");

fn inrelease(bytes: &[u8]) -> Outcome {
    said(
        ceremony_os_debian::trust::verified_release(bytes, DEBIAN_KEYRING, "bookworm-updates")
            .map(|r| r.date),
    )
}

fn transcript(bytes: &[u8]) -> Outcome {
    let text = text(bytes)?;
    let chain =
        said(ceremony_tools::transcript::verify_text(text).map(|(records, head)| (records.len(), head)));
    let head = said(ceremony_tools::transcript::parse_head(text.lines().next().unwrap_or("")));
    Ok(format!("chain: {chain:?}; first line as a head: {head:?}"))
}

fn dsse(bytes: &[u8]) -> Outcome {
    let envelope = said(ceremony_os_attest::dsse::Envelope::from_json(bytes).map(|e| e.payload_type));
    let witnesses = ceremony_os_attest::trust::parse(&seeds::allowed_signers(), "allowed_signers")
        .expect("the seed trust file parses");
    let requirement =
        ceremony_os_attest::check::Requirement::new(seeds::ISO_SHA256, 2, None, None, &witnesses)
            .expect("the seed requirement holds");
    let report =
        ceremony_os_attest::check::check(&[("input.json".into(), bytes.to_vec())], &witnesses, &requirement);
    Ok(format!("envelope: {envelope:?}; count: {report:?}"))
}

fn allowed_signers(bytes: &[u8]) -> Outcome {
    said(ceremony_os_attest::trust::parse(text(bytes)?, "allowed_signers").map(|w| w.len()))
}

/// What one input gave: the reader's outcome, or (the failure a fuzzer looks for) the panic's
/// message.
pub fn run_one(target: &Target, bytes: &[u8]) -> Result<Outcome, String> {
    std::panic::catch_unwind(|| (target.run)(bytes)).map_err(|panic| {
        panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "a panic without a message".into())
    })
}

/// The corpus cases of `target`, by file name, sorted.
pub fn corpus(target: &str) -> std::io::Result<Vec<(String, Vec<u8>)>> {
    let mut cases = Vec::new();
    for entry in std::fs::read_dir(corpus_dir(target))? {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            cases.push((entry.file_name().to_string_lossy().into_owned(), std::fs::read(entry.path())?));
        }
    }
    cases.sort();
    Ok(cases)
}

/// A case that takes long by design (a decompression bomb): replayed, never mutated.
pub fn is_bomb(name: &str) -> bool {
    name.contains("bomb")
}

/// Where an input that made a target fail is kept: `dir/<target>-<sha256 prefix>`.
pub fn keep_failure(dir: &Path, target: &str, bytes: &[u8]) -> std::io::Result<PathBuf> {
    use sha2::Digest;
    std::fs::create_dir_all(dir)?;
    let digest = hex::encode(sha2::Sha256::digest(bytes));
    let path = dir.join(format!("{target}-{}", &digest[..16]));
    std::fs::write(&path, bytes)?;
    Ok(path)
}

/// Run target `name` on `data` as a coverage-guided fuzzer calls it: a panic is the finding.
pub fn fuzz(name: &str, data: &[u8]) {
    let target = target(name).unwrap_or_else(|| panic!("no fuzz target {name:?}"));
    let _ = (target.run)(data);
}

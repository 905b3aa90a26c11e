//! Envelopes this crate signs, checked by independent implementations: securesystemslib's DSSE
//! verifier (installed into target/pyvenv by `make setup`) and ssh-keygen's fingerprint.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use ceremony_os_attest::dsse::Envelope;
use ceremony_os_attest::keys::SigningKey;
use ceremony_os_attest::statement::{PAYLOAD_TYPE, Verdict, Verification};
use std::path::{Path, PathBuf};
use std::process::Command;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

fn securesystemslib(envelope: &Path, public_key: &Path) -> std::process::Output {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let python = root.join("target/pyvenv/bin/python");
    assert!(python.exists(), "{} is missing (run make setup)", python.display());
    Command::new(python)
        .arg(root.join("tests/oracles/dsse_verify.py"))
        .arg(envelope)
        .arg(public_key)
        .output()
        .unwrap()
}

#[test]
fn securesystemslib_verifies_what_a_witness_signs_and_refuses_a_changed_payload() {
    let key = SigningKey::from_bytes(&std::fs::read(fixture("witness")).unwrap(), "witness").unwrap();
    let statement = Verification {
        iso_name: "ceremony-os-0.1.0-amd64.iso".into(),
        iso_sha256: "ab".repeat(32),
        verifier: "alice@example.org".into(),
        time_verified: "2026-11-22T10:00:00Z".into(),
        commit: Some("12".repeat(20)),
        lock_sha256: Some("cd".repeat(32)),
        verdict: Verdict::Passed,
    }
    .statement();
    let envelope = key.sign_envelope(PAYLOAD_TYPE, statement.clone());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("alice.json");
    std::fs::write(&path, envelope.to_json()).unwrap();
    let out = securesystemslib(&path, &fixture("witness.pub"));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.stdout, statement, "securesystemslib read another payload");

    let mut changed = Envelope::from_json(envelope.to_json().as_bytes()).unwrap();
    changed.payload = String::from_utf8(statement).unwrap().replace("PASSED", "FAILED").into_bytes();
    std::fs::write(&path, changed.to_json()).unwrap();
    let out = securesystemslib(&path, &fixture("witness.pub"));
    assert!(!out.status.success(), "securesystemslib accepted a changed payload");

    // The key id is the fingerprint ssh-keygen prints.
    let listed = Command::new("ssh-keygen").arg("-l").arg("-f").arg(fixture("witness.pub")).output().unwrap();
    let listed = String::from_utf8(listed.stdout).unwrap();
    assert_eq!(listed.split_whitespace().nth(1), Some(key.public().keyid().as_str()), "{listed}");
}

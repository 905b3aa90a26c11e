//! The corpus cases made with this project's own writers (signed envelopes, a trust file, a
//! transcript), from fixed keys: `ceremony-os-fuzz seeds` writes them, and a test checks the
//! committed corpus still holds exactly these bytes. The other cases were made once with the
//! reference tools (corpus/README.md says how).

use ceremony_os_attest::keys::SigningKey;
use ceremony_os_attest::statement::{PAYLOAD_TYPE, Verdict, Verification};

/// The ISO digest the seed envelopes attest and the dsse target requires.
pub const ISO_SHA256: &str = "5f1c7f4e6d0b9b8a3c2e1d0f9e8d7c6b5a4938271605f4e3d2c1b0a998877665";

/// An ed25519 key with a fixed seed.
fn key(seed: u8) -> SigningKey {
    SigningKey::from_seed(&[seed; 32])
}

fn signer_line(who: &str, options: &str, seed: u8) -> String {
    format!("{who} {options}{}\n", key(seed).public().to_openssh())
}

/// alice with two keys (laptop and token), and bob: the trust file the dsse target counts with.
pub fn allowed_signers() -> String {
    [
        signer_line("alice", "namespaces=\"ceremony-os\" ", 1),
        signer_line("alice", "", 2),
        signer_line("bob", "", 3),
    ]
    .concat()
}

fn envelope(seed: u8, verdict: Verdict, iso_sha256: &str) -> Vec<u8> {
    let verification = Verification {
        iso_name: "ceremony-os.iso".into(),
        iso_sha256: iso_sha256.into(),
        verifier: format!("witness {seed}"),
        time_verified: "2026-12-07T00:00:00Z".into(),
        commit: Some("c".repeat(40)),
        lock_sha256: Some("d".repeat(64)),
        verdict,
    };
    key(seed).sign_envelope(PAYLOAD_TYPE, verification.statement()).to_json().into_bytes()
}

/// A transcript of three chained records as the ceremony tool writes them.
fn transcript() -> Vec<u8> {
    let mut text = String::new();
    let mut prev = ceremony_tools::transcript::GENESIS.to_string();
    for (seq, command) in [(1, "key generate"), (2, "root"), (3, "crl")] {
        let line = format!(
            "{{\"seq\":{seq},\"prev\":\"{prev}\",\"time\":\"2026-12-07T10:0{seq}:00Z\",\"command\":\"{command}\",\"inputs\":{{}},\"outputs\":{{\"out.pem\":\"{}\"}},\"outcome\":\"ok\"}}",
            "e".repeat(64)
        );
        prev = ceremony_tools::transcript::line_hash(&line);
        text.push_str(&line);
        text.push('\n');
    }
    text.into_bytes()
}

/// `(target, file name, bytes)` of every generated case.
pub fn generated() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    let other_digest = "0".repeat(64);
    let forged = String::from_utf8(envelope(3, Verdict::Passed, ISO_SHA256))
        .expect("JSON")
        .replacen("\"keyid\": \"", "\"keyid\": \"\\u001b[2K\\rWITNESSED: 2 of 2\\n", 1)
        .into_bytes();
    let transcript = transcript();
    let edited =
        String::from_utf8(transcript.clone()).expect("JSON lines").replacen("\"root\"", "\"r00t\"", 1);
    vec![
        ("allowed-signers", "two-keys-one-person", allowed_signers().into_bytes()),
        ("allowed-signers", "git-namespace", signer_line("carol", "namespaces=\"git\" ", 4).into_bytes()),
        ("dsse", "passed-alice-laptop.json", envelope(1, Verdict::Passed, ISO_SHA256)),
        ("dsse", "passed-alice-token.json", envelope(2, Verdict::Passed, ISO_SHA256)),
        ("dsse", "failed-bob.json", envelope(3, Verdict::Failed, ISO_SHA256)),
        ("dsse", "git-namespace-carol.json", envelope(4, Verdict::Passed, ISO_SHA256)),
        ("dsse", "other-digest.json", envelope(3, Verdict::Passed, &other_digest)),
        ("dsse", "forged-keyid.json", forged),
        ("transcript", "three-records.jsonl", transcript),
        ("transcript", "edited-record.jsonl", edited.into_bytes()),
    ]
}

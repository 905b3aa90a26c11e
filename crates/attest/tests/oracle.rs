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

/// OpenSSH's ssh-agent on a socket in a temporary directory, killed when dropped.
struct SshAgent {
    child: std::process::Child,
    socket: PathBuf,
    _dir: tempfile::TempDir,
}

impl SshAgent {
    fn start() -> SshAgent {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("agent.sock");
        let child = Command::new("ssh-agent")
            .arg("-D")
            .arg("-a")
            .arg(&socket)
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("ssh-agent (openssh-client) is installed");
        for _ in 0..100 {
            if socket.exists() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        SshAgent { child, socket, _dir: dir }
    }

    fn add(&self, key: &Path) {
        // ssh-add refuses a private key others can read.
        let copy = self._dir.path().join("key");
        std::fs::copy(key, &copy).unwrap();
        std::fs::set_permissions(&copy, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        let out = Command::new("ssh-add").arg(&copy).env("SSH_AUTH_SOCK", &self.socket).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
}

impl Drop for SshAgent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn an_ssh_agent_signs_for_the_witness_and_securesystemslib_verifies_it() {
    use ceremony_os_attest::agent::Agent;
    use ceremony_os_attest::keys::{PublicKey, Signer};
    let public =
        PublicKey::from_openssh(&std::fs::read_to_string(fixture("witness.pub")).unwrap(), "witness.pub")
            .unwrap();
    let agent = SshAgent::start();
    // An agent that does not hold the key is refused before anything is signed.
    let err = Agent::new(&agent.socket, public.clone()).unwrap_err().to_string();
    assert!(err.contains("does not hold") && err.contains(&public.keyid()), "{err}");

    agent.add(&fixture("witness"));
    let signer = Signer::Agent(Agent::new(&agent.socket, public.clone()).unwrap());
    let statement = Verification {
        iso_name: "ceremony-os-0.1.0-amd64.iso".into(),
        iso_sha256: "ef".repeat(32),
        verifier: "carol@example.org".into(),
        time_verified: "2026-12-04T10:00:00Z".into(),
        commit: None,
        lock_sha256: Some("cd".repeat(32)),
        verdict: Verdict::Passed,
    }
    .statement();
    let envelope = signer.sign_envelope(PAYLOAD_TYPE, statement.clone()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("carol.json");
    std::fs::write(&path, envelope.to_json()).unwrap();
    let out = securesystemslib(&path, &fixture("witness.pub"));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.stdout, statement);
    // ed25519 is deterministic: the agent's envelope is the one the key file gives.
    let from_file = SigningKey::from_bytes(&std::fs::read(fixture("witness")).unwrap(), "witness").unwrap();
    assert_eq!(envelope.to_json(), from_file.sign_envelope(PAYLOAD_TYPE, statement.clone()).to_json());

    // An agent that went away is an error, not a silent unsigned file.
    let socket = agent.socket.clone();
    drop(agent);
    let err = signer.sign_envelope(PAYLOAD_TYPE, statement).unwrap_err().to_string();
    assert!(err.contains("cannot talk to the agent") && err.contains(&socket.display().to_string()), "{err}");
}

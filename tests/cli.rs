//! The command line's contract: help, and clear errors for bad input files.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod support;

use predicates::str::contains;

#[test]
fn help_lists_the_commands() {
    let dir = tempfile::tempdir().unwrap();
    support::ceremony_os(dir.path())
        .arg("--help")
        .assert()
        .success()
        .stdout(contains("lock"))
        .stdout(contains("fetch"))
        .stdout(contains("vendor"))
        .stdout(contains("Exit status"));
}

#[test]
fn malformed_definition_is_reported_with_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let definition = dir.path().join("bad.toml");
    let good =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../image/ceremony.toml")).unwrap();
    std::fs::write(
        &definition,
        good.replacen("suite = \"bookworm\"", "suite = \"bookworm\"\ncodename = 1", 1),
    )
    .unwrap();
    let out = support::ceremony_os(&dir.path().join("store")).arg("lock").arg(&definition).assert().code(1);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    let line = good.lines().position(|l| l.starts_with("suite =")).unwrap() + 2;
    assert!(
        stderr.starts_with(&format!("error: {}:{line}:1: unknown field `codename`", definition.display())),
        "{stderr}"
    );
}

#[test]
fn missing_lockfile_says_what_to_run() {
    let dir = tempfile::tempdir().unwrap();
    let definition = dir.path().join("ceremony.toml");
    std::fs::copy(concat!(env!("CARGO_MANIFEST_DIR"), "/../../image/ceremony.toml"), &definition).unwrap();
    support::ceremony_os(&dir.path().join("store"))
        .arg("fetch")
        .arg(&definition)
        .assert()
        .code(1)
        .stderr(contains("ceremony.lock does not exist: run `ceremony-os lock"));
}

#[test]
fn nix_expressions_parse() {
    for file in ["nix/default.nix", "nix/flake.nix"] {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../..").to_string() + "/" + file;
        let out = std::process::Command::new("nix-instantiate").arg("--parse").arg(&path).output().unwrap();
        assert!(out.status.success(), "{file}: {}", String::from_utf8_lossy(&out.stderr));
    }
}

#[test]
fn each_cause_of_an_error_is_said_once() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-definition.toml");
    let out = support::ceremony_os(&dir.path().join("store")).arg("lock").arg(&missing).assert().code(1);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    assert_eq!(stderr.matches("No such file or directory").count(), 1, "{stderr}");
    assert!(stderr.contains(missing.to_str().unwrap()), "{stderr}");
}

#[test]
fn verify_signing_through_an_agent_fails_before_the_rebuild_without_the_agent_or_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("witness");
    let made = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "witness", "-f"])
        .arg(&key)
        .status()
        .unwrap();
    assert!(made.success());
    let public = dir.path().join("witness.pub");
    let definition = concat!(env!("CARGO_MANIFEST_DIR"), "/../../image/ceremony.toml");
    let attestation = dir.path().join("attestation.json");
    let verify = |socket: Option<&std::path::Path>| {
        let mut cmd = support::ceremony_os(&dir.path().join("store"));
        cmd.arg("verify").arg(definition).args(["--expect", &"ab".repeat(32)]);
        cmd.arg("--attest").arg(&attestation).arg("--signing-key").arg(&public);
        match socket {
            Some(socket) => cmd.env("SSH_AUTH_SOCK", socket),
            None => cmd.env_remove("SSH_AUTH_SOCK"),
        };
        let out = cmd.output().unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stderr).to_string())
    };
    let (code, stderr) = verify(None);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("is a public key") && stderr.contains("SSH_AUTH_SOCK is not set"), "{stderr}");

    // A running agent that does not hold the key.
    let agent = support::SshAgent::start();
    let (code, stderr) = verify(Some(&agent.socket));
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("the agent does not hold SHA256:"), "{stderr}");
    assert!(!stderr.contains("rebuilding") && !attestation.exists(), "{stderr}");
}

#[test]
fn boot_opens_relative_paths_and_commas_as_named_and_names_a_missing_one() {
    let dir = tempfile::tempdir().unwrap();
    // Not bootable: SeaBIOS finds nothing and waits. Enough to see whether QEMU opened the file.
    std::fs::create_dir(dir.path().join("out")).unwrap();
    // The comma: QEMU would read `file=.../out/blank,snapshot=off.iso` as two options.
    std::fs::write(dir.path().join("out/blank,snapshot=off.iso"), vec![0u8; 2 << 20]).unwrap();
    let out = support::ceremony_os(&dir.path().join("store"))
        .current_dir(dir.path())
        .args(["boot", "--headless", "--accel", "tcg", "--usb", "out/blank,snapshot=off.iso"])
        .timeout(std::time::Duration::from_secs(5))
        .write_stdin("")
        .assert()
        .failure();
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    // Still running when the 5 s were up (killed, no exit code): QEMU started and kept booting.
    assert_eq!(out.get_output().status.code(), None, "{stderr}");
    assert!(stderr.contains("using TCG (--accel tcg)"), "{stderr}");
    assert!(!stderr.contains("cannot start"), "{stderr}");
    assert!(!stderr.contains("Could not open"), "QEMU did not find the relative path: {stderr}");
    assert!(!stderr.contains("qemu-system-x86_64:"), "QEMU refused the file name: {stderr}");
    assert!(!stderr.contains("QEMU exited"), "QEMU stopped instead of booting: {stderr}");

    let missing = support::ceremony_os(&dir.path().join("store"))
        .current_dir(dir.path())
        .args(["boot", "--accel", "tcg", "out/missing.iso"])
        .assert()
        .code(1);
    let stderr = String::from_utf8_lossy(&missing.get_output().stderr).to_string();
    assert!(stderr.contains("cannot use out/missing.iso"), "{stderr}");

    support::ceremony_os(&dir.path().join("store"))
        .args(["boot", "--accel", "hvf", "x.iso"])
        .assert()
        .code(2)
        .stderr(contains("possible values: auto, kvm, tcg"));
}

/// A witness key as a PKCS#8 PEM file (`--signing-key` reads it) and its OpenSSH public line.
fn witness_key(dir: &std::path::Path, name: &str, seed: u8) -> (std::path::PathBuf, String) {
    let key = ceremony_os_attest::keys::SigningKey::from_seed(&[seed; 32]);
    let path = dir.join(format!("{name}.pem"));
    std::fs::write(&path, key.to_pkcs8_pem()).unwrap();
    (path, key.public().to_openssh())
}

/// The witness policy as versioned files: a change of who witnesses counts only with the M of
/// the policy it replaces (here a takeover: a new policy where mallory alone suffices).
#[test]
fn a_witness_policy_changes_only_with_the_m_of_the_one_it_replaces() {
    use sha2::Digest;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let keys: Vec<_> = [("alice", 1), ("bob", 2), ("carol", 3), ("mallory", 9)]
        .into_iter()
        .map(|(name, seed)| (name, witness_key(d, name, seed)))
        .collect();
    let line = |name: &str| {
        let (_, (_, public)) = keys.iter().find(|(n, _)| *n == name).unwrap();
        format!("{name}@example.org {public}\n")
    };
    let v1 = format!(
        "version = 1\nrequired = 2\nallowed_signers = \"\"\"\n{}{}{}\"\"\"\n",
        line("alice"),
        line("bob"),
        line("carol")
    );
    let root = hex::encode(sha2::Sha256::digest(v1.as_bytes()));
    let v2 = format!(
        "version = 2\nreplaces = \"{root}\"\nrequired = 1\nallowed_signers = \"\"\"\n{}\"\"\"\n",
        line("mallory")
    );
    std::fs::write(d.join("v1.toml"), &v1).unwrap();
    std::fs::write(d.join("v2.toml"), &v2).unwrap();
    // Mallory attests an ISO.
    let digest = "ab".repeat(32);
    let mallory_key = std::fs::read(&keys[3].1.0).unwrap();
    let statement = ceremony_os_attest::statement::Verification {
        iso_name: "ceremony-os.iso".into(),
        iso_sha256: digest.clone(),
        verifier: "mallory".into(),
        // An escape that would hide the lines after it: shown escaped.
        time_verified: "2026-12-07T00:00:00Z\u{1b}[8m".into(),
        commit: None,
        lock_sha256: None,
        verdict: ceremony_os_attest::statement::Verdict::Passed,
    };
    let envelope = ceremony_os_attest::keys::SigningKey::from_bytes(&mallory_key, "mallory")
        .unwrap()
        .sign_envelope(ceremony_os_attest::statement::PAYLOAD_TYPE, statement.statement());
    std::fs::write(d.join("mallory.json"), envelope.to_json()).unwrap();

    let approve = |who: &str| {
        let (_, (key, _)) = keys.iter().find(|(n, _)| *n == who).unwrap();
        support::ceremony_os(d)
            .current_dir(d)
            .args(["attestations", "approve-policy", "v2.toml", "--out", &format!("{who}-approves-v2.json")])
            .arg("--signing-key")
            .arg(key)
            .assert()
            .success();
    };
    let head = hex::encode(sha2::Sha256::digest(v2.as_bytes()));
    let check = |approvals: &[&str]| {
        let mut cmd = support::ceremony_os(d);
        cmd.current_dir(d).args(["attestations", "check", "--digest", &digest]);
        cmd.args([
            "--policy",
            "v1.toml",
            "--policy",
            "v2.toml",
            "--policy-root",
            &root,
            "--policy-head",
            &head,
        ]);
        for a in approvals {
            cmd.args(["--policy-approval", a]);
        }
        let out = cmd.arg("mallory.json").output().unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    // Nothing approved, then one of the two required: refused, whoever attests.
    let (code, stderr) = check(&[]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("approved by 0 of the 2 witnesses of version 1 it needs"), "{stderr}");
    approve("alice");
    approve("mallory");
    let (code, stderr) = check(&["alice-approves-v2.json", "mallory-approves-v2.json"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("approved by 1 of the 2 witnesses of version 1 it needs (alice@example.org)"),
        "{stderr}"
    );
    // With bob, version 2 is in force and mallory alone witnesses.
    approve("bob");
    let (code, stderr) = check(&["alice-approves-v2.json", "bob-approves-v2.json"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("witness policy in force: v2.toml (version 2")
            && stderr.contains("WITNESSED: 1 of 1"),
        "{stderr}"
    );
    assert!(
        stderr.contains("verified 2026-12-07T00:00:00Z\\x1b[8m") && !stderr.contains('\u{1b}'),
        "{stderr}"
    );
    // A root other than the one written down, or a chain cut short of the head, is refused.
    let refused = |policies: &[&str], expected: &str| {
        let mut cmd = support::ceremony_os(d);
        cmd.current_dir(d).args(["attestations", "check", "--digest", &digest]);
        for p in policies {
            cmd.args(["--policy", p]);
        }
        let out = cmd
            .args([
                "--policy-root",
                &root,
                "--policy-head",
                &head,
                "--policy-approval",
                "alice-approves-v2.json",
            ])
            .args(["--policy-approval", "bob-approves-v2.json", "mallory.json"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{out:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains(expected), "{out:?}");
    };
    refused(&["v2.toml"], "not the root policy's");
    refused(&["v1.toml"], "not at the policy written down as in force");
}

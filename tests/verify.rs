//! `ceremony-os verify`: a fresh rebuild with no cached stage, compared with what was published.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod support;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

struct Published {
    _dir: tempfile::TempDir,
    definition: PathBuf,
    out: PathBuf,
}

/// The default image built once (through the shared store) and "published" in `out`.
fn published() -> &'static Published {
    static PUBLISHED: OnceLock<Published> = OnceLock::new();
    PUBLISHED.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let definition = support::image_copy(dir.path(), "image");
        let out = dir.path().join("published");
        support::build_image(&support::shared_image_store(), &definition, &out, &[]);
        Published { definition, out, _dir: dir }
    })
}

/// Verify runs one at a time: each is a full rebuild.
static SERIAL: Mutex<()> = Mutex::new(());

fn verify(
    definition: &Path,
    expect: &Path,
    extra: &[&std::ffi::OsStr],
    agent: Option<&Path>,
) -> (i32, Value, String) {
    let mut cmd = support::ceremony_os(&support::shared_image_store());
    match agent {
        Some(socket) => cmd.env("SSH_AUTH_SOCK", socket),
        None => cmd.env_remove("SSH_AUTH_SOCK"),
    };
    let out = cmd
        .arg("verify")
        .arg(definition)
        .arg("--expect")
        .arg(expect)
        .arg("--json")
        .args(extra)
        .timeout(std::time::Duration::from_secs(1800))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let verdict =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("no JSON verdict:\n{stderr}"));
    (out.status.code().unwrap(), verdict, stderr)
}

#[test]
fn verify_matches_the_published_manifest() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let p = published();
    let witnesses = Witnesses::new();
    // Alice runs the witness command of docs/witness.md as written, in a clone laid out as it says: the
    // definition under image/, the published out/ in release/, her key in ~/.ssh.
    let clone = witnesses.dir.path().join("alice-clone");
    std::fs::create_dir_all(clone.join("release")).unwrap();
    support::image_copy(&clone, "image");
    let rootfs_manifest = format!("{}.rootfs.manifest", support::default_stem());
    for file in ["ceremony-os.manifest.json", rootfs_manifest.as_str(), "ceremony.lock"] {
        std::fs::copy(p.out.join(file), clone.join("release").join(file)).unwrap();
    }
    let head = git_repository_with_one_commit(&clone);
    let home = witnesses.dir.path().join("alice-home");
    std::fs::create_dir_all(home.join(".ssh")).unwrap();
    std::fs::copy(witnesses.key("alice"), home.join(".ssh/id_ed25519")).unwrap();
    let command = ceremony_os_test_support::example("witness-attest");
    assert!(command.contains("--attest alice.json"), "{command}");
    let out = witness_shell(&clone, &home, &command);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{command}\n{stderr}");
    assert!(
        stderr.contains("MATCH") && stderr.contains("attestation (PASSED) signed by SHA256:"),
        "{stderr}"
    );
    // She writes her envelope's Rekor v2 entry (the docs' example, less the upload): the SHA-512
    // of the envelope's PAE, signed Ed25519ph with her key.
    std::fs::copy(witnesses.key("alice").with_extension("pub"), home.join(".ssh/id_ed25519.pub")).unwrap();
    let out = witness_shell(&clone, &home, &offline_lines(&ceremony_os_test_support::example("witness-log")));
    assert!(out.status.success(), "{out:?}");
    let entry: Value =
        serde_json::from_slice(&std::fs::read(clone.join("alice.rekor.json")).unwrap()).unwrap();
    let envelope =
        ceremony_os_attest::dsse::Envelope::from_json(&std::fs::read(clone.join("alice.json")).unwrap())
            .unwrap();
    let entry = &entry["hashedRekordRequestV002"];
    assert_eq!(entry["signature"]["verifier"]["keyDetails"], "PKIX_ED25519_PH");
    use base64::Engine;
    let digest = base64::engine::general_purpose::STANDARD.decode(entry["digest"].as_str().unwrap()).unwrap();
    use sha2::Digest;
    assert_eq!(digest, sha2::Sha512::digest(envelope.signed_bytes()).to_vec());
    witnessed_burn(p, &witnesses, &clone.join("alice.json"), &head);
}

/// An example without its `curl` lines: the log is not reachable from the tests.
fn offline_lines(block: &str) -> String {
    assert!(block.contains("\ncurl "), "the block has no curl line to leave out:\n{block}");
    block.lines().filter(|line| !line.starts_with("curl ")).collect::<Vec<_>>().join("\n")
}

/// `sh -c COMMAND` in `dir` as a witness would type it: `target/release/ceremony-os` is this
/// test's binary, HOME is `home`, no agent.
fn witness_shell(dir: &Path, home: &Path, command: &str) -> std::process::Output {
    let release = dir.join("target/release");
    if !release.exists() {
        std::fs::create_dir_all(&release).unwrap();
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_ceremony-os"), release.join("ceremony-os")).unwrap();
    }
    std::process::Command::new("sh")
        .args(["-eu", "-c", command])
        .current_dir(dir)
        .env("HOME", home)
        .env("CEREMONY_OS_STORE", support::shared_image_store())
        .env("NO_COLOR", "1")
        .env_remove("SSH_AUTH_SOCK")
        .env_remove("CEREMONY_OS_LOG")
        .output()
        .unwrap()
}

/// `git init` and one empty commit in `dir`; returns its id (what `git rev-parse HEAD` says).
fn git_repository_with_one_commit(dir: &Path) -> String {
    let git = |args: &[&str]| {
        let out = std::process::Command::new("git")
            .args(["-c", "user.name=Alice", "-c", "user.email=alice@example.org"])
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "git {args:?}: {out:?}");
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    git(&["init", "-q"]);
    git(&["commit", "-q", "--allow-empty", "-m", "the published commit"]);
    git(&["rev-parse", "HEAD"])
}

#[test]
fn verify_against_a_wrong_manifest_names_the_first_differing_stage_and_paths() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let p = published();
    // A "published" manifest that disagrees from the customize stage on, with a rootfs manifest
    // in which one file differs: what a witness would get from a tampered or different build.
    let forged = tempfile::tempdir().unwrap();
    let mut manifest: Value =
        serde_json::from_slice(&std::fs::read(p.out.join("ceremony-os.manifest.json")).unwrap()).unwrap();
    manifest["image"]["sha256"] = Value::from("00".repeat(32));
    for stage in manifest["stages"].as_array_mut().unwrap() {
        if stage["name"] == "customize" {
            stage["digest"] = Value::from("11".repeat(32));
            // The publisher's customize stage had another host name among its inputs.
            stage["inputs"]["hostname"] = Value::from("publisher-host");
        }
    }
    let rootfs_name = manifest["rootfs"]["manifest"].as_str().unwrap().to_string();
    let rootfs = std::fs::read_to_string(p.out.join(&rootfs_name)).unwrap();
    let line = rootfs.lines().find(|l| l.starts_with("/etc/hostname\t")).unwrap();
    let forged_line = format!("{}\t{}", line.rsplit_once('\t').unwrap().0, "22".repeat(32));
    let forged_rootfs = rootfs.replace(line, &forged_line);
    std::fs::write(forged.path().join(&rootfs_name), &forged_rootfs).unwrap();
    manifest["rootfs"]["manifest_sha256"] = Value::from(support::sha256_hex(forged_rootfs.as_bytes()));
    let manifest_path = forged.path().join("ceremony-os.manifest.json");
    std::fs::write(&manifest_path, serde_json::to_string_pretty(&manifest).unwrap()).unwrap();

    // Bob's key is held by his ssh-agent (as a key on a token would be): verify is given only
    // his public key, and the agent signs.
    let witnesses = Witnesses::new();
    let bob = witnesses.dir.path().join("bob.json");
    let agent = support::SshAgent::start();
    agent.add(&witnesses.key("bob"));
    let mut args = witnesses.attest_args(&bob, "bob", "2026-11-22T11:00:00Z");
    let bob_public = witnesses.key("bob").with_extension("pub");
    args[3] = bob_public.as_os_str();
    let (code, verdict, stderr) = verify(&p.definition, &manifest_path, &args, Some(&agent.socket));
    drop(agent);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("attestation (FAILED) signed by SHA256:"), "{stderr}");
    // Bob signs his FAILED verdict: it never counts.
    let (checked, report) = witnesses.check(2, &"00".repeat(32), &[&bob]);
    assert_eq!(checked, 1, "{report}");
    assert!(report.contains("bob@example.org attests FAILED"), "{report}");
    assert_eq!(verdict["match"], false);
    let stages = verdict["rebuilt"]["stages"].as_array().unwrap();
    assert!(stages.iter().all(|s| s["cached"] == false), "verify reused a cached stage: {stages:?}");
    let words = verdict["rebuilt"]["words"].as_array().unwrap();
    assert_eq!(words.len(), 32, "one PGP word per digest byte");
    assert_eq!(verdict["first_differing_stage"]["stage"], "customize", "{verdict:#}");
    let inputs = &verdict["first_differing_stage"]["input_differences"];
    assert_eq!(inputs.as_array().unwrap().len(), 1, "{inputs:#}");
    assert_eq!(inputs[0]["path"], "hostname");
    assert_eq!(inputs[0]["expected"], "publisher-host");
    assert_eq!(inputs[0]["rebuilt"], "ceremony");
    let paths: Vec<&str> = verdict["rootfs_differences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["/etc/hostname"]);
    assert!(
        stderr.contains("first stage that differs: customize")
            && stderr.contains("its inputs differ:")
            && stderr.contains("hostname")
            && stderr.contains("MISMATCH"),
        "{stderr}"
    );
}

#[test]
fn verify_with_unreadable_expectation_is_an_error() {
    let p = published();
    let out = support::ceremony_os(&support::shared_image_store())
        .arg("verify")
        .arg(&p.definition)
        .args(["--expect", "not-a-digest-nor-a-file"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("neither a SHA-256"));
}

/// A clone whose lock is not the release's (re-locked, edited, another commit) is refused before
/// anything is fetched, with the advice a witness needs: the release's lock, not a new one.
#[test]
fn verify_from_another_lock_than_the_releases_stops_before_fetching() {
    let p = published();
    let dir = tempfile::tempdir().unwrap();
    let definition = support::image_copy(dir.path(), "image");
    let lock = definition.with_extension("lock");
    let text = std::fs::read_to_string(&lock).unwrap();
    std::fs::write(&lock, format!("# re-locked by someone\n{text}")).unwrap();
    let empty_store = dir.path().join("store");
    let out = support::ceremony_os(&empty_store)
        .arg("verify")
        .arg(&definition)
        .arg("--expect")
        .arg(p.out.join("ceremony-os.manifest.json"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("use the release's lock") && stderr.contains("--lockfile"), "{stderr}");
    assert!(
        !empty_store.join("sha256").exists()
            || std::fs::read_dir(empty_store.join("sha256")).unwrap().next().is_none(),
        "nothing fetched"
    );
    // What the advice points to: out/ holds the lock the release was built from.
    assert_eq!(
        std::fs::read(p.out.join("ceremony.lock")).unwrap(),
        text.as_bytes(),
        "out/ holds the lock built from"
    );
}

#[test]
fn verify_and_compare_take_relative_paths() {
    // No rebuild: an expectation that cannot be read fails before it, with the path as given.
    let p = published();
    let out = support::ceremony_os(&support::shared_image_store())
        .current_dir(&p.out)
        .arg("compare")
        .arg(format!("{}.iso", support::default_stem()))
        .arg(format!("./{}.iso", support::default_stem()))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let out = support::ceremony_os(&support::shared_image_store())
        .current_dir(&p.out)
        .arg("verify")
        .arg(&p.definition)
        .args(["--expect", "SHA256SUMS.missing"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("\"SHA256SUMS.missing\""));
}

/// Three witnesses (keys made by ssh-keygen) in an allowed_signers file, and a fourth, unknown.
struct Witnesses {
    dir: tempfile::TempDir,
}

impl Witnesses {
    fn new() -> Witnesses {
        let dir = tempfile::tempdir().unwrap();
        let mut allowed = String::new();
        for name in ["alice", "bob", "carol", "mallory"] {
            let key = dir.path().join(name);
            let out = std::process::Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
                .arg(&key)
                .output()
                .unwrap();
            assert!(out.status.success(), "{out:?}");
            if name != "mallory" {
                let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
                allowed.push_str(&format!("{name}@example.org {}\n", public.trim()));
            }
        }
        std::fs::write(dir.path().join("allowed_signers"), allowed).unwrap();
        Witnesses { dir }
    }

    fn key(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn attest_args(&self, file: &Path, name: &str, time: &str) -> Vec<&std::ffi::OsStr> {
        let leak =
            |s: String| -> &'static std::ffi::OsStr { std::ffi::OsStr::new(Box::leak(s.into_boxed_str())) };
        vec![
            leak("--attest".into()),
            leak(file.display().to_string()),
            leak("--signing-key".into()),
            leak(self.key(name).display().to_string()),
            leak("--verifier".into()),
            leak(format!("{name}@example.org")),
            leak("--verified-at".into()),
            leak(time.into()),
            leak("--commit".into()),
            leak("ab".repeat(20)),
        ]
    }

    /// A witness's attestation made with the library `verify` signs with (for the witnesses
    /// whose rebuild this test does not repeat).
    fn sign(&self, name: &str, iso_sha256: &str) -> PathBuf {
        use ceremony_os_attest::statement::{PAYLOAD_TYPE, Verdict, Verification};
        let key =
            ceremony_os_attest::keys::SigningKey::from_bytes(&std::fs::read(self.key(name)).unwrap(), name)
                .unwrap();
        let statement = Verification {
            iso_name: format!("{}.iso", support::default_stem()),
            iso_sha256: iso_sha256.into(),
            verifier: format!("{name}@example.org"),
            time_verified: "2026-11-22T12:00:00Z".into(),
            commit: Some("ab".repeat(20)),
            lock_sha256: None,
            verdict: Verdict::Passed,
        };
        let path = self.dir.path().join(format!("{name}-{}.json", &iso_sha256[..8]));
        std::fs::write(&path, key.sign_envelope(PAYLOAD_TYPE, statement.statement()).to_json()).unwrap();
        path
    }

    /// `attestations check --require M --digest D FILES`: exit code and report.
    fn check(&self, required: usize, digest: &str, files: &[&Path]) -> (i32, String) {
        let out = support::ceremony_os(&support::shared_image_store())
            .args(["attestations", "check", "--trust"])
            .arg(self.dir.path().join("allowed_signers"))
            .args(["--require", &required.to_string(), "--digest", digest])
            .args(files)
            .output()
            .unwrap();
        (out.status.code().unwrap(), String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// Alice's attestation from a real `verify`, checked by securesystemslib; then M of N with the
/// other witnesses, and `burn` refusing until enough of them attest.
fn witnessed_burn(p: &Published, witnesses: &Witnesses, alice: &Path, commit: &str) {
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(p.out.join("ceremony-os.manifest.json")).unwrap()).unwrap();
    let iso_sha256 = manifest["image"]["sha256"].as_str().unwrap().to_string();
    let oracle = std::process::Command::new(support::repo_root().join("target/pyvenv/bin/python"))
        .arg(support::repo_root().join("tests/oracles/dsse_verify.py"))
        .arg(alice)
        .arg(witnesses.key("alice").with_extension("pub"))
        .output()
        .unwrap();
    assert!(oracle.status.success(), "securesystemslib: {}", String::from_utf8_lossy(&oracle.stderr));
    let statement: Value = serde_json::from_slice(&oracle.stdout).unwrap();
    assert_eq!(statement["subject"][0]["digest"]["sha256"], iso_sha256.as_str());
    assert_eq!(statement["predicate"]["verificationResult"], "PASSED");
    assert_eq!(statement["predicate"]["timeVerified"], "2026-11-22T10:00:00Z");
    assert_eq!(statement["predicate"]["verifier"]["id"], "alice@example.org");
    let inputs = statement["predicate"]["inputAttestations"].to_string();
    assert!(inputs.contains(commit), "the commit `git rev-parse HEAD` gave is not attested: {inputs}");

    let bob = witnesses.sign("bob", &iso_sha256);
    let carol_other = witnesses.sign("carol", &"cc".repeat(32));
    let mallory = witnesses.sign("mallory", &iso_sha256);
    let forged = witnesses.dir.path().join("forged.json");
    // Carol's attestation for another ISO with its payload edited to name this one.
    let other = std::fs::read(witnesses.sign("carol", &"dd".repeat(32))).unwrap();
    let mut envelope = ceremony_os_attest::dsse::Envelope::from_json(&other).unwrap();
    envelope.payload =
        String::from_utf8(envelope.payload).unwrap().replace(&"dd".repeat(32), &iso_sha256).into_bytes();
    std::fs::write(&forged, envelope.to_json()).unwrap();
    let files = [alice, bob.as_path(), carol_other.as_path(), mallory.as_path(), forged.as_path(), alice];

    let (code, report) = witnesses.check(2, &iso_sha256, &files);
    assert_eq!(code, 0, "{report}");
    for expected in [
        "attested PASSED: alice@example.org",
        "attested PASSED: bob@example.org",
        "carol@example.org attests another ISO",
        "unknown key \"SHA256:",
        "bad signature for carol@example.org's key",
        "duplicate: alice@example.org already attested",
        "no attestation from: carol@example.org",
        "WITNESSED: 2 of 2",
    ] {
        assert!(report.contains(expected), "{expected:?} missing:\n{report}");
    }
    let (code, report) = witnesses.check(3, &iso_sha256, &files);
    assert_eq!(code, 1, "{report}");
    assert!(report.contains("NOT WITNESSED: 2 of 3"), "{report}");

    // burn refuses before opening the device unless enough witnesses attest.
    let iso = p.out.join(format!("{}.iso", support::default_stem()));
    let target = witnesses.dir.path().join("burned.img");
    std::fs::write(&target, b"").unwrap();
    let burn = |files: &[&Path]| {
        support::ceremony_os(&support::shared_image_store())
            .arg("burn")
            .arg(&iso)
            .arg("--device")
            .arg(&target)
            .args(["--expect", &iso_sha256, "--trust"])
            .arg(witnesses.dir.path().join("allowed_signers"))
            .args(["--require", "2", "--attestations"])
            .args(files)
            .output()
            .unwrap()
    };
    let out = burn(&[alice, carol_other.as_path(), mallory.as_path()]);
    assert!(!out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("too few witnesses attest this ISO"), "{out:?}");
    assert_eq!(std::fs::metadata(&target).unwrap().len(), 0, "burn wrote without enough witnesses");
    let out = burn(&[alice, bob.as_path()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(support::sha256_hex(&std::fs::read(&target).unwrap()), iso_sha256);

    // The burner's commands of docs/witness.md as written (the digest and the device filled in), with three
    // witnesses' PASSED attestations gathered in one folder.
    let burner = witnesses.dir.path().join("burner");
    std::fs::create_dir(&burner).unwrap();
    std::fs::copy(witnesses.dir.path().join("allowed_signers"), burner.join("witnesses")).unwrap();
    std::os::unix::fs::symlink(&p.out, burner.join("out")).unwrap();
    std::fs::copy(alice, burner.join("alice.json")).unwrap();
    std::fs::copy(&bob, burner.join("bob.json")).unwrap();
    std::fs::copy(witnesses.sign("carol", &iso_sha256), burner.join("carol.json")).unwrap();
    let disc = witnesses.dir.path().join("disc.img");
    std::fs::write(&disc, b"").unwrap();
    let commands = ceremony_os_test_support::example("burner-attestations");
    assert!(commands.contains("<ISO sha256>") && commands.contains("/dev/sr0"), "{commands}");
    let commands = commands.replace("<ISO sha256>", &iso_sha256).replace("/dev/sr0", disc.to_str().unwrap());
    let out = witness_shell(&burner, witnesses.dir.path(), &commands);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{commands}\n{stderr}");
    assert!(stderr.contains("WITNESSED: 3 of 3"), "{stderr}");
    assert_eq!(support::sha256_hex(&std::fs::read(&disc).unwrap()), iso_sha256, "{stderr}");
}

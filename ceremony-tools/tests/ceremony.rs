//! The `ceremony` tool against a real SoftHSMv2 token in a throwaway token directory
//! (SOFTHSM2_CONF), checked with OpenSC's pkcs11-tool and openssl.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::path::{Path, PathBuf};
use std::process::Command;

const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
const PIN: &str = "123456";

struct Token {
    dir: tempfile::TempDir,
    conf: PathBuf,
}

impl Token {
    fn new(label: &str) -> Token {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("tokens")).unwrap();
        let conf = dir.path().join("softhsm2.conf");
        std::fs::write(
            &conf,
            format!(
                "directories.tokendir = {}/tokens\nobjectstore.backend = file\nlog.level = ERROR\n",
                dir.path().display()
            ),
        )
        .unwrap();
        let out = Command::new("softhsm2-util")
            .args(["--init-token", "--free", "--label", label, "--so-pin", "5678", "--pin", PIN])
            .env("SOFTHSM2_CONF", &conf)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        Token { dir, conf }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn ceremony(&self) -> assert_cmd::Command {
        let mut cmd = assert_cmd::Command::new(env!("CARGO_BIN_EXE_ceremony"));
        cmd.env("SOFTHSM2_CONF", &self.conf)
            .env("CEREMONY_TRANSCRIPT", self.path("transcript.jsonl"))
            .current_dir(self.dir.path());
        cmd
    }

    /// `ceremony key generate` with the PIN on standard input.
    fn generate(&self, config: &Path, pin: &str) -> std::process::Output {
        self.ceremony()
            .args(["key", "generate", "--pin-fd", "0"])
            .arg(config)
            .write_stdin(format!("{pin}\n"))
            .output()
            .unwrap()
    }

    fn objects(&self) -> String {
        let out = Command::new("pkcs11-tool")
            .args(["--module", MODULE, "--login", "--pin", PIN, "--list-objects"])
            .env("SOFTHSM2_CONF", &self.conf)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    fn key_config(&self, name: &str, label: &str, key_type: &str, public_key: &str) -> PathBuf {
        let path = self.path(name);
        std::fs::write(
            &path,
            format!(
                "[hsm]\nmodule = \"{MODULE}\"\ntoken_label = \"root-ca\"\n\n[key]\nlabel = \"{label}\"\nid = \"01\"\ntype = \"{key_type}\"\n\n[outputs]\npublic_key = \"{public_key}\"\n"
            ),
        )
        .unwrap();
        path
    }

    fn transcript(&self) -> String {
        std::fs::read_to_string(self.path("transcript.jsonl")).unwrap_or_default()
    }
}

fn openssl(args: &[&str], input: &Path) -> String {
    let out = Command::new("openssl").args(args).arg("-in").arg(input).output().unwrap();
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn generated_keys_stay_in_the_token_and_their_public_halves_check_out() {
    let token = Token::new("root-ca");
    for (label, key_type, expected) in
        [("root-ec", "ec-p256", "prime256v1"), ("root-rsa", "rsa-3072", "3072 bit")]
    {
        let pem = format!("{label}.pub.pem");
        let config = token.key_config(&format!("{label}.toml"), label, key_type, &pem);
        let out = token.generate(&config, PIN);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        let text = openssl(&["pkey", "-pubin", "-text", "-noout"], &token.path(&pem));
        assert!(text.contains(expected), "{text}");
        // The printed SPKI digest is the digest of the DER public key openssl reads.
        let der = Command::new("openssl")
            .args(["pkey", "-pubin", "-outform", "DER", "-in"])
            .arg(token.path(&pem))
            .output()
            .unwrap()
            .stdout;
        let digest = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&der));
        assert!(stderr.contains(&format!("SPKI sha256 {digest}")), "{stderr}");
        assert!(stderr.contains("words"), "{stderr}");
    }
    let objects = token.objects();
    let private_keys: Vec<&str> = objects.split("Private Key Object").skip(1).collect();
    assert_eq!(private_keys.len(), 2, "{objects}");
    for key in private_keys {
        assert!(key.contains("sensitive") && key.contains("never extractable"), "{key}");
        assert!(!key.contains("extractable,") || key.contains("never extractable"), "{key}");
    }
    let transcript = token.transcript();
    assert_eq!(transcript.lines().count(), 2);
    token
        .ceremony()
        .args(["transcript", "verify"])
        .assert()
        .success()
        .stdout(predicates::str::contains("2 records, chain intact"));
}

#[test]
fn bad_inputs_leave_the_token_and_the_outputs_alone() {
    let token = Token::new("root-ca");
    let config = token.key_config("k.toml", "root-ec", "ec-p256", "k.pub.pem");
    assert!(token.generate(&config, PIN).status.success());
    let before = token.objects();

    // An existing label.
    let again = token.key_config("again.toml", "root-ec", "ec-p256", "again.pub.pem");
    let out = token.generate(&again, PIN);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("object(s) labelled \"root-ec\"; labels are never reused")
    );
    assert!(!token.path("again.pub.pem").exists());

    // An existing output file: refused before the HSM is touched (no new key).
    std::fs::write(token.path("taken.pem"), b"keep me").unwrap();
    let taken = token.key_config("taken.toml", "fresh", "ec-p256", "taken.pem");
    let out = token.generate(&taken, PIN);
    assert!(String::from_utf8_lossy(&out.stderr).contains("taken.pem already exists"));
    assert_eq!(std::fs::read(token.path("taken.pem")).unwrap(), b"keep me");

    // A wrong PIN.
    let fresh = token.key_config("fresh.toml", "fresh", "ec-p256", "fresh.pub.pem");
    let out = token.generate(&fresh, "000000");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("the PIN is wrong"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!token.path("fresh.pub.pem").exists());

    // An unknown configuration key, with its position.
    let unknown = token.path("unknown.toml");
    std::fs::write(
        &unknown,
        std::fs::read_to_string(&fresh).unwrap().replace("id = \"01\"", "id = \"01\"\nextractable = true"),
    )
    .unwrap();
    let out = token.generate(&unknown, PIN);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("unknown.toml:8:1: unknown field `extractable`"), "{stderr}");

    assert_eq!(token.objects(), before, "the token changed");
    // Every attempt is in the transcript, failures included.
    let transcript = token.transcript();
    assert_eq!(transcript.lines().count(), 5);
    assert_eq!(transcript.lines().filter(|l| l.contains("\"outcome\":\"error:")).count(), 4);
}

#[test]
fn shamir_split_and_combine_through_the_cli() {
    let token = Token::new("unused");
    let out = token
        .ceremony()
        .args(["shamir", "split", "-k", "3", "-n", "5", "--secret-fd", "0"])
        .write_stdin("s3cret-PIN\n")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let shares: Vec<String> = String::from_utf8(out.stdout).unwrap().lines().map(str::to_string).collect();
    assert_eq!(shares.len(), 5);
    let combine = |lines: &[&String]| {
        token
            .ceremony()
            .args(["shamir", "combine"])
            .write_stdin(lines.iter().map(|s| format!("{s}\n")).collect::<String>())
            .output()
            .unwrap()
    };
    let out = combine(&[&shares[4], &shares[0], &shares[2]]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "s3cret-PIN\n");
    let out = combine(&[&shares[1], &shares[3]]);
    assert!(!out.status.success());
    assert!(
        out.stdout.is_empty() && String::from_utf8_lossy(&out.stderr).contains("needs 3 different shares")
    );
    let mut typo = shares[1].clone();
    let pos = typo.len() - 12;
    let replacement = if &typo[pos..pos + 1] == "a" { "b" } else { "a" };
    typo.replace_range(pos..pos + 1, replacement);
    let out = combine(&[&shares[0], &typo, &shares[2]]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("share 2 (index 2) fails its checksum"));
    // The secret never reaches the transcript.
    assert!(!token.transcript().contains("s3cret"));
}

#[test]
fn transcript_tampering_is_detected_and_named() {
    let token = Token::new("root-ca");
    for i in 0..3 {
        let config =
            token.key_config(&format!("k{i}.toml"), &format!("key-{i}"), "ec-p256", &format!("k{i}.pem"));
        assert!(token.generate(&config, PIN).status.success());
    }
    let path = token.path("transcript.jsonl");
    let original = std::fs::read_to_string(&path).unwrap();
    let out = token.ceremony().args(["transcript", "verify"]).output().unwrap();
    let report = String::from_utf8(out.stdout).unwrap();
    let head = report.split("head sha256 ").nth(1).unwrap().split_whitespace().next().unwrap().to_string();

    let lines: Vec<&str> = original.lines().collect();
    let cases = [
        ("edited", original.replacen("k1.pem", "kX.pem", 1), "line 2 was edited"),
        ("deleted", format!("{}\n{}\n", lines[0], lines[2]), "line 2 (seq 3)"),
        ("swapped", format!("{}\n{}\n{}\n", lines[0], lines[2], lines[1]), "line 2 (seq 3)"),
    ];
    for (what, text, expected) in cases {
        std::fs::write(&path, text).unwrap();
        let out = token.ceremony().args(["transcript", "verify"]).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{what} not detected");
        assert!(stderr.contains(expected), "{what}: {stderr}");
    }
    // A forged record appended with a correct chain: caught against the witnessed head.
    std::fs::write(&path, &original).unwrap();
    let config = token.key_config("forged.toml", "forged", "ec-p256", "forged.pem");
    assert!(token.generate(&config, PIN).status.success());
    let out = token.ceremony().args(["transcript", "verify", "--head", &head]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("records after line 3 were added"));
}

impl Token {
    fn root_config(&self, name: &str, label: &str, not_after: &str, output: &str) -> PathBuf {
        let path = self.path(name);
        std::fs::write(
            &path,
            format!(
                "[hsm]\nmodule = \"{MODULE}\"\ntoken_label = \"root-ca\"\n\n[key]\nlabel = \"{label}\"\n\n[subject]\ncommon_name = \"Rehearsal Root CA 2026\"\norganization = \"Example Bank\"\ncountry = \"CH\"\n\n[validity]\nnot_before = \"2026-12-01T00:00:00Z\"\nnot_after = \"{not_after}\"\n\n[profile]\nmax_validity_days = 7306\n\n[outputs]\ncertificate = \"{output}\"\n"
            ),
        )
        .unwrap();
        path
    }

    fn run_step(&self, args: &[&str], config: &Path) -> std::process::Output {
        self.ceremony()
            .args(args)
            .args(["--pin-fd", "0"])
            .arg(config)
            .write_stdin(format!("{PIN}\n"))
            .output()
            .unwrap()
    }
}

#[test]
fn root_certificates_are_signed_in_the_hsm_and_verify() {
    let token = Token::new("root-ca");
    for (label, key_type) in [("root-ec", "ec-p384"), ("root-rsa", "rsa-3072")] {
        let keygen =
            token.key_config(&format!("{label}-key.toml"), label, key_type, &format!("{label}.pub.pem"));
        assert!(token.generate(&keygen, PIN).status.success());
        let pem = format!("{label}.crt.pem");
        let config = token.root_config(&format!("{label}-root.toml"), label, "2046-12-01T00:00:00Z", &pem);
        let out = token.run_step(&["root"], &config);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let cert = token.path(&pem);
        let text = openssl(&["x509", "-noout", "-text"], &cert);
        assert!(text.contains("CA:TRUE"), "{text}");
        assert!(text.contains("X509v3 Basic Constraints: critical"), "{text}");
        assert!(
            text.contains("X509v3 Key Usage: critical") && text.contains("Certificate Sign, CRL Sign"),
            "{text}"
        );
        assert!(text.contains("X509v3 Subject Key Identifier"), "{text}");
        assert!(
            text.contains("Not Before: Dec  1 00:00:00 2026 GMT")
                && text.contains("Not After : Dec  1 00:00:00 2046 GMT"),
            "{text}"
        );
        // The certificate's key is the HSM key.
        let cert_key = Command::new("openssl")
            .args(["x509", "-noout", "-pubkey", "-in"])
            .arg(&cert)
            .output()
            .unwrap()
            .stdout;
        assert_eq!(
            String::from_utf8(cert_key).unwrap(),
            std::fs::read_to_string(token.path(&format!("{label}.pub.pem"))).unwrap()
        );
        let verify = Command::new("openssl")
            .args(["verify", "-attime", "1800000000", "-CAfile"])
            .arg(&cert)
            .arg(&cert)
            .output()
            .unwrap();
        assert!(verify.status.success(), "{}", String::from_utf8_lossy(&verify.stdout));
    }
}

#[test]
fn a_root_longer_than_the_profile_allows_is_refused_before_signing() {
    let token = Token::new("root-ca");
    let keygen = token.key_config("key.toml", "root-ec", "ec-p256", "root.pub.pem");
    assert!(token.generate(&keygen, PIN).status.success());
    let config = token.root_config("long.toml", "root-ec", "2066-12-01T00:00:00Z", "long.pem");
    let out = token.run_step(&["root"], &config);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("the profile allows at most 7306"), "{stderr}");
    assert!(!token.path("long.pem").exists());
}

fn write(token: &Token, name: &str, text: &str) -> PathBuf {
    let path = token.path(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn hsm_section() -> String {
    format!("[hsm]\nmodule = \"{MODULE}\"\ntoken_label = \"root-ca\"\n")
}

/// Key, root, an intermediate from an openssl CSR, and a CRL revoking it; openssl verifies all.
#[test]
fn full_rehearsal_root_intermediate_and_crl_verify_with_openssl() {
    let token = Token::new("root-ca");
    let keygen = token.key_config("1-key.toml", "root-2026", "ec-p384", "root.pub.pem");
    assert!(token.generate(&keygen, PIN).status.success());
    let root = token.root_config("2-root.toml", "root-2026", "2046-12-01T00:00:00Z", "root.pem");
    assert!(token.run_step(&["root"], &root).status.success());

    let csr = token.path("intermediate.csr");
    let out = Command::new("openssl")
        .args(["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout"])
        .arg(token.path("intermediate.key"))
        .arg("-out")
        .arg(&csr)
        .args([
            "-subj",
            "/C=CH/O=Example Bank/CN=Rehearsal Intermediate CA 1",
            "-addext",
            "basicConstraints=critical,CA:TRUE,pathlen:5",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let sign = write(
        &token,
        "3-sign.toml",
        &format!(
            "{}\n[issuer]\ncertificate = \"root.pem\"\nkey_label = \"root-2026\"\n\n[csr]\npath = \"intermediate.csr\"\n\n[validity]\nnot_before = \"2026-12-01T00:00:00Z\"\nnot_after = \"2031-12-01T00:00:00Z\"\n\n[profile]\nmax_validity_days = 1827\npath_len = 0\ncrl_distribution_point = \"http://crl.example.invalid/root-2026.crl\"\nauthority_info_access = \"http://ca.example.invalid/root-2026.crt\"\n\n[outputs]\ncertificate = \"intermediate.pem\"\n",
            hsm_section()
        ),
    );
    let out = token.run_step(&["sign-csr"], &sign);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let intermediate = token.path("intermediate.pem");
    let text = openssl(&["x509", "-noout", "-text"], &intermediate);
    assert!(text.contains("CA:TRUE, pathlen:0"), "the profile, not the CSR, sets the path length: {text}");
    assert!(
        text.contains("crl.example.invalid/root-2026.crl")
            && text.contains("CA Issuers - URI:http://ca.example.invalid/root-2026.crt"),
        "{text}"
    );
    assert!(text.contains("X509v3 Authority Key Identifier"), "{text}");
    let verify = Command::new("openssl")
        .args(["verify", "-attime", "1800000000", "-CAfile"])
        .arg(token.path("root.pem"))
        .arg(&intermediate)
        .output()
        .unwrap();
    assert!(verify.status.success(), "{}", String::from_utf8_lossy(&verify.stdout));

    let serial = openssl(&["x509", "-noout", "-serial"], &intermediate)
        .trim()
        .trim_start_matches("serial=")
        .to_lowercase();
    let crl = write(
        &token,
        "4-crl.toml",
        &format!(
            "{}\n[issuer]\ncertificate = \"root.pem\"\nkey_label = \"root-2026\"\n\n[crl]\nnumber = 1\nthis_update = \"2027-01-01T00:00:00Z\"\nnext_update = \"2027-07-01T00:00:00Z\"\n\n[[crl.revoked]]\nserial = \"{serial}\"\nrevoked_at = \"2026-12-15T00:00:00Z\"\nreason = \"key_compromise\"\n\n[profile]\nmax_span_days = 366\n\n[outputs]\ncrl = \"root.crl.pem\"\n",
            hsm_section()
        ),
    );
    let out = token.run_step(&["crl"], &crl);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let crl_out = Command::new("openssl")
        .args(["crl", "-noout", "-text", "-verify", "-CAfile"])
        .arg(token.path("root.pem"))
        .arg("-in")
        .arg(token.path("root.crl.pem"))
        .output()
        .unwrap();
    let crl_text =
        String::from_utf8_lossy(&crl_out.stdout).to_string() + &String::from_utf8_lossy(&crl_out.stderr);
    assert!(crl_out.status.success() && crl_text.contains("verify OK"), "{crl_text}");
    assert!(crl_text.to_lowercase().contains(&serial) && crl_text.contains("Key Compromise"), "{crl_text}");

    // The private keys are sensitive and never extractable, and the transcript holds every step.
    let objects = token.objects();
    assert!(objects.contains("never extractable") && objects.contains("sensitive"), "{objects}");
    token
        .ceremony()
        .args(["transcript", "verify"])
        .assert()
        .success()
        .stdout(predicates::str::contains("4 records, chain intact"));
}

#[test]
fn a_csr_with_a_broken_signature_is_refused() {
    let token = Token::new("root-ca");
    let keygen = token.key_config("1-key.toml", "root-2026", "ec-p256", "root.pub.pem");
    assert!(token.generate(&keygen, PIN).status.success());
    let root = token.root_config("2-root.toml", "root-2026", "2046-12-01T00:00:00Z", "root.pem");
    assert!(token.run_step(&["root"], &root).status.success());
    let csr = token.path("bad.csr");
    let out = Command::new("openssl")
        .args(["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout"])
        .arg(token.path("bad.key"))
        .arg("-outform")
        .arg("DER")
        .arg("-out")
        .arg(token.path("bad.der"))
        .args(["-subj", "/CN=Tampered"])
        .output()
        .unwrap();
    assert!(out.status.success());
    // Flip a bit in the signature (the last bytes of the DER).
    let mut der = std::fs::read(token.path("bad.der")).unwrap();
    let last = der.len() - 3;
    der[last] ^= 0x01;
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(&der);
    std::fs::write(
        &csr,
        format!("-----BEGIN CERTIFICATE REQUEST-----\n{b64}\n-----END CERTIFICATE REQUEST-----\n"),
    )
    .unwrap();
    let before = token.objects();
    let sign = write(
        &token,
        "3-sign.toml",
        &format!(
            "{}\n[issuer]\ncertificate = \"root.pem\"\nkey_label = \"root-2026\"\n\n[csr]\npath = \"bad.csr\"\n\n[validity]\nnot_before = \"2026-12-01T00:00:00Z\"\nnot_after = \"2027-12-01T00:00:00Z\"\n\n[profile]\nmax_validity_days = 1827\npath_len = 0\n\n[outputs]\ncertificate = \"bad.pem\"\n",
            hsm_section()
        ),
    );
    let out = token.run_step(&["sign-csr"], &sign);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("the CSR's signature does not verify"), "{stderr}");
    assert!(!token.path("bad.pem").exists());
    assert_eq!(token.objects(), before);
}

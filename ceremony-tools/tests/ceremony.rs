//! The `ceremony` tool against real SoftHSMv2 tokens in throwaway token directories
//! (SOFTHSM2_CONF), checked with independent tools: OpenSC's pkcs11-tool, openssl, and pkilint's
//! RFC 5280 certificate and CRL linters (installed into target/pyvenv by `make setup`).

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::path::{Path, PathBuf};
use std::process::Command;

const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
const PIN: &str = "123456";
/// 2026-12-01T00:00:00Z and a day later: when the rehearsal's certificates are valid.
const VALID_AT: &str = "1796083200";
const AFTER_CRL: &str = "1796169600";

struct Token {
    dir: tempfile::TempDir,
    conf: PathBuf,
}

impl Token {
    /// A token directory with SoftHSM's free slot and the named tokens (PIN 123456 each, unless
    /// the label ends in "-b", which gets PIN 654321).
    fn new(labels: &[&str]) -> Token {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("tokens")).unwrap();
        let conf = dir.path().join("softhsm2.conf");
        std::fs::write(
            &conf,
            format!("directories.tokendir = {}/tokens\nlog.level = ERROR\n", dir.path().display()),
        )
        .unwrap();
        for label in labels {
            let pin = if label.ends_with("-b") { "654321" } else { PIN };
            let out = Command::new("softhsm2-util")
                .args(["--init-token", "--free", "--label", label, "--so-pin", "5678", "--pin", pin])
                .env("SOFTHSM2_CONF", &conf)
                .output()
                .unwrap();
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        }
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

    /// Run a step with the PIN on standard input.
    fn step(&self, command: &[&str], config: &Path) -> std::process::Output {
        self.ceremony()
            .args(command)
            .arg(config)
            .args(["--pin-fd", "0"])
            .write_stdin(format!("{PIN}\n"))
            .output()
            .unwrap()
    }

    fn ok(&self, command: &[&str], config: &Path) -> String {
        let out = self.step(command, config);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{command:?} failed:\n{stderr}");
        stderr
    }

    /// Run a step that must be refused; return its message.
    fn refused(&self, command: &[&str], config: &Path, expected: &str) -> String {
        let out = self.step(command, config);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(1), "{command:?} should be refused:\n{stderr}");
        assert!(stderr.contains(expected), "expected {expected:?} in:\n{stderr}");
        stderr
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    fn objects(&self, token: &str) -> String {
        let pin = if token.ends_with("-b") { "654321" } else { PIN };
        let out = Command::new("pkcs11-tool")
            .args(["--module", MODULE, "--token-label", token, "--login", "--pin", pin, "--list-objects"])
            .env("SOFTHSM2_CONF", &self.conf)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    fn transcript(&self) -> String {
        std::fs::read_to_string(self.path("transcript.jsonl")).unwrap_or_default()
    }

    fn openssl(&self, args: &[&str]) -> std::process::Output {
        Command::new("openssl").args(args).current_dir(self.dir.path()).output().unwrap()
    }

    fn openssl_ok(&self, args: &[&str]) -> String {
        let out = self.openssl(args);
        assert!(
            out.status.success(),
            "openssl {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    // Step files.

    fn keygen(&self, token: &str, label: &str, id: &str, key_type: &str, output: &str) -> PathBuf {
        self.write(
            &format!("keygen-{label}-{id}.toml"),
            &format!("[hsm]\nmodule = \"{MODULE}\"\ntoken_label = \"{token}\"\n\n[key]\nlabel = \"{label}\"\nid = \"{id}\"\ntype = \"{key_type}\"\n\n[outputs]\npublic_key = \"{output}\"\n"),
        )
    }

    fn root(&self, token: &str, label: &str, subject: &str, output: &str, profile: &str) -> PathBuf {
        self.write(
            &format!("root-{output}.toml"),
            &format!("[hsm]\nmodule = \"{MODULE}\"\ntoken_label = \"{token}\"\n\n[key]\nlabel = \"{label}\"\n\n[subject]\n{subject}\n\n[validity]\nnot_before = \"2026-12-01T00:00:00Z\"\nnot_after = \"2046-12-01T00:00:00Z\"\n\n[profile]\nmax_validity_days = 7306\n{profile}\n\n[outputs]\ncertificate = \"{output}\"\n"),
        )
    }

    fn issue(
        &self,
        command: &str,
        issuer: &str,
        key: &str,
        input: &str,
        profile: &str,
        output: &str,
    ) -> PathBuf {
        let section = if command == "cross" {
            format!("[subject]\ncertificate = \"{input}\"")
        } else {
            format!("[csr]\npath = \"{input}\"")
        };
        self.write(
            &format!("{command}-{output}.toml"),
            &format!("[hsm]\nmodule = \"{MODULE}\"\ntoken_label = \"root-ca\"\n\n[issuer]\ncertificate = \"{issuer}\"\nkey_label = \"{key}\"\n\n{section}\n\n[validity]\nnot_before = \"2026-12-01T00:00:00Z\"\nnot_after = \"2031-12-01T00:00:00Z\"\n\n[profile]\nmax_validity_days = 1827\n{profile}\n\n[outputs]\ncertificate = \"{output}\"\n"),
        )
    }
}

const ROOT_SUBJECT: &str =
    "common_name = \"Example Root CA 2026\"\norganization = \"Example Bank\"\ncountry = \"CH\"";
const INTERMEDIATE_PROFILE: &str = "path_len = 0\ncrl_distribution_point = \"http://crl.example/root.crl\"\nauthority_info_access = \"http://ca.example/root.crt\"";

/// A token with root key `root-2026` and its certificate `root.pem`.
fn with_root(key_type: &str) -> Token {
    let token = Token::new(&["root-ca"]);
    token.ok(&["key", "generate"], &token.keygen("root-ca", "root-2026", "01", key_type, "root.pub.pem"));
    token.ok(&["root"], &token.root("root-ca", "root-2026", ROOT_SUBJECT, "root.pem", ""));
    token
}

/// pkilint's RFC 5280 linter on a certificate or CRL: no finding at ERROR or FATAL.
fn pkilint(file: &Path, crl: bool) {
    let bin = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(format!("../target/pyvenv/bin/{}", if crl { "lint_crl" } else { "lint_pkix_cert" }));
    assert!(bin.exists(), "pkilint is not installed at {} (run make setup)", bin.display());
    let mut cmd = Command::new(&bin);
    cmd.arg("lint");
    if crl {
        cmd.args(["-t", "CRL", "-p", "PKIX"]);
    }
    let out = cmd.args(["-s", "ERROR", "-f", "JSON"]).arg(file).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "pkilint finds ERROR or FATAL in {}:\n{stdout}{}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// An openssl-made CSR (key and subject given as openssl options).
fn openssl_csr(token: &Token, name: &str, key_options: &[&str], subject: &str) -> PathBuf {
    let csr = token.path(&format!("{name}.csr"));
    let out = Command::new("openssl")
        .args(["req", "-new", "-nodes", "-keyout"])
        .arg(token.path(&format!("{name}.key")))
        .args(key_options)
        .args(["-subj", subject, "-multivalue-rdn", "-out"])
        .arg(&csr)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    csr
}

fn der_of(path: &Path) -> Vec<u8> {
    pem::parse(std::fs::read(path).unwrap()).unwrap().contents().to_vec()
}

#[test]
fn keys_are_generated_protected_and_labels_and_ids_never_reused() {
    let token = Token::new(&["root-ca"]);
    for (label, id, key_type, expected) in
        [("root-ec", "01", "ec-p384", "secp384r1"), ("root-rsa", "02", "rsa-3072", "3072 bit")]
    {
        let pem = format!("{label}.pub.pem");
        let stderr = token.ok(&["key", "generate"], &token.keygen("root-ca", label, id, key_type, &pem));
        let text = token.openssl_ok(&["pkey", "-pubin", "-text", "-noout", "-in", &pem]);
        assert!(text.contains(expected), "{text}");
        // The printed digest is the digest of the DER public key openssl reads.
        let der = token.openssl(&["pkey", "-pubin", "-outform", "DER", "-in", &pem]).stdout;
        let digest = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&der));
        assert!(stderr.contains(&format!("public key written to {pem}\n  sha256 {digest}")), "{stderr}");
        assert!(token.transcript().contains(&digest), "the transcript records the same digest");
    }
    let listing = token
        .ceremony()
        .args(["hsm", "list", "--module", MODULE, "--login", "--token", "root-ca", "--pin-fd", "0"])
        .write_stdin(format!("{PIN}\n"))
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout).into_owned();
    let privates: Vec<&str> = listing.lines().filter(|l| l.contains("CKO_PRIVATE_KEY")).collect();
    assert_eq!(privates.len(), 2, "{listing}");
    for key in privates {
        for attribute in [
            "sensitive=true",
            "extractable=false",
            "decrypt=false",
            "unwrap=false",
            "modifiable=false",
            "copyable=false",
        ] {
            assert!(key.contains(attribute), "{attribute} missing: {key}");
        }
    }
    // pkcs11-tool agrees: never extractable.
    assert_eq!(token.objects("root-ca").matches("never extractable").count(), 2);

    // An existing CKA_ID with a new label, and an existing label with a new id, are refused.
    let before = token.objects("root-ca");
    token.refused(
        &["key", "generate"],
        &token.keygen("root-ca", "other", "01", "ec-p256", "x.pem"),
        "CKA_ID 01",
    );
    token.refused(
        &["key", "generate"],
        &token.keygen("root-ca", "root-ec", "09", "ec-p256", "y.pem"),
        "labelled \"root-ec\"",
    );
    assert_eq!(token.objects("root-ca"), before, "the token changed");
    assert!(!token.path("x.pem").exists() && !token.path("y.pem").exists());
}

/// The step files and --module may name only reviewed modules: OpenSC's spy and p11-kit's
/// client forwarder, both installed on this machine as in the image, are refused by name before
/// they are loaded.
#[test]
fn a_logging_or_forwarding_pkcs11_module_is_refused() {
    let token = Token::new(&["ca-a"]);
    for module in [
        "/usr/lib/x86_64-linux-gnu/pkcs11/pkcs11-spy.so",
        "/usr/lib/x86_64-linux-gnu/pkcs11/p11-kit-client.so",
    ] {
        assert!(Path::new(module).exists(), "{module} is installed (opensc, p11-kit-modules)");
        let out = token.ceremony().args(["hsm", "list", "--module", module]).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{module} was loaded");
        assert!(stderr.contains(&format!("refused PKCS#11 module {module}")), "{stderr}");
    }
}

#[test]
fn hsm_list_shows_free_slots_and_logs_in_to_the_named_token_only() {
    let token = Token::new(&["ca-a", "ca-b"]);
    let out = token.ceremony().args(["hsm", "list", "--module", MODULE]).output().unwrap();
    let listing = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(listing.contains("token \"ca-a\"") && listing.contains("token \"ca-b\""), "{listing}");
    assert!(listing.contains("uninitialized token (a free slot)"), "{listing}");
    // Token ca-b's PIN differs from ca-a's: had it been tried on ca-a, that login would fail.
    let keygen = token.keygen("ca-b", "b-key", "01", "ec-p256", "b.pub.pem");
    let out = token
        .ceremony()
        .args(["key", "generate"])
        .arg(&keygen)
        .args(["--pin-fd", "0"])
        .write_stdin("654321\n")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = token
        .ceremony()
        .args(["hsm", "list", "--module", MODULE, "--login", "--token", "ca-b", "--pin-fd", "0"])
        .write_stdin("654321\n")
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(listing.contains("label=\"b-key\" id=01 class=CKO_PRIVATE_KEY"), "{listing}");
    // --login needs --token: a PIN is never tried on every token.
    token.ceremony().args(["hsm", "list", "--module", MODULE, "--login"]).assert().code(2);
}

#[test]
fn nothing_touches_the_hsm_when_the_transcript_is_broken_or_cannot_be_written() {
    let token = with_root("ec-p256");
    let before = token.objects("root-ca");
    // An edited record in the middle of the transcript.
    let text = token.transcript();
    std::fs::write(token.path("transcript.jsonl"), text.replacen("\"key generate\"", "\"key generated\"", 1))
        .unwrap();
    token.refused(
        &["key", "generate"],
        &token.keygen("root-ca", "second", "02", "ec-p256", "second.pem"),
        "nothing was done",
    );
    token.refused(
        &["root"],
        &token.root("root-ca", "root-2026", ROOT_SUBJECT, "again.pem", ""),
        "nothing was done",
    );
    assert_eq!(token.objects("root-ca"), before, "a key was generated despite the broken transcript");
    assert!(!token.path("second.pem").exists() && !token.path("again.pem").exists());

    // A transcript in a directory that does not exist.
    let out = token
        .ceremony()
        .args(["key", "generate"])
        .arg(token.keygen("root-ca", "third", "03", "ec-p256", "third.pem"))
        .args(["--pin-fd", "0", "--transcript", "/nonexistent-dir/t.jsonl"])
        .write_stdin(format!("{PIN}\n"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("directory /nonexistent-dir does not exist"), "{stderr}");
    assert_eq!(token.objects("root-ca"), before);
    assert!(!token.path("third.pem").exists());
}

#[test]
fn a_full_ca_passes_openssl_and_pkilint() {
    let token = with_root("ec-p384");
    pkilint(&token.path("root.pem"), false);
    token.openssl_ok(&["verify", "-attime", VALID_AT, "-CAfile", "root.pem", "root.pem"]);

    // An intermediate from a CSR with two OUs, a multi-valued RDN and PrintableString values:
    // its subject is copied byte for byte.
    let csr = openssl_csr(
        &token,
        "intermediate",
        &["-newkey", "rsa:2048", "-utf8", "-reqopt", "compatible"],
        "/C=CH/O=Example Bank/OU=PKI/OU=Issuing/CN=Example Issuing CA 2026+serialNumber=42",
    );
    let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(std::fs::read(&csr).unwrap()));
    let step = token.issue(
        "sign-csr",
        "root.pem",
        "root-2026",
        "intermediate.csr",
        INTERMEDIATE_PROFILE,
        "intermediate.pem",
    );
    let text = std::fs::read_to_string(&step)
        .unwrap()
        .replace("path = \"intermediate.csr\"", &format!("path = \"intermediate.csr\"\nsha256 = \"{sha}\""));
    std::fs::write(&step, text).unwrap();
    token.ok(&["sign-csr"], &step);
    token.openssl_ok(&["verify", "-attime", VALID_AT, "-CAfile", "root.pem", "intermediate.pem"]);
    pkilint(&token.path("intermediate.pem"), false);
    {
        use x509_parser::prelude::*;
        let csr_der = der_of(&csr);
        let cert_der = der_of(&token.path("intermediate.pem"));
        let (_, parsed_csr) = X509CertificationRequest::from_der(&csr_der).unwrap();
        let (_, cert) = X509Certificate::from_der(&cert_der).unwrap();
        assert_eq!(
            cert.subject().as_raw(),
            parsed_csr.certification_request_info.subject.as_raw(),
            "the subject was re-encoded"
        );
        let root_der = der_of(&token.path("root.pem"));
        let (_, root) = X509Certificate::from_der(&root_der).unwrap();
        let ski = |c: &X509Certificate<'_>| {
            c.extensions().iter().find_map(|e| match e.parsed_extension() {
                ParsedExtension::SubjectKeyIdentifier(id) => Some(id.0.to_vec()),
                _ => None,
            })
        };
        let aki = cert.extensions().iter().find_map(|e| match e.parsed_extension() {
            ParsedExtension::AuthorityKeyIdentifier(id) => id.key_identifier.as_ref().map(|k| k.0.to_vec()),
            _ => None,
        });
        assert_eq!(aki, ski(&root), "the AKI is the issuer's SKI");
    }

    // A CA whose key is made in its own HSM: a CSR signed by that key, signed by the root.
    token.ok(&["key", "generate"], &token.keygen("root-ca", "sub-2026", "02", "ec-p256", "sub.pub.pem"));
    let request = token.write(
        "request.toml",
        &format!("[hsm]\nmodule = \"{MODULE}\"\ntoken_label = \"root-ca\"\n\n[key]\nlabel = \"sub-2026\"\n\n[subject]\ncommon_name = \"Example Sub CA 2026\"\norganization = \"Example Bank\"\ncountry = \"CH\"\n\n[outputs]\ncsr = \"sub.csr\"\n"),
    );
    token.ok(&["request"], &request);
    token.openssl_ok(&["req", "-in", "sub.csr", "-verify", "-noout"]);
    token.ok(
        &["sign-csr"],
        &token.issue("sign-csr", "root.pem", "root-2026", "sub.csr", INTERMEDIATE_PROFILE, "sub.pem"),
    );
    token.openssl_ok(&["verify", "-attime", VALID_AT, "-CAfile", "root.pem", "sub.pem"]);
    pkilint(&token.path("sub.pem"), false);

    // A cross-certificate: another root (its own key and name) certified by this one; what that
    // root issued then verifies up to this root through the cross-certificate.
    token.ok(&["key", "generate"], &token.keygen("root-ca", "other-root", "03", "rsa-3072", "other.pub.pem"));
    token.ok(
        &["root"],
        &token.root(
            "root-ca",
            "other-root",
            "common_name = \"Other Root CA\"\norganization = \"Other Bank\"\ncountry = \"DE\"",
            "other.pem",
            "path_len = 1",
        ),
    );
    let other_int = openssl_csr(
        &token,
        "other-int",
        &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
        "/C=DE/O=Other Bank/CN=Other Issuing CA",
    );
    let _ = other_int;
    token.ok(
        &["sign-csr"],
        &token.issue("sign-csr", "other.pem", "other-root", "other-int.csr", "path_len = 0", "other-int.pem"),
    );
    token.ok(
        &["cross"],
        &token.issue("cross", "root.pem", "root-2026", "other.pem", "path_len = 1", "cross.pem"),
    );
    pkilint(&token.path("cross.pem"), false);
    token.openssl_ok(&[
        "verify",
        "-attime",
        VALID_AT,
        "-CAfile",
        "root.pem",
        "-untrusted",
        "cross.pem",
        "other-int.pem",
    ]);
    let chain = token.openssl_ok(&[
        "verify",
        "-attime",
        VALID_AT,
        "-show_chain",
        "-CAfile",
        "root.pem",
        "-untrusted",
        "cross.pem",
        "other-int.pem",
    ]);
    assert!(chain.contains("Example Root CA 2026"), "{chain}");

    // A CRL with serials as openssl prints them; checked by openssl with -crl_check.
    let revoked_serial = token
        .openssl_ok(&["x509", "-in", "sub.pem", "-noout", "-serial"])
        .trim()
        .trim_start_matches("serial=")
        .to_string();
    let crl = token.write(
        "crl.toml",
        &format!("[hsm]\nmodule = \"{MODULE}\"\ntoken_label = \"root-ca\"\n\n[issuer]\ncertificate = \"root.pem\"\nkey_label = \"root-2026\"\n\n[crl]\nnumber = 7\nthis_update = \"2026-12-02T00:00:00Z\"\nnext_update = \"2027-01-01T00:00:00Z\"\n\n[[crl.revoked]]\nserial = \"{revoked_serial}\"\nrevoked_at = \"2026-12-01T12:00:00Z\"\nreason = \"key_compromise\"\n\n[[crl.revoked]]\nserial = \"8a01\"\nrevoked_at = \"2026-12-01T12:00:00Z\"\nreason = \"unspecified\"\n\n[profile]\nmax_span_days = 90\n\n[outputs]\ncrl = \"root.crl.pem\"\n"),
    );
    token.ok(&["crl"], &crl);
    pkilint(&token.path("root.crl.pem"), true);
    token.openssl_ok(&["crl", "-in", "root.crl.pem", "-CAfile", "root.pem", "-verify", "-noout"]);
    let crl_text = token.openssl_ok(&["crl", "-in", "root.crl.pem", "-noout", "-text"]);
    assert!(
        crl_text.contains("Serial Number: 8A01")
            && crl_text.contains("X509v3 CRL Number: \n                7"),
        "{crl_text}"
    );
    let out = token.openssl(&[
        "verify",
        "-attime",
        AFTER_CRL,
        "-crl_check",
        "-CRLfile",
        "root.crl.pem",
        "-CAfile",
        "root.pem",
        "sub.pem",
    ]);
    assert!(
        !out.status.success() && String::from_utf8_lossy(&out.stdout).contains("certificate revoked")
            || String::from_utf8_lossy(&out.stderr).contains("certificate revoked"),
        "the revoked CA verified: {out:?}"
    );
    token.openssl_ok(&[
        "verify",
        "-attime",
        AFTER_CRL,
        "-crl_check",
        "-CRLfile",
        "root.crl.pem",
        "-CAfile",
        "root.pem",
        "intermediate.pem",
    ]);
}

#[test]
fn bad_inputs_are_refused_before_the_hsm_signs() {
    let token = with_root("ec-p256");
    let objects = token.objects("root-ca");
    let refused = |step: PathBuf, expected: &str, output: &str| {
        let command = std::fs::read_to_string(&step).unwrap();
        let command = if command.contains("[csr]") {
            "sign-csr"
        } else if command.contains("[crl]") {
            "crl"
        } else {
            "root"
        };
        token.refused(&[command], &step, expected);
        assert!(!token.path(output).exists(), "{output} was written");
    };
    // Subjects RFC 5280 does not allow.
    refused(
        token.root("root-ca", "root-2026", "common_name = \"R\"\ncountry = \"Switzerland\"", "c1.pem", ""),
        "two-letter",
        "c1.pem",
    );
    refused(
        token.root("root-ca", "root-2026", "common_name = \"\"\ncountry = \"CH\"", "c2.pem", ""),
        "common_name is empty",
        "c2.pem",
    );

    openssl_csr(&token, "good", &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"], "/C=CH/CN=Good");
    // Issuer certificates that must not sign: edited after signing, not a CA, pathlen 0.
    let root_pem = std::fs::read_to_string(token.path("root.pem")).unwrap();
    let mut der = der_of(&token.path("root.pem"));
    // Moved notAfter back a year: names still match, only the signature can tell.
    let at = der.windows(6).position(|w| w == b"461201").unwrap();
    der[at + 1] = b'5';
    std::fs::write(token.path("edited-root.pem"), pem::encode(&pem::Pem::new("CERTIFICATE", der))).unwrap();
    refused(
        token.issue("sign-csr", "edited-root.pem", "root-2026", "good.csr", "path_len = 0", "i1.pem"),
        "self-signature does not verify",
        "i1.pem",
    );
    // A leaf certificate for the same key, made with openssl from a self-signed CA:FALSE request.
    token.openssl_ok(&[
        "req",
        "-x509",
        "-new",
        "-key",
        "good.key",
        "-subj",
        "/CN=Leaf",
        "-addext",
        "basicConstraints=critical,CA:FALSE",
        "-addext",
        "subjectKeyIdentifier=hash",
        "-out",
        "leaf.pem",
    ]);
    refused(
        token.issue("sign-csr", "leaf.pem", "root-2026", "good.csr", "path_len = 0", "i2.pem"),
        "not a CA certificate",
        "i2.pem",
    );
    // A CA with pathLenConstraint 0 asked to issue a CA.
    token.ok(
        &["root"],
        &token.root(
            "root-ca",
            "root-2026",
            "common_name = \"Leaf-only Root\"\ncountry = \"CH\"",
            "pathlen0.pem",
            "path_len = 0",
        ),
    );
    refused(
        token.issue("sign-csr", "pathlen0.pem", "root-2026", "good.csr", "path_len = 0", "i3.pem"),
        "pathLenConstraint 0",
        "i3.pem",
    );
    assert_eq!(root_pem, std::fs::read_to_string(token.path("root.pem")).unwrap());

    // CSR keys the policy refuses: RSA with e=3, RSA-1024; a CSR whose signature is broken; a CSR
    // that is not the pinned one.
    openssl_csr(&token, "e3", &["-newkey", "rsa:2048", "-pkeyopt", "rsa_keygen_pubexp:3"], "/CN=E3");
    refused(
        token.issue("sign-csr", "root.pem", "root-2026", "e3.csr", "path_len = 0", "i4.pem"),
        "only 65537",
        "i4.pem",
    );
    openssl_csr(&token, "small", &["-newkey", "rsa:1024"], "/CN=Small");
    refused(
        token.issue("sign-csr", "root.pem", "root-2026", "small.csr", "path_len = 0", "i5.pem"),
        "1024 bits",
        "i5.pem",
    );
    let mut broken = der_of(&token.path("good.csr"));
    let last = broken.len() - 3;
    broken[last] ^= 0x01;
    std::fs::write(token.path("broken.csr"), pem::encode(&pem::Pem::new("CERTIFICATE REQUEST", broken)))
        .unwrap();
    refused(
        token.issue("sign-csr", "root.pem", "root-2026", "broken.csr", "path_len = 0", "i6.pem"),
        "signature does not verify",
        "i6.pem",
    );
    let pinned = token.issue("sign-csr", "root.pem", "root-2026", "good.csr", "path_len = 0", "i7.pem");
    let text = std::fs::read_to_string(&pinned)
        .unwrap()
        .replace("path = \"good.csr\"", &format!("path = \"good.csr\"\nsha256 = \"{}\"", "ab".repeat(32)));
    std::fs::write(&pinned, text).unwrap();
    refused(pinned, "it is not the reviewed file", "i7.pem");
    // URIs that are not http:// URIs.
    refused(
        token.issue(
            "sign-csr",
            "root.pem",
            "root-2026",
            "good.csr",
            "path_len = 0\ncrl_distribution_point = \"http://crl example/x\"",
            "i8.pem",
        ),
        "not an http:// URI",
        "i8.pem",
    );
    // CRL serials: a duplicate (as openssl and as a person write it), zero.
    let crl = |name: &str, serials: &[&str]| {
        let entries: String = serials.iter().map(|s| format!("\n[[crl.revoked]]\nserial = \"{s}\"\nrevoked_at = \"2026-12-01T00:00:00Z\"\nreason = \"superseded\"\n")).collect();
        token.write(name, &format!("[hsm]\nmodule = \"{MODULE}\"\ntoken_label = \"root-ca\"\n\n[issuer]\ncertificate = \"root.pem\"\nkey_label = \"root-2026\"\n\n[crl]\nnumber = 1\nthis_update = \"2026-12-02T00:00:00Z\"\nnext_update = \"2027-01-01T00:00:00Z\"\n{entries}\n[profile]\nmax_span_days = 90\n\n[outputs]\ncrl = \"{name}.pem\"\n"))
    };
    refused(crl("dup", &["8a01", "00:8A:01"]), "listed twice", "dup.pem");
    refused(crl("zero", &["00"]), "is zero", "zero.pem");
    assert_eq!(token.objects("root-ca"), objects, "the token changed");
}

#[test]
fn shamir_shares_name_their_split_and_the_secret_is_never_shown() {
    let token = Token::new(&[]);
    let split = |secret: &str| {
        let out = token
            .ceremony()
            .args(["shamir", "split", "-k", "2", "-n", "3", "--secret-fd", "0"])
            .write_stdin(format!("{secret}\n"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap().lines().map(str::to_string).collect::<Vec<_>>()
    };
    let a = split("123456");
    let b = split("123456");
    assert!(a[0].starts_with("cs2-") && a[0][4..20] != b[0][4..20], "each split has its own name");
    // Combined into a command's standard input: the secret is not printed anywhere.
    let out = token
        .ceremony()
        .args(["shamir", "combine", "--shares-fd", "0", "--", "sh", "-c", "cat > recovered"])
        .write_stdin(format!("{}\n{}\n", a[0], a[2]))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::read_to_string(token.path("recovered")).unwrap(), "123456\n");
    let shown = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!shown.contains("123456") && !shown.contains(&a[0][..30]), "{shown}");
    // Shares of two splits.
    let out = token
        .ceremony()
        .args(["shamir", "combine", "--shares-fd", "0", "--print"])
        .write_stdin(format!("{}\n{}\n", a[0], b[1]))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("different splits"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // No destination: refused rather than printed by default.
    let out = token
        .ceremony()
        .args(["shamir", "combine", "--shares-fd", "0"])
        .write_stdin(format!("{}\n{}\n", a[0], a[1]))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(!String::from_utf8_lossy(&out.stdout).contains("123456"));
    // Explicitly asked: printed.
    let out = token
        .ceremony()
        .args(["shamir", "combine", "--shares-fd", "0", "--print"])
        .write_stdin(format!("{}\n{}\n", a[1], a[2]))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "123456\n");
}

#[test]
fn witnessed_heads_in_hex_or_words_are_checked_as_prefixes() {
    let token = Token::new(&[]);
    let mut heads = Vec::new();
    for _ in 0..3 {
        let out = token
            .ceremony()
            .args(["shamir", "split", "-k", "2", "-n", "2", "--secret-fd", "0"])
            .write_stdin("x\n")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let hex = stderr.lines().filter_map(|l| l.strip_prefix("  sha256 ")).next_back().unwrap().to_string();
        let words_start = stderr.rfind("  words  ").unwrap() + 9;
        let words: String = stderr[words_start..].split_whitespace().take(32).collect::<Vec<_>>().join(" ");
        heads.push((hex, words));
    }
    let verify = |args: &[&str]| token.ceremony().args(["transcript", "verify"]).args(args).output().unwrap();
    let last_words = &heads[2].1;
    assert!(verify(&["--head", last_words]).status.success(), "the PGP words witnesses wrote down");
    assert!(
        verify(&["--head", &heads[0].0, "--head", &heads[2].0]).status.success(),
        "heads written along the way"
    );
    let out = verify(&["--head", &heads[0].0]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("2 record(s) follow the last witnessed head"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(verify(&["--head", &heads[0].0, "--prefix"]).status.success());
    // A transcript rewritten consistently from the start no longer holds the witnessed head.
    let text = token.transcript();
    let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    let mut forged = first.clone();
    forged["time"] = "2020-01-01T00:00:00Z".into();
    std::fs::write(token.path("transcript.jsonl"), format!("{}\n", serde_json::to_string(&forged).unwrap()))
        .unwrap();
    assert!(verify(&[]).status.success(), "a keyless chain cannot tell");
    let out = verify(&["--head", &heads[0].0]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("is not a head of this transcript"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Run a documentation example with bash in `dir`, `ceremony` on the PATH; its output on failure.
fn run_block(block: &str, dir: &Path, what: &str) -> String {
    let bin = Path::new(env!("CARGO_BIN_EXE_ceremony")).parent().unwrap();
    let out = Command::new("bash")
        .arg("-c")
        .arg(block)
        .current_dir(dir)
        .env("PATH", format!("{}:{}", bin.display(), std::env::var("PATH").unwrap()))
        .env_remove("CEREMONY_TRANSCRIPT")
        .env_remove("SOFTHSM2_CONF")
        .output()
        .unwrap();
    let text = format!("{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{what} failed:\n{text}");
    text
}

#[test]
fn the_readme_rehearsal_runs_as_written() {
    let block = ceremony_os_test_support::example("softhsm-rehearsal");
    let dir = tempfile::tempdir().unwrap();
    run_block(&block, dir.path(), "the SoftHSM rehearsal");
    for file in ["root-2026.pem", "intermediate.pem"] {
        pkilint(&dir.path().join(file), false);
    }
    pkilint(&dir.path().join("root-2026.crl.pem"), true);
    let objects = std::fs::read_to_string(dir.path().join("objects.txt")).unwrap();
    assert!(objects.contains("CKO_PRIVATE_KEY"), "the combined PIN logged in: {objects}");
}

/// The ceremony day's material folder (plan, step files, CSR) made in `dir`; returns the plan.
fn readme_material(dir: &Path) -> PathBuf {
    run_block(&ceremony_os_test_support::example("ceremony-day-material"), dir, "the ceremony day's plan");
    dir.join("material/plan.toml")
}

fn transcript_records(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
fn the_readme_ceremony_day_runs_as_written() {
    let dir = tempfile::tempdir().unwrap();
    let plan = readme_material(dir.path());
    run_block(
        &ceremony_os_test_support::example("ceremony-day-rehearsal"),
        dir.path(),
        "the ceremony day's rehearsal and its check",
    );
    let checked = dir.path().join("checked");
    for file in ["root-2026.pem", "issuing.pem"] {
        pkilint(&checked.join(file), false);
    }
    pkilint(&checked.join("root-2026.crl.pem"), true);
    // dosfstools' checker finds nothing to repair on the exported file system.
    let fsck = Command::new("fsck.fat").arg("-n").arg(dir.path().join("rehearsal.img")).output().unwrap();
    assert!(fsck.status.success(), "{}", String::from_utf8_lossy(&fsck.stdout));
    // Every record on the stick is a rehearsal step of this plan, all six completed in order.
    let plan_sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(std::fs::read(&plan).unwrap()));
    let records = transcript_records(&checked.join("ceremony-transcript.jsonl"));
    let steps: Vec<&str> = records.iter().map(|r| r["plan"]["step"].as_str().unwrap()).collect();
    assert_eq!(
        steps,
        ["root-key", "root-certificate", "witness-root", "issuing-ca", "first-crl", "pin-shares"]
    );
    for record in &records {
        assert_eq!(
            (record["plan"]["sha256"].as_str(), record["plan"]["rehearsal"].as_bool()),
            (Some(&*plan_sha), Some(true))
        );
        assert_eq!(record["outcome"], "ok");
    }
    let shares = std::fs::read_to_string(dir.path().join("rehearsal/shares.txt")).unwrap();
    assert_eq!(shares.lines().filter(|l| l.starts_with("cs2-")).count(), 3, "{shares}");
}

/// `plan run` in the token's directory (the work directory) with the PIN on fd 3 and the
/// witnesses' answers on fd 4.
fn plan_run(token: &Token, plan: &Path, extra: &[&str], answers: &str) -> (bool, String) {
    let answers_file = token.write("answers.txt", answers);
    let pin_file = token.write("pin.txt", &format!("{PIN}\n"));
    let out = Command::new("bash")
        .arg("-c")
        .arg("exec \"$@\" --pin-fd 3 --confirm-fd 4 3< \"$PIN_FILE\" 4< \"$ANSWERS\"")
        .arg("bash")
        .arg(env!("CARGO_BIN_EXE_ceremony"))
        .args(["plan", "run"])
        .arg(plan)
        .args(extra)
        .env("PIN_FILE", &pin_file)
        .env("ANSWERS", &answers_file)
        .env("SOFTHSM2_CONF", &token.conf)
        .env("CEREMONY_TRANSCRIPT", token.path("transcript.jsonl"))
        .current_dir(token.dir.path())
        .output()
        .unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn a_plan_refuses_swapped_files_before_the_hsm_and_resumes_after_its_last_step() {
    let token = Token::new(&["root-ca"]);
    let plan = readme_material(token.dir.path());
    let material = plan.parent().unwrap().to_path_buf();
    let empty = token.objects("root-ca");

    // A CSR swapped on the material disc, or a step file edited after review: refused before
    // any HSM session, nothing written, the refusal recorded.
    let swapped = token.path("swapped");
    std::fs::create_dir_all(swapped.join("steps")).unwrap();
    for file in
        ["plan.toml", "steps/1-key.toml", "steps/2-root.toml", "steps/3-issuing.toml", "steps/4-crl.toml"]
    {
        std::fs::copy(material.join(file), swapped.join(file)).unwrap();
    }
    openssl_csr(
        &token,
        "other",
        &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
        "/CN=Example Issuing CA 2026",
    );
    std::fs::copy(token.path("other.csr"), swapped.join("issuing.csr")).unwrap();
    let (ok, stderr) = plan_run(&token, &swapped.join("plan.toml"), &[], "yes\n");
    assert!(
        !ok && stderr.contains("issuing.csr has SHA-256") && stderr.contains("not the reviewed file"),
        "{stderr}"
    );
    std::fs::copy(material.join("issuing.csr"), swapped.join("issuing.csr")).unwrap();
    std::fs::write(
        swapped.join("steps/4-crl.toml"),
        std::fs::read_to_string(material.join("steps/4-crl.toml"))
            .unwrap()
            .replace("number = 1", "number = 2"),
    )
    .unwrap();
    let (ok, stderr) = plan_run(&token, &swapped.join("plan.toml"), &[], "yes\n");
    assert!(!ok && stderr.contains("step file") && stderr.contains("4-crl.toml"), "{stderr}");
    assert_eq!(token.objects("root-ca"), empty, "the HSM was used");
    for output in ["root-2026.pub.pem", "root-2026.pem", "issuing.pem"] {
        assert!(!token.path(output).exists(), "{output} was written");
    }
    let records = transcript_records(&token.path("transcript.jsonl"));
    assert_eq!(records.len(), 2);
    assert!(
        records
            .iter()
            .all(|r| r["plan"]["step"] == "(check)" && r["outcome"].as_str().unwrap().starts_with("error"))
    );

    // The witnesses must confirm the plan's digest before any HSM session.
    let (ok, stderr) = plan_run(&token, &plan, &[], "no\n");
    assert!(!ok && stderr.contains("the witnesses did not confirm; nothing was done"), "{stderr}");
    assert_eq!(token.objects("root-ca"), empty, "the HSM was used");
    // They confirm it, but not the checkpoint: the plan stops after the two steps before it.
    let (ok, stderr) = plan_run(&token, &plan, &[], "yes\nno\n");
    assert!(!ok && stderr.contains("the witnesses did not confirm"), "{stderr}");
    assert!(token.path("root-2026.pem").exists() && !token.path("issuing.pem").exists());
    // Running it again from the start is refused; a rehearsal in this directory too.
    let (ok, stderr) = plan_run(&token, &plan, &[], "yes\n");
    assert!(!ok && stderr.contains("give --resume to continue after step 2"), "{stderr}");
    let (ok, stderr) = plan_run(&token, &plan, &["--dry-run"], "yes\n");
    assert!(!ok && stderr.contains("holds a real run of this plan"), "{stderr}");

    // A certificate replaced in the work directory is caught at the checkpoint, and by export.
    let root = std::fs::read(token.path("root-2026.pem")).unwrap();
    std::fs::copy(token.path("other.csr"), token.path("root-2026.pem")).unwrap();
    let (ok, stderr) = plan_run(&token, &plan, &["--resume"], "yes\nyes\n");
    assert!(
        !ok && stderr.contains("root-2026.pem has SHA-256") && stderr.contains("it was replaced"),
        "{stderr}"
    );
    let out = token.ceremony().args(["export", "--image"]).arg(token.path("x.img")).output().unwrap();
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("it was replaced"));
    assert!(!token.path("x.img").exists(), "a refused export left an image");

    // A certificate with a second block appended is not what the step wrote, though its first
    // block is: refused at the checkpoint and by export.
    let mut appended = root.clone();
    appended.extend_from_slice(&std::fs::read(token.path("other.csr")).unwrap());
    std::fs::write(token.path("root-2026.pem"), &appended).unwrap();
    let (ok, stderr) = plan_run(&token, &plan, &["--resume"], "yes\nyes\n");
    assert!(!ok && stderr.contains("holds 2 PEM blocks"), "{stderr}");
    let out = token.ceremony().args(["export", "--image"]).arg(token.path("x.img")).output().unwrap();
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("holds 2 PEM blocks"));

    // On a resume the witnesses confirm the transcript's head first.
    std::fs::write(token.path("root-2026.pem"), root).unwrap();
    let (ok, stderr) = plan_run(&token, &plan, &["--resume"], "no\n");
    assert!(!ok && stderr.contains("Is this the last transcript head the witnesses wrote down?"), "{stderr}");

    // A symbolic link in the work directory (to a copy with the same bytes, which someone else
    // could change) is refused before anything runs.
    std::fs::copy(token.path("issuing.csr"), token.path("elsewhere.csr")).unwrap();
    std::fs::remove_file(token.path("issuing.csr")).unwrap();
    std::os::unix::fs::symlink(token.path("elsewhere.csr"), token.path("issuing.csr")).unwrap();
    let (ok, stderr) = plan_run(&token, &plan, &["--resume"], "yes\nyes\n");
    assert!(!ok && stderr.contains("issuing.csr is a symbolic link"), "{stderr}");
    std::fs::remove_file(token.path("issuing.csr")).unwrap();

    // Restored, the plan resumes after step 2 and completes with one key on the token.
    let (ok, stderr) = plan_run(&token, &plan, &["--resume"], "yes\nyes\n");
    assert!(ok, "{stderr}");
    assert!(stderr.contains("== step 3 of 6") && !stderr.contains("== step 2 of 6"), "{stderr}");
    token.openssl_ok(&["verify", "-attime", VALID_AT, "-CAfile", "root-2026.pem", "issuing.pem"]);
    assert_eq!(token.objects("root-ca").matches("Private Key Object").count(), 1);
    let (ok, stderr) = plan_run(&token, &plan, &["--resume"], "");
    assert!(ok && stderr.contains("every step of the plan is already done"), "{stderr}");
    token.ceremony().args(["transcript", "verify"]).assert().success();

    // Export writes only to USB: a loop device (a disk that is not a stick) is refused, untouched.
    let backing = token.path("disk.img");
    std::fs::File::create(&backing).unwrap().set_len(8 << 20).unwrap();
    let losetup = Command::new("losetup").args(["-f", "--show"]).arg(&backing).output().unwrap();
    assert!(losetup.status.success(), "{losetup:?}");
    let loop_device = String::from_utf8(losetup.stdout).unwrap().trim().to_string();
    let out = token.ceremony().args(["export", "--device", &loop_device]).output().unwrap();
    Command::new("losetup").args(["-d", &loop_device]).status().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not on USB"), "{out:?}");
    assert!(std::fs::read(&backing).unwrap().iter().all(|b| *b == 0), "the loop device was written");
}

#[test]
fn a_rehearsal_never_reaches_a_real_module_and_a_pin_is_tried_before_it_is_split() {
    let token = Token::new(&["root-ca"]);
    let plan = readme_material(token.dir.path());
    let (ok, stderr) = plan_run(&token, &plan, &["--dry-run", "--module", MODULE], "yes\n");
    assert!(!ok && stderr.contains("--module would point it at a real HSM"), "{stderr}");
    let out = token
        .ceremony()
        .args(["plan", "run"])
        .arg(&plan)
        .env("CEREMONY_REHEARSAL_HSM", token.path("x"))
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("this is not a rehearsal"), "{out:?}");

    // A plan that only splits the PIN: a wrong PIN does not log in, and nothing is split.
    let split = token.write(
        "material/split.toml",
        "[plan]\ntitle = \"PIN shares\"\n\n[[step]]\nid = \"pin\"\nrun = \"shamir split\"\ntoken = \"root-ca\"\nthreshold = 2\nshares = 3\n",
    );
    let run_split = |pin: &str| {
        token.write("pin.txt", &format!("{pin}\n"));
        token.write("answers.txt", "yes\n");
        Command::new("bash")
            .arg("-c")
            .arg("exec \"$@\" --pin-fd 3 --confirm-fd 4 3< pin.txt 4< answers.txt")
            .arg("bash")
            .arg(env!("CARGO_BIN_EXE_ceremony"))
            .args(["plan", "run", "--module", MODULE])
            .arg(&split)
            .env("SOFTHSM2_CONF", &token.conf)
            .env("CEREMONY_TRANSCRIPT", token.path("split-transcript.jsonl"))
            .current_dir(token.dir.path())
            .output()
            .unwrap()
    };
    let out = run_split("999999");
    assert!(!out.status.success() && out.stdout.is_empty(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not log in; nothing was split"), "{out:?}");
    let out = run_split(PIN);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().filter(|l| l.starts_with("cs2-")).count(), 3);
}

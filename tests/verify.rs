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

fn verify(definition: &Path, expect: &Path) -> (i32, Value, String) {
    let out = support::ceremony_os(&support::shared_image_store())
        .arg("verify")
        .arg(definition)
        .arg("--expect")
        .arg(expect)
        .arg("--json")
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
    let (code, verdict, stderr) = verify(&p.definition, &p.out.join("ceremony-os.manifest.json"));
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(verdict["match"], true);
    let stages = verdict["rebuilt"]["stages"].as_array().unwrap();
    assert!(stages.iter().all(|s| s["cached"] == false), "verify reused a cached stage: {stages:?}");
    let words = verdict["rebuilt"]["words"].as_array().unwrap();
    assert_eq!(words.len(), 32, "one PGP word per digest byte");
    assert!(stderr.contains("MATCH"), "{stderr}");
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

    let (code, verdict, stderr) = verify(&p.definition, &manifest_path);
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(verdict["match"], false);
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

#[test]
fn verify_and_compare_take_relative_paths() {
    // No rebuild: an expectation that cannot be read fails before it, with the path as given.
    let p = published();
    let out = support::ceremony_os(&support::shared_image_store())
        .current_dir(&p.out)
        .args(["compare", "ceremony-os-0.1.0-amd64.iso", "./ceremony-os-0.1.0-amd64.iso"])
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

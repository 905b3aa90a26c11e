//! What a witness compares a rebuild with (`verify --expect X`): a SHA-256, a `SHA256SUMS` file,
//! the ISO itself, a published build manifest (`<name>.manifest.json`, with its rootfs manifest
//! beside it), or an in-toto provenance statement. Manifests and provenance carry every stage's
//! digest, so a mismatch can be pinned to the first stage that differs.

use crate::VerifyError;
use ceremony_os_tree::TreeManifest;
use serde_json::Value;
use std::path::{Path, PathBuf};

pub const MANIFEST_FORMAT: &str = "ceremony-os-manifest/1";
pub const IN_TOTO_STATEMENT: &str = "https://in-toto.io/Statement/v1";

#[derive(Debug, Clone)]
pub struct Expected {
    /// What was given, for messages.
    pub source: String,
    pub kind: &'static str,
    pub sha256: String,
    /// `(stage, digest)` in pipeline order, when a manifest or provenance was given.
    pub stages: Vec<(String, String)>,
    /// The published rootfs manifest, when it sits beside a given build manifest.
    pub rootfs: Option<TreeManifest>,
    /// The ISO itself, when an ISO was given.
    pub iso: Option<PathBuf>,
}

/// Read `--expect`. `iso_name` is the ISO's file name, to pick its line from a SHA256SUMS.
pub fn load(arg: &str, iso_name: &str) -> Result<Expected, VerifyError> {
    let trimmed = arg.trim();
    let expected = |kind, sha256: String| Expected {
        source: arg.to_string(),
        kind,
        sha256,
        stages: Vec::new(),
        rootfs: None,
        iso: None,
    };
    if is_sha256(trimmed) {
        return Ok(expected("digest", trimmed.to_ascii_lowercase()));
    }
    let path = Path::new(arg);
    if !path.exists() {
        return Err(VerifyError::Invalid(format!(
            "--expect {arg:?}: neither a SHA-256 (64 hex digits) nor an existing file"
        )));
    }
    if crate::iso9660::read_pvd(path).is_ok() {
        let mut e = expected("iso", ceremony_os_tree::sha256_file(path)?);
        e.iso = Some(path.to_path_buf());
        return Ok(e);
    }
    let text = std::fs::read_to_string(path).map_err(|e| VerifyError::io(path, e))?;
    if let Ok(json) = serde_json::from_str::<Value>(&text) {
        return from_json(&json, path, iso_name);
    }
    sums_line(&text, iso_name)
        .map(|sha| expected("SHA256SUMS", sha))
        .ok_or_else(|| VerifyError::Invalid(format!("{}: no SHA256SUMS line for {iso_name}", path.display())))
}

fn is_sha256(s: &str) -> bool {
    s.len() == 64 && s.chars().all(|c| c.is_ascii_hexdigit())
}

fn sums_line(text: &str, name: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let (digest, file) = line.split_once(char::is_whitespace)?;
        (file.trim_start().trim_start_matches('*') == name && is_sha256(digest))
            .then(|| digest.to_ascii_lowercase())
    })
}

fn from_json(json: &Value, path: &Path, iso_name: &str) -> Result<Expected, VerifyError> {
    let bad = |what: &str| VerifyError::Invalid(format!("{}: {what}", path.display()));
    let str_of = |v: &Value| v.as_str().map(str::to_string);
    if json["_type"] == IN_TOTO_STATEMENT {
        let subjects =
            json["subject"].as_array().ok_or_else(|| bad("an in-toto statement without subject"))?;
        let subject = subjects
            .iter()
            .find(|s| s["name"] == iso_name)
            .or(subjects.first())
            .ok_or_else(|| bad("the statement has no subject"))?;
        let sha256 = str_of(&subject["digest"]["sha256"])
            .filter(|s| is_sha256(s))
            .ok_or_else(|| bad("subject without a sha256 digest"))?;
        let stages = json["predicate"]["runDetails"]["byproducts"]
            .as_array()
            .map(|list| {
                list.iter()
                    .filter_map(|b| {
                        let name = str_of(&b["name"])?.strip_prefix("stage:")?.to_string();
                        Some((name, str_of(&b["digest"]["sha256"])?))
                    })
                    .collect()
            })
            .unwrap_or_default();
        return Ok(Expected {
            source: path.display().to_string(),
            kind: "provenance",
            sha256,
            stages,
            rootfs: None,
            iso: None,
        });
    }
    if json["format"] == MANIFEST_FORMAT {
        let sha256 = str_of(&json["image"]["sha256"])
            .filter(|s| is_sha256(s))
            .ok_or_else(|| bad("manifest without image.sha256"))?;
        let stages = json["stages"]
            .as_array()
            .map(|list| {
                list.iter().filter_map(|s| Some((str_of(&s["name"])?, str_of(&s["digest"])?))).collect()
            })
            .unwrap_or_default();
        let rootfs = match (str_of(&json["rootfs"]["manifest"]), str_of(&json["rootfs"]["manifest_sha256"])) {
            (Some(name), Some(digest)) => {
                let beside = path.parent().unwrap_or(Path::new(".")).join(name);
                match std::fs::read(&beside) {
                    Ok(bytes) if crate::compare::sha256_bytes(&bytes) == digest => {
                        Some(TreeManifest::parse(&String::from_utf8_lossy(&bytes))?)
                    }
                    Ok(_) => {
                        return Err(bad(&format!(
                            "{} does not match the manifest's rootfs.manifest_sha256",
                            beside.display()
                        )));
                    }
                    Err(_) => None,
                }
            }
            _ => None,
        };
        return Ok(Expected {
            source: path.display().to_string(),
            kind: "manifest",
            sha256,
            stages,
            rootfs,
            iso: None,
        });
    }
    Err(bad("JSON, but neither a ceremony-os build manifest nor an in-toto statement"))
}

/// The first stage (in pipeline order) whose digest differs: `(stage, expected, actual)`.
pub fn first_differing_stage(
    expected: &[(String, String)],
    actual: &[(String, String)],
) -> Option<(String, String, String)> {
    expected.iter().find_map(|(name, digest)| {
        let got = actual
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, d)| d.clone())
            .unwrap_or_else(|| "(missing)".into());
        (got != *digest).then(|| (name.clone(), digest.clone(), got))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_sums_manifest_and_provenance() {
        let dir = tempfile::tempdir().unwrap();
        let hex = "ab".repeat(32);
        assert_eq!(load(&hex, "x.iso").unwrap().kind, "digest");

        let sums = dir.path().join("SHA256SUMS");
        std::fs::write(&sums, format!("{}  other\n{hex}  x.iso\n", "cd".repeat(32))).unwrap();
        let e = load(sums.to_str().unwrap(), "x.iso").unwrap();
        assert_eq!((e.kind, e.sha256.as_str()), ("SHA256SUMS", hex.as_str()));
        assert!(
            load(sums.to_str().unwrap(), "y.iso")
                .unwrap_err()
                .to_string()
                .contains("no SHA256SUMS line for y.iso")
        );

        let manifest = dir.path().join("m.json");
        std::fs::write(
            &manifest,
            serde_json::json!({"format": MANIFEST_FORMAT, "image": {"sha256": hex},
                "stages": [{"name": "repo", "key": "k", "digest": "d1"}, {"name": "rootfs", "key": "k", "digest": "d2"}]})
            .to_string(),
        )
        .unwrap();
        let e = load(manifest.to_str().unwrap(), "x.iso").unwrap();
        assert_eq!(e.kind, "manifest");
        assert_eq!(e.stages, [("repo".to_string(), "d1".to_string()), ("rootfs".into(), "d2".into())]);

        let provenance = dir.path().join("p.json");
        std::fs::write(
            &provenance,
            serde_json::json!({"_type": IN_TOTO_STATEMENT, "subject": [{"name": "x.iso", "digest": {"sha256": hex}}],
                "predicate": {"runDetails": {"byproducts": [{"name": "stage:repo", "digest": {"sha256": "d1"}}]}}})
            .to_string(),
        )
        .unwrap();
        let e = load(provenance.to_str().unwrap(), "x.iso").unwrap();
        assert_eq!((e.kind, e.stages.len()), ("provenance", 1));

        assert!(load("/nonexistent/file", "x.iso").unwrap_err().to_string().contains("neither a SHA-256"));
    }

    #[test]
    fn first_stage_that_differs() {
        let s =
            |v: &[(&str, &str)]| v.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect::<Vec<_>>();
        let expected = s(&[("repo", "1"), ("rootfs", "2"), ("iso", "3")]);
        assert_eq!(
            first_differing_stage(&expected, &s(&[("repo", "1"), ("rootfs", "2"), ("iso", "3")])),
            None
        );
        assert_eq!(
            first_differing_stage(&expected, &s(&[("repo", "1"), ("rootfs", "X"), ("iso", "Y")])),
            Some(("rootfs".into(), "2".into(), "X".into()))
        );
    }
}

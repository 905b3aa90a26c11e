//! What a witness compares a rebuild with (`verify --expect X`): a SHA-256, a `SHA256SUMS` file,
//! the ISO itself, a published build manifest (`<name>.manifest.json`, with its rootfs manifest
//! beside it) or an in-toto provenance statement. Manifests and provenance carry every stage's
//! digest, so a mismatch can be pinned to the first stage that differs; a manifest also carries
//! every stage's inputs, so `verify` can say how that stage's inputs differ.
//!
//! Manifests and statements are read with the same types the build writes them with
//! (`ceremony_os_definition::published`).

use crate::VerifyError;
use ceremony_os_definition::published::{
    BuildManifest, IN_TOTO_STATEMENT_V1, MANIFEST_FORMAT, ProvenanceStatement,
};
use ceremony_os_tree::TreeManifest;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// One stage as published: its digest and, from a manifest, its inputs.
#[derive(Debug, Clone, PartialEq)]
pub struct PublishedStage {
    pub name: String,
    pub digest: String,
    pub inputs: Option<Value>,
}

#[derive(Debug, Clone)]
pub struct Expected {
    /// What was given, for messages.
    pub source: String,
    pub kind: &'static str,
    pub sha256: String,
    /// In pipeline order, when a manifest or provenance was given.
    pub stages: Vec<PublishedStage>,
    /// The published rootfs manifest, when it sits beside a given build manifest.
    pub rootfs: Option<TreeManifest>,
    /// The ISO itself, when an ISO was given.
    pub iso: Option<PathBuf>,
    /// SHA-256 of the lockfile the release was built from, when a manifest or provenance says.
    pub lockfile_sha256: Option<String>,
}

impl Expected {
    /// Refuse to rebuild from another lock than the release's: that would rebuild something else
    /// and say "mismatch" for a reason no comparison explains. `lock_sha256` is the digest of
    /// `lock_path` as read.
    pub fn check_lock(&self, lock_path: &Path, lock_sha256: &str) -> Result<(), VerifyError> {
        match &self.lockfile_sha256 {
            Some(release) if release != lock_sha256 => Err(VerifyError::Invalid(format!(
                "{} was built from a lock with SHA-256 {release}, but {} has SHA-256 {lock_sha256}: \
                 use the release's lock (published beside the ISO as ceremony.lock: \
                 --lockfile DIR/ceremony.lock), or a clone of the release's commit; do not re-lock, \
                 a new lock rebuilds another ISO",
                self.source,
                lock_path.display()
            ))),
            _ => Ok(()),
        }
    }
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
        lockfile_sha256: None,
    };
    if is_sha256(trimmed) {
        return Ok(expected("digest", trimmed.to_ascii_lowercase()));
    }
    let path = Path::new(arg);
    let meta = std::fs::metadata(path).map_err(|_| {
        VerifyError::Invalid(format!(
            "--expect {arg:?}: neither a SHA-256 (64 hex digits) nor an existing file"
        ))
    })?;
    if !meta.is_file() {
        return Err(VerifyError::Invalid(format!("--expect {arg:?}: not a regular file")));
    }
    if crate::iso9660::read_pvd(path).is_ok() {
        let mut e = expected("iso", ceremony_os_tree::sha256_file(path)?);
        e.iso = Some(path.to_path_buf());
        return Ok(e);
    }
    if meta.len() > 64 << 20 {
        return Err(VerifyError::Invalid(format!(
            "--expect {arg:?}: {} bytes is too large for a SHA256SUMS, manifest or statement",
            meta.len()
        )));
    }
    let text = std::fs::read_to_string(path).map_err(|e| VerifyError::io(path, e))?;
    if let Ok(json) = serde_json::from_str::<Value>(&text) {
        return from_json(&json, &text, path, iso_name);
    }
    match ceremony_os_tree::sums_entry(&text, iso_name) {
        Ok(Some(sha)) => Ok(expected("SHA256SUMS", sha)),
        Ok(None) => {
            Err(VerifyError::Invalid(format!("{}: no SHA256SUMS line for {iso_name}", path.display())))
        }
        Err(e) => Err(VerifyError::Invalid(format!("{}: {e}", path.display()))),
    }
}

fn is_sha256(s: &str) -> bool {
    s.len() == 64 && s.chars().all(|c| c.is_ascii_hexdigit())
}

fn from_json(json: &Value, text: &str, path: &Path, iso_name: &str) -> Result<Expected, VerifyError> {
    let bad = |what: &str| VerifyError::Invalid(format!("{}: {what}", path.display()));
    if json["_type"] == IN_TOTO_STATEMENT_V1 {
        let statement: ProvenanceStatement = serde_json::from_value(json.clone())
            .map_err(|e| bad(&format!("not an in-toto statement with a SLSA provenance: {e}")))?;
        let subject = statement
            .subject
            .iter()
            .find(|s| s.name.as_deref() == Some(iso_name))
            .or(statement.subject.first())
            .ok_or_else(|| bad("the statement has no subject"))?;
        let sha256 = subject
            .sha256()
            .filter(|s| is_sha256(s))
            .ok_or_else(|| bad("subject without a sha256 digest"))?
            .to_ascii_lowercase();
        let stages = statement
            .predicate
            .run_details
            .byproducts
            .iter()
            .filter_map(|b| {
                let name = b.name.as_deref()?.strip_prefix("stage:")?.to_string();
                Some(PublishedStage { name, digest: b.sha256()?.to_string(), inputs: None })
            })
            .collect();
        let lockfile_sha256 = statement
            .predicate
            .build_definition
            .resolved_dependencies
            .iter()
            .find(|d| d.name.as_deref() == Some("ceremony.lock"))
            .and_then(|d| d.sha256())
            .map(str::to_ascii_lowercase);
        return Ok(Expected {
            source: path.display().to_string(),
            kind: "provenance",
            sha256,
            stages,
            rootfs: None,
            iso: None,
            lockfile_sha256,
        });
    }
    if json["format"].as_str().is_some_and(|f| f.starts_with("ceremony-os-manifest/")) {
        let manifest = BuildManifest::parse(text)
            .map_err(|e| bad(&format!("build manifest ({MANIFEST_FORMAT}): {e}")))?;
        if !is_sha256(&manifest.image.sha256) {
            return Err(bad("image.sha256 is not a SHA-256"));
        }
        let stages = manifest
            .stages
            .iter()
            .map(|s| PublishedStage {
                name: s.name.clone(),
                digest: s.digest.clone(),
                inputs: Some(s.inputs.clone()),
            })
            .collect();
        let rootfs = rootfs_beside(path, &manifest.rootfs.manifest, &manifest.rootfs.manifest_sha256)?;
        return Ok(Expected {
            source: path.display().to_string(),
            kind: "manifest",
            sha256: manifest.image.sha256.to_ascii_lowercase(),
            stages,
            rootfs,
            iso: None,
            lockfile_sha256: Some(manifest.lockfile_sha256.to_ascii_lowercase()),
        });
    }
    Err(bad("JSON, but neither a ceremony-os build manifest nor an in-toto statement"))
}

/// The rootfs manifest named by a build manifest, if it is beside it (a plain file name, never a
/// path) and has the recorded digest.
fn rootfs_beside(
    manifest_path: &Path,
    name: &str,
    digest: &str,
) -> Result<Option<TreeManifest>, VerifyError> {
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        return Err(VerifyError::Invalid(format!(
            "{}: rootfs.manifest {name:?} is not a file name",
            manifest_path.display()
        )));
    }
    let beside = manifest_path.parent().unwrap_or(Path::new(".")).join(name);
    match std::fs::read(&beside) {
        Ok(bytes) if crate::compare::sha256_bytes(&bytes) == digest => {
            Ok(Some(TreeManifest::parse(&String::from_utf8_lossy(&bytes))?))
        }
        Ok(_) => Err(VerifyError::Invalid(format!(
            "{} does not match the manifest's rootfs.manifest_sha256",
            beside.display()
        ))),
        Err(_) => Ok(None),
    }
}

/// Where two stage input values differ: JSON paths (`debs[3].sha256`) with both values.
pub fn input_differences(expected: &Value, rebuilt: &Value) -> Vec<(String, Value, Value)> {
    let mut out = Vec::new();
    diff_values("", expected, rebuilt, &mut out);
    out
}

fn diff_values(path: &str, a: &Value, b: &Value, out: &mut Vec<(String, Value, Value)>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for key in keys {
                let sub = if path.is_empty() { key.clone() } else { format!("{path}.{key}") };
                diff_values(
                    &sub,
                    x.get(key).unwrap_or(&Value::Null),
                    y.get(key).unwrap_or(&Value::Null),
                    out,
                );
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (p, q)) in x.iter().zip(y).enumerate() {
                diff_values(&format!("{path}[{i}]"), p, q, out);
            }
        }
        _ if a != b => out.push((path.to_string(), a.clone(), b.clone())),
        _ => {}
    }
}

/// The first stage (in pipeline order) whose digest differs: `(stage, expected, actual)`.
pub fn first_differing_stage<'a>(
    expected: &'a [PublishedStage],
    actual: &[(String, String)],
) -> Option<(&'a PublishedStage, String)> {
    expected.iter().find_map(|stage| {
        let got = actual
            .iter()
            .find(|(n, _)| *n == stage.name)
            .map(|(_, d)| d.clone())
            .unwrap_or_else(|| "(missing)".into());
        (got != stage.digest).then_some((stage, got))
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
        let stage = |name: &str, digest: &str| serde_json::json!({"name": name, "key": "k", "digest": digest, "inputs": {"recipe": 1}});
        let mut value = serde_json::json!({"format": MANIFEST_FORMAT,
            "image": {"name": "x", "version": "1", "architecture": "amd64", "file": "x.iso", "sha256": hex, "size": 1,
                      "volume_id": "X", "snapshot": "s", "source_date_epoch": 1},
            "lockfile_sha256": hex, "rootfs": {"nar_hash": "n", "manifest": "x.rootfs.manifest", "manifest_sha256": hex},
            "stages": [stage("repo", "d1"), stage("rootfs", "d2")], "packages": [], "toolchain": [],
            "compiler": "rustc", "ceremony_tools_sha256": hex, "builder": {"name": "ceremony-os", "version": "0"}});
        std::fs::write(&manifest, value.to_string()).unwrap();
        let e = load(manifest.to_str().unwrap(), "x.iso").unwrap();
        assert_eq!(e.kind, "manifest");
        let names: Vec<(&str, &str)> =
            e.stages.iter().map(|s| (s.name.as_str(), s.digest.as_str())).collect();
        assert_eq!(names, [("repo", "d1"), ("rootfs", "d2")]);
        assert_eq!(e.stages[0].inputs, Some(serde_json::json!({"recipe": 1})));
        // The release's lock is the one rebuilt from, or nothing is rebuilt.
        assert!(e.check_lock(Path::new("image/ceremony.lock"), &hex).is_ok());
        let err = e.check_lock(Path::new("image/ceremony.lock"), &"ef".repeat(32)).unwrap_err().to_string();
        assert!(
            err.contains(&format!("built from a lock with SHA-256 {hex}")) && err.contains("--lockfile"),
            "{err}"
        );
        assert!(
            load(&hex, "x.iso").unwrap().check_lock(Path::new("l"), "x").is_ok(),
            "a bare digest names no lock"
        );

        // A manifest that names a path instead of a file beside it is refused.
        value["rootfs"]["manifest"] = "../../etc/passwd".into();
        std::fs::write(&manifest, value.to_string()).unwrap();
        assert!(
            load(manifest.to_str().unwrap(), "x.iso").unwrap_err().to_string().contains("is not a file name")
        );

        let provenance = dir.path().join("p.json");
        std::fs::write(
            &provenance,
            serde_json::json!({"_type": IN_TOTO_STATEMENT_V1, "subject": [{"name": "x.iso", "digest": {"sha256": hex}}],
                "predicateType": "https://slsa.dev/provenance/v1",
                "predicate": {"buildDefinition": {"buildType": "t", "externalParameters": {},
                                                  "resolvedDependencies": [{"name": "ceremony.lock", "digest": {"sha256": "CD".repeat(32)}}]},
                              "runDetails": {"builder": {"id": "b"}, "byproducts": [{"name": "stage:repo", "digest": {"sha256": "d1"}}]}}})
            .to_string(),
        )
        .unwrap();
        let e = load(provenance.to_str().unwrap(), "x.iso").unwrap();
        assert_eq!((e.kind, e.stages.len()), ("provenance", 1));
        assert_eq!(e.lockfile_sha256, Some("cd".repeat(32)));

        assert!(load("/nonexistent/file", "x.iso").unwrap_err().to_string().contains("neither a SHA-256"));
    }

    #[test]
    fn first_stage_that_differs() {
        let s =
            |v: &[(&str, &str)]| v.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect::<Vec<_>>();
        let expected: Vec<PublishedStage> = s(&[("repo", "1"), ("rootfs", "2"), ("iso", "3")])
            .into_iter()
            .map(|(name, digest)| PublishedStage { name, digest, inputs: None })
            .collect();
        assert_eq!(
            first_differing_stage(&expected, &s(&[("repo", "1"), ("rootfs", "2"), ("iso", "3")])),
            None
        );
        let (stage, got) =
            first_differing_stage(&expected, &s(&[("repo", "1"), ("rootfs", "X"), ("iso", "Y")])).unwrap();
        assert_eq!((stage.name.as_str(), stage.digest.as_str(), got.as_str()), ("rootfs", "2", "X"));
    }

    #[test]
    fn input_differences_name_the_json_path() {
        let a = serde_json::json!({"rustc": "1.95.0", "debs": [{"name": "a", "sha256": "1"}, {"name": "b", "sha256": "2"}]});
        let b = serde_json::json!({"rustc": "1.96.0", "debs": [{"name": "a", "sha256": "1"}, {"name": "b", "sha256": "3"}], "extra": 1});
        let paths: Vec<String> = input_differences(&a, &b).into_iter().map(|(p, _, _)| p).collect();
        assert_eq!(paths, ["debs[1].sha256", "extra", "rustc"]);
        assert!(input_differences(&a, &a).is_empty());
    }
}

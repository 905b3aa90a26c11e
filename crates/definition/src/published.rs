//! What a build publishes beside the ISO, as types shared by the writer (`ceremony-os build`) and
//! the readers (`verify`, `attestations`): the build manifest (`<name>.manifest.json`) and in-toto
//! statements (the SLSA provenance of a build; witnesses' verification summaries).
//!
//! The build manifest is parsed strictly (unknown fields refused): it is ours. In-toto statements
//! follow the in-toto Attestation Framework v1 (Statement layer) and are parsed leniently where
//! the framework allows extra fields.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const MANIFEST_FORMAT: &str = "ceremony-os-manifest/2";
pub const IN_TOTO_STATEMENT_V1: &str = "https://in-toto.io/Statement/v1";
pub const SLSA_PROVENANCE_V1: &str = "https://slsa.dev/provenance/v1";

/// `<name>.manifest.json`: every stage's inputs, key and digest, and what went into the image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BuildManifest {
    pub format: String,
    pub image: ImageRecord,
    pub lockfile_sha256: String,
    pub rootfs: RootfsRecord,
    /// In pipeline order.
    pub stages: Vec<StageRecord>,
    pub packages: Vec<PackageRecord>,
    pub toolchain: Vec<PackageRecord>,
    /// `rustc -vV` of the compiler that built the `ceremony` tool.
    pub compiler: String,
    pub ceremony_tools_sha256: String,
    pub builder: BuilderRecord,
    /// How the build's inputs were had, when not plainly from the committed lock's archive states.
    /// Absent when every locked state was fetched as locked and no bundle was used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inputs: Option<InputsRecord>,
    /// The source tree the build ran from (absent in manifests of builds before it was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<SourceRecord>,
}

/// The source tree a build ran from, as git saw it: never an input of a stage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceRecord {
    /// `git rev-parse HEAD` of the workspace, or `unknown` outside a git work tree.
    pub commit: String,
    /// No tracked file differed from the commit.
    pub clean: bool,
    /// The lock built is, byte for byte, the one in the commit: a clone of the commit holds the
    /// release's lock. False after a fallback to today's state or with an edited lock; a witness
    /// then needs the published `ceremony.lock`.
    pub lock_in_commit: bool,
}

impl SourceRecord {
    /// The commit as the provenance names it: `-dirty` when tracked files differed.
    pub fn described(&self) -> String {
        if self.clean { self.commit.clone() } else { format!("{}-dirty", self.commit) }
    }
}

/// Where a build's inputs came from (see `BuildManifest::inputs`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputsRecord {
    /// False when the lock built is not the committed one: its inputs could not be had, and
    /// today's archive state was locked instead (that lock is beside the ISO).
    pub committed_lock: bool,
    /// Archives whose locked InRelease could be had from no source, each with the signed states
    /// that list every locked package of it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub revouched: Vec<RevouchedArchive>,
    /// SHA-256 of the index of the release inputs bundle files were taken from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bundle_index_sha256: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevouchedArchive {
    pub suite: String,
    /// `Date:` of the locked state.
    pub locked_date: String,
    pub vouched_by: Vec<VouchingState>,
}

/// A signed archive state that lists locked packages with their locked SHA-256.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VouchingState {
    pub date: String,
    pub inrelease_sha256: String,
    pub packages: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageRecord {
    pub name: String,
    pub version: String,
    pub architecture: String,
    /// The ISO's file name in `out/`.
    pub file: String,
    pub sha256: String,
    pub size: u64,
    pub volume_id: String,
    pub snapshot: String,
    pub source_date_epoch: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RootfsRecord {
    /// The root tree's NAR hash (SRI), as `nix hash path` prints it.
    pub nar_hash: String,
    /// File name of the rootfs manifest in `out/`.
    pub manifest: String,
    pub manifest_sha256: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageRecord {
    pub name: String,
    /// SHA-256 of the canonical JSON of `inputs`.
    pub key: String,
    pub digest: String,
    pub inputs: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackageRecord {
    pub name: String,
    pub version: String,
    pub architecture: String,
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BuilderRecord {
    pub name: String,
    pub version: String,
}

impl BuildManifest {
    pub fn parse(text: &str) -> Result<Self, String> {
        let manifest: BuildManifest = serde_json::from_str(text).map_err(|e| e.to_string())?;
        if manifest.format != MANIFEST_FORMAT {
            return Err(format!(
                "format is {:?}, this ceremony-os reads {MANIFEST_FORMAT:?}",
                manifest.format
            ));
        }
        Ok(manifest)
    }

    pub fn render(&self) -> String {
        format!("{}\n", serde_json::to_string_pretty(self).expect("a manifest serializes"))
    }
}

/// An in-toto Statement v1 with predicate `P`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Statement<P> {
    #[serde(rename = "_type")]
    pub type_: String,
    pub subject: Vec<ResourceDescriptor>,
    #[serde(rename = "predicateType")]
    pub predicate_type: String,
    pub predicate: P,
}

/// An in-toto ResourceDescriptor (the fields ceremony-os uses).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ResourceDescriptor {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub digest: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<serde_json::Value>,
}

impl ResourceDescriptor {
    pub fn sha256(&self) -> Option<&str> {
        self.digest.get("sha256").map(String::as_str)
    }
}

/// The SLSA Provenance v1 predicate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SlsaProvenance {
    pub build_definition: BuildDefinition,
    pub run_details: RunDetails,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BuildDefinition {
    pub build_type: String,
    pub external_parameters: serde_json::Value,
    #[serde(default)]
    pub internal_parameters: serde_json::Value,
    #[serde(default)]
    pub resolved_dependencies: Vec<ResourceDescriptor>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunDetails {
    pub builder: ProvenanceBuilder,
    #[serde(default)]
    pub byproducts: Vec<ResourceDescriptor>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProvenanceBuilder {
    pub id: String,
    #[serde(default)]
    pub version: BTreeMap<String, String>,
}

pub type ProvenanceStatement = Statement<SlsaProvenance>;

/// Name of a stage digest among the provenance's byproducts.
pub fn stage_byproduct_name(stage: &str) -> String {
    format!("stage:{stage}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest() -> BuildManifest {
        BuildManifest {
            format: MANIFEST_FORMAT.into(),
            image: ImageRecord {
                name: "x".into(),
                version: "1".into(),
                architecture: "amd64".into(),
                file: "x-1-amd64.iso".into(),
                sha256: "ab".repeat(32),
                size: 1,
                volume_id: "X".into(),
                snapshot: "2026-07-12T00:00:00Z".into(),
                source_date_epoch: 1,
            },
            lockfile_sha256: "cd".repeat(32),
            rootfs: RootfsRecord {
                nar_hash: "sha256-x".into(),
                manifest: "m".into(),
                manifest_sha256: "ef".repeat(32),
            },
            stages: vec![StageRecord {
                name: "repo".into(),
                key: "k".into(),
                digest: "d".into(),
                inputs: serde_json::json!({"recipe": 1}),
            }],
            packages: vec![],
            toolchain: vec![],
            compiler: "rustc".into(),
            ceremony_tools_sha256: "00".repeat(32),
            builder: BuilderRecord { name: "ceremony-os".into(), version: "0.1.0".into() },
            inputs: None,
            source: Some(SourceRecord { commit: "0f".repeat(20), clean: false, lock_in_commit: true }),
        }
    }

    #[test]
    fn manifest_round_trips_and_is_strict() {
        let text = manifest().render();
        assert_eq!(BuildManifest::parse(&text).unwrap(), manifest());
        let extra = text.replacen("{", "{\n  \"unexpected\": 1,", 1);
        assert!(BuildManifest::parse(&extra).unwrap_err().contains("unknown field"));
        let old = text.replace(MANIFEST_FORMAT, "ceremony-os-manifest/1");
        assert!(BuildManifest::parse(&old).unwrap_err().contains("ceremony-os-manifest/2"));
        // Manifests written before the source was recorded still parse.
        let mut before = manifest();
        before.source = None;
        assert!(!before.render().contains("\"source\""));
        assert_eq!(BuildManifest::parse(&before.render()).unwrap(), before);
        assert_eq!(manifest().source.unwrap().described(), format!("{}-dirty", "0f".repeat(20)));
    }

    #[test]
    fn statement_field_names_follow_in_toto() {
        let statement = Statement {
            type_: IN_TOTO_STATEMENT_V1.into(),
            subject: vec![ResourceDescriptor {
                name: Some("x.iso".into()),
                digest: [("sha256".to_string(), "ab".repeat(32))].into(),
                ..Default::default()
            }],
            predicate_type: "https://example.org/p".into(),
            predicate: serde_json::json!({}),
        };
        let value = serde_json::to_value(&statement).unwrap();
        assert_eq!(value["_type"], IN_TOTO_STATEMENT_V1);
        assert_eq!(value["predicateType"], "https://example.org/p");
        assert_eq!(value["subject"][0]["digest"]["sha256"], "ab".repeat(32));
        assert!(value["subject"][0].get("uri").is_none(), "absent fields are left out");
    }
}

//! The witness's workflow, `ceremony-os verify`: rebuild from the lock with no cached stage,
//! compare the rebuilt ISO's SHA-256 with what was published, and on a mismatch say where: the
//! first stage whose digest differs and how its inputs differ (from a manifest), the root file
//! system paths that differ (with the rootfs manifest), or a layer-by-layer comparison (with the
//! published ISO). The caller fetches the inputs first and prints the verdict.

use crate::VerifyError;
use crate::compare::{self, Report};
use crate::expect::{self, Expected};
use ceremony_os_builder::{BuildObserver, BuildReport, BuildRequest};
use ceremony_os_tree::Change;
use serde::Serialize;

#[derive(Debug)]
pub struct VerifyRequest<'a> {
    /// The build, as `ceremony-os build --no-cache` would run it (its `out_dir` is where the
    /// rebuilt outputs go).
    pub build: BuildRequest<'a>,
    pub expected: &'a Expected,
}

/// How the inputs of the first differing stage differ, path by path.
#[derive(Debug, Clone, Serialize)]
pub struct InputDifference {
    pub path: String,
    pub expected: serde_json::Value,
    pub rebuilt: serde_json::Value,
}

#[derive(Debug, Clone, Serialize)]
pub struct StageDifference {
    pub stage: String,
    pub expected: String,
    pub rebuilt: String,
    /// Empty when the published stage carried no inputs (provenance) or they are the same (the
    /// same inputs gave other bytes: the stage is not reproducible, or a host difference not yet
    /// captured in its inputs reached it).
    pub input_differences: Vec<InputDifference>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RootfsDifference {
    pub path: String,
    pub kind: String,
}

#[derive(Debug, Serialize)]
pub struct Verdict {
    #[serde(rename = "match")]
    pub matched: bool,
    pub expected_sha256: String,
    pub rebuilt: BuildReport,
    pub first_differing_stage: Option<StageDifference>,
    pub rootfs_differences: Vec<RootfsDifference>,
    pub iso_comparison: Option<Report>,
}

pub fn verify(
    request: &VerifyRequest<'_>,
    observer: &dyn BuildObserver,
    progress: &mut dyn FnMut(&str),
) -> Result<Verdict, VerifyError> {
    let rebuilt = ceremony_os_builder::build(&request.build, observer)
        .map_err(|e| VerifyError::Invalid(format!("the rebuild failed: {e}")))?;
    let expected = request.expected;
    let matched = rebuilt.iso_sha256 == expected.sha256;
    let mut verdict = Verdict {
        matched,
        expected_sha256: expected.sha256.clone(),
        first_differing_stage: None,
        rootfs_differences: Vec::new(),
        iso_comparison: None,
        rebuilt,
    };
    if matched {
        return Ok(verdict);
    }
    let actual: Vec<(String, String)> =
        verdict.rebuilt.stages.iter().map(|s| (s.name.to_string(), s.digest.clone())).collect();
    if let Some((stage, got)) = expect::first_differing_stage(&expected.stages, &actual) {
        let rebuilt_inputs = verdict.rebuilt.stages.iter().find(|s| s.name == stage.name).map(|s| &s.inputs);
        let input_differences = match (&stage.inputs, rebuilt_inputs) {
            (Some(published), Some(rebuilt)) => expect::input_differences(published, rebuilt)
                .into_iter()
                .map(|(path, expected, rebuilt)| InputDifference { path, expected, rebuilt })
                .collect(),
            _ => Vec::new(),
        };
        verdict.first_differing_stage = Some(StageDifference {
            stage: stage.name.clone(),
            expected: stage.digest.clone(),
            rebuilt: got,
            input_differences,
        });
    }
    if let Some(published) = &expected.rootfs {
        let text = std::fs::read_to_string(&verdict.rebuilt.rootfs_manifest)
            .map_err(|e| VerifyError::io(&verdict.rebuilt.rootfs_manifest, e))?;
        let rebuilt = ceremony_os_tree::TreeManifest::parse(&text)?;
        verdict.rootfs_differences = ceremony_os_tree::diff(published, &rebuilt)
            .iter()
            .map(|c| RootfsDifference { path: c.path().to_string(), kind: change_kind(c) })
            .collect();
    }
    if let Some(published_iso) = &expected.iso {
        let limits = crate::limits::Limits::default();
        verdict.iso_comparison =
            Some(compare::compare(published_iso, &verdict.rebuilt.iso, &limits, progress)?);
    }
    Ok(verdict)
}

pub fn change_kind(change: &Change) -> String {
    match change {
        Change::Added(_) => "added".into(),
        Change::Removed(_) => "removed".into(),
        Change::Content { .. } => "content".into(),
        Change::Metadata { fields, .. } => format!("metadata ({})", fields.join(", ")),
    }
}

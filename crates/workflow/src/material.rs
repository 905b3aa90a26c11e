//! `material`: a material disc (the ceremony's inputs as an ISO 9660 image) written with the
//! lock's xorriso, its dates from one documented epoch.

use crate::{FetchConfig, Project};
use anyhow::{Context, Result};
use ceremony_os_builder::BuildObserver;
use ceremony_os_media::material;
use ceremony_os_store::{FetchObserver, Store};

/// Where the disc's dates came from, in the order they are chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EpochSource {
    /// `--date`.
    Date,
    /// The caller's SOURCE_DATE_EPOCH.
    Environment,
    /// The definition's snapshot, when neither is given.
    Definition,
}

impl std::fmt::Display for EpochSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            EpochSource::Date => "--date",
            EpochSource::Environment => "SOURCE_DATE_EPOCH",
            EpochSource::Definition => "the definition's snapshot",
        })
    }
}

/// The disc's epoch: `--date`, else SOURCE_DATE_EPOCH (`environment`, as the caller read it),
/// else the definition's snapshot.
pub fn material_epoch(
    date: Option<i64>,
    environment: Option<&str>,
    project: &Project,
) -> Result<(i64, EpochSource)> {
    Ok(match (date, environment) {
        (Some(date), _) => (date, EpochSource::Date),
        (None, Some(value)) => (
            value
                .trim()
                .parse::<i64>()
                .with_context(|| format!("SOURCE_DATE_EPOCH={value:?} is not a number"))?,
            EpochSource::Environment,
        ),
        (None, None) => (project.def.source_date_epoch(), EpochSource::Definition),
    })
}

/// Fetch the lock's toolchain (verified), then write the disc with its xorriso.
pub fn make_material(
    store: &Store,
    project: &Project,
    request: &material::MaterialRequest<'_>,
    config: &FetchConfig,
    fetch_observer: &dyn FetchObserver,
    build_observer: &dyn BuildObserver,
) -> Result<material::MaterialReport> {
    material::validate_label(request.label)?;
    crate::fetch_toolchain(store, project, config, fetch_observer)?;
    let toolchain = ceremony_os_builder::prepare_toolchain(&project.lock, store, build_observer)?;
    let runner = ceremony_os_runner::Runner::new(request.epoch);
    Ok(material::make(request, &|dir| toolchain.cmd(&runner, "xorriso", dir))?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn project() -> Project {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../image");
        Project::load(&root.join("ceremony.toml"), &root.join("ceremony.lock")).unwrap()
    }

    #[test]
    fn the_epoch_is_the_date_then_the_environment_then_the_snapshot() {
        let p = project();
        assert_eq!(material_epoch(Some(5), Some("7"), &p).unwrap(), (5, EpochSource::Date));
        assert_eq!(material_epoch(None, Some(" 7\n"), &p).unwrap(), (7, EpochSource::Environment));
        assert_eq!(
            material_epoch(None, None, &p).unwrap(),
            (p.def.source_date_epoch(), EpochSource::Definition)
        );
        let err = material_epoch(None, Some("soon"), &p).unwrap_err().to_string();
        assert!(err.contains("SOURCE_DATE_EPOCH=\"soon\" is not a number"), "{err}");
    }
}

//! Image definition (`image/ceremony.toml`) and lockfile (`image/ceremony.lock`) types, and the
//! types of what a build publishes (`published`: the build manifest, in-toto statements).
//!
//! Everything here is pure: parsers take text plus the name of the file it came from (so errors
//! can name it), and the only I/O is in the thin `load` helpers. Parsing is strict: unknown keys,
//! wrong types, missing fields and invalid values are errors carrying file, line and column.

mod cargo_lock;
mod definition;
mod error;
mod lockfile;
pub mod published;
mod values;

pub use cargo_lock::{LockedCrate, locked_crates};
pub use ceremony_os_timestamp::Timestamp;
pub use definition::{
    ArchiveSpec, Compression, CustomizeSection, DebianSection, HsmBundle, ImageDefinition, ImageSection,
    KernelSection, ModuleTree, PackageSet, PackageSets, SquashfsSection, Variant, relative_to,
};
pub use error::SpecError;
pub use lockfile::{
    ArchiveState, LOCK_FORMAT_VERSION, LockedIndex, LockedPackage, LockedSet, Lockfile, PackageChange,
    SNAPSHOT_RUN_INTERVAL_SECS, snapshot_run_after,
};
pub use values::{
    Architecture, KeyringPath, MirrorUrl, Mirrors, PackageList, PackageName, Sha256Digest, Token,
    url_has_credentials,
};

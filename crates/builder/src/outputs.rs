//! `out/`: the ISO, the rootfs manifest, `<name>.manifest.json` (every stage's inputs, key and
//! digest, the NAR hash, packages, toolchain and compiler), an SPDX 2.3 SBOM, the in-toto SLSA
//! provenance and `SHA256SUMS` of them all. None holds a clock reading.
//!
//! Every digest published is computed from the bytes as they are written: the ISO and the rootfs
//! manifest are hashed while they are copied out of the cache and must equal what the cache
//! recorded for them, so an entry altered after it was checked cannot be published under its old
//! digest.
//!
//! Publishing is all or nothing, as far as a file system allows: the previous set is removed first
//! (`SHA256SUMS` before the rest, so it never vouches for a partial set); each new file is written
//! as an unnamed temporary file (`O_TMPFILE`) and given its name only when complete, all of them
//! after every file has been written and synced, `SHA256SUMS` last. A kill leaves either the
//! complete set or no set with a `SHA256SUMS`, and never a temporary file. (On a file system
//! without `O_TMPFILE`, hidden `.<name>.partial` files are used and removed by the next build.)

use crate::error::BuildError;
use crate::{BuildReport, StageRecord};
use ceremony_os_definition::published::{
    BuildDefinition, BuildManifest, BuilderRecord, IN_TOTO_STATEMENT_V1, ImageRecord, InputsRecord,
    PackageRecord, ProvenanceBuilder, ProvenanceStatement, ResourceDescriptor, RootfsRecord, RunDetails,
    SLSA_PROVENANCE_V1, SlsaProvenance, SourceRecord, StageRecord as PublishedStage, Statement,
    stage_byproduct_name,
};
use ceremony_os_definition::{ArchiveState, ImageDefinition, LockedPackage, Lockfile, Timestamp};
use rustix::fs::{AtFlags, Mode, OFlags};
use serde_json::json;
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

pub(crate) struct OutputInputs<'a> {
    pub def: &'a ImageDefinition,
    pub lock: &'a Lockfile,
    pub lock_sha256: &'a str,
    pub lock_text: &'a str,
    pub lock_changes: Option<&'a str>,
    pub iso: &'a Path,
    pub iso_sha256: &'a str,
    pub rootfs_manifest: &'a Path,
    pub nar_hash: &'a str,
    pub stages: &'a [StageRecord],
    pub compiler: &'a str,
    pub tools_sha256: &'a str,
    pub source: &'a SourceRecord,
    /// The toolchain stage's digest: the unpacked build tools.
    pub toolchain_digest: &'a str,
    /// The stage cache the build used (reported, never published): none for a `no_cache` build.
    pub stages_dir: Option<&'a Path>,
    pub inputs_record: Option<&'a InputsRecord>,
}

/// File names in `out/` for a definition, `SHA256SUMS` last: the ISO, the rootfs manifest, the
/// build manifest, the SBOM, the provenance, the lock built from, the package changes from the
/// committed lock (only when built from another).
pub fn output_names(def: &ImageDefinition) -> [String; 8] {
    let stem = def.artifact_stem();
    [
        format!("{stem}.iso"),
        format!("{stem}.rootfs.manifest"),
        format!("{}.manifest.json", def.image.name),
        format!("{}.spdx.json", def.image.name),
        format!("{}.provenance.json", def.image.name),
        "ceremony.lock".to_string(),
        "ceremony.lock.changes".to_string(),
        "SHA256SUMS".to_string(),
    ]
}

/// Remove the previous build's outputs (`SHA256SUMS` first) and any temporary files an older
/// ceremony-os left, so a failed build never leaves an old ISO that looks new.
pub fn clear_previous(out_dir: &Path, def: &ImageDefinition) -> Result<(), BuildError> {
    let mut names = output_names(def).to_vec();
    names.rotate_right(1);
    let partial: Vec<String> = names.iter().map(|n| format!(".{n}.partial")).collect();
    for name in names.iter().chain(&partial) {
        let path = out_dir.join(name);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(BuildError::io(&path, e)),
        }
    }
    Ok(())
}

/// A file being written into `out/`: unnamed until [`Pending::publish`].
struct Pending {
    name: String,
    file: std::fs::File,
    /// Set when `O_TMPFILE` is not supported: the hidden name to rename from.
    hidden: Option<PathBuf>,
    sha256: String,
    size: u64,
}

fn create_pending(
    dir: &OwnedFd,
    out_dir: &Path,
    name: &str,
) -> Result<(std::fs::File, Option<PathBuf>), BuildError> {
    match rustix::fs::openat(
        dir,
        ".",
        OFlags::TMPFILE | OFlags::WRONLY | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o644),
    ) {
        Ok(fd) => Ok((std::fs::File::from(fd), None)),
        Err(rustix::io::Errno::OPNOTSUPP | rustix::io::Errno::ISDIR | rustix::io::Errno::INVAL) => {
            let hidden = out_dir.join(format!(".{name}.partial"));
            let file = std::fs::File::create(&hidden).map_err(|e| BuildError::io(&hidden, e))?;
            Ok((file, Some(hidden)))
        }
        Err(e) => Err(BuildError::io(out_dir, e.into())),
    }
}

/// Write `source` (a reader) into a pending file, hashing what is written.
fn write_pending(
    dir: &OwnedFd,
    out_dir: &Path,
    name: &str,
    source: &mut dyn Read,
) -> Result<Pending, BuildError> {
    let path = out_dir.join(name);
    let (mut file, hidden) = create_pending(dir, out_dir, name)?;
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = source.read(&mut buffer).map_err(|e| BuildError::io(&path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
        file.write_all(&buffer[..n]).map_err(|e| BuildError::io(&path, e))?;
        size += n as u64;
    }
    file.sync_all().map_err(|e| BuildError::io(&path, e))?;
    Ok(Pending { name: name.to_string(), file, hidden, sha256: hex::encode(hasher.finalize()), size })
}

impl Pending {
    fn publish(self, dir: &OwnedFd, out_dir: &Path) -> Result<(), BuildError> {
        let path = out_dir.join(&self.name);
        match &self.hidden {
            Some(hidden) => std::fs::rename(hidden, &path).map_err(|e| BuildError::io(&path, e)),
            None => rustix::fs::linkat(&self.file, "", dir, self.name.as_str(), AtFlags::EMPTY_PATH)
                .map_err(|e| BuildError::io(&path, e.into())),
        }
    }
}

pub(crate) fn write_outputs(out_dir: &Path, inputs: &OutputInputs<'_>) -> Result<BuildReport, BuildError> {
    std::fs::create_dir_all(out_dir).map_err(|e| BuildError::io(out_dir, e))?;
    let dir = rustix::fs::open(out_dir, OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| BuildError::io(out_dir, e.into()))?;
    let def = inputs.def;
    let [
        iso_name,
        rootfs_name,
        manifest_name,
        sbom_name,
        provenance_name,
        lock_name,
        changes_name,
        sums_name,
    ] = output_names(def);

    let copy = |from: &Path, name: &str, recorded: Option<&str>| -> Result<Pending, BuildError> {
        let mut source = std::fs::File::open(from).map_err(|e| BuildError::io(from, e))?;
        let pending = write_pending(&dir, out_dir, name, &mut source)?;
        if let Some(recorded) = recorded
            && pending.sha256 != recorded
        {
            return Err(BuildError::stage(
                "publish",
                format!(
                    "{} changed after the cache checked it: recorded sha256 {recorded}, copied {}; nothing was published",
                    from.display(),
                    pending.sha256
                ),
            ));
        }
        Ok(pending)
    };
    let iso = copy(inputs.iso, &iso_name, Some(inputs.iso_sha256))?;
    let rootfs = copy(inputs.rootfs_manifest, &rootfs_name, None)?;

    let manifest = build_manifest(inputs, &iso_name, &iso, &rootfs_name, &rootfs.sha256);
    let manifest = write_pending(&dir, out_dir, &manifest_name, &mut manifest.render().as_bytes())?;
    let sbom = spdx(def, inputs.lock, &iso.sha256, &iso_name);
    let sbom = write_pending(&dir, out_dir, &sbom_name, &mut pretty(&sbom).as_bytes())?;
    let provenance = provenance(inputs, &iso_name, &iso.sha256);
    let provenance = write_pending(&dir, out_dir, &provenance_name, &mut pretty(&provenance).as_bytes())?;

    let lock = write_pending(&dir, out_dir, &lock_name, &mut inputs.lock_text.as_bytes())?;
    let mut files = vec![iso, rootfs, manifest, sbom, provenance, lock];
    if let Some(changes) = inputs.lock_changes {
        files.push(write_pending(&dir, out_dir, &changes_name, &mut changes.as_bytes())?);
    }
    files.sort_by(|a, b| a.name.cmp(&b.name));
    let sums: String = files.iter().map(|f| format!("{}  {}\n", f.sha256, f.name)).collect();
    let sums = write_pending(&dir, out_dir, &sums_name, &mut sums.as_bytes())?;

    let report = BuildReport {
        iso: out_dir.join(&iso_name),
        iso_sha256: files.iter().find(|f| f.name == iso_name).map(|f| f.sha256.clone()).unwrap_or_default(),
        iso_size: files.iter().find(|f| f.name == iso_name).map(|f| f.size).unwrap_or_default(),
        manifest: out_dir.join(&manifest_name),
        sbom: out_dir.join(&sbom_name),
        provenance: out_dir.join(&provenance_name),
        rootfs_manifest: out_dir.join(&rootfs_name),
        nar_hash: inputs.nar_hash.to_string(),
        stages: inputs.stages.to_vec(),
        source: inputs.source.clone(),
        stages_dir: inputs.stages_dir.map(Path::to_path_buf),
    };
    for file in files {
        file.publish(&dir, out_dir)?;
    }
    sums.publish(&dir, out_dir)?;
    rustix::fs::fsync(&dir).map_err(|e| BuildError::io(out_dir, e.into()))?;
    Ok(report)
}

fn pretty(value: &impl serde::Serialize) -> String {
    format!("{}\n", serde_json::to_string_pretty(value).expect("json"))
}

fn build_manifest(
    inputs: &OutputInputs<'_>,
    iso_name: &str,
    iso: &Pending,
    rootfs_name: &str,
    rootfs_sha256: &str,
) -> BuildManifest {
    let def = inputs.def;
    let package = |p: &ceremony_os_definition::LockedPackage| PackageRecord {
        name: p.name.clone(),
        version: p.version.clone(),
        architecture: p.architecture.clone(),
        sha256: p.sha256.as_hex().to_string(),
    };
    BuildManifest {
        format: ceremony_os_definition::published::MANIFEST_FORMAT.into(),
        image: ImageRecord {
            name: def.image.name.to_string(),
            version: def.image.version.to_string(),
            architecture: def.image.architecture.debian_name().to_string(),
            file: iso_name.to_string(),
            sha256: iso.sha256.clone(),
            size: iso.size,
            volume_id: def.volume_id(),
            snapshot: def.debian.snapshot.to_string(),
            source_date_epoch: def.source_date_epoch(),
        },
        lockfile_sha256: inputs.lock_sha256.to_string(),
        rootfs: RootfsRecord {
            nar_hash: inputs.nar_hash.to_string(),
            manifest: rootfs_name.to_string(),
            manifest_sha256: rootfs_sha256.to_string(),
        },
        stages: inputs
            .stages
            .iter()
            .map(|s| PublishedStage {
                name: s.name.to_string(),
                key: s.key.clone(),
                digest: s.digest.clone(),
                inputs: s.inputs.clone(),
            })
            .collect(),
        packages: inputs.lock.image.packages.iter().map(package).collect(),
        toolchain: inputs.lock.toolchain.packages.iter().map(package).collect(),
        compiler: inputs.compiler.to_string(),
        ceremony_tools_sha256: inputs.tools_sha256.to_string(),
        builder: BuilderRecord { name: "ceremony-os".into(), version: env!("CARGO_PKG_VERSION").into() },
        inputs: inputs.inputs_record.cloned(),
        source: Some(inputs.source.clone()),
    }
}

fn spdx(def: &ImageDefinition, lock: &Lockfile, iso_sha256: &str, iso_name: &str) -> serde_json::Value {
    let mut packages = vec![json!({
        "SPDXID": "SPDXRef-Image",
        "name": def.image.name.as_str(),
        "versionInfo": def.image.version.as_str(),
        "packageFileName": iso_name,
        "downloadLocation": "NOASSERTION",
        "filesAnalyzed": false,
        "checksums": [{"algorithm": "SHA256", "checksumValue": iso_sha256}],
        "primaryPackagePurpose": "OPERATING-SYSTEM",
    })];
    let mut relationships = vec![
        json!({"spdxElementId": "SPDXRef-DOCUMENT", "relationshipType": "DESCRIBES", "relatedSpdxElement": "SPDXRef-Image"}),
    ];
    for (i, p) in lock.image.packages.iter().enumerate() {
        let id = format!("SPDXRef-Package-{}", i + 1);
        packages.push(json!({
            "SPDXID": id,
            "name": p.name,
            "versionInfo": p.version,
            "supplier": "Organization: Debian",
            "downloadLocation": download_location(def, lock, p),
            "sourceInfo": source_info(lock, p),
            "filesAnalyzed": false,
            "checksums": [{"algorithm": "SHA256", "checksumValue": p.sha256.as_hex()}],
            "externalRefs": [{
                "referenceCategory": "PACKAGE-MANAGER",
                "referenceType": "purl",
                "referenceLocator": deb_purl(p, &lock.suite),
            }],
        }));
        relationships.push(json!({"spdxElementId": "SPDXRef-Image", "relationshipType": "CONTAINS", "relatedSpdxElement": id}));
    }
    json!({
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": def.artifact_stem(),
        "documentNamespace": format!("urn:ceremony-os:{}:{iso_sha256}", def.artifact_stem()),
        "creationInfo": {
            "created": def.debian.snapshot.to_string(),
            "creators": [format!("Tool: ceremony-os-{}", env!("CARGO_PKG_VERSION"))],
        },
        "packages": packages,
        "relationships": relationships,
    })
}

/// An in-toto Statement (v1) with a SLSA provenance (v1) predicate: the ISO as subject; the lock,
/// every .deb, the toolchain tree and the compiler as resolved dependencies; every stage digest
/// and the rootfs NAR hash as byproducts. Deterministic: no invocation id, no times but the
/// snapshot's, so independent rebuilders publish byte-identical statements when they agree.
fn provenance(inputs: &OutputInputs<'_>, iso_name: &str, iso_sha256: &str) -> ProvenanceStatement {
    let def = inputs.def;
    let lock = inputs.lock;
    let sha256 = |digest: &str| [("sha256".to_string(), digest.to_string())].into();
    let mut dependencies = vec![ResourceDescriptor {
        name: Some("ceremony.lock".into()),
        digest: sha256(inputs.lock_sha256),
        ..Default::default()
    }];
    let mut debs: Vec<&LockedPackage> = lock.all_packages();
    debs.sort_by(|a, b| a.name.cmp(&b.name).then(a.version.cmp(&b.version)));
    for p in debs {
        dependencies.push(ResourceDescriptor {
            uri: Some(deb_purl(p, &lock.suite)),
            digest: sha256(p.sha256.as_hex()),
            annotations: Some(json!({"archive": p.archive})),
            ..Default::default()
        });
    }
    dependencies.push(ResourceDescriptor {
        name: Some("toolchain-rootfs".into()),
        digest: sha256(inputs.toolchain_digest),
        ..Default::default()
    });
    dependencies.push(ResourceDescriptor {
        name: Some("ceremony-tools".into()),
        digest: sha256(inputs.tools_sha256),
        ..Default::default()
    });
    dependencies.push(ResourceDescriptor {
        name: Some("rustc".into()),
        annotations: Some(json!({"version": inputs.compiler})),
        ..Default::default()
    });
    let mut byproducts: Vec<ResourceDescriptor> = inputs
        .stages
        .iter()
        .map(|s| ResourceDescriptor {
            name: Some(stage_byproduct_name(s.name)),
            digest: sha256(&s.digest),
            annotations: Some(json!({"key": s.key})),
            ..Default::default()
        })
        .collect();
    byproducts.push(ResourceDescriptor {
        name: Some("rootfs-nar".into()),
        annotations: Some(json!({"nar_hash": inputs.nar_hash})),
        ..Default::default()
    });
    if let Some(record) = inputs.inputs_record {
        byproducts.push(ResourceDescriptor {
            name: Some("inputs".into()),
            annotations: Some(serde_json::to_value(record).expect("json")),
            ..Default::default()
        });
    }
    Statement {
        type_: IN_TOTO_STATEMENT_V1.into(),
        subject: vec![ResourceDescriptor {
            name: Some(iso_name.into()),
            digest: sha256(iso_sha256),
            ..Default::default()
        }],
        predicate_type: SLSA_PROVENANCE_V1.into(),
        predicate: SlsaProvenance {
            build_definition: BuildDefinition {
                build_type: "urn:ceremony-os:build:v1".into(),
                external_parameters: json!({
                    "image": def.image.name.as_str(),
                    "version": def.image.version.as_str(),
                    "architecture": def.image.architecture.debian_name(),
                }),
                internal_parameters: json!({
                    "snapshot": def.debian.snapshot.to_string(),
                    "source_date_epoch": def.source_date_epoch(),
                }),
                resolved_dependencies: dependencies,
            },
            run_details: RunDetails {
                builder: ProvenanceBuilder {
                    id: "urn:ceremony-os:builder".into(),
                    version: [
                        ("ceremony-os".to_string(), env!("CARGO_PKG_VERSION").to_string()),
                        ("git_commit".to_string(), inputs.source.described()),
                    ]
                    .into(),
                },
                byproducts,
            },
        },
    }
}

/// The package URL of a locked .deb: `distro` is the release (as SBOM scanners match it), the
/// archive it was taken from (release, updates or security) is in the SPDX `sourceInfo` and in
/// the provenance's annotations.
fn deb_purl(p: &LockedPackage, release: &str) -> String {
    let version = p.version.replace('%', "%25").replace('+', "%2B").replace(':', "%3A");
    format!("pkg:deb/debian/{}@{version}?arch={}&distro={release}", p.name, p.architecture)
}

/// "Debian archive bookworm-security (Release of Tue, 01 Dec 2026 19:40:00 UTC)": the archive
/// the .deb was locked from and the date of that archive's locked state.
fn source_info(lock: &Lockfile, p: &LockedPackage) -> String {
    match locked_state(lock, p) {
        Some(state) => format!("Debian archive {} (Release of {})", p.archive, state.release_date),
        None => format!("Debian archive {}", p.archive),
    }
}

/// The locked state (signed Release) of the archive the .deb was taken from.
fn locked_state<'a>(lock: &'a Lockfile, p: &LockedPackage) -> Option<&'a ArchiveState> {
    lock.archives.iter().find(|a| a.suite == p.archive)
}

/// Where the .deb can be downloaded in the locked state: its archive's first mirror at the
/// definition's snapshot, when the locked state of that archive is not newer than the snapshot
/// (a lock resolved from a current-state mirror after it is not there); NOASSERTION otherwise.
fn download_location(def: &ImageDefinition, lock: &Lockfile, p: &LockedPackage) -> String {
    let state_at_snapshot = locked_state(lock, p)
        .and_then(|a| Timestamp::parse_release_date(&a.release_date).ok())
        .is_some_and(|released| released <= def.debian.snapshot);
    let mirror = def
        .debian
        .archives
        .iter()
        .find(|a| a.suite.as_str() == p.archive)
        .and_then(|a| a.mirrors.urls().first());
    match mirror {
        Some(m) if state_at_snapshot => format!("{}{}", m.base(def.debian.snapshot), p.path),
        _ => "NOASSERTION".into(),
    }
}

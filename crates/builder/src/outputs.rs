//! `out/`: the ISO, the rootfs manifest, `<name>.manifest.json` (every stage's key and digest,
//! the NAR hash, packages, toolchain and compiler), an SPDX 2.3 SBOM and `SHA256SUMS` of them all.
//! Every file is written to a temporary name and renamed; none holds a clock reading.

use crate::error::BuildError;
use crate::{BuildReport, StageRecord};
use ceremony_os_definition::{ImageDefinition, Lockfile};
use serde_json::json;
use std::path::{Path, PathBuf};

pub(crate) struct OutputInputs<'a> {
    pub def: &'a ImageDefinition,
    pub lock: &'a Lockfile,
    pub lock_sha256: &'a str,
    pub iso: &'a Path,
    pub iso_sha256: &'a str,
    pub rootfs_manifest: &'a Path,
    pub nar_hash: &'a str,
    pub stages: &'a [StageRecord],
    pub compiler: &'a str,
    pub tools_sha256: &'a str,
    pub git_commit: &'a str,
    /// The toolchain stage's digest: the unpacked build tools.
    pub toolchain_digest: &'a str,
}

/// File names in `out/` for a definition.
pub fn output_names(def: &ImageDefinition) -> [String; 6] {
    let stem = def.artifact_stem();
    [
        format!("{stem}.iso"),
        format!("{stem}.rootfs.manifest"),
        format!("{}.manifest.json", def.image.name),
        format!("{}.spdx.json", def.image.name),
        format!("{}.provenance.json", def.image.name),
        "SHA256SUMS".to_string(),
    ]
}

/// Remove the previous build's outputs, so a failed build never leaves an old ISO that looks new.
pub fn clear_previous(out_dir: &Path, def: &ImageDefinition) -> Result<(), BuildError> {
    for name in output_names(def) {
        let path = out_dir.join(name);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(BuildError::io(&path, e)),
        }
    }
    Ok(())
}

pub(crate) fn write_outputs(out_dir: &Path, inputs: &OutputInputs<'_>) -> Result<BuildReport, BuildError> {
    std::fs::create_dir_all(out_dir).map_err(|e| BuildError::io(out_dir, e))?;
    let def = inputs.def;
    let [iso_name, rootfs_name, manifest_name, sbom_name, provenance_name, sums_name] = output_names(def);
    let iso_size = std::fs::metadata(inputs.iso).map_err(|e| BuildError::io(inputs.iso, e))?.len();

    let manifest = json!({
        "format": "ceremony-os-manifest/1",
        "image": {
            "name": def.image.name.as_str(),
            "version": def.image.version.as_str(),
            "architecture": def.image.architecture.debian_name(),
            "file": iso_name,
            "sha256": inputs.iso_sha256,
            "size": iso_size,
            "volume_id": def.volume_id(),
            "snapshot": def.debian.snapshot.to_string(),
            "source_date_epoch": def.source_date_epoch(),
        },
        "lockfile_sha256": inputs.lock_sha256,
        "rootfs": {
            "nar_hash": inputs.nar_hash,
            "manifest": rootfs_name,
            "manifest_sha256": crate::stages::file_digest(inputs.rootfs_manifest)?,
        },
        "stages": inputs.stages.iter().map(|s| json!({"name": s.name, "key": s.key, "digest": s.digest})).collect::<Vec<_>>(),
        "packages": inputs.lock.image.packages.iter().map(|p| json!({
            "name": p.name, "version": p.version, "architecture": p.architecture, "sha256": p.sha256.as_hex(),
        })).collect::<Vec<_>>(),
        "toolchain": inputs.lock.toolchain.packages.iter().map(|p| json!({
            "name": p.name, "version": p.version, "sha256": p.sha256.as_hex(),
        })).collect::<Vec<_>>(),
        "compiler": inputs.compiler,
        "ceremony_tools_sha256": inputs.tools_sha256,
        "builder": { "name": "ceremony-os", "version": env!("CARGO_PKG_VERSION") },
    });
    let sbom = spdx(def, inputs.lock, inputs.iso_sha256, &iso_name);
    let provenance = provenance(inputs, &iso_name);

    let iso_out = out_dir.join(&iso_name);
    copy_atomically(inputs.iso, &iso_out)?;
    let rootfs_out = out_dir.join(&rootfs_name);
    copy_atomically(inputs.rootfs_manifest, &rootfs_out)?;
    let manifest_out = out_dir.join(&manifest_name);
    write_atomically(
        &manifest_out,
        format!("{}\n", serde_json::to_string_pretty(&manifest).expect("json")).as_bytes(),
    )?;
    let sbom_out = out_dir.join(&sbom_name);
    write_atomically(
        &sbom_out,
        format!("{}\n", serde_json::to_string_pretty(&sbom).expect("json")).as_bytes(),
    )?;

    let provenance_out = out_dir.join(&provenance_name);
    write_atomically(
        &provenance_out,
        format!("{}\n", serde_json::to_string_pretty(&provenance).expect("json")).as_bytes(),
    )?;

    let mut sums = String::new();
    let mut listed = vec![&iso_name, &rootfs_name, &manifest_name, &sbom_name, &provenance_name];
    listed.sort();
    for name in listed {
        let digest = if *name == iso_name {
            inputs.iso_sha256.to_string()
        } else {
            crate::stages::file_digest(&out_dir.join(name))?
        };
        sums.push_str(&format!("{digest}  {name}\n"));
    }
    write_atomically(&out_dir.join(&sums_name), sums.as_bytes())?;
    Ok(BuildReport {
        iso: iso_out,
        iso_sha256: inputs.iso_sha256.to_string(),
        iso_size,
        manifest: manifest_out,
        sbom: sbom_out,
        provenance: provenance_out,
        rootfs_manifest: rootfs_out,
        nar_hash: inputs.nar_hash.to_string(),
        stages: inputs.stages.to_vec(),
    })
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
            "downloadLocation": "NOASSERTION",
            "filesAnalyzed": false,
            "checksums": [{"algorithm": "SHA256", "checksumValue": p.sha256.as_hex()}],
            "externalRefs": [{
                "referenceCategory": "PACKAGE-MANAGER",
                "referenceType": "purl",
                "referenceLocator": format!("pkg:deb/debian/{}@{}?arch={}&distro={}", p.name, purl_escape(&p.version), p.architecture, lock.suite),
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
fn provenance(inputs: &OutputInputs<'_>, iso_name: &str) -> serde_json::Value {
    let def = inputs.def;
    let lock = inputs.lock;
    let mut dependencies = vec![json!({"name": "ceremony.lock", "digest": {"sha256": inputs.lock_sha256}})];
    let mut debs: Vec<&ceremony_os_definition::LockedPackage> = lock.all_packages();
    debs.sort_by(|a, b| a.name.cmp(&b.name).then(a.version.cmp(&b.version)));
    for p in debs {
        dependencies.push(json!({
            "uri": format!("pkg:deb/debian/{}@{}?arch={}&distro={}", p.name, purl_escape(&p.version), p.architecture, lock.suite),
            "digest": {"sha256": p.sha256.as_hex()},
        }));
    }
    dependencies.push(json!({"name": "toolchain-rootfs", "digest": {"sha256": inputs.toolchain_digest}}));
    dependencies.push(json!({"name": "ceremony-tools", "digest": {"sha256": inputs.tools_sha256}}));
    dependencies.push(json!({"name": "rustc", "annotations": {"version": inputs.compiler}}));
    let mut byproducts: Vec<serde_json::Value> = inputs
        .stages
        .iter()
        .map(|s| json!({"name": format!("stage:{}", s.name), "digest": {"sha256": s.digest}, "annotations": {"key": s.key}}))
        .collect();
    byproducts.push(json!({"name": "rootfs-nar", "annotations": {"nar_hash": inputs.nar_hash}}));
    json!({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": iso_name, "digest": {"sha256": inputs.iso_sha256}}],
        "predicateType": "https://slsa.dev/provenance/v1",
        "predicate": {
            "buildDefinition": {
                "buildType": "urn:ceremony-os:build:v1",
                "externalParameters": {
                    "image": def.image.name.as_str(),
                    "version": def.image.version.as_str(),
                    "architecture": def.image.architecture.debian_name(),
                },
                "internalParameters": {
                    "snapshot": def.debian.snapshot.to_string(),
                    "source_date_epoch": def.source_date_epoch(),
                },
                "resolvedDependencies": dependencies,
            },
            "runDetails": {
                "builder": {
                    "id": "urn:ceremony-os:builder",
                    "version": {"ceremony-os": env!("CARGO_PKG_VERSION"), "git_commit": inputs.git_commit},
                },
                "byproducts": byproducts,
            },
        },
    })
}

fn purl_escape(version: &str) -> String {
    version.replace('%', "%25").replace('+', "%2B").replace(':', "%3A")
}

pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), BuildError> {
    let tmp = temp_name(path);
    std::fs::write(&tmp, bytes).map_err(|e| BuildError::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| BuildError::io(path, e))
}

fn copy_atomically(from: &Path, to: &Path) -> Result<(), BuildError> {
    let tmp = temp_name(to);
    std::fs::copy(from, &tmp).map_err(|e| BuildError::io(&tmp, e))?;
    std::fs::File::open(&tmp).and_then(|f| f.sync_all()).map_err(|e| BuildError::io(&tmp, e))?;
    std::fs::rename(&tmp, to).map_err(|e| BuildError::io(to, e))
}

fn temp_name(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}.partial"))
}

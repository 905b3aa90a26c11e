//! The stages, in pipeline order. Each stage module has an `Inputs` type: everything that can
//! reach the stage's output, as one serializable value made by a pure function of the definition,
//! the lock and the upstream digests. The value's canonical JSON is stored beside the cache entry
//! and listed in the build manifest; its SHA-256 is the stage's key. The stage's code reads its
//! configuration only from that value (and the upstream outputs it names by digest).

pub mod boot;
pub mod customize;
pub mod iso;
pub mod normalize;
pub mod repo;
pub mod rootfs;
pub mod squashfs;
pub mod toolchain;
pub mod tools;

use crate::cache::{KeyedInputs, Lookup, OutputKind, StageCache, StageOutput};
use crate::error::BuildError;
use crate::{BuildObserver, StageRecord};
use ceremony_os_runner::Runner;
use ceremony_os_store::Store;
use std::path::Path;
use std::time::Instant;

/// What every stage may use besides its inputs: where things are and how to run them.
pub(crate) struct Ctx<'a> {
    pub store: &'a Store,
    pub runner: Runner,
    pub cache: &'a StageCache,
    pub observer: &'a dyn BuildObserver,
    pub records: std::sync::Mutex<Vec<StageRecord>>,
}

impl Ctx<'_> {
    /// Reuse the verified cached output for `inputs`, or run `produce(out_path)` (which returns
    /// the output's digest) in a fresh work directory and commit it.
    pub fn stage(
        &self,
        name: &'static str,
        inputs: &impl serde::Serialize,
        kind: OutputKind,
        produce: impl FnOnce(&Path) -> Result<String, BuildError>,
    ) -> Result<StageOutput, BuildError> {
        assert!(PIPELINE.contains(&name), "stage {name} is not in PIPELINE");
        let started = Instant::now();
        let inputs = KeyedInputs::new(inputs);
        let mut discarded = None;
        let output = match self.cache.lookup(name, &inputs, kind)? {
            Lookup::Hit(hit) => hit,
            found => {
                if let Lookup::Discarded { recorded, actual } = found {
                    let message = format!(
                        "cache entry {name}/{} does not hold what was recorded (recorded {recorded}, found {actual}): discarded, building it again",
                        inputs.key
                    );
                    self.observer.progress(name, &message);
                    discarded = Some(message);
                }
                self.observer.stage_started(name);
                let work = self.cache.begin(name, &inputs.key)?;
                let digest = match produce(&work.join("out")) {
                    Ok(d) => d,
                    Err(e) => {
                        if let Err(cleanup) = crate::cache::remove_tree(&work) {
                            tracing::warn!("{cleanup}");
                        }
                        return Err(e);
                    }
                };
                self.cache.commit(name, &inputs, &work, kind, &digest)?
            }
        };
        let record = StageRecord {
            name,
            key: output.key.clone(),
            digest: output.digest.clone(),
            inputs: inputs.value(),
            cached: output.cached,
            discarded,
            seconds: started.elapsed().as_secs_f64(),
        };
        self.observer.stage_finished(&record);
        self.records.lock().expect("no stage panics holding the records").push(record);
        Ok(output)
    }

    pub fn progress(&self, stage: &'static str, message: &str) {
        self.observer.progress(stage, message);
    }

    /// The stage records in [`PIPELINE`] order, whichever stage finished first.
    pub fn records_in_pipeline_order(&self) -> Vec<StageRecord> {
        in_pipeline_order(self.records.lock().expect("no stage panics holding the records").clone())
    }
}

/// `records` sorted into [`PIPELINE`] order: the manifest lists the stages in this order, so it
/// must not depend on which of two stages built side by side finished first.
fn in_pipeline_order(mut records: Vec<StageRecord>) -> Vec<StageRecord> {
    records.sort_by_key(|r| {
        PIPELINE.iter().position(|name| *name == r.name).expect("`Ctx::stage` records only PIPELINE's stages")
    });
    records
}

/// Every stage, in the order the build manifest lists them.
pub const PIPELINE: [&str; 9] =
    ["repo", "toolchain", "tools", "rootfs", "customize", "normalize", "squashfs", "boot", "iso"];

/// One locked .deb as a stage input.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DebInput {
    pub name: String,
    pub version: String,
    pub architecture: String,
    pub size: u64,
    pub sha256: String,
    pub path: String,
}

impl DebInput {
    fn all(packages: &[ceremony_os_definition::LockedPackage]) -> Vec<DebInput> {
        packages
            .iter()
            .map(|p| DebInput {
                name: p.name.clone(),
                version: p.version.clone(),
                architecture: p.architecture.clone(),
                size: p.size,
                sha256: p.sha256.as_hex().to_string(),
                path: p.path.clone(),
            })
            .collect()
    }

    fn file_name(&self) -> &str {
        self.path.rsplit('/').next().unwrap_or(&self.path)
    }

    fn label(&self) -> String {
        format!("{}_{}_{}", self.name, self.version, self.architecture)
    }

    /// The store object for this .deb, checked to be present and verified.
    fn store_object(&self, store: &Store) -> Result<std::path::PathBuf, BuildError> {
        let sha256 = ceremony_os_definition::Sha256Digest::try_from(self.sha256.clone())
            .map_err(|e| BuildError::stage("inputs", format!("{}: {e}", self.label())))?;
        let expected = ceremony_os_store::Expected { sha256, size: self.size };
        if !store.has_verified(&expected)? {
            return Err(BuildError::MissingInput { label: self.label() });
        }
        Ok(store.object_path(&expected.sha256))
    }
}

pub(crate) fn file_digest(path: &Path) -> Result<String, BuildError> {
    Ok(ceremony_os_tree::sha256_file(path)?)
}

pub(crate) fn dir_digest(path: &Path) -> Result<String, BuildError> {
    Ok(ceremony_os_tree::TreeManifest::scan(path)?.digest())
}

pub(crate) fn write(path: &Path, contents: impl AsRef<[u8]>) -> Result<(), BuildError> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| BuildError::io(parent, e))?;
    }
    std::fs::write(path, contents).map_err(|e| BuildError::io(path, e))
}

/// Write a file with an explicit mode, replacing whatever was there (a symlink included).
pub(crate) fn write_with_mode(path: &Path, contents: impl AsRef<[u8]>, mode: u32) -> Result<(), BuildError> {
    if std::fs::symlink_metadata(path).is_ok() {
        crate::cache::remove_path(path)?;
    }
    write(path, contents)?;
    set_mode(path, mode)
}

pub(crate) fn set_mode(path: &Path, mode: u32) -> Result<(), BuildError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(|e| BuildError::io(path, e))
}

/// `cp -a` (reflinks where the file system can), for whole trees.
pub(crate) fn copy_tree(runner: &Runner, from: &Path, to: &Path) -> Result<(), BuildError> {
    std::fs::create_dir_all(to).map_err(|e| BuildError::io(to, e))?;
    runner.cmd("cp", "/").args(["-a", "--reflink=auto", "--"]).arg(from.join(".")).arg(to).output()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    //! Every definition, lock or environment value that reaches a stage's output is in that
    //! stage's inputs, so changing it changes the stage's key; and nothing else's. (A change also
    //! reaches later stages through the upstream digests in their inputs, which these tests fix.)

    use super::*;
    use crate::cache::KeyedInputs;
    use crate::compiler::Compiler;
    use crate::toolchain::Toolchain;
    use ceremony_os_definition::{ImageDefinition, Lockfile};
    use std::collections::{BTreeMap, BTreeSet};
    use std::path::PathBuf;

    #[test]
    fn records_are_listed_in_pipeline_order_whichever_stage_finished_first() {
        let record = |name: &'static str| StageRecord {
            name,
            key: String::new(),
            digest: String::new(),
            inputs: serde_json::Value::Null,
            cached: false,
            discarded: None,
            seconds: 0.0,
        };
        let finished = ["repo", "toolchain", "rootfs", "tools", "customize"].map(record).to_vec();
        let names: Vec<&str> = in_pipeline_order(finished).iter().map(|r| r.name).collect();
        assert_eq!(names, ["repo", "toolchain", "tools", "rootfs", "customize"]);
    }

    const DEFINITION: &str = include_str!("../../../../image/ceremony.toml");
    const LOCK: &str = include_str!("../../../../image/ceremony.lock");

    struct World {
        def: ImageDefinition,
        lock: Lockfile,
        compiler: Compiler,
        sources: String,
        overlay: Option<String>,
    }

    fn world() -> World {
        World {
            def: ImageDefinition::parse(DEFINITION, std::path::Path::new("ceremony.toml")).unwrap(),
            lock: Lockfile::parse(LOCK, std::path::Path::new("ceremony.lock")).unwrap(),
            compiler: Compiler {
                sysroot: PathBuf::from("/sysroot"),
                cargo: PathBuf::from("/sysroot/bin/cargo"),
                rustc_version: "rustc 1.95.0\nrelease: 1.95.0\n".into(),
                cargo_version: "cargo 1.95.0".into(),
            },
            sources: "sources-digest".into(),
            overlay: Some("overlay-digest".into()),
        }
    }

    fn upstream(stage: &str) -> StageOutput {
        StageOutput {
            key: String::new(),
            digest: format!("digest-of-{stage}"),
            path: PathBuf::from("/nonexistent"),
            cached: false,
        }
    }

    /// Every stage's key for a world, with upstream digests fixed.
    fn keys(w: &World) -> BTreeMap<&'static str, String> {
        let (repo, tc, tools, rootfs, customized, normalized, squash, boot_out) = (
            upstream("repo"),
            upstream("toolchain"),
            upstream("tools"),
            upstream("rootfs"),
            upstream("customize"),
            upstream("normalize"),
            upstream("squashfs"),
            upstream("boot"),
        );
        let toolchain = Toolchain::from_stage(&tc);
        let sde = w.def.source_date_epoch();
        let mut out = BTreeMap::new();
        out.insert("repo", KeyedInputs::new(&repo::inputs(&w.lock)).key);
        out.insert("toolchain", KeyedInputs::new(&toolchain::inputs(&w.lock)).key);
        out.insert("tools", KeyedInputs::new(&tools::inputs(sde, &toolchain, &w.sources, &w.compiler)).key);
        out.insert("rootfs", KeyedInputs::new(&rootfs::inputs(&w.def, &w.lock, &repo, &toolchain)).key);
        out.insert("customize", KeyedInputs::new(&customize::inputs(&w.def, &rootfs)).key);
        out.insert(
            "normalize",
            KeyedInputs::new(&normalize::inputs(sde, &customized, &tools, w.overlay.as_deref())).key,
        );
        out.insert(
            "squashfs",
            KeyedInputs::new(&squashfs::inputs(sde, &w.def.squashfs, &normalized, &toolchain)).key,
        );
        out.insert(
            "boot",
            KeyedInputs::new(&boot::inputs(&w.def, ("vmlinuz-digest", "initrd-digest"), &squash, &toolchain))
                .key,
        );
        out.insert("iso", KeyedInputs::new(&iso::inputs(&w.def, &squash, &boot_out, &toolchain)).key);
        out
    }

    fn changed_by(change: impl FnOnce(&mut World)) -> BTreeSet<&'static str> {
        let base = keys(&world());
        let mut w = world();
        change(&mut w);
        let after = keys(&w);
        base.iter().filter(|(stage, key)| after[*stage] != **key).map(|(stage, _)| *stage).collect()
    }

    fn set(stages: &[&'static str]) -> BTreeSet<&'static str> {
        stages.iter().copied().collect()
    }

    fn redefine(w: &mut World, from: &str, to: &str) {
        let text = DEFINITION.replace(from, to);
        assert_ne!(text, DEFINITION, "{from:?} is not in the definition");
        w.def = ImageDefinition::parse(&text, std::path::Path::new("ceremony.toml")).unwrap();
    }

    #[test]
    fn the_snapshot_reaches_every_stage() {
        let all = set(&PIPELINE);
        assert_eq!(
            keys(&world()).keys().copied().collect::<BTreeSet<_>>(),
            all,
            "PIPELINE lists every stage"
        );
        assert_eq!(
            changed_by(|w| {
                redefine(w, "2026-07-12T00:00:00Z", "2026-07-13T00:00:00Z");
                w.lock.snapshot = w.def.debian.snapshot;
                w.lock.source_date_epoch = w.def.source_date_epoch();
            }),
            all
        );
    }

    #[test]
    fn the_tool_is_an_input_of_normalize_which_installs_it() {
        // customize runs beside the compiler and must not read its output (its inputs have no
        // tools digest: the type says so); normalize installs the binary and is keyed by it.
        let key = |tools: &StageOutput| {
            KeyedInputs::new(&normalize::inputs(1, &upstream("customize"), tools, None)).key
        };
        let mut other = upstream("tools");
        other.digest.push('x');
        assert_ne!(key(&upstream("tools")), key(&other));
    }

    #[test]
    fn each_input_changes_exactly_the_stages_that_read_it() {
        assert_eq!(
            changed_by(|w| w.lock.image.packages[0].sha256 =
                ceremony_os_definition::Sha256Digest::from_bytes(&[1; 32])),
            set(&["repo"])
        );
        assert_eq!(changed_by(|w| w.lock.image.packages[0].version.push_str("+x")), set(&["repo", "rootfs"]));
        assert_eq!(
            changed_by(|w| w.lock.toolchain.packages[0].sha256 =
                ceremony_os_definition::Sha256Digest::from_bytes(&[1; 32])),
            set(&["toolchain"])
        );
        assert_eq!(changed_by(|w| w.compiler.rustc_version = "rustc 1.95.1\n".into()), set(&["tools"]));
        assert_eq!(changed_by(|w| w.compiler.cargo_version = "cargo 1.95.1".into()), set(&["tools"]));
        assert_eq!(changed_by(|w| w.sources = "other".into()), set(&["tools"]));
        assert_eq!(changed_by(|w| w.overlay = None), set(&["normalize"]));
        assert_eq!(changed_by(|w| redefine(w, "\"uas\",", "")), set(&["rootfs"]));
        assert_eq!(
            changed_by(|w| redefine(w, "hostname = \"ceremony\"", "hostname = \"other\"")),
            set(&["rootfs", "customize"])
        );
        assert_eq!(changed_by(|w| redefine(w, "  \"fs/9p\",\n", "")), set(&["customize"]));
        assert_eq!(
            changed_by(|w| redefine(w, "autologin = [\"tty1\", \"ttyS0\"]", "autologin = [\"ttyS0\"]")),
            set(&["customize"])
        );
        assert_eq!(changed_by(|w| redefine(w, "nonetworking quiet", "nonetworking")), set(&["boot"]));
        assert_eq!(
            changed_by(|w| redefine(w, "compression = \"zstd\"\nlevel = 9", "compression = \"xz\"")),
            set(&["squashfs"])
        );
        assert_eq!(changed_by(|w| redefine(w, "level = 9", "level = 4")), set(&["squashfs"]));
        assert_eq!(changed_by(|w| redefine(w, "block_kib = 128", "block_kib = 256")), set(&["squashfs"]));
        assert_eq!(
            changed_by(|w| redefine(w, "version = \"0.1.0\"", "version = \"0.1.1\"")),
            set(&["customize", "boot", "iso"])
        );
        assert_eq!(
            changed_by(|w| {
                let text = format!(
                    "{DEFINITION}\n[[hsm_bundle]]\nname = \"v\"\narchive = \"v.tar\"\nsha256 = \"{}\"\nmodule = \"lib/p11.so\"\n",
                    "ab".repeat(32)
                );
                w.def = ImageDefinition::parse(&text, std::path::Path::new("ceremony.toml")).unwrap();
            }),
            set(&["customize"])
        );
    }
}

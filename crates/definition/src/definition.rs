//! The image definition, `image/ceremony.toml`: what to build, from which archive state.

use crate::error::SpecError;
use crate::values::{Architecture, KeyringPath, Mirrors, PackageList, Sha256Digest, Token};
use ceremony_os_timestamp::Timestamp;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageDefinition {
    pub image: ImageSection,
    pub debian: DebianSection,
    pub packages: PackageSets,
    pub kernel: KernelSection,
    pub squashfs: SquashfsSection,
    #[serde(default)]
    pub customize: CustomizeSection,
    /// Proprietary PKCS#11 bundles (Luna, nShield...) unpacked into `/opt/hsm/<name>`.
    #[serde(default, rename = "hsm_bundle", skip_serializing_if = "Vec::is_empty")]
    pub hsm_bundles: Vec<HsmBundle>,
}

/// The kernel: its command line, which module trees the image must not contain, and which
/// modules the (small) initrd carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KernelSection {
    /// Kernel command line for every boot path.
    pub cmdline: String,
    /// Directories under `lib/modules/<version>/kernel/` removed from the image; every module
    /// removed is also blacklisted.
    pub exclude_modules: Vec<ModuleTree>,
    /// Modules the initrd carries (initramfs-tools `MODULES=list`), with their dependencies.
    pub initrd_modules: Vec<Token>,
}

/// A relative directory under the kernel module tree, such as `drivers/net`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ModuleTree(String);

impl ModuleTree {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ModuleTree {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let ok = !s.is_empty()
            && !s.starts_with('/')
            && !s.ends_with('/')
            && s.split('/').all(|part| !part.is_empty() && part != "." && part != "..")
            && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '_' | '-' | '.'));
        if !ok {
            return Err(format!("{s:?} is not a module tree such as \"drivers/net\" (relative, no '..')"));
        }
        Ok(ModuleTree(s))
    }
}

impl From<ModuleTree> for String {
    fn from(m: ModuleTree) -> String {
        m.0
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SquashfsSection {
    pub compression: Compression,
    /// zstd's level (1..=22); xz takes none. [default: 19 for zstd]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<u32>,
    /// Block size in KiB, a power of two from 4 to 1024. [default: 1024]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_kib: Option<u32>,
}

impl SquashfsSection {
    /// mksquashfs's compression options for this section (validated by `ImageDefinition::parse`).
    pub fn mksquashfs_options(&self) -> Vec<String> {
        let mut options: Vec<String> = vec!["-comp".into(), self.compression.as_str().into()];
        match self.compression {
            // The BCJ filter shrinks x86 code by a few percent, for one more pass of xz.
            Compression::Xz => options.extend(["-Xbcj".into(), "x86".into()]),
            Compression::Zstd => {
                options.extend(["-Xcompression-level".into(), self.level.unwrap_or(19).to_string()])
            }
        }
        options.extend(["-b".into(), format!("{}K", self.block_kib.unwrap_or(1024))]);
        options
    }

    fn check(&self) -> Result<(), String> {
        match (self.compression, self.level) {
            (Compression::Zstd, Some(level)) if !(1..=22).contains(&level) => {
                return Err(format!("squashfs.level = {level}: zstd takes a level from 1 to 22"));
            }
            (Compression::Xz, Some(level)) => {
                return Err(format!("squashfs.level = {level}: xz takes no level (only zstd does)"));
            }
            _ => {}
        }
        if let Some(kib) = self.block_kib
            && !(kib.is_power_of_two() && (4..=1024).contains(&kib))
        {
            return Err(format!("squashfs.block_kib = {kib}: expected a power of two from 4 to 1024"));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// xz with the x86 BCJ filter: the smallest image, the slowest to build and to boot.
    Xz,
    /// zstd (level 19 unless `level` says otherwise). (lz4 booted no faster under measurement, and
    /// `compare` reads xz and zstd squashfs only.)
    Zstd,
}

impl Compression {
    pub fn as_str(self) -> &'static str {
        match self {
            Compression::Xz => "xz",
            Compression::Zstd => "zstd",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomizeSection {
    /// Directory whose files are added to the image root (relative to the definition file), after
    /// the initrd is built: it adds files and replaces none (the build refuses the overlay
    /// otherwise; see `crates/builder/src/overlay.rs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overlay: Option<PathBuf>,
    #[serde(default = "default_hostname")]
    pub hostname: Token,
    /// Consoles on which root is logged in automatically.
    #[serde(default = "default_autologin")]
    pub autologin: Vec<Token>,
    /// The cargo workspace holding `ceremony-tools` (relative to the definition file).
    #[serde(default = "default_tools_workspace")]
    pub tools_workspace: PathBuf,
    /// Remove manual pages, info pages, translations and documentation (copyright files stay).
    #[serde(default = "default_true")]
    pub remove_documentation: bool,
}

fn default_true() -> bool {
    true
}

fn default_hostname() -> Token {
    Token::try_from("ceremony".to_string()).expect("valid")
}

fn default_autologin() -> Vec<Token> {
    ["tty1", "ttyS0"].into_iter().map(|t| Token::try_from(t.to_string()).expect("valid")).collect()
}

fn default_tools_workspace() -> PathBuf {
    PathBuf::from("..")
}

impl Default for CustomizeSection {
    fn default() -> Self {
        CustomizeSection {
            overlay: None,
            hostname: default_hostname(),
            autologin: default_autologin(),
            tools_workspace: default_tools_workspace(),
            remove_documentation: true,
        }
    }
}

/// A vendor's PKCS#11 bundle: a tar archive pinned by SHA-256.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HsmBundle {
    pub name: Token,
    /// Tar archive (optionally gzip/xz/zstd compressed), relative to the definition file.
    pub archive: PathBuf,
    pub sha256: Sha256Digest,
    /// Path of the PKCS#11 module inside the archive, registered with p11-kit.
    pub module: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageSection {
    /// Used in output file names: `out/<name>-<version>-<arch>.iso`.
    pub name: Token,
    pub version: Token,
    pub architecture: Architecture,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DebianSection {
    /// The release's codename: the suite the image's own package repository is named after.
    pub suite: Token,
    /// The archive state the image is built from; also the image's SOURCE_DATE_EPOCH.
    pub snapshot: Timestamp,
    /// OpenPGP keyring that must have signed every archive's Release file. A relative path is
    /// relative to the definition file.
    pub keyring: KeyringPath,
    /// The archives packages come from (for example the release, its updates and its security
    /// archive); apt picks the highest version of a package among them.
    #[serde(rename = "archive")]
    pub archives: Vec<ArchiveSpec>,
}

/// One signed Debian archive suite.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArchiveSpec {
    /// The suite, e.g. `bookworm`, `bookworm-updates`, `bookworm-security`.
    pub suite: Token,
    pub components: Vec<Token>,
    /// Tried in order, for locking and for fetching.
    pub mirrors: Mirrors,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackageSets {
    /// What goes into the image's root file system.
    pub image: PackageSet,
    /// The tools the build runs (xorriso, mksquashfs, the signed boot loaders...), pinned like the image.
    pub toolchain: PackageSet,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackageSet {
    pub variant: Variant,
    pub include: PackageList,
}

/// Which packages besides `include` (and their dependencies) a set contains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Variant {
    /// As mmdebstrap's `minbase`: every `Essential: yes` and `Priority: required` package, and apt.
    Minbase,
    /// Only `include` and the dependency closure apt resolves for it.
    Closure,
}

impl Variant {
    pub fn as_str(self) -> &'static str {
        match self {
            Variant::Minbase => "minbase",
            Variant::Closure => "closure",
        }
    }
}

impl ImageDefinition {
    /// Parse a definition. `origin` names the file in errors; nothing is read from it.
    pub fn parse(text: &str, origin: &Path) -> Result<Self, SpecError> {
        let def: ImageDefinition =
            toml::from_str(text).map_err(|e| SpecError::from_toml(origin, text, &e))?;
        if let Some(bundle) =
            def.hsm_bundles.iter().find(|b| b.module.starts_with('/') || b.module.contains(".."))
        {
            return Err(SpecError::Invalid {
                path: origin.to_path_buf(),
                message: format!(
                    "hsm_bundle {}: module {:?} must be a relative path inside the archive",
                    bundle.name, bundle.module
                ),
            });
        }
        let mut names = std::collections::BTreeSet::new();
        if let Some(dup) = def.hsm_bundles.iter().find(|b| !names.insert(&b.name)) {
            return Err(SpecError::Invalid {
                path: origin.to_path_buf(),
                message: format!("hsm_bundle {} is declared twice", dup.name),
            });
        }
        let invalid = |message: String| SpecError::Invalid { path: origin.to_path_buf(), message };
        if def.debian.archives.is_empty() {
            return Err(invalid("no [[debian.archive]]: name at least the release's own archive".into()));
        }
        def.squashfs.check().map_err(invalid)?;
        let mut suites = std::collections::BTreeSet::new();
        for archive in &def.debian.archives {
            if archive.components.is_empty() {
                return Err(invalid(format!(
                    "debian.archive {}: components is empty: name at least one (usually \"main\")",
                    archive.suite
                )));
            }
            if !suites.insert(archive.suite.as_str()) {
                return Err(invalid(format!("debian.archive {} is declared twice", archive.suite)));
            }
        }
        Ok(def)
    }

    pub fn load(path: &Path) -> Result<Self, SpecError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| SpecError::Read { path: path.to_path_buf(), source })?;
        Self::parse(&text, path)
    }

    pub fn render(&self) -> String {
        toml::to_string(self).expect("an image definition always serializes")
    }

    pub fn source_date_epoch(&self) -> i64 {
        self.debian.snapshot.unix()
    }

    /// The keyring path, resolved against the directory of the definition file.
    pub fn keyring_path(&self, definition_path: &Path) -> PathBuf {
        relative_to(definition_path, Path::new(self.debian.keyring.as_str()))
    }

    /// ISO 9660 volume id: the name and version in upper case, at most 32 characters.
    pub fn volume_id(&self) -> String {
        let raw = format!("{}_{}", self.image.name, self.image.version).to_ascii_uppercase();
        raw.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).take(32).collect()
    }

    /// `out/<name>-<version>-<arch>` without extension.
    pub fn artifact_stem(&self) -> String {
        format!("{}-{}-{}", self.image.name, self.image.version, self.image.architecture)
    }
}

/// A path from the definition, resolved against the directory the definition file is in.
pub fn relative_to(definition_path: &Path, path: &Path) -> PathBuf {
    let base = definition_path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    base.join(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = r#"
[image]
name = "ceremony-os"
version = "0.1.0"
architecture = "amd64"

[debian]
suite = "bookworm"
snapshot = "2026-07-12T00:00:00Z"
keyring = "keyring/debian-archive-keyring.pgp"

[[debian.archive]]
suite = "bookworm"
components = ["main"]
mirrors = ["http://snapshot.debian.org/archive/debian/{snapshot}/", "http://deb.debian.org/debian/"]

[packages.image]
variant = "minbase"
include = ["linux-image-amd64", "live-boot"]

[packages.toolchain]
variant = "closure"
include = ["xorriso", "squashfs-tools"]

[kernel]
cmdline = "boot=live console=ttyS0"
exclude_modules = ["drivers/net", "sound"]
initrd_modules = ["sr_mod", "isofs"]

[squashfs]
compression = "xz"
"#;

    fn parse(text: &str) -> Result<ImageDefinition, SpecError> {
        ImageDefinition::parse(text, Path::new("image/ceremony.toml"))
    }

    fn error_of(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    #[test]
    fn valid_definition_round_trips() {
        let def = parse(VALID).unwrap();
        assert_eq!(def.image.name.as_str(), "ceremony-os");
        assert_eq!(def.source_date_epoch(), 1_783_814_400);
        assert_eq!(def.packages.image.variant, Variant::Minbase);
        assert_eq!(def.artifact_stem(), "ceremony-os-0.1.0-amd64");
        assert_eq!(def.volume_id(), "CEREMONY_OS_0_1_0");
        assert_eq!(def.customize.hostname.as_str(), "ceremony", "defaults apply");
        let again = parse(&def.render()).unwrap();
        assert_eq!(again, def);
    }

    #[test]
    fn unknown_key_names_file_position_and_key() {
        let text = VALID.replacen("suite = \"bookworm\"", "suite = \"bookworm\"\nsuit = \"x\"", 1);
        let err = error_of(&text);
        assert!(err.starts_with("image/ceremony.toml:9:1: unknown field `suit`"), "{err}");
        assert!(err.contains("expected one of"), "{err}");
    }

    #[test]
    fn wrong_type_is_positioned() {
        let err = error_of(&VALID.replace("components = [\"main\"]", "components = \"main\""));
        assert!(
            err.starts_with("image/ceremony.toml:14:14: invalid type: string \"main\", expected a sequence"),
            "{err}"
        );
    }

    #[test]
    fn missing_field_is_named() {
        let err = error_of(&VALID.replace("version = \"0.1.0\"\n", ""));
        assert!(err.contains("missing field `version`"), "{err}");
        assert!(err.starts_with("image/ceremony.toml:2:1:"), "{err}");
    }

    #[test]
    fn bad_values_are_positioned_with_expectation() {
        let err = error_of(&VALID.replace("2026-07-12T00:00:00Z", "yesterday"));
        assert!(err.starts_with("image/ceremony.toml:9:12: expected a UTC timestamp"), "{err}");
        let err = error_of(&VALID.replace("architecture = \"amd64\"", "architecture = \"arm64\""));
        assert!(err.contains("unknown variant `arm64`, expected `amd64`"), "{err}");
        let err = error_of(&VALID.replace("\"live-boot\"]", "\"Live Boot\"]"));
        assert!(err.contains("is not a Debian package name"), "{err}");
        let err = error_of(&VALID.replace("\"live-boot\"]", "\"linux-image-amd64\"]"));
        assert!(err.contains("listed twice"), "{err}");
        let err = error_of(&VALID.replace("variant = \"closure\"", "variant = \"everything\""));
        assert!(err.contains("unknown variant `everything`"), "{err}");
        let err = error_of(&VALID.replace("\"http://deb.debian.org/debian/\"", "\"deb.debian.org\""));
        assert!(err.contains("must start with http://"), "{err}");
        let err = error_of(&VALID.replace("\"drivers/net\"", "\"../etc\""));
        assert!(err.contains("is not a module tree"), "{err}");
        let err = error_of(&VALID.replace("compression = \"xz\"", "compression = \"gzip\""));
        assert!(err.contains("unknown variant `gzip`, expected `xz` or `zstd`"), "{err}");
        let err = error_of(&VALID.replace("compression = \"xz\"", "compression = \"xz\"\nlevel = 6"));
        assert!(err.contains("squashfs.level = 6: xz takes no level"), "{err}");
        let err = error_of(&VALID.replace("compression = \"xz\"", "compression = \"zstd\"\nlevel = 23"));
        assert!(err.contains("squashfs.level = 23: zstd takes a level from 1 to 22"), "{err}");
        let err = error_of(&VALID.replace("compression = \"xz\"", "compression = \"zstd\"\nblock_kib = 100"));
        assert!(err.contains("squashfs.block_kib = 100: expected a power of two from 4 to 1024"), "{err}");
        let err = error_of(&format!(
            "{VALID}\n[[hsm_bundle]]\nname = \"luna\"\narchive = \"x.tar\"\nsha256 = \"{}\"\nmodule = \"/abs.so\"\n",
            "0".repeat(64)
        ));
        assert!(err.contains("must be a relative path"), "{err}");
        let err = error_of(&VALID.replace("components = [\"main\"]", "components = []"));
        assert!(err.contains("debian.archive bookworm: components is empty"), "{err}");
        let err = error_of(&VALID.replace("keyring/debian-archive-keyring.pgp", "k trusted=yes"));
        assert!(err.contains("keyring") && err.contains("white space"), "{err}");
        let err = error_of(&VALID.replace("keyring/debian-archive-keyring.pgp", "k]"));
        assert!(err.contains("keyring"), "{err}");
    }

    #[test]
    fn syntax_error_shows_the_line() {
        let err = error_of(&VALID.replace("name = \"ceremony-os\"", "name = ceremony-os"));
        assert!(err.starts_with("image/ceremony.toml:3:8:"), "{err}");
        assert!(err.contains("name = ceremony-os\n"), "{err}");
    }
}

//! apt in a throwaway root: its own configuration, sources, lists, cache and an empty dpkg status,
//! so nothing of the host's apt setup (proxies, pins, extra sources, installed packages) can change
//! what is resolved. Release files must verify against the given keyring. Package indexes are kept
//! as the archive published them (`Packages.xz`), so their SHA-256 is the one InRelease lists.

use ceremony_os_runner::{Cmd, RunError, Runner};
use std::path::{Path, PathBuf};

/// A configured, not yet updated, apt root under a temporary directory.
#[derive(Debug)]
pub struct AptRoot {
    root: PathBuf,
    runner: Runner,
}

/// What apt resolves against: one line of sources.list per archive suite.
#[derive(Debug, Clone)]
pub struct AptSources<'a> {
    /// `(mirror base URL ending in /, suite, components)`.
    pub archives: Vec<(String, &'a str, Vec<String>)>,
    pub architecture: &'a str,
    pub keyring: &'a Path,
}

impl AptRoot {
    /// Lay out the configuration under `root` (which must exist and be empty).
    pub fn create(root: &Path, source: &AptSources<'_>, runner: Runner) -> std::io::Result<Self> {
        for dir in [
            "etc/apt.conf.d",
            "etc/preferences.d",
            "etc/trusted.gpg.d",
            "etc/sources.list.d",
            "state/lists/partial",
            "cache/archives/partial",
            "log",
        ] {
            std::fs::create_dir_all(root.join(dir))?;
        }
        std::fs::write(root.join("state/status"), b"")?;
        std::fs::write(root.join("etc/apt.conf"), apt_conf(root, source.architecture))?;
        std::fs::write(root.join("etc/sources.list"), sources_list(source))?;
        Ok(AptRoot { root: root.to_path_buf(), runner })
    }

    fn apt(&self, program: &str) -> Cmd {
        self.runner
            .cmd(program, &self.root)
            .env("APT_CONFIG", self.root.join("etc/apt.conf"))
            .env("DEBIAN_FRONTEND", "noninteractive")
    }

    /// `apt-get update`, failing on any index that cannot be fetched or verified.
    pub fn update(&self, on_line: impl FnMut(&str)) -> Result<(), RunError> {
        self.apt("apt-get").args(["update", "--error-on=any"]).run_streaming(on_line)
    }

    /// What `apt-get install` of `packages` into an empty system would download.
    pub fn print_uris(&self, packages: &[String]) -> Result<String, RunError> {
        let out = self
            .apt("apt-get")
            .args(["install", "--print-uris", "-qq", "--no-install-recommends", "--"])
            .args(packages)
            .output()?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The verified list file apt stored whose name ends in `suffix` (`_dists_<suite>_InRelease`,
    /// `_dists_<suite>_main_binary-amd64_Packages.xz`): exactly one must.
    pub fn list_file(&self, suffix: &str) -> std::io::Result<PathBuf> {
        let lists = self.root.join("state/lists");
        let mut found = Vec::new();
        for entry in std::fs::read_dir(&lists)? {
            let name = entry?.file_name();
            if name.to_string_lossy().ends_with(suffix) {
                found.push(lists.join(name));
            }
        }
        found.sort();
        match found.as_slice() {
            [one] => Ok(one.clone()),
            _ => Err(std::io::Error::other(format!(
                "expected exactly one file ending in {suffix} in {}, found {}",
                lists.display(),
                found.len()
            ))),
        }
    }
}

fn apt_conf(root: &Path, architecture: &str) -> String {
    let r = root.display();
    // APT_CONFIG is read before the parts directory, so pointing `parts` and `main` away here keeps
    // the host's /etc/apt configuration out entirely.
    format!(
        r#"Dir "/";
Dir::Etc "{r}/etc";
Dir::Etc::main "/dev/null";
Dir::Etc::parts "{r}/etc/apt.conf.d";
Dir::Etc::sourcelist "{r}/etc/sources.list";
Dir::Etc::sourceparts "{r}/etc/sources.list.d";
Dir::Etc::preferences "{r}/etc/preferences";
Dir::Etc::preferencesparts "{r}/etc/preferences.d";
Dir::Etc::trusted "{r}/etc/trusted.gpg";
Dir::Etc::trustedparts "{r}/etc/trusted.gpg.d";
Dir::State "{r}/state";
Dir::State::status "{r}/state/status";
Dir::Cache "{r}/cache";
Dir::Log "{r}/log";
APT::Architecture "{architecture}";
APT::Architectures {{ "{architecture}"; }};
APT::Install-Recommends "false";
APT::Install-Suggests "false";
Acquire::Languages "none";
Acquire::GzipIndexes "true";
Acquire::CompressionTypes::Order {{ "xz"; }};
Acquire::IndexTargets::deb::Packages::KeepCompressedAs "xz";
Acquire::AllowInsecureRepositories "false";
Acquire::AllowDowngradeToInsecureRepositories "false";
Acquire::Retries "3";
Acquire::http::Timeout "30";
Acquire::https::Timeout "30";
Debug::NoLocking "true";
APT::Sandbox::User "root";
"#
    )
}

fn sources_list(source: &AptSources<'_>) -> String {
    source
        .archives
        .iter()
        .map(|(base, suite, components)| {
            format!(
                "deb [arch={} signed-by={}] {base} {suite} {}\n",
                source.architecture,
                source.keyring.display(),
                components.join(" ")
            )
        })
        .collect()
}

//! End-to-end build tests: the default image built for real (mmdebstrap, mksquashfs, xorriso
//! from the locked toolchain), then rebuilt under different conditions, from cache, after an
//! overlay change, and after being killed mid-squashfs. Needs root and the Debian archive.
//!
//! The tests share one store (with the other image tests, under target/tmp) and one first build;
//! they run one at a time.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod support;

use ceremony_os_tree::{Change, TreeManifest};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, OnceLock};

struct Shared {
    _dir: tempfile::TempDir,
    root: PathBuf,
    store: PathBuf,
    first: BuildResult,
}

#[derive(Clone)]
struct BuildResult {
    report: Value,
    out: PathBuf,
}

impl BuildResult {
    fn iso_sha256(&self) -> &str {
        self.report["iso_sha256"].as_str().unwrap()
    }

    fn iso(&self) -> PathBuf {
        PathBuf::from(self.report["iso"].as_str().unwrap())
    }

    fn stage(&self, name: &str) -> &Value {
        self.report["stages"].as_array().unwrap().iter().find(|s| s["name"] == name).unwrap()
    }

    fn cached(&self) -> Vec<(String, bool)> {
        self.report["stages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| (s["name"].as_str().unwrap().to_string(), s["cached"].as_bool().unwrap()))
            .collect()
    }

    fn rootfs_manifest(&self) -> TreeManifest {
        TreeManifest::parse(
            &std::fs::read_to_string(self.report["rootfs_manifest"].as_str().unwrap()).unwrap(),
        )
        .unwrap()
    }
}

fn build(store: &Path, definition: &Path, out: &Path, extra: &[&str]) -> BuildResult {
    BuildResult { report: support::build_image(store, definition, out, extra), out: out.to_path_buf() }
}

fn shared() -> (MutexGuard<'static, ()>, &'static Shared) {
    static LOCK: Mutex<()> = Mutex::new(());
    static SHARED: OnceLock<Shared> = OnceLock::new();
    let guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let shared = SHARED.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        let store = support::shared_image_store();
        let definition = support::image_copy(&root, "image");
        let first = build(&store, &definition, &root.join("out-first"), &[]);
        Shared { _dir: dir, root, store, first }
    });
    (guard, shared)
}

fn sha256_file(path: &Path) -> String {
    support::sha256_hex(&std::fs::read(path).unwrap())
}

#[test]
fn build_writes_iso_sums_manifest_and_sbom() {
    let (_guard, s) = shared();
    let first = &s.first;
    let iso = first.iso();
    let iso_name = format!("{}.iso", support::default_stem());
    assert_eq!(iso, first.out.join(&iso_name));
    assert_eq!(sha256_file(&iso), first.iso_sha256());
    let sums = std::fs::read_to_string(first.out.join("SHA256SUMS")).unwrap();
    assert!(sums.contains(&format!("{}  {iso_name}\n", first.iso_sha256())), "{sums}");
    for line in sums.lines() {
        let (digest, name) = line.split_once("  ").unwrap();
        assert_eq!(sha256_file(&first.out.join(name)), digest, "{name}");
    }
    // The lock it was built from is published with it, and is the one the manifest names.
    let lock_line = sums.lines().find(|l| l.ends_with("  ceremony.lock")).unwrap_or_else(|| panic!("{sums}"));
    assert_eq!(
        std::fs::read(first.out.join("ceremony.lock")).unwrap(),
        std::fs::read(s.root.join("image/ceremony.lock")).unwrap()
    );
    assert!(!first.out.join("ceremony.lock.changes").exists(), "the committed lock was built");
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(first.out.join("ceremony-os.manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["image"]["sha256"], first.iso_sha256());
    assert_eq!(manifest["lockfile_sha256"], lock_line[..64], "the published lock is the one built");
    // The source it ran from: this workspace's commit; the lock is a copy outside any commit.
    let head = std::process::Command::new("git")
        .args(["-c", "safe.directory=*", "rev-parse", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert_eq!(
        manifest["source"]["commit"],
        String::from_utf8_lossy(&head.stdout).trim(),
        "{}",
        manifest["source"]
    );
    assert_eq!(manifest["source"]["lock_in_commit"], false, "{}", manifest["source"]);
    let names: Vec<&str> =
        manifest["stages"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        ["repo", "toolchain", "tools", "rootfs", "customize", "normalize", "squashfs", "boot", "iso"]
    );
    assert!(manifest["compiler"].as_str().unwrap().starts_with("rustc 1.95.0"));
    assert!(manifest["packages"].as_array().unwrap().iter().any(|p| p["name"] == "softhsm2"));
    let sbom: Value =
        serde_json::from_slice(&std::fs::read(first.out.join("ceremony-os.spdx.json")).unwrap()).unwrap();
    assert_eq!(sbom["spdxVersion"], "SPDX-2.3");
    assert_eq!(sbom["packages"][0]["checksums"][0]["checksumValue"], first.iso_sha256());
    // Every locked image package is in the SBOM with its digest and the archive it came from; the
    // default image takes security updates, so some come from bookworm-security. A download
    // location at the snapshot is claimed only for an archive whose locked state is not newer
    // than the snapshot.
    let lock_path = s.root.join("image/ceremony.lock");
    let lock =
        ceremony_os_definition::Lockfile::parse(&std::fs::read_to_string(&lock_path).unwrap(), &lock_path)
            .unwrap();
    let sbom_packages = &sbom["packages"].as_array().unwrap()[1..];
    assert_eq!(sbom_packages.len(), lock.image.packages.len());
    let snapshot = ceremony_os_definition::Timestamp::parse_rfc3339_utc("2026-07-12T00:00:00Z").unwrap();
    for (entry, locked) in sbom_packages.iter().zip(&lock.image.packages) {
        assert_eq!(entry["name"], locked.name.as_str());
        assert_eq!(entry["checksums"][0]["checksumValue"], locked.sha256.as_hex());
        let state = lock.archives.iter().find(|a| a.suite == locked.archive).unwrap();
        assert_eq!(
            entry["sourceInfo"],
            format!("Debian archive {} (Release of {})", locked.archive, state.release_date),
            "{entry}"
        );
        let released = ceremony_os_definition::Timestamp::parse_release_date(&state.release_date).unwrap();
        let location = entry["downloadLocation"].as_str().unwrap();
        if released <= snapshot {
            let mirror = if locked.archive == "bookworm-security" { "debian-security" } else { "debian" };
            let url = format!("http://snapshot.debian.org/archive/{mirror}/20260712T000000Z/{}", locked.path);
            assert_eq!(location, url);
        } else {
            assert_eq!(location, "NOASSERTION", "{entry}");
        }
    }
    assert!(
        sbom_packages
            .iter()
            .any(|p| p["sourceInfo"].as_str().unwrap().starts_with("Debian archive bookworm-security ")),
        "no package of the SBOM comes from bookworm-security"
    );
    let provenance: Value =
        serde_json::from_slice(&std::fs::read(first.out.join("ceremony-os.provenance.json")).unwrap())
            .unwrap();
    assert_eq!(provenance["_type"], "https://in-toto.io/Statement/v1");
    assert_eq!(provenance["predicateType"], "https://slsa.dev/provenance/v1");
    assert_eq!(provenance["subject"][0]["digest"]["sha256"], first.iso_sha256());
    let dependencies = provenance["predicate"]["buildDefinition"]["resolvedDependencies"].as_array().unwrap();
    assert_eq!(dependencies[0]["digest"]["sha256"], manifest["lockfile_sha256"]);
    assert!(
        dependencies
            .iter()
            .any(|d| d["uri"].as_str().is_some_and(|u| u.starts_with("pkg:deb/debian/xorriso@")))
    );
    assert!(dependencies.iter().any(|d| d["name"] == "toolchain-rootfs"));
    let byproducts = provenance["predicate"]["runDetails"]["byproducts"].as_array().unwrap();
    assert!(
        byproducts
            .iter()
            .any(|b| b["name"] == "stage:rootfs" && b["digest"]["sha256"] == first.stage("rootfs")["digest"])
    );
    let size = std::fs::metadata(&iso).unwrap().len();
    assert!(size < 200 << 20, "ISO is {size} bytes");
}

/// Runs inside a private mount, UTS and network namespace (only the loopback exists): serves the
/// release inputs bundle over HTTP on the loopback, makes the other host's root ready (proc, dev,
/// an empty tmpfs store, the checkout, the test directory and the compiler bound at their own
/// paths), then builds with no cache from inside it.
const OTHER_HOST_SCRIPT: &str = r#"set -eu
root=$1; bundle=$2; shift 2
ip link set lo up
python3 -m http.server --bind 127.0.0.1 --directory "$bundle" 8931 >/dev/null 2>&1 &
for i in $(seq 50); do
  python3 -c 'import socket; socket.create_connection(("127.0.0.1", 8931), 1)' 2>/dev/null && break
  sleep 0.1
done
# On a real host, / is a mount point (unshare makes it private); so it must be here.
mount --bind "$root" "$root"
mount --rbind /dev "$root/dev"
mount -t proc proc "$root/proc"
mount -t tmpfs tmpfs "$root/tmp"
while [ "$1" != "--" ]; do
  mkdir -p "$root$1"; mount --bind "$1" "$root$1"
  if [ "$2" = ro ]; then mount -o remount,bind,ro "$root$1"; fi
  shift 2
done
shift
mkdir -p "$root/witness/store"
mount -t tmpfs -o size=6g tmpfs "$root/witness/store"
echo other-host > /proc/sys/kernel/hostname
exec chroot "$root" /bin/sh -c 'umask 077 && cd / && exec taskset -c 0 faketime -f +400d "$@"' sh "$@"
"#;

/// The host-variation suite in one no-cache rebuild (what is varied and how is listed in
/// tests/README.md), by a witness a year later with nothing but the release inputs bundle: no
/// network but the loopback, where a static HTTP server serves the bundle `vendor` wrote; an
/// empty store; HOME without .cargo (the compiler found on PATH, every crate from the bundle);
/// another Debian release (13, trixie, made with mmdebstrap) with its own tools, libraries and
/// /etc, whose resolv.conf, hosts and hostname get other content and modes; another TMPDIR,
/// store path (on tmpfs, not disk), work and output directory; one CPU; a clock 400 days ahead;
/// umask 077; another TZ, locale and host name. Every stage digest and the ISO must equal the
/// reference build's, and the image must not contain the build host's kernel release or name
/// servers.
#[test]
fn another_host_gives_the_same_iso_and_every_stage_digest() {
    let (_guard, s) = shared();
    let host = support::trixie_root();
    // The other host's own files, with other content and modes than any test machine's.
    let resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    for (path, text) in [
        ("etc/resolv.conf", format!("# a witness's resolver\noptions ndots:3 timeout:2\n{resolv}")),
        ("etc/hosts", "127.0.0.1\tlocalhost\n192.0.2.7\tother-host.example other-host\n".to_string()),
        ("etc/hostname", "other-host\n".to_string()),
    ] {
        let file = host.join(path);
        let _ = std::fs::remove_file(&file);
        std::fs::write(&file, text).unwrap();
        std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    }
    for dir in ["witness/home", "witness/tmp", "witness/work"] {
        std::fs::create_dir_all(host.join(dir)).unwrap();
    }
    let _ = std::fs::remove_dir_all(host.join("witness/home/.cargo"));
    let definition = support::image_copy(&s.root, "image-other-host");
    // The release inputs bundle, from the reference build's store and this machine's cargo cache.
    let bundle = s.root.join("bundle");
    let vendored = support::ceremony_os(&s.store)
        .args(["vendor", "--json"])
        .arg(&bundle)
        .arg(&definition)
        .output()
        .unwrap();
    assert!(vendored.status.success(), "vendor: {}", String::from_utf8_lossy(&vendored.stderr));
    let vendored: serde_json::Value = serde_json::from_slice(&vendored.stdout).unwrap();
    let sysroot = support::rust_sysroot();
    let repo = support::repo_root();
    let out = s.root.join("out-other-host");
    let output = std::process::Command::new("unshare")
        .args(["--mount", "--uts", "--net", "--fork", "--", "/bin/sh", "-c", OTHER_HOST_SCRIPT, "other-host"])
        .arg(&host)
        .arg(&bundle)
        .arg(&repo)
        .arg("ro")
        .arg(&sysroot)
        .arg("ro")
        .arg(&s.root)
        .arg("rw")
        .arg("--")
        .arg("/usr/bin/env")
        .arg("-i")
        .arg(format!("PATH={}/bin:/usr/sbin:/usr/bin:/sbin:/bin", sysroot.display()))
        .args(["HOME=/witness/home", "TMPDIR=/witness/tmp", "TZ=Pacific/Chatham", "LANG=de_DE.UTF-8"])
        .arg("LC_ALL=tr_TR.UTF-8")
        .arg(env!("CARGO_BIN_EXE_ceremony-os"))
        .arg("build")
        .arg(&definition)
        .args([
            "--no-cache",
            "--json",
            "--store",
            "/witness/store",
            "--work-dir",
            "/witness/work",
            "--vendor",
            "http://127.0.0.1:8931/",
            "--output",
        ])
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "the build on the other host failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let second = BuildResult { report: serde_json::from_slice(&output.stdout).unwrap(), out };
    assert!(
        second.cached().iter().all(|(_, cached)| !cached),
        "--no-cache reused a stage: {:?}",
        second.cached()
    );
    assert!(second.report["stages_dir"].is_null(), "a --no-cache build keeps no stage: {}", second.report);
    let stages: Vec<String> = s.first.cached().into_iter().map(|(name, _)| name).collect();
    for stage in &stages {
        assert_eq!(
            second.stage(stage)["digest"],
            s.first.stage(stage)["digest"],
            "stage {stage} differs on the other host; its inputs there: {}",
            second.stage(stage)["inputs"]
        );
    }
    assert_eq!(second.iso_sha256(), s.first.iso_sha256());
    assert_eq!(sha256_file(&second.iso()), sha256_file(&s.first.iso()));
    // The manifests agree but for where the inputs came from, which names the bundle.
    let manifest = |out: &Path| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(out.join("ceremony-os.manifest.json")).unwrap()).unwrap()
    };
    let (mut witnessed, mut reference) = (manifest(&second.out), manifest(&s.first.out));
    assert_eq!(witnessed["inputs"]["bundle_index_sha256"], vendored["index_sha256"], "{witnessed}");
    assert_eq!(witnessed["inputs"]["committed_lock"], true);
    assert_eq!(witnessed["inputs"]["revouched"], reference["inputs"]["revouched"], "re-vouched alike");
    witnessed.as_object_mut().unwrap().remove("inputs");
    reference.as_object_mut().unwrap().remove("inputs");
    assert_eq!(witnessed, reference, "the manifests agree on everything else");
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(log.contains(" 0 downloaded,"), "everything came from the bundle:\n{log}");

    // Nothing that names the build host is in the image tree.
    let tree = s
        .store
        .join("stages/normalize")
        .join(s.first.stage("normalize")["key"].as_str().unwrap())
        .join("out/rootfs");
    let kernel =
        String::from_utf8(std::process::Command::new("uname").arg("-r").output().unwrap().stdout).unwrap();
    let mut needles = vec![kernel.trim().to_string()];
    needles
        .extend(resolv.lines().filter_map(|l| l.strip_prefix("nameserver ")).map(|a| a.trim().to_string()));
    for needle in needles.iter().filter(|n| n.len() >= 6) {
        let found =
            std::process::Command::new("grep").args(["-rlF", "--", needle]).arg(&tree).output().unwrap();
        assert!(
            found.stdout.is_empty(),
            "the image holds the build host's {needle:?}:\n{}",
            String::from_utf8_lossy(&found.stdout)
        );
    }
}

/// `make iso` on a lock whose inputs are gone (its security archive's locked state is served by
/// no source, and one of that archive's packages is at a version no signed state lists): it says
/// so, locks today's state into the output directory (the lock itself untouched), writes and
/// prints the package changes, and builds that, marked in the manifest as not the lock's ISO.
/// `verify` on the same lock never falls back: it exits 2 naming what is missing.
#[test]
fn make_iso_on_a_lock_whose_packages_are_gone_builds_todays_state_beside_it() {
    let (_guard, s) = shared();
    let definition = support::image_copy(&s.root, "image-gone");
    let lock_path = definition.with_extension("lock");
    let mut lock = ceremony_os_definition::Lockfile::load(&lock_path).unwrap();
    let security = lock.archives.iter_mut().find(|a| a.suite == "bookworm-security").unwrap();
    security.inrelease_sha256 = ceremony_os_definition::Sha256Digest::try_from("cd".repeat(32)).unwrap();
    let victim = lock.image.packages.iter().find(|p| p.archive == "bookworm-security").unwrap().clone();
    let gone = format!("{}+gone1", victim.version);
    for p in lock
        .image
        .packages
        .iter_mut()
        .chain(lock.toolchain.packages.iter_mut())
        .filter(|p| p.name == victim.name)
    {
        p.version = gone.clone();
        p.sha256 = ceremony_os_definition::Sha256Digest::try_from("ef".repeat(32)).unwrap();
    }
    std::fs::write(&lock_path, lock.render()).unwrap();
    let committed = std::fs::read(&lock_path).unwrap();

    let verify = support::ceremony_os(&s.store)
        .args(["verify", "--expect", &"00".repeat(32)])
        .arg(&definition)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&verify.stderr);
    assert_eq!(verify.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("{}_{gone}_amd64: replaced by {}", victim.name, victim.version)),
        "{stderr}"
    );
    assert!(stderr.contains("the locked state:"), "where it looked is said: {stderr}");

    // The command `make iso` runs, as the Makefile says it.
    let out = s.root.join("out-gone");
    let plan = std::process::Command::new("make")
        .args(["-n", "-s", "iso"])
        .arg(format!("DEFINITION={}", definition.display()))
        .arg(format!("OUT={}", out.display()))
        .arg(format!("CEREMONY_OS={}", env!("CARGO_BIN_EXE_ceremony-os")))
        .current_dir(support::repo_root())
        .output()
        .unwrap();
    let plan = String::from_utf8(plan.stdout).unwrap();
    let command = plan
        .lines()
        .find(|l| l.starts_with(env!("CARGO_BIN_EXE_ceremony-os")))
        .unwrap_or_else(|| panic!("{plan}"));
    let iso = std::process::Command::new("sh")
        .args(["-c", command])
        .env("CEREMONY_OS_STORE", &s.store)
        .current_dir(support::repo_root())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&iso.stderr);
    assert!(iso.status.success(), "{command}:\n{stderr}");
    assert!(stderr.contains("can no longer be had from any source"), "{stderr}");
    assert!(stderr.contains("NOTE: this ISO is not the one"), "{stderr}");
    let change = format!("{}:amd64 {gone} -> ", victim.name);
    assert!(stderr.contains(&change), "the change is printed: {stderr}");
    let changes = std::fs::read_to_string(out.join("ceremony.lock.changes")).unwrap();
    assert!(changes.contains(&change), "{changes}");
    let today = ceremony_os_definition::Lockfile::load(&out.join("ceremony.lock")).unwrap();
    assert!(today.image.packages.iter().any(|p| p.name == victim.name && p.version != gone));
    assert_eq!(std::fs::read(&lock_path).unwrap(), committed, "the committed lock is untouched");
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("ceremony-os.manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["inputs"]["committed_lock"], false, "{manifest}");
    assert_eq!(manifest["source"]["lock_in_commit"], false, "{manifest}");
    assert!(stderr.contains("NOTE: the lock built is not the one in that commit"), "{stderr}");
    let today_sha256 = sha256_file(&out.join("ceremony.lock"));
    assert_eq!(manifest["lockfile_sha256"], today_sha256);
}

/// A compiler other than rust-toolchain.toml's is refused before anything is built.
#[test]
fn another_compiler_release_is_refused_before_building() {
    let (_guard, s) = shared();
    let fake = s.root.join("fake-rustc");
    std::fs::write(
        &fake,
        "#!/bin/sh\ncase \"$1\" in -vV) printf 'rustc 1.80.0 (fake)\\nrelease: 1.80.0\\n';; *) echo /nonexistent;; esac\n",
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let definition = support::image_copy(&s.root, "image-fake-rustc");
    let out = s.root.join("out-fake-rustc");
    let output = support::ceremony_os(&s.store)
        .arg("build")
        .arg(&definition)
        .arg("--output")
        .arg(&out)
        .env("RUSTC", &fake)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("1.80.0") && stderr.contains("1.95.0") && stderr.contains("rust-toolchain.toml"),
        "{stderr}"
    );
    assert!(!stderr.contains("==>"), "a stage ran before the compiler was checked:\n{stderr}");
    assert!(!out.join(format!("{}.iso", support::default_stem())).exists());
}

#[test]
fn unchanged_rebuild_reuses_every_stage() {
    let (_guard, s) = shared();
    let definition = s.root.join("image/ceremony.toml");
    let again = build(&s.store, &definition, &s.root.join("out-cached"), &[]);
    assert!(again.cached().iter().all(|(_, cached)| *cached), "{:?}", again.cached());
    assert_eq!(again.iso_sha256(), s.first.iso_sha256());
}

#[test]
fn overlay_change_interrupted_then_rebuilt_changes_only_that_file() {
    let (_guard, s) = shared();
    let definition = support::image_copy(&s.root, "image-changed");
    let readme = definition.parent().unwrap().join("overlay/etc/ceremony/README");
    let mut text = std::fs::read_to_string(&readme).unwrap();
    // Unique per run, so that no earlier run's cache entry can answer for it.
    let nonce = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    text.push_str(&format!("Changed for the test ({nonce}).\n"));
    std::fs::write(&readme, text).unwrap();
    // An overlay file under the image's absolute symlink usr/lib/ssl/certs -> /etc/ssl/certs: it
    // must land in the image's /etc/ssl/certs, never in the build host's.
    let host_target = Path::new("/etc/ssl/certs/ceremony-overlay-test.pem");
    assert!(!host_target.exists());
    let through_link =
        definition.parent().unwrap().join("overlay/usr/lib/ssl/certs/ceremony-overlay-test.pem");
    std::fs::create_dir_all(through_link.parent().unwrap()).unwrap();
    std::fs::write(&through_link, b"not a certificate\n").unwrap();
    // A vendor PKCS#11 bundle, declared by path and SHA-256.
    let image_dir = definition.parent().unwrap().to_path_buf();
    let sha = vendor_bundle(&image_dir);
    let mut text = std::fs::read_to_string(&definition).unwrap();
    text.push_str(&format!(
        "\n[[hsm_bundle]]\nname = \"vendor\"\narchive = \"vendor.tar\"\nsha256 = \"{sha}\"\nmodule = \"usr/lib/libvendor-pkcs11.so\"\n"
    ));
    std::fs::write(&definition, text).unwrap();
    let out = s.root.join("out-changed");
    let squashfs_entries = || {
        std::fs::read_dir(s.store.join("stages/squashfs"))
            .unwrap()
            .filter(|e| !e.as_ref().unwrap().file_name().to_string_lossy().starts_with('.'))
            .count()
    };
    let before = squashfs_entries();

    // Kill the build while mksquashfs runs.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ceremony-os"))
        .env("CEREMONY_OS_STORE", &s.store)
        .arg("build")
        .arg(&definition)
        .arg("--output")
        .arg(&out)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stderr));
    let mut seen = String::new();
    loop {
        let Some(Ok(line)) = lines.next() else { panic!("the build ended before squashfs started:\n{seen}") };
        seen.push_str(&line);
        seen.push('\n');
        if line.starts_with("==> squashfs: building") {
            break;
        }
    }
    // mksquashfs takes seconds: kill as soon as it runs, not after a guessed delay.
    let running =
        support::wait_for_descendant(child.id(), "/usr/bin/mksquashfs", std::time::Duration::from_secs(120));
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(running, "mksquashfs was never seen running under the build:\n{seen}");
    assert!(!out.join(format!("{}.iso", support::default_stem())).exists(), "a killed build left an ISO");
    assert_eq!(squashfs_entries(), before, "a killed build left a squashfs cache entry");

    // Up to the kill, the change re-ran customize and normalize, and nothing before them.
    for stage in ["customize", "normalize", "squashfs"] {
        assert!(seen.contains(&format!("==> {stage}: building")), "{stage} was not rebuilt:\n{seen}");
    }
    for stage in ["repo", "toolchain", "tools", "rootfs"] {
        assert!(!seen.contains(&format!("==> {stage}: building")), "{stage} was rebuilt:\n{seen}");
    }

    // The next build finishes: what the killed one committed is reused, the rest is built.
    let changed = build(&s.store, &definition, &out, &[]);
    let cached: std::collections::BTreeMap<String, bool> = changed.cached().into_iter().collect();
    for stage in ["repo", "toolchain", "tools", "rootfs", "customize", "normalize"] {
        assert!(cached[stage], "{stage} should have been reused: {cached:?}");
    }
    // boot too: the initrd pins the root file system's digest, which the change moved.
    for stage in ["squashfs", "boot", "iso"] {
        assert!(!cached[stage], "{stage} should have been built: {cached:?}");
    }
    assert_ne!(changed.iso_sha256(), s.first.iso_sha256(), "the changed overlay must change the ISO");
    let changes = ceremony_os_tree::diff(&s.first.rootfs_manifest(), &changed.rootfs_manifest());
    let summary: Vec<(&str, &str)> = changes
        .iter()
        .map(|c| {
            let kind = match c {
                Change::Content { .. } => "content",
                Change::Added(_) => "added",
                _ => "other",
            };
            (c.path(), kind)
        })
        .collect();
    assert!(!host_target.exists(), "the overlay wrote through an image symlink onto the build host");
    assert_eq!(
        summary,
        [
            ("/etc/ceremony/README", "content"),
            ("/etc/pkcs11/modules/vendor.module", "added"),
            ("/etc/ssl/certs/ceremony-overlay-test.pem", "added"),
            ("/opt/hsm", "added"),
            ("/opt/hsm/vendor", "added"),
            ("/opt/hsm/vendor/usr", "added"),
            ("/opt/hsm/vendor/usr/lib", "added"),
            ("/opt/hsm/vendor/usr/lib/libvendor-pkcs11.so", "added"),
        ],
        "exactly the changed file and the bundle differ"
    );
}

/// A cached output altered after it was recorded (a flipped byte in the ISO, a same-size edit
/// with its mtime set back in a tree stage, a forged NAR hash file) is found, named, discarded and
/// built again; what `out/` publishes is computed from the bytes, as `sha256sum -c` confirms.
#[test]
fn altered_cache_entries_are_discarded_rebuilt_and_never_published() {
    let (_guard, s) = shared();
    let entry =
        |stage: &str| s.store.join("stages").join(stage).join(s.first.stage(stage)["key"].as_str().unwrap());
    let keep_mtime = |path: &Path, edit: &dyn Fn(&mut Vec<u8>)| {
        let mtime = filetime::FileTime::from_last_modification_time(&std::fs::metadata(path).unwrap());
        let mut bytes = std::fs::read(path).unwrap();
        edit(&mut bytes);
        std::fs::write(path, bytes).unwrap();
        filetime::set_file_mtime(path, mtime).unwrap();
    };
    keep_mtime(&entry("iso").join("out"), &|b| {
        let middle = b.len() / 2;
        b[middle] ^= 0x01;
    });
    keep_mtime(&entry("boot").join("out/tree/isolinux/isolinux.cfg"), &|b| b[0] ^= 0x20);
    std::fs::write(
        entry("normalize").join("out/rootfs.nar-hash"),
        "sha256-forged/forged/forged/forged/forged/forged=\n",
    )
    .unwrap();

    let again = build(&s.store, &s.root.join("image/ceremony.toml"), &s.root.join("out-after-tamper"), &[]);
    for stage in ["iso", "boot", "normalize"] {
        let record = again.stage(stage);
        assert_eq!(record["cached"], false, "{stage} was reused: {record}");
        assert!(
            record["discarded"].as_str().is_some_and(|d| d.contains("does not hold what was recorded")),
            "{record}"
        );
    }
    for stage in ["repo", "toolchain", "tools", "rootfs", "customize", "squashfs"] {
        assert_eq!(again.stage(stage)["cached"], true, "{stage} should have been reused");
    }
    assert_eq!(again.iso_sha256(), s.first.iso_sha256(), "the rebuilt ISO is the genuine one");
    assert_eq!(again.report["nar_hash"], s.first.report["nar_hash"]);
    let check = std::process::Command::new("sha256sum")
        .arg("-c")
        .arg("SHA256SUMS")
        .current_dir(&again.out)
        .output()
        .unwrap();
    assert!(check.status.success(), "sha256sum -c:\n{}", String::from_utf8_lossy(&check.stdout));
    let names: Vec<String> = std::fs::read_dir(&again.out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!names.iter().any(|n| n.starts_with('.')), "a temporary file was left in out/: {names:?}");
}

/// Killed while publishing, a build leaves either no output set or a complete one that
/// `sha256sum -c` accepts, and never a temporary file.
#[test]
fn a_build_killed_while_publishing_leaves_all_or_nothing() {
    let (_guard, s) = shared();
    let definition = s.root.join("image/ceremony.toml");
    for (attempt, delay_ms) in [0u64, 30, 120, 400].into_iter().enumerate() {
        let out = s.root.join(format!("out-killed-{attempt}"));
        // A previous set to replace, so a kill can also fall between removing and writing.
        build(&s.store, &definition, &out, &[]);
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ceremony-os"))
            .env("CEREMONY_OS_STORE", &s.store)
            .arg("build")
            .arg(&definition)
            .arg("--output")
            .arg(&out)
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stderr));
        loop {
            let Some(Ok(line)) = lines.next() else { panic!("the build ended before publishing") };
            if line.contains("publish: writing") {
                break;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        let _ = child.kill();
        child.wait().unwrap();
        let names: Vec<String> = std::fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(
            !names.iter().any(|n| n.starts_with('.')),
            "after {delay_ms} ms: a temporary file survived: {names:?}"
        );
        if names.iter().any(|n| n == "SHA256SUMS") {
            let check = std::process::Command::new("sha256sum")
                .args(["-c", "SHA256SUMS"])
                .current_dir(&out)
                .output()
                .unwrap();
            assert!(
                check.status.success(),
                "after {delay_ms} ms: {}",
                String::from_utf8_lossy(&check.stdout)
            );
            assert_eq!(names.len(), 7, "after {delay_ms} ms: {names:?}");
        } else {
            assert!(names.is_empty(), "after {delay_ms} ms: files without SHA256SUMS: {names:?}");
        }
    }
}

#[test]
fn nar_hash_matches_nix() {
    let (_guard, s) = shared();
    let key = s.first.stage("normalize")["key"].as_str().unwrap();
    let stages_dir = PathBuf::from(s.first.report["stages_dir"].as_str().unwrap());
    assert_eq!(stages_dir, s.store.join("stages"), "the report names the store's stage cache");
    let tree = stages_dir.join("normalize").join(key).join("out/rootfs");
    let output = std::process::Command::new("nix")
        .args(["--extra-experimental-features", "nix-command", "hash", "path", "--type", "sha256"])
        .arg(&tree)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let nix = String::from_utf8(output.stdout).unwrap();
    assert_eq!(nix.trim(), s.first.report["nar_hash"].as_str().unwrap());
}

#[test]
fn iso_holds_no_excluded_kernel_module() {
    let (_guard, s) = shared();
    let dir = tempfile::tempdir().unwrap();
    let squashfs = dir.path().join("filesystem.squashfs");
    let status = std::process::Command::new("xorriso")
        .args(["-osirrox", "on", "-indev"])
        .arg(s.first.iso())
        .args(["-extract", "/live/filesystem.squashfs"])
        .arg(&squashfs)
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let listing = std::process::Command::new("unsquashfs").arg("-l").arg(&squashfs).output().unwrap();
    assert!(listing.status.success());
    let listing = String::from_utf8(listing.stdout).unwrap();
    let modules: Vec<&str> =
        listing.lines().filter(|l| l.contains("/lib/modules/") && l.contains(".ko")).collect();
    assert!(
        modules.iter().any(|m| m.ends_with("/kernel/fs/isofs/isofs.ko")),
        "the listing has modules at all"
    );
    let excluded = [
        "drivers/net/",
        "/kernel/net/",
        "drivers/bluetooth/",
        "/kernel/sound/",
        "drivers/gpu/",
        "drivers/media/",
    ];
    let leaked: Vec<&&str> = modules.iter().filter(|m| excluded.iter().any(|x| m.contains(x))).collect();
    assert!(leaked.is_empty(), "excluded modules in the image: {:?}", &leaked[..leaked.len().min(10)]);
    assert!(listing.lines().any(|l| l.ends_with("/etc/modprobe.d/ceremony-os-airgap.conf")));
    assert!(listing.lines().any(|l| l.ends_with("/usr/local/bin/ceremony")));
}

/// A tiny vendor bundle (`vendor.tar` in `dir`); returns its SHA-256.
fn vendor_bundle(dir: &Path) -> String {
    let tree = dir.join("vendor-tree");
    std::fs::create_dir_all(tree.join("usr/lib")).unwrap();
    std::fs::write(tree.join("usr/lib/libvendor-pkcs11.so"), b"a vendor PKCS#11 module would be here\n")
        .unwrap();
    let status = std::process::Command::new("tar")
        .args(["--sort=name", "--owner=0", "--group=0", "--mtime=@1700000000", "-cf"])
        .arg(dir.join("vendor.tar"))
        .arg("-C")
        .arg(&tree)
        .arg("usr")
        .status()
        .unwrap();
    assert!(status.success());
    sha256_file(&dir.join("vendor.tar"))
}

#[test]
fn hsm_bundle_with_a_wrong_digest_is_refused() {
    let (_guard, s) = shared();
    let definition = support::image_copy(&s.root, "image-bad-bundle");
    let image_dir = definition.parent().unwrap().to_path_buf();
    let actual = vendor_bundle(&image_dir);
    let wrong = "ab".repeat(32);
    let mut text = std::fs::read_to_string(&definition).unwrap();
    text.push_str(&format!(
        "\n[[hsm_bundle]]\nname = \"vendor\"\narchive = \"vendor.tar\"\nsha256 = \"{wrong}\"\nmodule = \"usr/lib/libvendor-pkcs11.so\"\n"
    ));
    std::fs::write(&definition, text).unwrap();
    let out = support::ceremony_os(&s.store)
        .arg("build")
        .arg(&definition)
        .arg("--output")
        .arg(s.root.join("out-bad-bundle"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("hsm_bundle vendor:") && stderr.contains(&actual) && stderr.contains(&wrong),
        "{stderr}"
    );
    assert!(!s.root.join("out-bad-bundle").join(format!("{}.iso", support::default_stem())).exists());
}

//! `ceremony-os`: the command line. Thin on purpose: argument parsing, progress display and
//! output formatting live here; every decision lives in the library crates.

mod attest;
mod discs;
mod progress;
mod verify;

use anyhow::{Context, Result};
use ceremony_os_store::{Bundle, FetchOptions, Sources, Store};
use ceremony_os_workflow::{FetchConfig, Project};
use clap::{Args, Parser, Subcommand};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

/// Build, verify and burn a bit-for-bit reproducible live ISO for key ceremonies.
///
/// The pipeline: `lock` pins every Debian package of image/ceremony.toml by SHA-256 into
/// image/ceremony.lock; `fetch` fills a content-addressed store with exactly those files, verified
/// (`vendor` copies them out for rebuilds with no network); `build` turns the lock into the ISO,
/// the same bytes on any machine; `verify` rebuilds and compares with what was published, and
/// `compare` explains how two ISOs differ; `material` and `burn` make and check the discs;
/// `boot` runs an ISO in QEMU.
///
/// Exit status: 0 on success, 1 on any error, 2 on a usage error; `verify` and `compare` use 1
/// for "differs" and 2 for errors.
#[derive(Parser, Debug)]
#[command(name = "ceremony-os", version, propagate_version = true, max_term_width = 100)]
struct Cli {
    #[command(subcommand)]
    command: Command,

    /// Content-addressed store of verified inputs.
    /// [default: $XDG_CACHE_HOME/ceremony-os/store]
    #[arg(long, global = true, env = "CEREMONY_OS_STORE", value_name = "DIR")]
    store: Option<PathBuf>,

    /// More log output (-v: info, -vv: debug). CEREMONY_OS_LOG takes a tracing filter.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Resolve the image and toolchain package sets with apt and write the lockfile.
    ///
    /// apt resolves in a throwaway root against the first mirror of the definition that serves
    /// a Release file signed by the configured keyring. The lockfile lists the full closure of
    /// both sets (name, version, architecture, size, SHA-256, archive path), sorted; re-running
    /// against the same archive state gives the same bytes.
    Lock(LockArgs),
    /// Download every locked input into the store, verifying size and SHA-256 first.
    ///
    /// First each archive's locked state (InRelease and package indexes), then the lock's trust
    /// chain is checked, then every locked .deb (and the tool's .crate files a bundle holds).
    /// Sources, per file: the store, the definition's mirrors in order (a snapshot mirror at the
    /// lock's recorded snapshot times), then each --vendor bundle in order. An archive whose
    /// locked state no source serves is re-vouched: its current signed state is fetched, and each
    /// locked package it lists with the same name, version, architecture, size and SHA-256 is
    /// accepted (the ISO is the same bytes); a package no state lists is named with what replaced
    /// it. Files already in the store are verified again and skipped; downloads resume.
    Fetch(FetchArgs),
    /// Write a release inputs bundle into DIR: every input a rebuild needs, for any static HTTP
    /// server, disc or object store to serve (then `--vendor DIR|URL` in any command).
    ///
    /// The locked .debs, each archive's InRelease and indexes (or the signed states that
    /// re-vouched for them), every .crate of the tool's Cargo.lock, an index
    /// (ceremony-os-bundle.json) and SHA256SUMS. Nothing in a bundle is trusted by its reader:
    /// every file is checked against the lock, the keyring and Cargo.lock. Fetches what the store
    /// lacks first (honouring --offline and --vendor). Prints the index's SHA-256.
    Vendor(VendorArgs),
    /// Build the ISO from the lock: out/<name>-<version>-<arch>.iso, SHA256SUMS, manifest, SBOM.
    ///
    /// Fetches (and verifies) the locked inputs first, then runs the stages repo, toolchain,
    /// rootfs, customize, normalize, squashfs, boot and iso. Each stage is cached in the store
    /// under a key of its recipe, configuration and input digests, and reused when nothing
    /// changed. Needs root (mmdebstrap, chroot, namespaces).
    Build(BuildArgs),
    /// Make the material disc: a reproducible data ISO of DIR with a SHA256SUMS inside.
    ///
    /// ISO 9660 with Rock Ridge and Joliet, written by the locked toolchain's xorriso. The same
    /// folder gives the same bytes whatever its files' mtimes, creation order, umask or owner.
    /// Dates come from --date, else SOURCE_DATE_EPOCH, else the definition's snapshot. Special
    /// files and symlinks leading out of DIR are refused.
    Material(discs::MaterialArgs),
    /// Burn an ISO to a CD-R or USB stick and verify it by reading it back.
    ///
    /// Refuses unless the ISO's SHA-256 matches --expect. Optical drives are written with
    /// xorriso (or --tool cdrecord|wodim); sticks and image files directly, then synced. The
    /// first ISO-size bytes of the device are read back and compared. Exit status 0 only when
    /// they match.
    Burn(discs::BurnArgs),
    /// Witness attestations (made by `verify --attest`).
    #[command(subcommand)]
    Attestations(attest::AttestationsCommand),
    /// SHA-256 of a file, or of the first N bytes of a device, as hex and PGP words.
    Checksum(discs::ChecksumArgs),
    /// Rebuild the image from the lock, with no cached stage, and compare with what was published.
    ///
    /// --expect takes a SHA-256, a SHA256SUMS file, the ISO itself, a build manifest
    /// (<name>.manifest.json, with the rootfs manifest beside it) or a provenance statement. The
    /// digest is printed as hex and as PGP words. On a mismatch: the first stage whose output
    /// differs (manifest or provenance), the differing root file system paths (manifest), or a
    /// layer-by-layer comparison (ISO).
    ///
    /// Exit status: 0 match, 1 mismatch, 2 error (bad input, failed build, usage).
    Verify(verify::VerifyArgs),
    /// Compare two ISOs layer by layer without rebuilding: volume descriptor, boot records, file
    /// tree, the squashfs inside and the initrd's archive; content or metadata, with digests.
    ///
    /// Exit status: 0 identical, 1 different, 2 error (missing, truncated or not an ISO; usage).
    Compare(verify::CompareArgs),
    /// Boot an ISO in QEMU as the air-gapped laptop: no network device, 2 GiB, serial console
    /// on this terminal.
    ///
    /// KVM is used when a short probe boot of the ISO runs under it, TCG otherwise (or as
    /// `--accel` says). Exits 0 when QEMU ends normally, 1 otherwise.
    Boot(BootArgs),
}

#[derive(Args, Debug)]
struct BootArgs {
    /// The ISO to boot.
    iso: PathBuf,
    /// Boot with UEFI firmware (OVMF) instead of BIOS.
    #[arg(long)]
    uefi: bool,
    /// Boot with OVMF's Secure Boot firmware, Microsoft's keys enrolled and Secure Boot on
    /// (implies --uefi).
    #[arg(long)]
    secure_boot: bool,
    /// Attach the ISO as a USB stick instead of a CD-ROM.
    #[arg(long)]
    usb: bool,
    /// A second CD-ROM: the material disc.
    #[arg(long, value_name = "ISO")]
    material: Option<PathBuf>,
    /// A writable disk image attached as a USB stick (the ceremony's output stick).
    #[arg(long, value_name = "IMG")]
    disk: Option<PathBuf>,
    /// No window; the serial console on this terminal is the only console.
    #[arg(long)]
    headless: bool,
    /// Memory in MiB.
    #[arg(long, default_value_t = 2048)]
    memory: u32,
    /// The accelerator: `auto` boots the ISO with KVM for eight seconds and uses it if the guest
    /// runs, TCG (software emulation, slow but everywhere) otherwise.
    #[arg(long, value_enum, default_value_t = AccelChoice::Auto)]
    accel: AccelChoice,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum AccelChoice {
    Auto,
    Kvm,
    Tcg,
}

#[derive(Args, Debug)]
pub(crate) struct DefinitionArg {
    /// The image definition.
    #[arg(default_value = "image/ceremony.toml", value_name = "DEFINITION")]
    pub(crate) definition: PathBuf,

    /// The lockfile [default: DEFINITION with the extension .lock].
    #[arg(long, value_name = "FILE")]
    pub(crate) lockfile: Option<PathBuf>,
}

impl DefinitionArg {
    pub(crate) fn lockfile(&self) -> PathBuf {
        self.lockfile.clone().unwrap_or_else(|| self.definition.with_extension("lock"))
    }

    pub(crate) fn load(&self) -> Result<Project> {
        Project::load(&self.definition, &self.lockfile())
    }
}

#[derive(Args, Debug)]
struct LockArgs {
    #[command(flatten)]
    definition: DefinitionArg,

    /// Do not write. Check the lock's trust chain against the archive files in the store
    /// (fetched first unless --offline): keyring, InRelease signatures, index digests, every
    /// locked package and the closure of each set. Then, unless --offline, resolve again and
    /// exit 1 if the archive has moved on since the lock was made.
    #[arg(long)]
    check: bool,

    /// With --check: use only the store and --vendor, and do not compare with the live archive.
    #[arg(long, requires = "check")]
    offline: bool,

    /// With --check: a release inputs bundle to take the archive files from (repeatable).
    #[arg(long = "vendor", value_name = "DIR|URL", requires = "check", value_parser = Bundle::parse)]
    bundles: Vec<Bundle>,
}

#[derive(Args, Debug)]
pub(crate) struct SourceArgs {
    /// A release inputs bundle (as written by `ceremony-os vendor`): a directory, or an http(s)
    /// URL serving one; tried after the mirrors. Repeat to try several, in order.
    #[arg(long = "vendor", value_name = "DIR|URL", value_parser = Bundle::parse)]
    bundles: Vec<Bundle>,

    /// Use no network: only the store and --vendor.
    #[arg(long)]
    offline: bool,

    /// Parallel downloads.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    jobs: u16,

    /// Extra tries per mirror after a transient failure (backoff doubles from 0.5 s).
    #[arg(long, default_value_t = 3)]
    retries: u32,
}

impl SourceArgs {
    pub(crate) fn config(&self) -> FetchConfig {
        FetchConfig {
            sources: Sources { bundles: self.bundles.clone(), offline: self.offline, ..Sources::default() },
            options: FetchOptions {
                jobs: self.jobs.into(),
                retries: self.retries,
                ..FetchOptions::default()
            },
        }
    }
}

#[derive(Args, Debug)]
struct FetchArgs {
    #[command(flatten)]
    definition: DefinitionArg,
    #[command(flatten)]
    sources: SourceArgs,
    /// Print a JSON report on standard output (progress still goes to standard error).
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
struct VendorArgs {
    /// Output directory (created if missing).
    dir: PathBuf,
    #[command(flatten)]
    definition: DefinitionArg,
    #[command(flatten)]
    sources: SourceArgs,
    /// Print what was written (files, bytes, the index's SHA-256) as JSON on standard output.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
struct BuildArgs {
    #[command(flatten)]
    definition: DefinitionArg,
    #[command(flatten)]
    sources: SourceArgs,
    /// Output directory.
    #[arg(long, short, default_value = "out", value_name = "DIR")]
    output: PathBuf,
    /// Rebuild every stage; reuse no cached stage output.
    #[arg(long)]
    no_cache: bool,
    /// Directory for temporary build state [default: the store's tmp/].
    #[arg(long, value_name = "DIR")]
    work_dir: Option<PathBuf>,
    /// When the committed lock's inputs can be had from no source (not its states, not
    /// re-vouched, not a snapshot, not a bundle): lock today's archive state into the output
    /// directory (the committed lock is not touched), write the package changes beside it, and
    /// build that, marked in the manifest as not the committed lock's ISO. `make iso` uses this;
    /// a trust failure never falls back, and `verify` never does.
    #[arg(long)]
    allow_relock: bool,
    /// Print the build report as JSON on standard output.
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    // verify, compare and attestations keep 1 for "differs" or "not witnessed"; their errors are 2.
    let error_code = match cli.command {
        Command::Verify(_) | Command::Compare(_) | Command::Attestations(_) => ExitCode::from(2),
        _ => ExitCode::FAILURE,
    };
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", ceremony_os_render::error(&e));
            error_code
        }
    }
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("CEREMONY_OS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false).init();
}

fn run(cli: Cli) -> Result<ExitCode> {
    let store_root = cli.store.clone().unwrap_or_else(Store::default_root);
    match cli.command {
        Command::Verify(args) => verify::verify(&args, &store_root),
        Command::Compare(args) => verify::compare(&args),
        Command::Attestations(command) => attest::run(&command),
        command => run_simple(command, &store_root).map(|()| ExitCode::SUCCESS),
    }
}

fn run_simple(command: Command, store_root: &std::path::Path) -> Result<()> {
    let store_root = store_root.to_path_buf();
    match command {
        Command::Verify(_) | Command::Compare(_) | Command::Attestations(_) => unreachable!("handled by run"),
        Command::Lock(args) => lock(&args, &store_root),
        Command::Fetch(args) => {
            let store = Store::open(&store_root)?;
            let project = args.definition.load()?;
            let observer = progress::FetchProgress::new();
            let report =
                ceremony_os_workflow::fetch_inputs(&store, &project, &args.sources.config(), &observer);
            observer.finish();
            let report = report?;
            eprintln!("{}", progress::inputs_summary(&report, &store));
            if args.json {
                let json = progress::inputs_json(&store, &report);
                writeln!(std::io::stdout(), "{}", serde_json::to_string_pretty(&json)?)?;
            }
            Ok(())
        }
        Command::Build(args) => {
            let store = Store::open(&store_root)?;
            let project = args.definition.load()?;
            let observer = progress::FetchProgress::new();
            let prepared = ceremony_os_workflow::prepare_build(
                &store,
                &project,
                &args.output,
                &args.sources.config(),
                &observer,
                args.allow_relock,
                &mut |line| eprintln!("{line}"),
            );
            observer.finish();
            let prepared = prepared?;
            eprintln!("{}", progress::inputs_summary(&prepared.inputs, &store));
            let request = prepared.request(&store, &args.output, args.no_cache, args.work_dir.clone());
            let report = ceremony_os_builder::build(&request, &progress::BuildProgress::new())?;
            eprintln!("{}", progress::build_summary(&report));
            if let Some(fallback) = &prepared.fallback {
                eprintln!("{}", progress::fallback_summary(fallback, &project));
            }
            if args.json {
                writeln!(std::io::stdout(), "{}", serde_json::to_string_pretty(&report)?)?;
            }
            Ok(())
        }
        Command::Material(args) => discs::material(&args, &store_root),
        Command::Boot(args) => boot(&args),
        Command::Burn(args) => discs::burn(&args),
        Command::Checksum(args) => discs::checksum(&args),
        Command::Vendor(args) => {
            let store = Store::open(&store_root)?;
            let project = args.definition.load()?;
            let observer = progress::FetchProgress::new();
            let report = ceremony_os_workflow::vendor(
                &store,
                &project,
                &args.dir,
                &args.sources.config(),
                &observer,
                &|line| eprintln!("{line}"),
            );
            observer.finish();
            let report = report?;
            eprintln!("{}", progress::inputs_summary(&report.inputs, &store));
            let w = &report.written;
            eprintln!(
                "wrote the bundle {}: {} files, {} bytes ({} copied, the rest already there); see its SHA256SUMS",
                args.dir.display(),
                w.files,
                w.bytes,
                w.copied
            );
            eprintln!("{}", ceremony_os_render::digest("bundle index", &w.index_sha256));
            if args.json {
                writeln!(std::io::stdout(), "{}", serde_json::to_string_pretty(w)?)?;
            }
            Ok(())
        }
    }
}

fn boot(args: &BootArgs) -> Result<()> {
    use ceremony_os_vm::{Accel, Firmware, Medium, VmConfig};
    // QEMU runs in "/" (`VmConfig::command` refuses relative names): absolute paths from here.
    let absolute = |file: &PathBuf| -> Result<PathBuf> {
        let path = std::fs::canonicalize(file).with_context(|| format!("cannot use {}", file.display()))?;
        anyhow::ensure!(
            path.to_str().is_some(),
            "cannot use {}: the file name is not UTF-8, and ceremony-os passes file names to QEMU as text",
            path.display()
        );
        Ok(path)
    };
    let config = VmConfig {
        firmware: match (args.uefi, args.secure_boot) {
            (_, true) => Firmware::UefiSecureBoot,
            (true, false) => Firmware::Uefi,
            (false, false) => Firmware::Bios,
        },
        medium: if args.usb { Medium::UsbStick } else { Medium::Cdrom },
        material: args.material.as_ref().map(absolute).transpose()?,
        disk: args.disk.as_ref().map(absolute).transpose()?,
        memory_mib: args.memory,
        headless: args.headless,
        ..VmConfig::new(&absolute(&args.iso)?)
    };
    let runner = ceremony_os_runner::Runner::new(0);
    let (accel, why) = match args.accel {
        AccelChoice::Auto => ceremony_os_vm::choose_accel(&runner, &config),
        AccelChoice::Kvm => (Accel::Kvm, "using KVM (--accel kvm)".to_string()),
        AccelChoice::Tcg => (Accel::Tcg, "using TCG (--accel tcg)".to_string()),
    };
    eprintln!("{why}");
    let qemu = config.command(&runner, accel)?;
    let status = qemu.cmd.run_attached()?;
    if !status.success() {
        anyhow::bail!("QEMU exited with {status}");
    }
    Ok(())
}

fn lock(args: &LockArgs, store_root: &std::path::Path) -> Result<()> {
    let path = &args.definition.definition;
    let lock_path = args.definition.lockfile();
    let store = Store::open(store_root)?;
    if !args.check {
        let written = ceremony_os_workflow::lock(&store, path, &lock_path, &mut |line| eprintln!("{line}"))?;
        let archives: Vec<String> =
            written.lock.archives.iter().map(|a| format!("{} ({})", a.suite, a.release_date)).collect();
        eprintln!(
            "wrote {}: image {} packages, toolchain {} packages, archives {}",
            lock_path.display(),
            written.lock.image.packages.len(),
            written.lock.toolchain.packages.len(),
            archives.join(", ")
        );
        return Ok(());
    }
    let project = args.definition.load()?;
    let sources = SourceArgs { bundles: args.bundles.clone(), offline: args.offline, jobs: 4, retries: 3 };
    let observer = progress::FetchProgress::new();
    let check = ceremony_os_workflow::check_lock(
        &store,
        &project,
        &sources.config(),
        &observer,
        !args.offline,
        &mut |line| eprintln!("{line}"),
    );
    observer.finish();
    let check = check?;
    let trust = &check.state.trust;
    let keyring = project.def.keyring_path(path);
    eprintln!(
        "{}: trust chain holds: {} archives signed by {}, {} packages in their signed indexes, both sets closed",
        lock_path.display(),
        trust.archives,
        keyring.display(),
        trust.packages
    );
    for warning in &check.state.warnings {
        eprintln!("  {warning}");
    }
    match check.up_to_date {
        None => Ok(()),
        Some(true) => {
            eprintln!("{} is up to date with the archive", lock_path.display());
            Ok(())
        }
        Some(false) => anyhow::bail!(
            "{} is out of date: the archive has moved on since it was made (resolving {} now gives a different lock); run `ceremony-os lock`",
            lock_path.display(),
            path.display()
        ),
    }
}

//! Ceremony plans: one reviewed TOML file that lists the ceremony's steps in order. Each HSM step
//! names its step file and that file's SHA-256, and pins the SHA-256 of every input the step
//! reads that the ceremony does not make itself (a CSR, an issuer certificate from an earlier
//! ceremony). Checkpoints show digests to the witnesses and wait for their confirmation; a
//! Shamir step splits a token's PIN among keyholders.
//!
//! Running a plan: the plan and everything it names are checked first (digests, step files,
//! what each step reads and writes), before any HSM session; the files are copied, from the
//! bytes that were checked, into the work directory (the current directory), where the steps
//! run. Every step is recorded in the transcript with the plan's digest and the step's id, so a
//! stopped plan resumes after its last completed step (`--resume`); before a step reads a file
//! an earlier step made, the file must still have the digest that step recorded.

use crate::ca::{HsmAccess, Outcome, Step, StepFiles};
use crate::transcript::{PlanRef, Record};
use anyhow::{Context, Result, anyhow, bail};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlan {
    plan: RawHeader,
    #[serde(default)]
    step: Vec<RawStep>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHeader {
    title: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    id: String,
    run: String,
    #[serde(default)]
    say: Option<String>,
    #[serde(default)]
    file: Option<String>,
    #[serde(default)]
    sha256: Option<String>,
    #[serde(default)]
    inputs: BTreeMap<String, String>,
    #[serde(default)]
    show: Vec<String>,
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    threshold: Option<u32>,
    #[serde(default)]
    shares: Option<u32>,
}

/// What a plan step does.
#[derive(Debug, Clone)]
pub enum Action {
    /// An HSM step driven by a step file whose SHA-256 is pinned, with the inputs it reads from
    /// outside the ceremony pinned too.
    Hsm { step: Step, file: PathBuf, sha256: String, inputs: BTreeMap<PathBuf, String> },
    /// Show the digests of these files (and the transcript head) and wait for the witnesses.
    Checkpoint { show: Vec<PathBuf> },
    /// Split the PIN of `token` into `shares` shares, any `threshold` of which recover it.
    ShamirSplit { token: String, threshold: u32, shares: u32 },
}

impl Action {
    pub fn command(&self) -> &'static str {
        match self {
            Action::Hsm { step, .. } => step.name(),
            Action::Checkpoint { .. } => "checkpoint",
            Action::ShamirSplit { .. } => "shamir split",
        }
    }
}

#[derive(Debug, Clone)]
pub struct PlanStep {
    pub id: String,
    /// What the administrator reads aloud.
    pub say: Option<String>,
    pub action: Action,
}

#[derive(Debug, Clone)]
pub struct Plan {
    pub path: PathBuf,
    /// Every file the plan names is relative to the plan's directory.
    pub dir: PathBuf,
    pub sha256: String,
    pub title: String,
    pub steps: Vec<PlanStep>,
}

fn sha256_field(text: &str, what: &str) -> Result<String> {
    let lower = text.trim().to_ascii_lowercase();
    if lower.len() != 64 || !lower.bytes().all(|b| b.is_ascii_hexdigit()) {
        bail!("{what} {text:?} is not a SHA-256 (64 hex digits)");
    }
    Ok(lower)
}

/// Parse a plan's text. `origin` names it in errors; `dir` is its directory.
pub fn parse(text: &str, origin: &Path, dir: &Path) -> Result<Plan> {
    let raw: RawPlan = crate::config::parse(text, origin)?;
    if raw.plan.title.trim().is_empty() {
        bail!("{}: plan.title is empty", origin.display());
    }
    if raw.step.is_empty() {
        bail!("{}: the plan has no [[step]]", origin.display());
    }
    let mut ids = BTreeSet::new();
    let mut steps = Vec::new();
    for (i, r) in raw.step.into_iter().enumerate() {
        let at = format!("{}: step {} ({:?})", origin.display(), i + 1, r.id);
        if r.id.is_empty() || !r.id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            bail!("{at}: id must be lower-case letters, digits and '-'");
        }
        if !ids.insert(r.id.clone()) {
            bail!("{at}: another step has this id");
        }
        let unexpected = |field: &str, present: bool| -> Result<()> {
            if present {
                Err(anyhow!("{at}: `{field}` does not belong to a {:?} step", r.run))
            } else {
                Ok(())
            }
        };
        let action = match r.run.as_str() {
            "checkpoint" => {
                for (field, present) in [
                    ("file", r.file.is_some()),
                    ("sha256", r.sha256.is_some()),
                    ("inputs", !r.inputs.is_empty()),
                    ("token", r.token.is_some()),
                    ("threshold", r.threshold.is_some()),
                    ("shares", r.shares.is_some()),
                ] {
                    unexpected(field, present)?;
                }
                let show = r
                    .show
                    .iter()
                    .map(|s| crate::config::plain_relative(s, "show"))
                    .collect::<Result<Vec<_>>>()
                    .with_context(|| at.clone())?;
                Action::Checkpoint { show }
            }
            "shamir split" => {
                for (field, present) in [
                    ("file", r.file.is_some()),
                    ("sha256", r.sha256.is_some()),
                    ("inputs", !r.inputs.is_empty()),
                    ("show", !r.show.is_empty()),
                ] {
                    unexpected(field, present)?;
                }
                let (Some(token), Some(threshold), Some(shares)) = (r.token.clone(), r.threshold, r.shares)
                else {
                    bail!("{at}: a shamir split step needs token, threshold and shares");
                };
                crate::shamir::check_parameters(threshold, shares).with_context(|| at.clone())?;
                Action::ShamirSplit { token, threshold, shares }
            }
            other => {
                let Some(step) = Step::from_name(other) else {
                    bail!(
                        "{at}: run = {other:?} is not a step; one of {}, checkpoint, shamir split",
                        Step::ALL.map(Step::name).join(", ")
                    );
                };
                for (field, present) in [
                    ("show", !r.show.is_empty()),
                    ("token", r.token.is_some()),
                    ("threshold", r.threshold.is_some()),
                    ("shares", r.shares.is_some()),
                ] {
                    unexpected(field, present)?;
                }
                let (Some(file), Some(sha256)) = (&r.file, &r.sha256) else {
                    bail!("{at}: a {other} step needs `file` (its step file) and `sha256` (that file's)");
                };
                let file = crate::config::plain_relative(file, "file").with_context(|| at.clone())?;
                let sha256 = sha256_field(sha256, "sha256").with_context(|| at.clone())?;
                let mut inputs = BTreeMap::new();
                for (path, digest) in &r.inputs {
                    inputs.insert(
                        crate::config::plain_relative(path, "inputs").with_context(|| at.clone())?,
                        sha256_field(digest, &format!("inputs.{path:?}")).with_context(|| at.clone())?,
                    );
                }
                Action::Hsm { step, file, sha256, inputs }
            }
        };
        steps.push(PlanStep { id: r.id, say: r.say, action });
    }
    Ok(Plan {
        path: origin.to_path_buf(),
        dir: dir.to_path_buf(),
        sha256: crate::ca::sha256_hex(text.as_bytes()),
        title: raw.plan.title,
        steps,
    })
}

/// Read and parse the plan file.
pub fn load(path: &Path) -> Result<Plan> {
    let bytes = crate::config::read_regular(path)?;
    let text = String::from_utf8(bytes).map_err(|_| anyhow!("{}: not UTF-8 text", path.display()))?;
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    parse(&text, path, dir)
}

/// How far the transcript says this plan got: the number of steps completed, in order.
pub fn progress(plan: &Plan, records: &[Record], rehearsal: bool) -> Result<usize> {
    let mut done = 0;
    for record in records {
        // Only completed steps count: a refused or failed attempt changed nothing.
        let Some(r) = record.plan.as_ref().filter(|r| r.sha256 == plan.sha256 && record.outcome == "ok")
        else {
            continue;
        };
        if r.rehearsal != rehearsal {
            bail!(
                "the transcript holds a {} of this plan (record {}); a {} needs its own work directory and transcript",
                if r.rehearsal { "rehearsal" } else { "real run" },
                record.seq,
                if rehearsal { "rehearsal" } else { "real run" },
            );
        }
        match plan.steps.get(done) {
            Some(step) if step.id == r.step => done += 1,
            _ => bail!(
                "transcript record {} completes step {:?} of this plan out of order (after {done} completed steps)",
                record.seq,
                r.step
            ),
        }
    }
    Ok(done)
}

/// The outputs completed steps of this plan recorded: path -> SHA-256 of the DER.
fn recorded_outputs(plan: &Plan, records: &[Record]) -> BTreeMap<PathBuf, String> {
    let mut outputs = BTreeMap::new();
    for record in records {
        if record.outcome == "ok" && record.plan.as_ref().is_some_and(|r| r.sha256 == plan.sha256) {
            for (path, digest) in &record.outputs {
                outputs.insert(PathBuf::from(path), digest.clone());
            }
        }
    }
    outputs
}

/// A plan checked against its files: what every HSM step reads and writes, and the bytes of
/// every file the plan names (step files and pinned inputs), as checked.
#[derive(Debug)]
pub struct Checked {
    /// For each step, its step file's reading (HSM steps only).
    pub files: Vec<Option<StepFiles>>,
    /// Files to place in the work directory: relative path -> bytes.
    pub staged: BTreeMap<PathBuf, Vec<u8>>,
    /// Which step writes each output.
    pub made_by: BTreeMap<PathBuf, usize>,
}

/// Read `path` in the plan's directory and check its digest.
fn read_checked(plan: &Plan, path: &Path, expected: &str, what: &str) -> Result<Vec<u8>> {
    let full = plan.dir.join(path);
    let bytes = crate::config::read_regular(&full)?;
    let actual = crate::ca::sha256_hex(&bytes);
    if actual != expected {
        bail!(
            "{what} {} has SHA-256 {actual}, the plan says {expected}: it is not the reviewed file (nothing was done)",
            full.display()
        );
    }
    Ok(bytes)
}

/// Remember a plan file's checked bytes; a path named twice must carry the same bytes.
fn stage_once(staged: &mut BTreeMap<PathBuf, Vec<u8>>, path: &Path, bytes: Vec<u8>, at: &str) -> Result<()> {
    match staged.get(path) {
        Some(existing) if *existing != bytes => {
            bail!("{at}: {} is named twice with different digests", path.display())
        }
        _ => {
            staged.insert(path.to_path_buf(), bytes);
            Ok(())
        }
    }
}

/// Check everything the plan names, before any HSM session: step files and pinned inputs have
/// their digests, step files parse, every file a step reads is pinned or made by an earlier
/// step, no output is written twice or collides with a plan file, and every checkpoint shows a
/// file the ceremony has.
pub fn check(plan: &Plan) -> Result<Checked> {
    let mut staged: BTreeMap<PathBuf, Vec<u8>> = BTreeMap::new();
    let mut made_by: BTreeMap<PathBuf, usize> = BTreeMap::new();
    let mut files = Vec::new();
    for (i, step) in plan.steps.iter().enumerate() {
        let at = format!("step {} ({:?})", i + 1, step.id);
        match &step.action {
            Action::Hsm { step: kind, file, sha256, inputs } => {
                let bytes = read_checked(plan, file, sha256, "step file").with_context(|| at.clone())?;
                let text = String::from_utf8(bytes.clone())
                    .map_err(|_| anyhow!("{at}: {} is not UTF-8", file.display()))?;
                let reading = kind.files(&text, &plan.dir.join(file)).with_context(|| at.clone())?;
                stage_once(&mut staged, file, bytes, &at)?;
                for read in &reading.reads {
                    let read =
                        crate::config::plain_relative(&read.display().to_string(), "a file the step reads")
                            .with_context(|| format!("{at}: {}", file.display()))?;
                    if let Some(expected) = inputs.get(&read) {
                        let bytes =
                            read_checked(plan, &read, expected, "input").with_context(|| at.clone())?;
                        stage_once(&mut staged, &read, bytes, &at)?;
                    } else if !made_by.contains_key(&read) {
                        bail!(
                            "{at}: {} reads {}, which no earlier step makes: pin it in the step's inputs with its SHA-256",
                            file.display(),
                            read.display()
                        );
                    }
                }
                for pinned in inputs.keys() {
                    if !reading.reads.iter().any(|r| r == pinned) {
                        bail!(
                            "{at}: inputs names {}, which {} does not read",
                            pinned.display(),
                            file.display()
                        );
                    }
                }
                for write in &reading.writes {
                    let write = crate::config::plain_relative(&write.display().to_string(), "an output")
                        .with_context(|| format!("{at}: {}", file.display()))?;
                    if let Some(earlier) = made_by.insert(write.clone(), i) {
                        bail!("{at}: {} is also written by step {}", write.display(), earlier + 1);
                    }
                }
                files.push(Some(reading));
            }
            Action::Checkpoint { show } => {
                for path in show {
                    if !made_by.contains_key(path) && !staged.contains_key(path) {
                        bail!("{at}: shows {}, which no earlier step makes or pins", path.display());
                    }
                }
                files.push(None);
            }
            Action::ShamirSplit { .. } => files.push(None),
        }
    }
    for output in made_by.keys() {
        if staged.contains_key(output) {
            bail!("{} is both a plan file and an output", output.display());
        }
    }
    Ok(Checked { files, staged, made_by })
}

/// Place the checked plan files in the work directory (the current directory): written from the
/// checked bytes, or, when already there (the plan's own directory, or a resumed run), compared
/// with them.
pub fn stage(checked: &Checked) -> Result<()> {
    for (target, bytes) in &checked.staged {
        crate::config::refuse_symlinks(target)?;
        match std::fs::symlink_metadata(target) {
            Ok(_) => {
                let present = crate::config::read_regular(target)?;
                if present != *bytes {
                    bail!(
                        "{} is in the work directory with SHA-256 {}, the plan's file has {} (nothing was done)",
                        target.display(),
                        crate::ca::sha256_hex(&present),
                        crate::ca::sha256_hex(bytes)
                    );
                }
            }
            Err(_) => {
                if let Some(parent) = target.parent() {
                    std::fs::create_dir_all(parent)
                        .with_context(|| format!("cannot create {}", parent.display()))?;
                }
                ceremony_os_media::write_new(target, bytes)?;
            }
        }
    }
    Ok(())
}

/// Where a run's PINs and confirmations come from, and how to reach the HSM.
pub struct Run<'a> {
    pub access: &'a HsmAccess<'a>,
    /// Ask the witnesses; `Ok(true)` when they confirm.
    pub confirm: &'a dyn Fn(&str) -> Result<bool>,
    pub rehearsal: bool,
}

impl std::fmt::Debug for Run<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Run")
            .field("access", self.access)
            .field("rehearsal", &self.rehearsal)
            .finish_non_exhaustive()
    }
}

impl Run<'_> {
    fn console(&self) -> &dyn crate::console::Console {
        self.access.console
    }
}

/// Run the plan's steps after the first `done`, each recorded in the transcript; stop at the
/// first that fails.
pub fn run(
    plan: &Plan,
    checked: &Checked,
    done: usize,
    transcript: &mut crate::transcript::Transcript,
    run: &Run<'_>,
) -> Result<()> {
    let total = plan.steps.len();
    for (i, step) in plan.steps.iter().enumerate().skip(done) {
        run.console().say(&format!(
            "\n== step {} of {total}: {} ({})",
            i + 1,
            step.id,
            step.action.command()
        ));
        if let Some(say) = &step.say {
            run.console().say(&format!("   {say}"));
        }
        let outputs = recorded_outputs(plan, transcript.records());
        let result = match &step.action {
            // Every step reads its files (step file, inputs, issuer) before its HSM session, each
            // through the checked reader: a changed or replaced file stops it there.
            Action::Hsm { step: kind, file, .. } => {
                let inputs = crate::config::Inputs::Checked(checked_reads(checked, i, file, &outputs));
                kind.run(run.access, &inputs, file)
            }
            Action::Checkpoint { show } => checkpoint(checked, show, &outputs, transcript.head(), run),
            Action::ShamirSplit { token, threshold, shares } => {
                split_pin(checked, token, *threshold, *shares, run.access)
            }
        };
        let plan_ref =
            PlanRef { sha256: plan.sha256.clone(), step: step.id.clone(), rehearsal: run.rehearsal };
        crate::recorded::record(transcript, step.action.command(), Some(plan_ref), &result, run.console())?;
        result.with_context(|| format!("step {} ({}) failed; the plan stopped there", i + 1, step.id))?;
    }
    run.console().say(&format!("\nall {total} steps of the plan are done"));
    Ok(())
}

/// Every file step `index` may read, with what it was checked to hold: the step reads each
/// through `config::read_input`, which compares the very bytes it then uses.
fn checked_reads(
    checked: &Checked,
    index: usize,
    file: &Path,
    outputs: &BTreeMap<PathBuf, String>,
) -> BTreeMap<PathBuf, crate::config::Checked> {
    let mut reads = BTreeMap::new();
    let reading =
        checked.files.get(index).and_then(Option::as_ref).map(|f| f.reads.as_slice()).unwrap_or_default();
    for path in std::iter::once(file).chain(reading.iter().map(PathBuf::as_path)) {
        let expected = match (checked.staged.get(path), outputs.get(path)) {
            (Some(bytes), _) => crate::config::Checked::Bytes(bytes.clone()),
            (None, Some(digest)) => crate::config::Checked::OwnPem { der_sha256: digest.clone() },
            (None, None) => continue,
        };
        reads.insert(path.to_path_buf(), expected);
    }
    reads
}

/// A plan file in the work directory still has the bytes that were checked (shown at a
/// checkpoint).
fn check_staged(checked: &Checked, path: &Path) -> Result<()> {
    let expected =
        checked.staged.get(path).with_context(|| format!("{} is not a file of the plan", path.display()))?;
    crate::config::refuse_symlinks(path)?;
    let present = crate::config::read_regular(path)?;
    if present != *expected {
        bail!(
            "{} has SHA-256 {} in the work directory, the plan checked {}: it changed since (nothing was done)",
            path.display(),
            crate::ca::sha256_hex(&present),
            crate::ca::sha256_hex(expected)
        );
    }
    Ok(())
}

/// An output of an earlier step still holds exactly what that step wrote and recorded; returns
/// the digest of its DER.
fn check_output(checked: &Checked, path: &Path, outputs: &BTreeMap<PathBuf, String>) -> Result<String> {
    let expected = outputs.get(path).with_context(|| match checked.made_by.get(path) {
        Some(step) => format!(
            "{} is made by step {}, which the transcript does not show completed",
            path.display(),
            step + 1
        ),
        None => format!("{} is neither a file of the plan nor made by one of its steps", path.display()),
    })?;
    let (_, der) = crate::config::read_own_pem(path)?;
    let actual = crate::ca::sha256_hex(&der);
    if actual != *expected {
        bail!(
            "{} has SHA-256 {actual} (DER), the transcript recorded {expected} when it was made: it was replaced (nothing was done)",
            path.display()
        );
    }
    Ok(actual)
}

fn checkpoint(
    checked: &Checked,
    show: &[PathBuf],
    outputs: &BTreeMap<PathBuf, String>,
    head: &str,
    run: &Run<'_>,
) -> Result<Outcome> {
    let mut inputs = BTreeMap::new();
    for path in show {
        let (digest, kind) = match checked.staged.get(path) {
            Some(bytes) => {
                check_staged(checked, path)?;
                (crate::ca::sha256_hex(bytes), "file")
            }
            None => (check_output(checked, path, outputs)?, "DER"),
        };
        run.console().digest(&format!("{} ({kind})", path.display()), &digest);
        inputs.insert(path.display().to_string(), digest);
    }
    run.console().digest("transcript head so far", head);
    if !(run.confirm)("Do the witnesses confirm these digests match the script? Type yes to go on: ")? {
        bail!("the witnesses did not confirm; the plan stopped (resume with --resume once resolved)");
    }
    Ok(Outcome { inputs, ..Default::default() })
}

/// A `shamir split` step: log in to the token with the PIN first (a mistyped PIN must not be
/// split and handed out), then split it.
fn split_pin(
    checked: &Checked,
    token: &str,
    threshold: u32,
    shares: u32,
    access: &HsmAccess<'_>,
) -> Result<Outcome> {
    let section = checked
        .files
        .iter()
        .flatten()
        .map(|files| &files.hsm)
        .find(|hsm| hsm.token_label == token)
        .cloned()
        .unwrap_or(crate::config::HsmSection { module: None, token_label: token.to_string() });
    drop(
        access
            .session(&section)
            .with_context(|| format!("the PIN of token {token:?} does not log in; nothing was split"))?,
    );
    let pin = (access.pin)(token)?;
    crate::shamir::split_for_keyholders(pin.as_bytes(), threshold, shares, access.console)
}

/// Every token the plan uses (for a rehearsal's throwaway tokens), in order of first use.
pub fn tokens(plan: &Plan, checked: &Checked) -> Vec<String> {
    let mut tokens: Vec<String> = Vec::new();
    for (step, files) in plan.steps.iter().zip(&checked.files) {
        let label = match (&step.action, files) {
            (Action::ShamirSplit { token, .. }, _) => token.clone(),
            (_, Some(files)) => files.hsm.token_label.clone(),
            _ => continue,
        };
        if !tokens.contains(&label) {
            tokens.push(label);
        }
    }
    tokens
}

/// The plan as reviewers read it: digest, then each step.
pub fn describe(plan: &Plan) -> String {
    let mut out = format!("plan {}: {}\n", plan.path.display(), plan.title);
    for (i, step) in plan.steps.iter().enumerate() {
        out.push_str(&format!("  {:>2}. {} ({})", i + 1, step.id, step.action.command()));
        match &step.action {
            Action::Hsm { file, sha256, inputs, .. } => {
                out.push_str(&format!(": {} sha256 {}\n", file.display(), &sha256[..16]));
                for (path, digest) in inputs {
                    out.push_str(&format!("        input {} sha256 {}\n", path.display(), &digest[..16]));
                }
            }
            Action::Checkpoint { show } => out.push_str(&format!(
                ": show {}\n",
                show.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
            )),
            Action::ShamirSplit { token, threshold, shares } => {
                out.push_str(&format!(": PIN of {token:?}, {threshold} of {shares}\n"))
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLAN: &str = r#"
[plan]
title = "Example"

[[step]]
id = "root-key"
run = "key generate"
file = "steps/key.toml"
sha256 = "0000000000000000000000000000000000000000000000000000000000000000"

[[step]]
id = "check"
run = "checkpoint"
show = ["root.pub.pem"]

[[step]]
id = "pin"
run = "shamir split"
token = "root-ca"
threshold = 2
shares = 3
"#;

    #[test]
    fn a_plan_parses_into_typed_steps() {
        let plan = parse(PLAN, Path::new("plan.toml"), Path::new(".")).unwrap();
        assert_eq!(plan.steps.len(), 3);
        assert!(matches!(plan.steps[0].action, Action::Hsm { step: Step::KeyGenerate, .. }));
        assert!(matches!(plan.steps[2].action, Action::ShamirSplit { threshold: 2, shares: 3, .. }));
        assert_eq!(plan.sha256, crate::ca::sha256_hex(PLAN.as_bytes()));
    }

    #[test]
    fn bad_plans_are_named() {
        let cases = [
            (PLAN.replace("steps/key.toml", "../key.toml"), "relative path without"),
            (PLAN.replace("steps/key.toml", "/etc/key.toml"), "relative path without"),
            (PLAN.replace("id = \"check\"", "id = \"root-key\""), "another step has this id"),
            (PLAN.replace("run = \"checkpoint\"", "run = \"sign\""), "is not a step"),
            (
                PLAN.replace("show = [\"root.pub.pem\"]", "show = [\"root.pub.pem\"]\ntoken = \"x\""),
                "`token` does not belong",
            ),
            (PLAN.replace("threshold = 2", "threshold = 5"), "step 3"),
            (PLAN.replace("sha256 = \"0000", "sha256 = \"zz00"), "is not a SHA-256"),
            (PLAN.replace("title = \"Example\"", "title = \"Example\"\nwhen = 1"), "unknown field `when`"),
        ];
        for (text, expected) in cases {
            let err = format!("{:#}", parse(&text, Path::new("plan.toml"), Path::new(".")).unwrap_err());
            assert!(err.contains(expected), "expected {expected:?} in {err}");
        }
    }

    fn record(step: &str, outcome: &str, rehearsal: bool, sha256: &str) -> Record {
        Record {
            seq: 1,
            prev: String::new(),
            time: String::new(),
            command: "x".into(),
            config_sha256: None,
            inputs: BTreeMap::new(),
            outputs: BTreeMap::new(),
            outcome: outcome.into(),
            plan: Some(PlanRef { sha256: sha256.into(), step: step.into(), rehearsal }),
        }
    }

    #[test]
    fn progress_counts_completed_steps_in_order() {
        let plan = parse(PLAN, Path::new("plan.toml"), Path::new(".")).unwrap();
        let sha = plan.sha256.clone();
        let records = [
            record("root-key", "ok", false, &sha),
            record("check", "error: no", false, &sha),
            record("check", "ok", false, &sha),
        ];
        assert_eq!(progress(&plan, &records, false).unwrap(), 2);
        // Records of another plan do not count.
        assert_eq!(progress(&plan, &[record("root-key", "ok", false, "other")], false).unwrap(), 0);
        // Out of order, or a rehearsal's records in a real run, are refused.
        assert!(progress(&plan, &[record("check", "ok", false, &sha)], false).is_err());
        assert!(progress(&plan, &[record("root-key", "ok", true, &sha)], false).is_err());
        // A refused rehearsal attempt does not make the transcript a rehearsal's.
        assert_eq!(progress(&plan, &[record("(check)", "error: refused", true, &sha)], false).unwrap(), 0);
    }
}

/// Where a plan runs from and how: `plan run` as the binary parsed it.
#[derive(Debug)]
pub struct Execute<'a> {
    pub plan: &'a Path,
    pub transcript: &'a Path,
    /// Continue after the last step the transcript shows completed.
    pub resume: bool,
    /// Run against throwaway SoftHSM tokens (the binary has set up SoftHSM's configuration).
    pub rehearsal: bool,
    /// Overrides the step files' module (never in a rehearsal).
    pub module: Option<&'a Path>,
    pub allow_final_pin_try: bool,
}

/// SoftHSM's module, where Debian installs it: a rehearsal's HSM.
const SOFTHSM_MODULES: [&str; 2] =
    ["/usr/lib/softhsm/libsofthsm2.so", "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so"];

/// `plan run`: load and show the plan, open the transcript (nothing happens unless it verifies),
/// find where a resume starts, check everything, stage the plan's files, have the witnesses
/// confirm the plan's digest (or the last head they wrote down), then run the remaining steps.
/// A refusal before the first step is recorded too.
pub fn execute(
    request: &Execute<'_>,
    pin: &dyn Fn(&str) -> Result<zeroize::Zeroizing<String>>,
    confirm: &dyn Fn(&str) -> Result<bool>,
    console: &dyn crate::console::Console,
) -> Result<()> {
    let rehearsal = request.rehearsal;
    let plan = load(request.plan)?;
    console.digest(&format!("plan {}: {}", plan.path.display(), plan.title), &plan.sha256);
    let mut transcript = crate::transcript::Transcript::open(request.transcript)
        .with_context(|| format!("the transcript {} (nothing was done)", request.transcript.display()))?;
    let prepared = (|| {
        let done = progress(&plan, transcript.records(), rehearsal)?;
        if done > 0 && !request.resume {
            bail!(
                "the transcript shows steps 1..{done} of this plan completed; give --resume to continue after step {done}"
            );
        }
        let checked = check(&plan)?;
        for (output, step) in &checked.made_by {
            crate::config::refuse_symlinks(output)?;
            if *step >= done && std::fs::symlink_metadata(output).is_ok() {
                bail!(
                    "{} already exists in the work directory; step {} would write it",
                    output.display(),
                    step + 1
                );
            }
        }
        stage(&checked)?;
        // Before any HSM session: the witnesses hold the plan's digest on their script, and, on
        // a resume, the last head they wrote down (the transcript's chain has no key of its own).
        if done == plan.steps.len() {
            return Ok((done, checked));
        }
        let question = if done == 0 {
            "Do the witnesses confirm the plan's digest matches the script? Type yes to go on: "
        } else {
            console.digest("transcript head (the last record)", transcript.head());
            "Is this the last transcript head the witnesses wrote down? Type yes to go on: "
        };
        if !confirm(question)? {
            bail!("the witnesses did not confirm; nothing was done");
        }
        Ok((done, checked))
    })();
    let (done, checked) = match prepared {
        Ok(prepared) => prepared,
        Err(e) => {
            let plan_ref = PlanRef { sha256: plan.sha256.clone(), step: "(check)".into(), rehearsal };
            let refused: Result<Outcome> = Err(e);
            crate::recorded::record(&mut transcript, "plan", Some(plan_ref), &refused, console)?;
            return refused.map(|_| ());
        }
    };
    if done == plan.steps.len() {
        console.say("every step of the plan is already done");
        return Ok(());
    }
    let module = if rehearsal {
        let module = SOFTHSM_MODULES
            .iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
            .context("a rehearsal needs SoftHSM (libsofthsm2.so), which is not installed")?;
        let hsm = crate::hsm::Hsm::open(&module)?;
        for token in tokens(&plan, &checked) {
            console.say(&format!("rehearsal: a throwaway token {token:?} in SoftHSM"));
            hsm.init_rehearsal_token(&token, &pin(&token)?)?;
        }
        Some(module)
    } else {
        request.module.map(Path::to_path_buf)
    };
    let access = HsmAccess {
        module: module.as_deref(),
        pin,
        allow_final_pin_try: request.allow_final_pin_try,
        console,
    };
    run(&plan, &checked, done, &mut transcript, &Run { access: &access, confirm, rehearsal })
}

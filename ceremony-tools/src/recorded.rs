//! A command under the transcript: once a step has run (or was refused), the digests of what it
//! wrote are shown, its record is appended, and the new head is shown for the witnesses to
//! write down. Single commands and plan steps both go through [`record`].

use crate::ca::Outcome;
use crate::console::Console;
use crate::transcript::{PlanRef, Record, Transcript};
use anyhow::{Context, Result};
use std::collections::BTreeMap;

/// The laptop's clock, for the transcript only (the record says when the step happened).
pub fn now_utc() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    ceremony_os_timestamp::Timestamp::from_unix(secs).to_string()
}

/// Show what `result` wrote, append its record and show the new head; return the head.
pub fn record(
    transcript: &mut Transcript,
    command: &str,
    plan: Option<PlanRef>,
    result: &Result<Outcome>,
    console: &dyn Console,
) -> Result<String> {
    let empty = Outcome::default();
    let (outcome, status) = match result {
        Ok(outcome) => (outcome, "ok".to_string()),
        Err(e) => (&empty, format!("error: {}", ceremony_os_render::error(e))),
    };
    for written in &outcome.outputs {
        console.digest(
            &format!("{} written to {}", written.what, written.path.display()),
            &crate::ca::sha256_hex(&written.der),
        );
    }
    let record = Record {
        seq: 0,
        prev: String::new(),
        time: now_utc(),
        command: command.into(),
        config_sha256: outcome.config_sha256.clone(),
        inputs: outcome.inputs.clone(),
        outputs: outcome
            .outputs
            .iter()
            .map(|w| (w.path.display().to_string(), crate::ca::sha256_hex(&w.der)))
            .collect::<BTreeMap<_, _>>(),
        outcome: status,
        plan,
    };
    let head = transcript.append(record).context("appending to the transcript")?;
    console.digest(&format!("transcript {} head", transcript.path().display()), &head);
    Ok(head)
}

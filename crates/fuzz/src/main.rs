//! ceremony-os-fuzz: run the fuzz targets for longer than the tests do, replay a case, or
//! rewrite the generated corpus cases. See docs/fuzzing.md.

use ceremony_os_fuzz::{TARGETS, Target, corpus, is_bomb, keep_failure, mutate, run_one, target};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

const HELP: &str = "\
ceremony-os-fuzz: the fuzz targets of ceremony-os's readers of untrusted bytes

USAGE:
  ceremony-os-fuzz list
      The targets and what each reads.
  ceremony-os-fuzz run TARGET [--seconds N] [--seed N] [--failures DIR]
      Mutate the target's corpus cases for N seconds (default 60), from seed N (default 1).
      An input that panics is kept in DIR (default target/fuzz-failures) and the run stops
      with status 1; add it to crates/fuzz/corpus/TARGET/ once the reader is fixed.
  ceremony-os-fuzz replay TARGET FILE... [--memory-limit-mib N]
      Run the target on each FILE, with the address space limited to N MiB if given.
  ceremony-os-fuzz seeds
      Rewrite the corpus cases made with this project's own writers (envelopes, trust file,
      transcript).
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
    }
}

fn run(args: &[String]) -> Result<ExitCode, String> {
    let (command, rest) = args.split_first().ok_or_else(|| format!("a command is needed\n\n{HELP}"))?;
    match command.as_str() {
        "-h" | "--help" | "help" => {
            print!("{HELP}");
            Ok(ExitCode::SUCCESS)
        }
        "list" => {
            for t in TARGETS {
                println!("{:<16} {}", t.name, t.reads);
            }
            Ok(ExitCode::SUCCESS)
        }
        "run" => fuzz(rest),
        "replay" => replay(rest),
        "seeds" => {
            for (target, name, bytes) in ceremony_os_fuzz::seeds::generated() {
                let path = ceremony_os_fuzz::corpus_dir(target).join(name);
                std::fs::write(&path, bytes).map_err(|e| format!("{}: {e}", path.display()))?;
                println!("{}", path.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        other => Err(format!("unknown command {other:?}\n\n{HELP}")),
    }
}

/// `--name value` pairs, in the order given.
type Options<'a> = Vec<(&'a str, &'a str)>;

/// The positional arguments and the `--name value` options among them.
fn options<'a>(rest: &'a [String], known: &[&str]) -> Result<(Vec<&'a str>, Options<'a>), String> {
    let (mut positional, mut options) = (Vec::new(), Vec::new());
    let mut it = rest.iter();
    while let Some(arg) = it.next() {
        if let Some(name) = arg.strip_prefix("--") {
            if !known.contains(&name) {
                return Err(format!("unknown option --{name}\n\n{HELP}"));
            }
            let value = it.next().ok_or_else(|| format!("--{name} needs a value"))?;
            options.push((name, value.as_str()));
        } else {
            positional.push(arg.as_str());
        }
    }
    Ok((positional, options))
}

fn number(options: &[(&str, &str)], name: &str, default: u64) -> Result<u64, String> {
    match options.iter().rev().find(|(n, _)| *n == name) {
        Some((_, value)) => value.parse().map_err(|_| format!("--{name} {value:?}: expected a whole number")),
        None => Ok(default),
    }
}

fn named_target(name: Option<&&str>) -> Result<&'static Target, String> {
    let name = name.ok_or("a target is needed (ceremony-os-fuzz list names them)")?;
    target(name).ok_or_else(|| format!("no target {name:?} (ceremony-os-fuzz list names them)"))
}

fn fuzz(rest: &[String]) -> Result<ExitCode, String> {
    let (positional, options) = options(rest, &["seconds", "seed", "failures"])?;
    let target = named_target(positional.first())?;
    let seconds = number(&options, "seconds", 60)?;
    let mut rng = mutate::Rng::new(number(&options, "seed", 1)?);
    let failures = options
        .iter()
        .find(|(n, _)| *n == "failures")
        .map_or_else(|| PathBuf::from("target/fuzz-failures"), |(_, v)| PathBuf::from(v));
    let cases: Vec<_> = corpus(target.name)
        .map_err(|e| format!("the corpus of {}: {e}", target.name))?
        .into_iter()
        .filter(|(name, _)| !is_bomb(name))
        .collect();
    if cases.is_empty() {
        return Err(format!("the corpus of {} holds no case to mutate", target.name));
    }
    // The panics are reported here, with the input that caused them.
    std::panic::set_hook(Box::new(|_| {}));
    let (start, mut last_report, mut runs) = (Instant::now(), Instant::now(), 0u64);
    while start.elapsed() < Duration::from_secs(seconds) {
        let (_, seed) = &cases[rng.below(cases.len())];
        let (_, other) = &cases[rng.below(cases.len())];
        let input = mutate::mutate(seed, other, &mut rng);
        runs += 1;
        if let Err(panic) = run_one(target, &input) {
            let kept = keep_failure(&failures, target.name, &input).map_err(|e| e.to_string())?;
            eprintln!("{}: run {runs}: panicked: {panic}\ninput kept in {}", target.name, kept.display());
            return Ok(ExitCode::from(1));
        }
        if last_report.elapsed() >= Duration::from_secs(10) {
            eprintln!("{}: {runs} inputs in {} s, none failed", target.name, start.elapsed().as_secs());
            last_report = Instant::now();
        }
    }
    eprintln!("{}: {runs} inputs in {} s, none failed", target.name, start.elapsed().as_secs());
    Ok(ExitCode::SUCCESS)
}

fn replay(rest: &[String]) -> Result<ExitCode, String> {
    let (positional, options) = options(rest, &["memory-limit-mib"])?;
    let target = named_target(positional.first())?;
    if let Some(mib) = options
        .iter()
        .find(|(n, _)| *n == "memory-limit-mib")
        .map(|_| number(&options, "memory-limit-mib", 0))
    {
        let bytes = mib? << 20;
        let limit = rustix::process::Rlimit { current: Some(bytes), maximum: Some(bytes) };
        rustix::process::setrlimit(rustix::process::Resource::As, limit)
            .map_err(|e| format!("cannot limit the address space: {e}"))?;
    }
    let mut failed = false;
    for file in &positional[1..] {
        let bytes = std::fs::read(file).map_err(|e| format!("{file}: {e}"))?;
        let start = Instant::now();
        match run_one(target, &bytes) {
            Ok(outcome) => {
                let (said, what) = match outcome {
                    Ok(summary) => ("read", summary),
                    Err(refusal) => ("refused", refusal),
                };
                let what: String = what.chars().take(2000).collect();
                println!("{file}: {said} in {:.2} s: {what}", start.elapsed().as_secs_f64());
            }
            Err(panic) => {
                println!("{file}: panicked: {panic}");
                failed = true;
            }
        }
    }
    Ok(if failed { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

//! Progress for long work: a bar on a terminal, one plain line per file otherwise; and the
//! fetch summary and JSON report.

use ceremony_os_store::{FetchItem, FetchObserver, FetchReport, Origin, Store};
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;

#[derive(Debug)]
pub struct FetchProgress {
    bar: Option<ProgressBar>,
}

impl FetchProgress {
    pub fn new() -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(0);
            bar.set_style(
                ProgressStyle::with_template(
                    "{msg:20} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
                )
                .expect("valid template")
                .progress_chars("=> "),
            );
            bar
        });
        FetchProgress { bar }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl FetchObserver for FetchProgress {
    fn begin(&self, items: usize, bytes: u64) {
        match &self.bar {
            Some(bar) => {
                bar.set_length(bytes);
                bar.set_message(format!("fetching {items} files"));
            }
            None => eprintln!("fetching {items} files ({bytes} bytes)"),
        }
    }

    fn bytes(&self, n: u64) {
        if let Some(bar) = &self.bar {
            bar.inc(n);
        }
    }

    fn finished(&self, item: &FetchItem, origin: &Origin) {
        if self.bar.is_none() && *origin != Origin::Store {
            eprintln!("fetched {} from {origin}", item.label);
        }
    }

    fn warning(&self, message: &str) {
        match &self.bar {
            Some(bar) => bar.println(format!("warning: {message}")),
            None => eprintln!("warning: {message}"),
        }
    }
}

pub fn summary(report: &FetchReport, store: &Store) -> String {
    let count = |f: &dyn Fn(&Origin) -> bool| report.outcomes.iter().filter(|(_, o)| f(o)).count();
    format!(
        "{} files verified in {}: {} downloaded, {} already there, {} from the vendor directory",
        report.outcomes.len(),
        store.root().display(),
        count(&|o| matches!(o, Origin::Mirror(_))),
        count(&|o| matches!(o, Origin::Store)),
        count(&|o| matches!(o, Origin::Vendor(_))),
    )
}

pub fn report_json(store: &Store, report: &FetchReport) -> serde_json::Value {
    let items: Vec<serde_json::Value> = report
        .outcomes
        .iter()
        .map(|(item, origin)| {
            let (kind, source) = match origin {
                Origin::Store => ("store", None),
                Origin::Mirror(m) => ("mirror", Some(m.clone())),
                Origin::Vendor(d) => ("vendor", Some(d.display().to_string())),
            };
            serde_json::json!({
                "package": item.label,
                "path": item.path,
                "sha256": item.expected.sha256.as_hex(),
                "size": item.expected.size,
                "origin": kind,
                "source": source,
                "store_path": store.object_path(&item.expected.sha256),
            })
        })
        .collect();
    serde_json::json!({ "store": store.root(), "files": items, "warnings": report.warnings })
}

/// Stage lines: name, cached or built, duration, output digest; progress lines under them.
#[derive(Debug)]
pub struct BuildProgress {
    started: std::time::Instant,
}

impl BuildProgress {
    pub fn new() -> Self {
        BuildProgress { started: std::time::Instant::now() }
    }
}

impl ceremony_os_builder::BuildObserver for BuildProgress {
    fn stage_started(&self, name: &'static str) {
        eprintln!("==> {name}: building");
    }

    fn stage_finished(&self, r: &ceremony_os_builder::StageRecord) {
        let how = if r.cached { "cached" } else { "built" };
        eprintln!("==> {:<10} {how:<6} {:>7.1}s  sha256:{}", r.name, r.seconds, &r.digest);
    }

    fn progress(&self, stage: &'static str, message: &str) {
        eprintln!("    {stage}: {message}  [{:.0}s]", self.started.elapsed().as_secs_f64());
    }
}

pub fn build_summary(report: &ceremony_os_builder::BuildReport) -> String {
    format!(
        "built {} ({} bytes)
  sha256 {}
  rootfs NAR {}
  manifest {}",
        report.iso.display(),
        report.iso_size,
        report.iso_sha256,
        report.nar_hash,
        report.manifest.display()
    )
}

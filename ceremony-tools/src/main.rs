//! `ceremony`: the tool the ceremony administrator runs on the air-gapped laptop.
//!
//! Today it only reports its version; the HSM commands (keys, certificates, CRLs, Shamir
//! backups, the hash-chained transcript) are the subject of the ceremony-tools issue.

use clap::Parser;

/// Key-ceremony tool for HSMs over PKCS#11 (commands not implemented yet: only --version).
#[derive(Parser, Debug)]
#[command(name = "ceremony", version)]
struct Cli {}

fn main() {
    let _ = Cli::parse();
    eprintln!("ceremony {}: no ceremony commands are implemented yet; see --help", env!("CARGO_PKG_VERSION"));
    std::process::exit(2);
}

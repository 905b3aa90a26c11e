//! The ceremony tool as a library: the steps (`ca`, over PKCS#11 in `hsm`, certificates in
//! `x509`), the reviewed plan and its runner (`plan`), secret sharing (`shamir`), the hash-chained
//! transcript (`transcript`, each command recorded through `recorded`) and the export to a stick
//! (`export`). It never prints, reads a terminal or parses arguments: what it says goes to a
//! [`console::Console`], what it asks (PINs, the witnesses' answers) comes through callbacks. The
//! `ceremony` binary (`main.rs`) is the command line around it; a witness's tool can check a
//! transcript with `transcript` alone.

pub mod ca;
pub mod config;
pub mod console;
pub mod export;
pub mod hsm;
pub mod plan;
pub mod recorded;
pub mod shamir;
pub mod transcript;
pub mod x509;

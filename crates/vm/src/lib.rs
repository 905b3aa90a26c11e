//! QEMU for the air-gapped laptop: the command line (`qemu`), the KVM-or-TCG decision (`accel`),
//! and a serial-console harness for tests (`harness`): start headless, wait for patterns, type
//! commands, capture their output and exit status, always kill QEMU, keep the log on failure.

pub mod accel;
pub mod harness;
pub mod qemu;

pub use accel::{Accel, choose_accel};
pub use harness::{CommandResult, Vm};
pub use qemu::{Firmware, Medium, Nic, QemuCommand, VmConfig};

#[derive(Debug, thiserror::Error)]
pub enum VmError {
    #[error("{}: {source}", path.display())]
    Io { path: std::path::PathBuf, source: std::io::Error },
    #[error(transparent)]
    Run(#[from] ceremony_os_runner::RunError),
    #[error("{0}")]
    Missing(String),
    #[error("timed out after {seconds} s waiting for {what:?}; the serial console ends with:\n{tail}")]
    Timeout { what: String, seconds: u64, tail: String },
    #[error("QEMU exited ({status}) while waiting for {what:?}; the serial console ends with:\n{tail}")]
    Exited { what: String, status: String, tail: String },
}

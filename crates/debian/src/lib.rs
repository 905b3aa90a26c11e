//! Debian formats and apt, as ceremony-os needs them: deb822 paragraphs, apt's `--print-uris`
//! output, apt in a throwaway root (nothing of the host's apt configuration or state is used), and
//! resolving the image definition's package sets into a [`ceremony_os_definition::Lockfile`].

pub mod apt;
pub mod deb;
pub mod deb822;
pub mod openpgp;
pub mod print_uris;
pub mod resolve;
pub mod trust;
pub mod version;

pub use resolve::{ArchiveFile, LockError, Resolved, resolve_lock};

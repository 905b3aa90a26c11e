//! The content-addressed store and the fetcher that fills it.
//!
//! Architecture invariant: this is the only crate that touches the network, and nothing enters
//! the store without its size and SHA-256 matching the lock. Objects live at
//! `<root>/sha256/<hex>`; they are written to a temporary file in the store, synced, verified and
//! only then renamed into place, so a crash never leaves a wrong or partial object under its name.
//! Interrupted downloads are kept under `<root>/partial/<hex>` and resumed with an HTTP range
//! request; they are never used until complete and verified. One fetch at a time per store
//! (`fetch.lock`): a second process waits, then finds what the first fetched.

pub mod bundle;
mod fetch;
pub mod locked;
mod store;

pub use fetch::{
    Bundle, FetchError, FetchItem, FetchObserver, FetchOptions, FetchReport, Origin, Sources,
    download_unpinned, fetch,
};
pub use store::{Expected, Store, StoreError, open_regular};

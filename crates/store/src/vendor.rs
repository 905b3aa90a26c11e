//! `ceremony-os vendor DIR`: every locked input copied out of the store into a flat directory
//! with a `SHA256SUMS`, so a rebuild needs no network at all (`fetch --vendor DIR --offline`).

use crate::fetch::FetchItem;
use crate::store::{Store, StoreError, verify_file};
use std::io::Write;
use std::path::{Path, PathBuf};

pub const SHA256SUMS: &str = "SHA256SUMS";

#[derive(Debug, thiserror::Error)]
pub enum VendorError {
    #[error("{label} is not in the store; run `ceremony-os fetch` first")]
    Missing { label: String },
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("two locked files are both named {name} but differ")]
    NameClash { name: String },
}

/// Copy every item from the store into `dir` (created if missing) and write `dir/SHA256SUMS`,
/// sorted by file name. Files already in `dir` with the right digest are left alone. Returns the
/// number of files copied.
pub fn write_vendor_dir(store: &Store, items: &[FetchItem], dir: &Path) -> Result<usize, VendorError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| VendorError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let mut entries: Vec<(&str, &FetchItem)> = items.iter().map(|i| (i.vendor_name.as_str(), i)).collect();
    entries.sort_by(|a, b| a.0.cmp(b.0));
    entries.dedup_by(|a, b| a.0 == b.0 && a.1.expected == b.1.expected);
    if let Some(w) = entries.windows(2).find(|w| w[0].0 == w[1].0) {
        return Err(VendorError::NameClash { name: w[0].0.to_string() });
    }
    let mut copied = 0;
    for (name, item) in &entries {
        let dest = dir.join(name);
        if verify_file(&dest, &item.expected).is_ok() {
            continue;
        }
        if !store.has_verified(&item.expected)? {
            return Err(VendorError::Missing { label: item.label.clone() });
        }
        let tmp = dir.join(format!(".{name}.partial"));
        std::fs::copy(store.object_path(&item.expected.sha256), &tmp).map_err(io(&tmp))?;
        std::fs::rename(&tmp, &dest).map_err(io(&dest))?;
        copied += 1;
    }
    let mut sums = String::new();
    for (name, item) in &entries {
        sums.push_str(&format!("{}  {name}\n", item.expected.sha256));
    }
    let sums_path = dir.join(SHA256SUMS);
    let tmp = dir.join(format!(".{SHA256SUMS}.partial"));
    let mut f = std::fs::File::create(&tmp).map_err(io(&tmp))?;
    f.write_all(sums.as_bytes()).and_then(|()| f.sync_all()).map_err(io(&tmp))?;
    std::fs::rename(&tmp, &sums_path).map_err(io(&sums_path))?;
    Ok(copied)
}

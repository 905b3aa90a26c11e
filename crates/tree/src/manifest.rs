//! The tree manifest: one line per path, sorted by path bytes, fields separated by tabs
//! (shown as `<TAB>`):
//!
//! ```text
//! /usr/bin/bash<TAB>file<TAB>0755<TAB>0<TAB>0<TAB>1783814400<TAB>1265648<TAB><sha256>
//! /usr/bin/sh<TAB>symlink<TAB>0777<TAB>0<TAB>0<TAB>1783814400<TAB>4<TAB>dash
//! /etc<TAB>dir<TAB>0755<TAB>0<TAB>0<TAB>1783814400<TAB>-<TAB>-
//! ```
//!
//! Paths are absolute within the tree (`/` is the root itself); bytes that are not printable
//! UTF-8, tabs, newlines and backslashes are escaped as `\xNN`, so every path has one spelling.

use crate::{TreeError, walk_sorted};
use sha2::{Digest, Sha256};
use std::fmt::Write as _;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File {
        size: u64,
        sha256: String,
    },
    Symlink {
        target: String,
    },
    /// Devices, FIFOs and sockets: `char 1:3`, `block 8:0`, `fifo`, `socket`.
    Special(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub path: String,
    pub kind: Kind,
    /// Permission bits including setuid/setgid/sticky (`0o7777` mask).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TreeManifest {
    pub entries: Vec<Entry>,
}

impl TreeManifest {
    /// Read every path under `root`, hashing regular files.
    pub fn scan(root: &Path) -> Result<Self, TreeError> {
        let mut entries = vec![entry_for(root, "/".to_string())?];
        for path in walk_sorted(root)? {
            let relative = path.strip_prefix(root).expect("walk stays under root");
            entries.push(entry_for(&path, format!("/{}", escape(relative.as_os_str().as_bytes())))?);
        }
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(TreeManifest { entries })
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        for e in &self.entries {
            let (kind, size, detail) = match &e.kind {
                Kind::Dir => ("dir", "-".to_string(), "-".to_string()),
                Kind::File { size, sha256 } => ("file", size.to_string(), sha256.clone()),
                Kind::Symlink { target } => ("symlink", target.len().to_string(), target.clone()),
                Kind::Special(what) => ("special", "-".to_string(), what.replace(' ', "_")),
            };
            let _ = writeln!(
                out,
                "{}\t{kind}\t{:04o}\t{}\t{}\t{}\t{size}\t{detail}",
                e.path, e.mode, e.uid, e.gid, e.mtime
            );
        }
        out
    }

    /// SHA-256 of the rendered manifest: the tree's digest (content, metadata and structure).
    pub fn digest(&self) -> String {
        hex(&Sha256::digest(self.render().as_bytes()))
    }

    pub fn parse(text: &str) -> Result<Self, TreeError> {
        let mut entries = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let err = |message: &str| TreeError::Parse { line: index + 1, message: message.to_string() };
            let fields: Vec<&str> = line.split('\t').collect();
            let [path, kind, mode, uid, gid, mtime, size, detail] = fields[..] else {
                return Err(err("expected 8 tab-separated fields"));
            };
            let kind = match kind {
                "dir" => Kind::Dir,
                "file" => Kind::File {
                    size: size.parse().map_err(|_| err("bad size"))?,
                    sha256: detail.to_string(),
                },
                "symlink" => Kind::Symlink { target: detail.to_string() },
                "special" => Kind::Special(detail.replace('_', " ")),
                other => return Err(err(&format!("unknown type {other:?}"))),
            };
            entries.push(Entry {
                path: path.to_string(),
                kind,
                mode: u32::from_str_radix(mode, 8).map_err(|_| err("bad mode"))?,
                uid: uid.parse().map_err(|_| err("bad uid"))?,
                gid: gid.parse().map_err(|_| err("bad gid"))?,
                mtime: mtime.parse().map_err(|_| err("bad mtime"))?,
            });
        }
        Ok(TreeManifest { entries })
    }

    pub fn get(&self, path: &str) -> Option<&Entry> {
        self.entries.binary_search_by(|e| e.path.as_str().cmp(path)).ok().map(|i| &self.entries[i])
    }
}

/// How one path differs between two manifests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Added(Entry),
    Removed(Entry),
    /// Same path, different type or content (file digest or link target).
    Content {
        before: Entry,
        after: Entry,
    },
    /// Same content; the named metadata fields differ (`mode`, `owner`, `mtime`).
    Metadata {
        before: Entry,
        after: Entry,
        fields: Vec<&'static str>,
    },
}

impl Change {
    pub fn path(&self) -> &str {
        match self {
            Change::Added(e) | Change::Removed(e) => &e.path,
            Change::Content { after, .. } | Change::Metadata { after, .. } => &after.path,
        }
    }
}

/// Every difference between two manifests, in path order.
pub fn diff(before: &TreeManifest, after: &TreeManifest) -> Vec<Change> {
    let mut changes = Vec::new();
    let (mut i, mut j) = (0, 0);
    let (a, b) = (&before.entries, &after.entries);
    while i < a.len() || j < b.len() {
        match (a.get(i), b.get(j)) {
            (Some(x), Some(y)) if x.path == y.path => {
                if x.kind != y.kind {
                    changes.push(Change::Content { before: x.clone(), after: y.clone() });
                } else {
                    let mut fields = Vec::new();
                    if x.mode != y.mode {
                        fields.push("mode");
                    }
                    if (x.uid, x.gid) != (y.uid, y.gid) {
                        fields.push("owner");
                    }
                    if x.mtime != y.mtime {
                        fields.push("mtime");
                    }
                    if !fields.is_empty() {
                        changes.push(Change::Metadata { before: x.clone(), after: y.clone(), fields });
                    }
                }
                i += 1;
                j += 1;
            }
            (Some(x), Some(y)) if x.path < y.path => {
                changes.push(Change::Removed(x.clone()));
                i += 1;
            }
            (Some(_), Some(y)) => {
                changes.push(Change::Added(y.clone()));
                j += 1;
            }
            (Some(x), None) => {
                changes.push(Change::Removed(x.clone()));
                i += 1;
            }
            (None, Some(y)) => {
                changes.push(Change::Added(y.clone()));
                j += 1;
            }
            (None, None) => unreachable!(),
        }
    }
    changes
}

fn entry_for(path: &Path, name: String) -> Result<Entry, TreeError> {
    let meta = std::fs::symlink_metadata(path).map_err(|e| TreeError::io(path, e))?;
    let ft = meta.file_type();
    let kind = if ft.is_dir() {
        Kind::Dir
    } else if ft.is_file() {
        Kind::File { size: meta.len(), sha256: crate::sha256_file(path)? }
    } else if ft.is_symlink() {
        let target = std::fs::read_link(path).map_err(|e| TreeError::io(path, e))?;
        Kind::Symlink { target: escape(target.as_os_str().as_bytes()) }
    } else {
        let (major, minor) = (libc_major(meta.rdev()), libc_minor(meta.rdev()));
        Kind::Special(if ft.is_char_device() {
            format!("char {major}:{minor}")
        } else if ft.is_block_device() {
            format!("block {major}:{minor}")
        } else if ft.is_fifo() {
            "fifo".into()
        } else {
            "socket".into()
        })
    };
    Ok(Entry {
        path: name,
        kind,
        mode: meta.mode() & 0o7777,
        uid: meta.uid(),
        gid: meta.gid(),
        mtime: meta.mtime(),
    })
}

// Linux's encoding of dev_t (glibc's gnu_dev_major/minor).
fn libc_major(dev: u64) -> u64 {
    ((dev >> 32) & 0xffff_f000) | ((dev >> 8) & 0x0000_0fff)
}

fn libc_minor(dev: u64) -> u64 {
    ((dev >> 12) & 0xffff_ff00) | (dev & 0x0000_00ff)
}

fn escape(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c == '\\' || c.is_control() {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    let _ = write!(out, "\\x{b:02x}");
                }
            } else {
                out.push(c);
            }
        }
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out
}

fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn sample_tree() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("etc/sub")).unwrap();
        std::fs::write(root.join("etc/a.conf"), b"alpha").unwrap();
        std::fs::write(root.join("etc/sub/b"), b"bravo").unwrap();
        std::fs::write(root.join("etc/tab\there"), b"").unwrap();
        std::os::unix::fs::symlink("a.conf", root.join("etc/link")).unwrap();
        std::fs::set_permissions(root.join("etc/sub/b"), std::fs::Permissions::from_mode(0o755)).unwrap();
        dir
    }

    #[test]
    fn scan_render_parse_round_trip() {
        let dir = sample_tree();
        let m = TreeManifest::scan(dir.path()).unwrap();
        let paths: Vec<&str> = m.entries.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            ["/", "/etc", "/etc/a.conf", "/etc/link", "/etc/sub", "/etc/sub/b", "/etc/tab\\x09here"]
        );
        let a = m.get("/etc/a.conf").unwrap();
        assert_eq!(
            a.kind,
            Kind::File {
                size: 5,
                sha256: "8ed3f6ad685b959ead7022518e1af76cd816f8e8ec7ccdda1ed4018e8f2223f8".into()
            }
        );
        assert_eq!(m.get("/etc/sub/b").unwrap().mode, 0o755);
        assert_eq!(m.get("/etc/link").unwrap().kind, Kind::Symlink { target: "a.conf".into() });
        let text = m.render();
        assert_eq!(TreeManifest::parse(&text).unwrap(), m);
    }

    #[test]
    fn diff_names_content_metadata_added_removed() {
        let dir = sample_tree();
        let before = TreeManifest::scan(dir.path()).unwrap();
        std::fs::write(dir.path().join("etc/a.conf"), b"ALPHA").unwrap();
        std::fs::set_permissions(dir.path().join("etc/sub/b"), std::fs::Permissions::from_mode(0o700))
            .unwrap();
        std::fs::remove_file(dir.path().join("etc/link")).unwrap();
        std::fs::write(dir.path().join("etc/new"), b"").unwrap();
        let mut after = TreeManifest::scan(dir.path()).unwrap();
        // Directory mtimes moved with the edits; compare only what the test changed on purpose.
        for e in &mut after.entries {
            if let Some(b) = before.get(&e.path)
                && e.kind == Kind::Dir
            {
                e.mtime = b.mtime;
            }
        }
        let changes = diff(&before, &after);
        let summary: Vec<String> = changes
            .iter()
            .map(|c| match c {
                Change::Added(e) => format!("+{}", e.path),
                Change::Removed(e) => format!("-{}", e.path),
                Change::Content { after, .. } => format!("content {}", after.path),
                Change::Metadata { after, fields, .. } => {
                    format!("{} {}", fields.join(","), after.path)
                }
            })
            .collect();
        assert_eq!(summary, ["content /etc/a.conf", "-/etc/link", "+/etc/new", "mode /etc/sub/b"]);
    }

    #[test]
    fn escaping_is_unambiguous() {
        assert_eq!(escape(b"a\\b"), "a\\x5cb");
        assert_eq!(escape(b"a\nb"), "a\\x0ab");
        assert_eq!(escape(&[0x66, 0xff]), "f\\xff");
        assert_eq!(escape("é".as_bytes()), "é");
    }
}

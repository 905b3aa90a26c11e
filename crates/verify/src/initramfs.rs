//! The root file system the Linux kernel makes of an initrd (init/initramfs.c, as in Debian's
//! 6.1 and later): every segment's archives unpacked in order into one tree, by the kernel's own
//! rules, not GNU cpio's, so that `compare` sees what the booted machine runs:
//!
//! - names are paths walked from `/`, through symbolic links already unpacked; no parent
//!   directory is made, so an entry under a missing one is not created;
//! - an entry over an existing one of another type removes it first (an empty directory only);
//!   one of the same type is reused: a file is truncated and rewritten, a device node keeps its
//!   old number, a directory takes the new owner and mode;
//! - a regular file whose name ends in `/` cannot be created (`init/` leaves `init` as it was);
//! - a directory, device, FIFO or socket entry that carries a body is skipped whole;
//! - names and link targets longer than PATH_MAX are skipped; a target ends at its first NUL;
//! - entries with two or more links and one (inode, device, type) within one archive are hard
//!   links: the later name is linked to the first, and its body (if any) is written into the
//!   shared inode, so both names show the last body;
//! - a `070702` file whose body does not match its checksum makes the kernel stop at a point
//!   that depends on its decompression buffers: such an initrd is refused as ambiguous;
//! - directory times are set at the end, the first entry's time last (so it wins).
//!
//! What the model yields: the tree, the hard links (names sharing an inode) and every entry the
//! kernel did not unpack as named, with the reason.

use crate::VerifyError;
use crate::cpio::{Body, PATH_MAX, Record, S_IFDIR, S_IFLNK, S_IFREG};
use crate::initrd::Segment;
use crate::isofs::{display_name, manifest_path};
use ceremony_os_tree::{Entry, Kind};
use std::collections::{BTreeMap, HashMap};

/// Symbolic links followed in one path walk before the kernel gives up (ELOOP).
const MAX_SYMLINKS: u32 = 40;

#[derive(Debug, Default)]
pub struct Unpacked {
    /// Every path of the resulting root file system, sorted.
    pub tree: Vec<Entry>,
    /// Each name of an inode that has several, described with its other names.
    pub hard_links: Vec<Entry>,
    /// Entries the kernel did not unpack as their name says, keyed by name and position.
    pub not_unpacked: Vec<Entry>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Errno {
    NoEnt,
    NotDir,
    IsDir,
    Exist,
    Loop,
    NotEmpty,
    Perm,
    Busy,
}

impl Errno {
    fn text(self) -> &'static str {
        match self {
            Errno::NoEnt => "no such file or directory",
            Errno::NotDir => "not a directory",
            Errno::IsDir => "is a directory",
            Errno::Exist => "exists",
            Errno::Loop => "too many levels of symbolic links",
            Errno::NotEmpty => "directory not empty",
            Errno::Perm => "operation not permitted",
            Errno::Busy => "the root directory",
        }
    }
}

#[derive(Debug, Clone)]
enum Node {
    Dir {
        children: BTreeMap<Vec<u8>, usize>,
        parent: usize,
    },
    File {
        size: u64,
        sha256: String,
    },
    Symlink(Vec<u8>),
    /// A device node, FIFO or socket, described (`char 1:3`, `fifo`).
    Special {
        file_type: u32,
        what: String,
    },
}

#[derive(Debug, Clone)]
struct Inode {
    node: Node,
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: i64,
}

/// Where a path's walk ended: the directory holding its last name, and that name (none when
/// the path ends at a directory itself: `/`, `.`, `..`).
struct Walked {
    dir: usize,
    last: Option<Vec<u8>>,
    /// The path ends in `/`: its last component must be a directory.
    trailing_slash: bool,
}

const ROOT: usize = 0;

struct Fs {
    inodes: Vec<Inode>,
}

impl Fs {
    fn new() -> Self {
        let root = Inode {
            node: Node::Dir { children: BTreeMap::new(), parent: ROOT },
            mode: 0o755,
            uid: 0,
            gid: 0,
            mtime: 0,
        };
        Fs { inodes: vec![root] }
    }

    fn children(&self, dir: usize) -> Option<&BTreeMap<Vec<u8>, usize>> {
        match &self.inodes[dir].node {
            Node::Dir { children, .. } => Some(children),
            _ => None,
        }
    }

    fn file_type(&self, inode: usize) -> u32 {
        match &self.inodes[inode].node {
            Node::Dir { .. } => S_IFDIR,
            Node::File { .. } => S_IFREG,
            Node::Symlink(_) => S_IFLNK,
            Node::Special { file_type, .. } => *file_type,
        }
    }

    /// Walk every component of `path` from `start` but the last, following symbolic links.
    fn walk(&self, start: usize, path: &[u8], depth: &mut u32) -> Result<Walked, Errno> {
        let mut dir = if path.starts_with(b"/") { ROOT } else { start };
        let parts: Vec<&[u8]> = path.split(|b| *b == b'/').filter(|p| !p.is_empty()).collect();
        let trailing_slash = path.ends_with(b"/") && !parts.is_empty();
        for (i, part) in parts.iter().enumerate() {
            let last = i + 1 == parts.len();
            match *part {
                b"." => {}
                b".." => {
                    if let Node::Dir { parent, .. } = &self.inodes[dir].node {
                        dir = *parent;
                    }
                }
                name if last => return Ok(Walked { dir, last: Some(name.to_vec()), trailing_slash }),
                name => {
                    let child = *self.children(dir).and_then(|c| c.get(name)).ok_or(Errno::NoEnt)?;
                    dir = self.follow(dir, child, depth)?;
                    if self.children(dir).is_none() {
                        return Err(Errno::NotDir);
                    }
                }
            }
        }
        Ok(Walked { dir, last: None, trailing_slash })
    }

    /// `inode`, found in `dir`, with symbolic links followed to what they name.
    fn follow(&self, dir: usize, inode: usize, depth: &mut u32) -> Result<usize, Errno> {
        let Node::Symlink(target) = &self.inodes[inode].node else { return Ok(inode) };
        *depth += 1;
        if *depth > MAX_SYMLINKS {
            return Err(Errno::Loop);
        }
        let walked = self.walk(dir, target, depth)?;
        self.lookup_in(&walked, true, depth)
    }

    /// The inode a walked path names; `follow` also follows a link in its last component (a
    /// trailing `/` always does, and then requires a directory).
    fn lookup_in(&self, walked: &Walked, follow: bool, depth: &mut u32) -> Result<usize, Errno> {
        let Some(name) = &walked.last else { return Ok(walked.dir) };
        let child = *self.children(walked.dir).and_then(|c| c.get(name)).ok_or(Errno::NoEnt)?;
        let found =
            if follow || walked.trailing_slash { self.follow(walked.dir, child, depth)? } else { child };
        if walked.trailing_slash && self.children(found).is_none() {
            return Err(Errno::NotDir);
        }
        Ok(found)
    }

    fn lookup(&self, path: &[u8], follow: bool) -> Result<usize, Errno> {
        let mut depth = 0;
        let walked = self.walk(ROOT, path, &mut depth)?;
        self.lookup_in(&walked, follow, &mut depth)
    }

    /// The directory and the new name an entry is created as (`mkdir` allows a trailing `/`).
    fn new_name(&self, path: &[u8], slash_allowed: bool) -> Result<(usize, Vec<u8>), Errno> {
        let mut depth = 0;
        let walked = self.walk(ROOT, path, &mut depth)?;
        let Some(name) = walked.last else { return Err(Errno::Exist) };
        if walked.trailing_slash && !slash_allowed {
            return Err(Errno::NoEnt);
        }
        if self.children(walked.dir).is_some_and(|c| c.contains_key(&name)) {
            return Err(Errno::Exist);
        }
        Ok((walked.dir, name))
    }

    fn add(&mut self, dir: usize, name: Vec<u8>, inode: Inode) -> usize {
        self.inodes.push(inode);
        let id = self.inodes.len() - 1;
        self.link_in(dir, name, id);
        id
    }

    fn link_in(&mut self, dir: usize, name: Vec<u8>, inode: usize) {
        if let Node::Dir { children, .. } = &mut self.inodes[dir].node {
            children.insert(name, inode);
        }
    }

    /// unlink(2) or rmdir(2), whichever the entry is (an empty directory only).
    fn remove(&mut self, path: &[u8]) -> Result<(), Errno> {
        let mut depth = 0;
        let walked = self.walk(ROOT, path, &mut depth)?;
        let Some(name) = walked.last.clone() else { return Err(Errno::Busy) };
        let inode = self.lookup_in(&walked, false, &mut depth)?;
        if let Some(children) = self.children(inode)
            && !children.is_empty()
        {
            return Err(Errno::NotEmpty);
        }
        if let Node::Dir { children, .. } = &mut self.inodes[walked.dir].node {
            children.remove(&name);
        }
        Ok(())
    }

    /// The kernel's clean_path: an existing entry of another type than `file_type` (any type
    /// for 0) is removed first.
    fn clean_path(&mut self, path: &[u8], file_type: u32) {
        if let Ok(existing) = self.lookup(path, false)
            && self.file_type(existing) != file_type
        {
            let _ = self.remove(path);
        }
    }

    fn set_owner_mode(&mut self, inode: usize, record: &Record, mode: bool) {
        let node = &mut self.inodes[inode];
        node.uid = record.uid;
        node.gid = record.gid;
        if mode {
            node.mode = record.mode & 0o7777;
        }
    }
}

/// The kernel's table of hard-link candidates, emptied at each archive's trailer.
type LinkTable = HashMap<(u32, u32, u32, u32), Vec<u8>>;

/// Device numbers as the kernel packs them: `MKDEV(major, minor)` in 32 bits (12 for the major,
/// 20 for the minor), so bits that do not fit land elsewhere or are lost, as they do at boot.
fn device(rdev: (u32, u32)) -> (u32, u32) {
    let packed = rdev.0.wrapping_shl(20) | rdev.1;
    (packed >> 20, packed & 0xfffff)
}

fn type_name(file_type: u32) -> &'static str {
    match file_type {
        S_IFDIR => "directory",
        S_IFREG => "regular file",
        S_IFLNK => "symbolic link",
        0o020000 => "character device",
        0o060000 => "block device",
        0o010000 => "FIFO",
        0o140000 => "socket",
        _ => "entry of unknown type",
    }
}

/// Unpack every archive of every segment, in order, as the kernel does. `what` names the initrd.
pub fn unpack(segments: &[Segment], what: &str) -> Result<Unpacked, VerifyError> {
    let mut fs = Fs::new();
    let mut not_unpacked = Vec::new();
    let mut dir_times: Vec<(Vec<u8>, i64)> = Vec::new();
    for (s, segment) in segments.iter().enumerate() {
        for (a, archive) in segment.archives.iter().enumerate() {
            let mut links = LinkTable::new();
            for (i, record) in archive.iter().enumerate() {
                if record.is_trailer() {
                    links.clear();
                    continue;
                }
                if let (Some(check), Body::File { sum, .. }) = (record.check, &record.body)
                    && check != *sum
                {
                    return Err(VerifyError::Invalid(format!(
                        "{what}: segment #{s}, archive #{a}, entry #{i} ({:?}): its body's checksum is \
                         {sum:08x}, the header says {check:08x}; where the kernel then stops unpacking \
                         depends on its decompression buffers, so no one tree is what boots",
                        String::from_utf8_lossy(&record.name)
                    )));
                }
                if let Err(Skip(reason)) = unpack_one(&mut fs, &mut links, &mut dir_times, record) {
                    let name = String::from_utf8_lossy(&record.name).into_owned();
                    not_unpacked.push(Entry {
                        path: format!(
                            "{} (segment #{s}, archive #{a}, entry #{i})",
                            manifest_path(record.name.split(|b| *b == b'/'))
                        ),
                        kind: Kind::Special(format!(
                            "{} {:?}: {reason}",
                            type_name(record.file_type()),
                            name
                        )),
                        mode: record.mode & 0o7777,
                        uid: record.uid,
                        gid: record.gid,
                        mtime: record.mtime,
                    });
                }
            }
        }
    }
    // The kernel sets directory times last, newest entry first: the first entry's time wins.
    for (name, mtime) in dir_times.iter().rev() {
        if let Ok(inode) = fs.lookup(name, false) {
            fs.inodes[inode].mtime = *mtime;
        }
    }
    let (tree, hard_links) = listing(&fs);
    Ok(Unpacked { tree, hard_links, not_unpacked })
}

/// Why an entry is not unpacked as its name says.
struct Skip(String);

fn failed(what: &str, errno: Errno) -> Skip {
    Skip(format!("{what} fails ({}): the kernel skips the entry", errno.text()))
}

fn unpack_one(
    fs: &mut Fs,
    links: &mut LinkTable,
    dir_times: &mut Vec<(Vec<u8>, i64)>,
    record: &Record,
) -> Result<(), Skip> {
    let name = record.name.as_slice();
    if !(1..=PATH_MAX).contains(&record.name_size) {
        return Err(Skip(format!(
            "its name is {} bytes with the NUL; the kernel skips names of 0 or over {PATH_MAX}",
            record.name_size
        )));
    }
    let file_type = record.file_type();
    if file_type == S_IFLNK {
        let Body::Target(target) = &record.body else {
            return Err(Skip(format!(
                "its target is {} bytes, over PATH_MAX: the kernel skips it",
                record.body_size
            )));
        };
        fs.clean_path(name, 0);
        let (dir, last) = fs.new_name(name, false).map_err(|e| failed("symlink", e))?;
        let inode =
            Inode { node: Node::Symlink(target.clone()), mode: 0o777, uid: 0, gid: 0, mtime: record.mtime };
        let id = fs.add(dir, last, inode);
        fs.set_owner_mode(id, record, false);
        return Ok(());
    }
    if file_type != S_IFREG && record.body_size != 0 {
        return Err(Skip(format!(
            "a {} with a {}-byte body: the kernel skips it whole",
            type_name(file_type),
            record.body_size
        )));
    }
    match file_type {
        S_IFREG => {
            fs.clean_path(name, S_IFREG);
            let linked = maybe_link(fs, links, record)?;
            let inode = match linked {
                Some(inode) => inode,
                None => {
                    let (dir, last, existing) = open_for_create(fs, name).map_err(|e| failed("open", e))?;
                    match existing {
                        Some(inode) => inode,
                        None => fs.add(dir, last, empty_file(record)),
                    }
                }
            };
            fs.set_owner_mode(inode, record, true);
            // A new or truncated file takes the body; a linked one only if the body is not empty.
            if linked.is_none() || record.body_size > 0 {
                let Body::File { sha256, .. } = &record.body else {
                    unreachable!("regular files' bodies are hashed");
                };
                fs.inodes[inode].node = Node::File { size: record.body_size, sha256: sha256.clone() };
            }
            fs.inodes[inode].mtime = record.mtime;
            Ok(())
        }
        S_IFDIR => {
            fs.clean_path(name, S_IFDIR);
            match fs.new_name(name, true) {
                Ok((dir, last)) => {
                    let inode = Inode {
                        node: Node::Dir { children: BTreeMap::new(), parent: dir },
                        mode: 0,
                        uid: 0,
                        gid: 0,
                        mtime: record.mtime,
                    };
                    fs.add(dir, last, inode);
                }
                Err(Errno::Exist) => {}
                Err(e) => return Err(failed("mkdir", e)),
            }
            // chown and chmod follow the name to whatever directory it now is.
            let inode = fs.lookup(name, true).map_err(|e| failed("chmod", e))?;
            if fs.children(inode).is_none() {
                return Err(failed("mkdir", Errno::Exist));
            }
            fs.set_owner_mode(inode, record, true);
            dir_times.push((name.to_vec(), record.mtime));
            Ok(())
        }
        0o020000 | 0o060000 | 0o010000 | 0o140000 => {
            fs.clean_path(name, file_type);
            if maybe_link(fs, links, record)?.is_some() {
                return Ok(());
            }
            let what = match file_type {
                0o020000 | 0o060000 => {
                    let (major, minor) = device(record.rdev);
                    let kind = if file_type == 0o020000 { "char" } else { "block" };
                    format!("{kind} {major}:{minor}")
                }
                0o010000 => "fifo".into(),
                _ => "socket".into(),
            };
            match fs.new_name(name, false) {
                Ok((dir, last)) => {
                    let node = Node::Special { file_type, what };
                    let id = fs.add(dir, last, Inode { node, mode: 0, uid: 0, gid: 0, mtime: record.mtime });
                    fs.set_owner_mode(id, record, true);
                    Ok(())
                }
                // One of the same type is there: the kernel keeps it and gives it this
                // entry's owner, mode and time.
                Err(Errno::Exist) => {
                    let existing = fs.lookup(name, true).map_err(|e| failed("chmod", e))?;
                    fs.set_owner_mode(existing, record, true);
                    fs.inodes[existing].mtime = record.mtime;
                    let kept = match &fs.inodes[existing].node {
                        Node::Special { what: old, .. } => old.clone(),
                        _ => "another entry".into(),
                    };
                    Err(Skip(format!(
                        "mknod fails (exists): the earlier {kept} stays, with this entry's owner and mode"
                    )))
                }
                Err(e) => Err(failed("mknod", e)),
            }
        }
        other => Err(Skip(format!("file type {other:o}: the kernel creates nothing for it"))),
    }
}

fn empty_file(record: &Record) -> Inode {
    let sha256 = crate::compare::sha256_bytes(b"");
    Inode { node: Node::File { size: 0, sha256 }, mode: 0, uid: 0, gid: 0, mtime: record.mtime }
}

/// open(O_CREAT): the directory, the new name, and the existing file to truncate if there is one.
fn open_for_create(fs: &Fs, name: &[u8]) -> Result<(usize, Vec<u8>, Option<usize>), Errno> {
    let mut depth = 0;
    let walked = fs.walk(ROOT, name, &mut depth)?;
    let Some(last) = walked.last.clone() else { return Err(Errno::IsDir) };
    if walked.trailing_slash {
        return Err(Errno::IsDir);
    }
    match fs.lookup_in(&walked, true, &mut depth) {
        Ok(existing) if fs.children(existing).is_some() => Err(Errno::IsDir),
        Ok(existing) if fs.file_type(existing) == S_IFREG => Ok((walked.dir, last, Some(existing))),
        // clean_path removed anything else; a dangling link is not created through.
        Ok(_) => Err(Errno::Perm),
        Err(Errno::NoEnt) if fs.children(walked.dir).is_some_and(|c| !c.contains_key(&last)) => {
            Ok((walked.dir, last, None))
        }
        Err(e) => Err(e),
    }
}

/// The kernel's maybe_link: the second and later names of one (inode, device, type) in an
/// archive are hard links to the first. `Some(inode)` when linked.
fn maybe_link(fs: &mut Fs, links: &mut LinkTable, record: &Record) -> Result<Option<usize>, Skip> {
    if record.nlink < 2 {
        return Ok(None);
    }
    let key = (record.ino, record.dev.0, record.dev.1, record.file_type());
    let Some(first) = links.get(&key).cloned() else {
        links.insert(key, record.name.clone());
        return Ok(None);
    };
    let name = record.name.as_slice();
    fs.clean_path(name, 0);
    let old = fs.lookup(&first, false).map_err(|e| failed("link", e))?;
    if fs.children(old).is_some() {
        return Err(failed("link", Errno::Perm));
    }
    let (dir, last) = fs.new_name(name, false).map_err(|e| failed("link", e))?;
    fs.link_in(dir, last, old);
    Ok(Some(old))
}

/// The tree as manifest entries (paths escaped as everywhere in compare), and the hard links.
fn listing(fs: &Fs) -> (Vec<Entry>, Vec<Entry>) {
    let mut tree = Vec::new();
    let mut names: HashMap<usize, Vec<String>> = HashMap::new();
    let mut stack = vec![(ROOT, String::new())];
    while let Some((inode, path)) = stack.pop() {
        let node = &fs.inodes[inode];
        let kind = match &node.node {
            Node::Dir { children, .. } => {
                for (name, child) in children {
                    stack.push((*child, format!("{path}/{}", display_name(name))));
                }
                Kind::Dir
            }
            Node::File { size, sha256 } => Kind::File { size: *size, sha256: sha256.clone() },
            Node::Symlink(target) => Kind::Symlink { target: String::from_utf8_lossy(target).into_owned() },
            Node::Special { what, .. } => Kind::Special(what.clone()),
        };
        let path = if path.is_empty() { "/".to_string() } else { path };
        if !matches!(kind, Kind::Dir) {
            names.entry(inode).or_default().push(path.clone());
        }
        tree.push(Entry { path, kind, mode: node.mode, uid: node.uid, gid: node.gid, mtime: node.mtime });
    }
    tree.sort_by(|a, b| a.path.cmp(&b.path));
    let mut hard_links = Vec::new();
    for (inode, mut paths) in names.into_iter().filter(|(_, p)| p.len() > 1) {
        paths.sort();
        for path in &paths {
            let others: Vec<&str> = paths.iter().filter(|p| *p != path).map(|p| p.as_str()).collect();
            let node = &fs.inodes[inode];
            hard_links.push(Entry {
                path: path.clone(),
                kind: Kind::Special(format!("one inode with {}", others.join(", "))),
                mode: node.mode,
                uid: node.uid,
                gid: node.gid,
                mtime: node.mtime,
            });
        }
    }
    hard_links.sort_by(|a, b| a.path.cmp(&b.path));
    (tree, hard_links)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpio::tests::record;
    use crate::limits::{Budget, Limits};

    const FILE: u32 = 0o100755;
    const DIR: u32 = 0o40755;

    /// One uncompressed archive of `records` (a trailer added), as a one-segment initrd.
    fn unpacked(records: &[Vec<u8>]) -> Unpacked {
        let mut bytes: Vec<u8> = records.concat();
        bytes.extend(record(b"TRAILER!!!", 0, b"", 0, 1));
        let mut budget = Budget::new(Limits::default());
        let segments = crate::initrd::segments(&bytes, "initrd", &mut budget).unwrap();
        unpack(&segments, "initrd").unwrap()
    }

    fn find<'a>(entries: &'a [Entry], path: &str) -> Option<&'a Entry> {
        entries.iter().find(|e| e.path == path)
    }

    fn digest_of(entries: &[Entry], path: &str) -> String {
        match &find(entries, path).unwrap_or_else(|| panic!("no {path} in {entries:#?}")).kind {
            Kind::File { sha256, .. } => sha256.clone(),
            other => panic!("{path} is {other:?}"),
        }
    }

    fn sha(bytes: &[u8]) -> String {
        crate::compare::sha256_bytes(bytes)
    }

    #[test]
    fn a_later_init_slash_does_not_replace_init() {
        let got = unpacked(&[
            record(b"init", FILE, b"#!/bin/sh\nevil\n", 1, 1),
            record(b"init/", FILE, b"#!/bin/sh\nhonest\n", 2, 1),
        ]);
        assert_eq!(digest_of(&got.tree, "/init"), sha(b"#!/bin/sh\nevil\n"));
        assert_eq!(got.tree.len(), 2, "{:#?}", got.tree);
        let skipped = &got.not_unpacked[0];
        assert!(skipped.path.starts_with("/init (segment #0, archive #0, entry #1)"), "{skipped:?}");
        assert!(format!("{:?}", skipped.kind).contains("open fails (is a directory)"), "{skipped:?}");
    }

    #[test]
    fn a_directory_with_a_body_is_skipped_and_so_is_what_is_under_it() {
        let got = unpacked(&[
            record(b"etc", DIR, b"", 1, 2),
            record(b"etc/modprobe.d", DIR, b"body", 2, 2),
            record(b"etc/modprobe.d/airgap.conf", 0o100644, b"install e1000 /bin/false\n", 3, 1),
        ]);
        assert!(find(&got.tree, "/etc").is_some());
        assert!(find(&got.tree, "/etc/modprobe.d").is_none(), "{:#?}", got.tree);
        assert!(find(&got.tree, "/etc/modprobe.d/airgap.conf").is_none());
        let reasons: Vec<String> =
            got.not_unpacked.iter().map(|e| format!("{} {:?}", e.path, e.kind)).collect();
        assert!(
            reasons[0].contains("directory with a 4-byte body: the kernel skips it whole"),
            "{reasons:?}"
        );
        assert!(reasons[1].contains("no such file or directory"), "{reasons:?}");
    }

    #[test]
    fn hard_links_share_the_last_body() {
        let got = unpacked(&[
            record(b"init", FILE, b"#!/bin/sh\nhonest\n", 7, 2),
            record(b"zz", FILE, b"#!/bin/sh\nevil\n", 7, 2),
        ]);
        assert_eq!(digest_of(&got.tree, "/init"), sha(b"#!/bin/sh\nevil\n"), "zz's body is /init's");
        assert_eq!(digest_of(&got.tree, "/zz"), sha(b"#!/bin/sh\nevil\n"));
        let links: Vec<(&str, String)> =
            got.hard_links.iter().map(|e| (e.path.as_str(), format!("{:?}", e.kind))).collect();
        assert_eq!(links.len(), 2, "{links:?}");
        assert!(links[0].1.contains("one inode with /zz"), "{links:?}");
        // A link with no body keeps the first body; a new archive forgets the inodes.
        let got = unpacked(&[record(b"a", FILE, b"first", 7, 2), record(b"b", FILE, b"", 7, 2)]);
        assert_eq!(digest_of(&got.tree, "/b"), sha(b"first"));
        let mut two = record(b"a", FILE, b"first", 7, 2);
        two.extend(record(b"TRAILER!!!", 0, b"", 0, 1));
        two.extend(record(b"b", FILE, b"second", 7, 2));
        let got = unpacked(&[two]);
        assert_eq!(digest_of(&got.tree, "/a"), sha(b"first"), "another archive's inode 7 is another file");
        assert!(got.hard_links.is_empty());
    }

    #[test]
    fn names_walk_through_links_and_other_types_are_replaced() {
        let got = unpacked(&[
            record(b"etc", DIR, b"", 1, 2),
            record(b"lib", 0o120777, b"etc", 2, 1),
            record(b"lib//./passwd", 0o100644, b"x", 3, 1),
            record(b"gone", 0o100644, b"file", 4, 1),
            record(b"gone", DIR, b"", 5, 2),
            record(b"../../up", 0o100644, b"root is its own parent", 6, 1),
        ]);
        assert!(find(&got.tree, "/etc/passwd").is_some(), "{:#?}", got.tree);
        assert!(find(&got.tree, "/lib/passwd").is_none());
        assert_eq!(find(&got.tree, "/gone").unwrap().kind, Kind::Dir);
        assert!(find(&got.tree, "/up").is_some());
        assert!(got.not_unpacked.is_empty(), "{:#?}", got.not_unpacked);
    }

    #[test]
    fn devices_decode_as_the_kernel_packs_them() {
        let node = |name: &[u8], minor: u32| {
            let mut r = record(name, 0o20666, b"", 1, 1);
            r[94 - 16..94 - 8].copy_from_slice(format!("{:08x}", 1).as_bytes());
            r[94 - 8..94].copy_from_slice(format!("{minor:08x}").as_bytes());
            r
        };
        let got = unpacked(&[node(b"a", 3), node(b"b", 259), node(b"c", 0x100003)]);
        let kinds: Vec<&Kind> =
            ["/a", "/b", "/c"].iter().map(|p| &find(&got.tree, p).unwrap().kind).collect();
        assert_eq!(kinds[0], &Kind::Special("char 1:3".into()));
        assert_eq!(kinds[1], &Kind::Special("char 1:259".into()));
        assert_eq!(kinds[2], &Kind::Special("char 1:3".into()), "minor bit 20 lands in the major (1 | 1)");
    }

    #[test]
    fn the_first_directory_time_wins_and_dot_is_the_root() {
        let mut dot = record(b".", 0o40700, b"", 1, 2);
        dot[54 - 8..54].copy_from_slice(b"00000001");
        let mut again = record(b"d", DIR, b"", 2, 2);
        again[54 - 8..54].copy_from_slice(b"00000009");
        let got = unpacked(&[dot, record(b"d", DIR, b"", 2, 2), again]);
        assert_eq!(find(&got.tree, "/").unwrap().mode, 0o700);
        assert_eq!(find(&got.tree, "/").unwrap().mtime, 1);
        assert_eq!(find(&got.tree, "/d").unwrap().mtime, 1783814400);
    }

    #[test]
    fn a_bad_checksum_is_refused() {
        let mut r = record(b"init", FILE, b"abc", 1, 1);
        r[..6].copy_from_slice(b"070702");
        r[102..110].copy_from_slice(b"00000001");
        let mut bytes = r;
        bytes.extend(record(b"TRAILER!!!", 0, b"", 0, 1));
        let mut budget = Budget::new(Limits::default());
        let segments = crate::initrd::segments(&bytes, "initrd", &mut budget).unwrap();
        let err = unpack(&segments, "initrd").unwrap_err().to_string();
        assert!(err.contains("checksum is 00000126, the header says 00000001"), "{err}");
    }
}

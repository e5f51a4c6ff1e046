//! A registry on a local filesystem. Its invariants:
//! - it never follows a symbolic link: listings report links as [`Kind::Symlink`], reads refuse
//!   them (`O_NOFOLLOW`), and removal deletes the link itself, never its target;
//! - it never touches a path outside its root: keys with `..` or a leading `/` are refused;
//! - a tree is removed by first moving it, in one atomic rename, to `.regsweep-trash/gone/`,
//!   then deleting it there: a kill never leaves a half-removed directory behind (what it
//!   leaves in `gone/` the next real run deletes).

use std::collections::HashSet;
use std::ffi::OsStr;
use std::fs;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

use rayon::prelude::*;

use super::{too_large, Entry, Kind, LockGuard, Meta, Storage};
use crate::registry::layout;

/// A registry on a local filesystem.
#[derive(Debug)]
pub struct FsStorage {
    root: PathBuf,
    /// `docker/registry/v2/blobs` and `.../repositories` where they are symbolic links (a data
    /// disk mounted elsewhere, a common layout): the key prefix and the directory it leads
    /// to, resolved once when opened. Deeper links are never followed.
    followed: Vec<(&'static str, PathBuf)>,
    canonical_root: OnceLock<io::Result<PathBuf>>,
    /// Parent directories already resolved inside the root in this run: a sweep removes
    /// thousands of entries from the same few directories, and resolving each parent again
    /// (an lstat per path component) made deleting several times slower than planning.
    inside: Mutex<HashSet<PathBuf>>,
}

impl FsStorage {
    pub fn new(root: impl Into<PathBuf>) -> FsStorage {
        FsStorage {
            root: root.into(),
            followed: Vec::new(),
            canonical_root: OnceLock::new(),
            inside: Mutex::new(HashSet::new()),
        }
    }

    /// Open a root as the registry reads it: the root, `docker/registry/v2/blobs` and
    /// `docker/registry/v2/repositories` may be symbolic links (resolved here, once, and said
    /// in the notes); anything deeper that is a link stays refused.
    pub fn open(root: impl Into<PathBuf>) -> (FsStorage, Vec<String>) {
        let given: PathBuf = root.into();
        let mut notes = Vec::new();
        let root = match fs::symlink_metadata(&given) {
            Ok(m) if m.file_type().is_symlink() => match fs::canonicalize(&given) {
                Ok(target) => {
                    notes.push(format!(
                        "{} is a symbolic link to {}; followed",
                        given.display(),
                        target.display()
                    ));
                    target
                }
                Err(_) => given,
            },
            _ => given,
        };
        let mut storage = FsStorage::new(root);
        for key in [layout::BLOBS, layout::REPOSITORIES] {
            let path = storage.root.join(key);
            let is_link = fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink());
            if !is_link {
                continue;
            }
            // A link to nothing, or to something that is not a directory, stays a link: the
            // walk then refuses it with its path.
            if let Ok(target) = fs::canonicalize(&path) {
                if target.is_dir() {
                    notes.push(format!(
                        "{} is a symbolic link to {}; followed",
                        path.display(),
                        target.display()
                    ));
                    storage.followed.push((key, target));
                }
            }
        }
        (storage, notes)
    }

    /// Before removing anything, resolve the parent directory (following any link on the way)
    /// and refuse if it is not inside the storage root: a linked directory inside the tree
    /// must never turn a sweep into a deletion elsewhere.
    fn check_inside(&self, path: &Path) -> io::Result<()> {
        let root = match self
            .canonical_root
            .get_or_init(|| fs::canonicalize(&self.root))
        {
            Ok(root) => root,
            Err(e) => return Err(io::Error::new(e.kind(), e.to_string())),
        };
        let parent = path.parent().unwrap_or(path);
        if self.inside.lock().is_ok_and(|set| set.contains(parent)) {
            return Ok(());
        }
        let resolved = fs::canonicalize(parent)?;
        let inside = resolved.starts_with(root)
            || self.followed.iter().any(|(_, t)| resolved.starts_with(t));
        if inside {
            if let Ok(mut set) = self.inside.lock() {
                set.insert(parent.to_path_buf());
            }
            Ok(())
        } else {
            Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "refusing to delete: resolves to {} outside the storage root",
                    resolved.display()
                ),
            ))
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, key: &str) -> io::Result<PathBuf> {
        // Keys come from layout functions and directory listings, so this never fires in
        // practice; it is the last line that keeps a sweep inside the storage root.
        if key.starts_with('/') || key.split('/').any(|c| c == ".." || c == ".") {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("refusing storage key outside the root: {key:?}"),
            ));
        }
        for (prefix, target) in &self.followed {
            if key == *prefix {
                return Ok(target.clone());
            }
            if let Some(rest) = key.strip_prefix(prefix).and_then(|r| r.strip_prefix('/')) {
                return Ok(target.join(rest));
            }
        }
        Ok(if key.is_empty() {
            self.root.clone()
        } else {
            self.root.join(key)
        })
    }
}

impl FsStorage {
    /// Remove a tree so that a kill never leaves it half-removed: move it, in one atomic
    /// rename, to `.regsweep-trash/gone/`, then delete it there. A half-removed link directory
    /// (the `link` gone, the directory left) would otherwise look young to the next run, and
    /// an interrupted run would not end where an uninterrupted one does.
    fn remove_tree(&self, key: &str) -> io::Result<()> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let gone = format!(
            "{}/{}-{}",
            layout::TRASH_GONE,
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        match self.rename(key, &gone) {
            Ok(()) => self.remove_all(&gone),
            // Someone (an earlier, interrupted run) already removed it.
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            // Cannot move it (another filesystem mounted inside the tree, ...): in place.
            Err(_) => self.remove_all(key),
        }
    }

    /// Remove a link directory in place: its `link` (through a descriptor of the directory
    /// opened without following a symbolic link, so nothing outside the root is reached),
    /// then the directory. Anything else inside, or a directory that is not one, goes the
    /// long way.
    fn remove_link_dir(&self, key: &str) -> io::Result<()> {
        use rustix::fs::{openat, unlinkat, AtFlags, Mode, OFlags, CWD};
        let path = self.path(key)?;
        self.check_inside(&path)?;
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let dir = match openat(CWD, &path, flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(rustix::io::Errno::NOENT) => return Ok(()),
            // A symbolic link or a file where a directory should be.
            Err(_) => return self.remove_all(key),
        };
        match unlinkat(&dir, layout::LINK_FILE, AtFlags::empty()) {
            Ok(()) | Err(rustix::io::Errno::NOENT) => {}
            Err(_) => return self.remove_all(key),
        }
        drop(dir);
        crate::hooks::pause("link-unlinked");
        match unlinkat(CWD, &path, AtFlags::REMOVEDIR) {
            Ok(()) | Err(rustix::io::Errno::NOENT) => Ok(()),
            // Not empty after its `link` went: a push wrote the link again in between. It is
            // the push's now; leave it, and say so (the sweep counts it as kept).
            Err(rustix::io::Errno::NOTEMPTY) => Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "written again by a push during the run; left in place",
            )),
            Err(e) => Err(e.into()),
        }
    }

    /// Open a key that must be a regular file (not a link, a directory or a FIFO).
    fn open_regular(&self, key: &str) -> io::Result<(fs::File, fs::Metadata)> {
        let file = self.open_nofollow(key)?;
        let meta = file.metadata()?;
        if !meta.is_file() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "is not a regular file",
            ));
        }
        Ok((file, meta))
    }

    fn open_nofollow(&self, key: &str) -> io::Result<fs::File> {
        fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(self.path(key)?)
            .map_err(|e| {
                if e.raw_os_error() == Some(libc::ELOOP) {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        "is a symbolic link (not followed)",
                    )
                } else {
                    e
                }
            })
    }
}

/// Write a file whole and atomically: a temporary file beside it, fsync, rename over it, fsync
/// the directory. Killed at any point, the file holds the old content or the new.
pub fn write_file_atomically(path: &Path, content: &[u8]) -> io::Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    create_dirs_like_parent(dir)?;
    let owner = fs::metadata(dir).ok();
    let name = path
        .file_name()
        .map_or_else(|| "state".into(), |n| n.to_string_lossy().into_owned());
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let mut file = fs::File::create(&tmp)?;
    file.write_all(content)?;
    file.sync_all()?;
    drop(file);
    // A test hook: die where a kill would hurt most, between writing and renaming.
    crate::hooks::die_before_state_rename();
    give_to(&tmp, owner.as_ref());
    fs::rename(&tmp, path)?;
    fs::File::open(dir)?.sync_all()
}

/// Create `dir` and the directories above it that are missing, each with the owner, group and
/// permissions of the nearest one that exists: what regsweep creates in a registry's tree
/// (shard directories put back, links written back, its trash, its state) must stay writable
/// for the registry's own user when regsweep runs as root.
pub fn create_dirs_like_parent(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mut missing = Vec::new();
    let mut existing = dir;
    while fs::symlink_metadata(existing).is_err() {
        missing.push(existing);
        match existing.parent() {
            Some(p) => existing = p,
            None => break,
        }
    }
    let like = fs::metadata(existing).ok();
    for d in missing.into_iter().rev() {
        match fs::create_dir(d) {
            Ok(()) => {
                give_to(d, like.as_ref());
                if let Some(m) = &like {
                    let mode = m.permissions().mode() & 0o7777;
                    let _ = fs::set_permissions(d, fs::Permissions::from_mode(mode));
                }
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Give `path` the owner and group of `like` (the directory it was created in), where this
/// process may: as root, so that what a root run creates stays writable for the registry's
/// user. Elsewhere it already is this user's; a failure leaves it as it is.
fn give_to(path: &Path, like: Option<&fs::Metadata>) {
    use std::os::unix::fs::MetadataExt;
    if let Some(m) = like {
        let _ = std::os::unix::fs::lchown(path, Some(m.uid()), Some(m.gid()));
    }
}

/// getdents buffer size: a few hundred entries per system call; a larger directory takes
/// more calls, not a larger buffer.
const DIRENT_BUF_BYTES: usize = 32 * 1024;

thread_local! {
    /// Each worker's getdents buffer, reused for every listing.
    static DIRENT_BUF: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
}

/// The entries of an open directory, read with getdents into `buf`.
fn visit_entries(
    dir: &rustix::fd::OwnedFd,
    buf: &mut Vec<u8>,
    f: &mut dyn FnMut(&[u8], Kind),
) -> io::Result<()> {
    use rustix::fs::{FileType, RawDir};
    buf.clear();
    buf.reserve(DIRENT_BUF_BYTES);
    let mut entries = RawDir::new(dir, buf.spare_capacity_mut());
    while let Some(entry) = entries.next() {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name == b"." || name == b".." {
            continue;
        }
        let kind = match entry.file_type() {
            // Some filesystems do not fill in d_type: ask the inode.
            FileType::Unknown => {
                let st = rustix::fs::statat(
                    dir,
                    entry.file_name(),
                    rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
                )?;
                Kind::of_raw(FileType::from_raw_mode(st.st_mode))
            }
            known => Kind::of_raw(known),
        };
        f(name, kind);
    }
    Ok(())
}

fn name_of(name: &OsStr) -> (String, bool) {
    match name.to_str() {
        Some(s) => (s.to_string(), true),
        None => (String::from_utf8_lossy(name.as_bytes()).into_owned(), false),
    }
}

impl Storage for FsStorage {
    fn list_dir(&self, key: &str) -> io::Result<Vec<Entry>> {
        let mut out = Vec::new();
        self.visit_dir(key, &mut |name, kind| {
            let (name, utf8) = name_of(OsStr::from_bytes(name));
            out.push(Entry { name, kind, utf8 });
        })?;
        Ok(out)
    }

    fn visit_dir(&self, key: &str, f: &mut dyn FnMut(&[u8], Kind)) -> io::Result<()> {
        use rustix::fs::{Mode, OFlags};
        let path = self.path(key)?;
        // One open that refuses anything but a real directory (a symbolic link fails
        // O_NOFOLLOW): no separate lstat, and no window between checking and listing.
        let dir = match rustix::fs::open(
            &path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(e) if e == rustix::io::Errno::NOTDIR || e == rustix::io::Errno::LOOP => {
                // The error path only: say which of the two it was.
                let linked = fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink());
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    if linked {
                        "is a symbolic link, not a directory (not followed)"
                    } else {
                        "is not a directory"
                    },
                ));
            }
            Err(e) => return Err(e.into()),
        };
        // Taken, not borrowed: `f` may list another directory on this thread.
        let mut buf = DIRENT_BUF.take();
        let result = visit_entries(&dir, &mut buf, f);
        DIRENT_BUF.set(buf);
        result
    }

    fn stat(&self, key: &str) -> io::Result<Meta> {
        let meta = fs::symlink_metadata(self.path(key)?)?;
        Ok(Meta {
            kind: Kind::of(meta.file_type()),
            len: meta.len(),
            modified: meta.modified()?,
        })
    }

    fn read_into(&self, key: &str, limit: u64, buf: &mut Vec<u8>) -> io::Result<Meta> {
        let (mut file, meta) = self.open_regular(key)?;
        if meta.len() > limit {
            return Err(too_large(limit));
        }
        // Read exactly the size fstat gave: no extra read to find the end of the file.
        buf.clear();
        buf.resize(meta.len() as usize, 0);
        file.read_exact(buf)?;
        Ok(Meta {
            kind: Kind::File,
            len: meta.len(),
            modified: meta.modified()?,
        })
    }

    fn read_content(&self, key: &str, limit: u64, buf: &mut Vec<u8>) -> io::Result<()> {
        let mut file = self.open_nofollow(key)?;
        // No fstat: read until a short read (a regular file returns all it has, so a short
        // read means the end) or until more than `limit` bytes came. The buffer starts at
        // 16 KiB, enough for nearly every link and manifest, and doubles from there, so a
        // 4 MiB limit costs nothing for a 1 KiB file. A directory fails the read, a FIFO
        // returns nothing (O_NONBLOCK), so neither is mistaken for content.
        let cap = limit as usize + 1;
        buf.clear();
        let mut filled = 0;
        loop {
            if filled == buf.len() {
                let grow = filled.max(16 * 1024).min(cap - filled);
                buf.resize(filled + grow, 0);
            }
            let want = buf.len() - filled;
            let n = match file.read(&mut buf[filled..]) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => other?,
            };
            filled += n;
            if filled > limit as usize {
                return Err(too_large(limit));
            }
            if n < want {
                break;
            }
        }
        buf.truncate(filled);
        Ok(())
    }

    fn remove_all(&self, key: &str) -> io::Result<()> {
        let path = self.path(key)?;
        let result = match self
            .check_inside(&path)
            .and_then(|()| fs::symlink_metadata(&path))
        {
            // remove_dir_all does not follow links inside the tree; a link at the top is
            // removed as a file, never descended into.
            Ok(meta) if meta.is_dir() => fs::remove_dir_all(&path),
            Ok(_) => fs::remove_file(&path),
            Err(e) => Err(e),
        };
        match result {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }

    fn remove_empty_dir(&self, key: &str) -> io::Result<bool> {
        let path = self.path(key)?;
        match self
            .check_inside(&path)
            .and_then(|()| fs::remove_dir(&path))
        {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) if e.kind() == io::ErrorKind::DirectoryNotEmpty => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn read_chunks(&self, key: &str, f: &mut dyn FnMut(&[u8])) -> io::Result<u64> {
        /// Below this a read is cheaper than setting up a map.
        const MMAP_THRESHOLD: u64 = 1 << 20;
        let (mut file, meta) = self.open_regular(key)?;
        if meta.len() >= MMAP_THRESHOLD {
            // SAFETY: a read-only map, dropped before we return. Blob files are written once
            // and never modified in place; a concurrent truncation could still fault, which is
            // one reason `check --verify` is an offline command.
            let map = unsafe { memmap2::Mmap::map(&file)? };
            for chunk in map.chunks(8 << 20) {
                f(chunk);
            }
            Ok(map.len() as u64)
        } else {
            let mut buf = Vec::with_capacity(meta.len() as usize);
            file.read_to_end(&mut buf)?;
            f(&buf);
            Ok(buf.len() as u64)
        }
    }

    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        let (src, dst) = (self.path(from)?, self.path(to)?);
        self.check_inside(&src)?;
        let parent = dst.parent().unwrap_or(&dst);
        // A blob put back from the trash may need its shard directory again: made as the
        // registry's neighbours are, or the registry could not write there afterwards.
        create_dirs_like_parent(parent)?;
        self.check_inside(&dst)?;
        // renameat2(RENAME_NOREPLACE) would be atomic about "fails if it exists"; a blob
        // directory never appears twice under the same name except by a push of the same
        // content, and then either copy is the blob, so a plain check is enough here.
        if fs::symlink_metadata(&dst).is_ok() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} already exists", dst.display()),
            ));
        }
        fs::rename(&src, &dst)
    }

    fn same_filesystem(&self, a: &str, b: &str) -> io::Result<bool> {
        use std::os::unix::fs::MetadataExt;
        let dev =
            |key: &str| -> io::Result<u64> { Ok(fs::symlink_metadata(self.path(key)?)?.dev()) };
        Ok(dev(a)? == dev(b)?)
    }

    fn remove_trees(&self, keys: &[String]) -> Vec<io::Result<()>> {
        keys.par_iter().map(|k| self.remove_tree(k)).collect()
    }

    /// In place, each directory's `link` then the directory, all side by side, after
    /// recording the keys in [`layout::REMOVING`]. A move into one directory of our own (as
    /// [`Storage::remove_trees`] does) would be atomic per key, but every such move takes the
    /// filesystem's one rename lock and the target directory's lock: with tens of thousands
    /// of links the sweep waited in line instead of deleting (BENCHMARKS.md). A kill between
    /// the two removals leaves an empty directory the record names, which the next run removes
    /// ([`Storage::finish_removals`]). The record stays if anything failed, for the same
    /// reason.
    fn remove_links(&self, keys: &[String]) -> Vec<io::Result<()>> {
        if keys.is_empty() {
            return Vec::new();
        }
        let mut record = keys.join("\n");
        record.push('\n');
        if self
            .write_atomic(layout::REMOVING, record.as_bytes())
            .is_err()
        {
            // Without the record a kill could leave what no run finishes: one move each.
            return self.remove_trees(keys);
        }
        let results: Vec<io::Result<()>> =
            keys.par_iter().map(|k| self.remove_link_dir(k)).collect();
        if results.iter().all(Result::is_ok) {
            let _ = self.remove_all(layout::REMOVING);
        }
        results
    }

    fn finish_removals(&self) -> io::Result<usize> {
        // A record a killed run was still writing (the run lock is ours, so no other run is).
        let (dir, name) = layout::REMOVING
            .rsplit_once('/')
            .unwrap_or(("", layout::REMOVING));
        let partial = format!(".{name}.");
        for entry in self.list_dir(dir)? {
            if entry.name.starts_with(&partial) && entry.name.ends_with(".tmp") {
                self.remove_all(&format!("{dir}/{}", entry.name))?;
            }
        }
        let mut buf = Vec::new();
        match self.read_into(layout::REMOVING, 1 << 30, &mut buf) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(e),
        }
        let text = String::from_utf8_lossy(&buf);
        let keys: Vec<&str> = text.lines().filter(|k| !k.is_empty()).collect();
        // Only what is empty: a directory whose `link` is still there was not reached (or
        // was pushed again since), and the mark decides about it afresh.
        let results: Vec<io::Result<bool>> =
            keys.par_iter().map(|k| self.remove_empty_dir(k)).collect();
        let mut removed = 0;
        for result in results {
            removed += usize::from(result?);
        }
        self.remove_all(layout::REMOVING)?;
        Ok(removed)
    }

    fn write_atomic(&self, key: &str, content: &[u8]) -> io::Result<()> {
        let path = self.path(key)?;
        // The directories a link written back needs may be gone with it: create them below
        // the nearest one that exists, once that one is known to be inside the root.
        let mut existing = path.parent().unwrap_or(&path);
        while fs::symlink_metadata(existing).is_err() {
            existing = existing.parent().unwrap_or(existing);
            if existing == self.root {
                break;
            }
        }
        self.check_inside(&existing.join("x"))?;
        // What regsweep creates takes the owner of the directory it lands in, as the
        // registry's own files around it have (write_file_atomically sees to it).
        write_file_atomically(&path, content)
    }

    fn lock(&self, wait: bool) -> crate::error::Result<LockGuard> {
        crate::storage::lock::Lock::acquire(&self.root, wait).map(LockGuard::new)
    }

    /// The root with its links resolved: two spellings of one root are one registry.
    fn identity(&self) -> String {
        fs::canonicalize(&self.root)
            .unwrap_or_else(|_| self.root.clone())
            .display()
            .to_string()
    }

    fn display(&self, key: &str) -> String {
        if key.is_empty() {
            self.root.display().to_string()
        } else {
            self.root.join(key).display().to_string()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_keys_that_leave_the_root() {
        let s = FsStorage::new("/nonexistent-root");
        for key in ["/etc", "../x", "a/../../b", "a/./b"] {
            let err = s.stat(key).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{key}");
            assert!(s.remove_all(key).is_err(), "{key}");
        }
    }

    #[test]
    fn read_content_grows_past_its_first_buffer_and_stops_at_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let big: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        fs::write(dir.path().join("big"), &big).unwrap();
        fs::write(dir.path().join("exact"), vec![7u8; 16 * 1024]).unwrap();
        let s = FsStorage::new(dir.path());
        let mut buf = vec![1, 2, 3];
        s.read_content("big", 4 << 20, &mut buf).unwrap();
        assert_eq!(buf, big);
        s.read_content("big", 100_000, &mut buf).unwrap();
        assert_eq!(buf.len(), 100_000);
        let err = s.read_content("big", 99_999, &mut buf).unwrap_err();
        assert!(err.to_string().contains("larger than"), "{err}");
        // Exactly one first buffer: the next read finds the end.
        s.read_content("exact", 4 << 20, &mut buf).unwrap();
        assert_eq!(buf, vec![7u8; 16 * 1024]);
        fs::write(dir.path().join("empty"), b"").unwrap();
        s.read_content("empty", 10, &mut buf).unwrap();
        assert!(buf.is_empty());
    }

    #[test]
    fn list_dir_names_kinds_and_refuses_links_and_files() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("d")).unwrap();
        fs::write(dir.path().join("d/f"), b"x").unwrap();
        fs::create_dir(dir.path().join("d/sub")).unwrap();
        std::os::unix::fs::symlink("f", dir.path().join("d/l")).unwrap();
        std::os::unix::fs::symlink("d", dir.path().join("dl")).unwrap();
        let s = FsStorage::new(dir.path());
        let mut got: Vec<(String, Kind)> = s
            .list_dir("d")
            .unwrap()
            .into_iter()
            .map(|e| (e.name, e.kind))
            .collect();
        got.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            got,
            vec![
                ("f".to_string(), Kind::File),
                ("l".to_string(), Kind::Symlink),
                ("sub".to_string(), Kind::Dir),
            ]
        );
        let err = s.list_dir("dl").unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");
        let err = s.list_dir("d/f").unwrap_err();
        assert!(err.to_string().contains("not a directory"), "{err}");
        assert_eq!(
            s.list_dir("missing").unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
        // More entries than one getdents buffer holds.
        let many = dir.path().join("many");
        fs::create_dir(&many).unwrap();
        for i in 0..2000 {
            fs::write(many.join(format!("entry-with-a-longish-name-{i:05}")), b"").unwrap();
        }
        assert_eq!(s.list_dir("many").unwrap().len(), 2000);
        // A visitor may list another directory on the same thread.
        let mut outer = 0;
        let mut inner = 0;
        s.visit_dir("many", &mut |_, kind| {
            assert_eq!(kind, Kind::File);
            outer += 1;
            if outer % 500 == 0 {
                inner += s.list_dir("d").unwrap().len();
            }
        })
        .unwrap();
        assert_eq!((outer, inner), (2000, 12));
    }

    #[test]
    fn reads_refuse_symlinks_and_oversize() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("f"), b"hello").unwrap();
        std::os::unix::fs::symlink(dir.path().join("f"), dir.path().join("l")).unwrap();
        let s = FsStorage::new(dir.path());
        let mut buf = Vec::new();
        s.read_into("f", 5, &mut buf).unwrap();
        assert_eq!(buf, b"hello");
        assert!(s.read_into("f", 4, &mut buf).is_err());
        s.read_content("f", 5, &mut buf).unwrap();
        assert_eq!(buf, b"hello");
        assert!(s.read_content("f", 4, &mut buf).is_err());
        assert!(s.read_content("l", 100, &mut buf).is_err());
        fs::create_dir(dir.path().join("d")).unwrap();
        assert!(s.read_content("d", 100, &mut buf).is_err());
        let err = s.read_into("l", 100, &mut buf).unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");
        assert_eq!(s.stat("l").unwrap().kind, Kind::Symlink);
    }

    #[test]
    fn remove_all_removes_a_link_not_its_target() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("precious"), b"x").unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("l")).unwrap();
        let s = FsStorage::new(dir.path());
        s.remove_all("l").unwrap();
        assert!(outside.path().join("precious").exists());
        assert!(!dir.path().join("l").exists());
        // Missing is success.
        s.remove_all("l").unwrap();
    }

    #[test]
    fn refuses_to_delete_through_a_linked_directory() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        fs::create_dir(outside.path().join("victim")).unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("l")).unwrap();
        let s = FsStorage::new(dir.path());
        let err = s.remove_all("l/victim").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::PermissionDenied, "{err}");
        assert!(outside.path().join("victim").exists());
        assert!(s.remove_empty_dir("l/victim").is_err());
    }
}

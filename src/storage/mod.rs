//! The narrow interface between regsweep and the bytes it collects.
//!
//! All I/O goes through [`Storage`], keyed by the relative paths that [`crate::registry::layout`] builds
//! (`docker/registry/v2/...`, `/`-separated), so discovery, mark, plan and sweep are one code
//! path whatever holds the bytes. What differs between a disk and a bucket lives behind it,
//! each backend in its own file:
//! - [`fs`]: a local filesystem (getdents walks, atomic renames, a run lock with `flock`);
//! - [`object`]: object storage (listings held in memory, links resolved from their MD5s,
//!   batched deletes, a lock object) over one [`bucket::Bucket`] per service: [`s3`] (and what
//!   speaks its API), [`gcs`], [`azure`]; [`http`] is the transport they share;
//! - [`hiding`]: a read-only view with some keys hidden, for dry runs of edits.

pub mod azure;
pub mod bucket;
pub mod fs;
pub mod gcs;
mod gcs_token;
pub mod hiding;
pub mod http;
mod listing;
pub mod lock;
pub mod manifest_cache;
pub mod object;
mod object_lock;
pub mod s3;

pub use fs::FsStorage;
pub use hiding::Hiding;

use std::io;
use std::time::SystemTime;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    Other,
}

impl Kind {
    pub(crate) fn of_raw(ft: rustix::fs::FileType) -> Kind {
        use rustix::fs::FileType;
        match ft {
            FileType::Directory => Kind::Dir,
            FileType::RegularFile => Kind::File,
            FileType::Symlink => Kind::Symlink,
            _ => Kind::Other,
        }
    }

    pub(crate) fn of(ft: std::fs::FileType) -> Kind {
        if ft.is_symlink() {
            Kind::Symlink
        } else if ft.is_dir() {
            Kind::Dir
        } else if ft.is_file() {
            Kind::File
        } else {
            Kind::Other
        }
    }
}

/// One directory entry. A name that is not valid UTF-8 is carried lossily with `utf8: false`:
/// such a name can never be a registry key, and callers decide how loudly to say so.
#[derive(Debug, Clone)]
pub struct Entry {
    pub name: String,
    pub kind: Kind,
    pub utf8: bool,
}

#[derive(Debug, Clone, Copy)]
pub struct Meta {
    pub kind: Kind,
    pub len: u64,
    pub modified: SystemTime,
}

/// Whole seconds since the epoch; times before it count as the epoch (old).
pub fn epoch_seconds(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Reads fail with this kind when the file is larger than the caller's limit.
pub fn too_large(limit: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("file is larger than the {limit}-byte limit"),
    )
}

pub trait Storage: Sync + Send {
    /// List a directory without following links. `NotFound` is returned as an error so that
    /// callers decide whether absence matters.
    fn list_dir(&self, key: &str) -> io::Result<Vec<Entry>>;

    /// Like [`Storage::list_dir`], one entry at a time (its raw name and kind) without
    /// collecting them: a blob shard holds thousands of entries, and a list of owned names is
    /// garbage the moment it has been read. A name that is not UTF-8 may come lossily.
    fn visit_dir(&self, key: &str, f: &mut dyn FnMut(&[u8], Kind)) -> io::Result<()> {
        for e in self.list_dir(key)? {
            f(e.name.as_bytes(), e.kind);
        }
        Ok(())
    }

    /// Metadata of a key, not following a final symbolic link.
    fn stat(&self, key: &str) -> io::Result<Meta>;

    /// Read a whole regular file into `buf` (cleared first), refusing symbolic links and files
    /// larger than `limit` bytes. Returns the file's metadata, taken from the open file.
    fn read_into(&self, key: &str, limit: u64, buf: &mut Vec<u8>) -> io::Result<Meta>;

    /// Like [`Storage::read_into`] for a file whose metadata the caller does not need (links,
    /// manifests): the cheapest read the backend has (on a filesystem: open, read until a
    /// short read, close; no fstat).
    fn read_content(&self, key: &str, limit: u64, buf: &mut Vec<u8>) -> io::Result<()> {
        self.read_into(key, limit, buf).map(|_| ())
    }

    /// Remove a file or a whole directory tree. A missing key is success: someone (maybe an
    /// earlier, interrupted run) already did the work.
    fn remove_all(&self, key: &str) -> io::Result<()>;

    /// Remove a directory only if it is empty. Returns whether it was removed.
    fn remove_empty_dir(&self, key: &str) -> io::Result<bool>;

    /// Feed a whole regular file to `f` in chunks (without holding it all in memory where the
    /// backend can avoid it), refusing symbolic links. Returns the number of bytes fed.
    fn read_chunks(&self, key: &str, f: &mut dyn FnMut(&[u8])) -> io::Result<u64>;

    /// Atomically move `from` to `to` (creating `to`'s parent), failing if `to` exists.
    fn rename(&self, from: &str, to: &str) -> io::Result<()>;

    /// Whether the directories `a` and `b` are on one filesystem, so that a rename can move
    /// entries from one to the other.
    fn same_filesystem(&self, _a: &str, _b: &str) -> io::Result<bool> {
        Ok(true)
    }

    /// Remove each key and everything below it, atomically per key where the backend can (a
    /// kill never leaves one half-removed). Results come in the order of `keys`; a missing key
    /// is success. Backends batch what they can (object storage: 1,000 keys a request).
    fn remove_trees(&self, keys: &[String]) -> Vec<io::Result<()>> {
        keys.par_iter().map(|k| self.remove_all(k)).collect()
    }

    /// Remove link directories (each holds a `link` file and nothing else), each so that a
    /// kill never leaves what a later run cannot finish (see [`Storage::finish_removals`]).
    /// Results in the order of `keys`; a missing key is success; a directory a push filled
    /// again meanwhile is left in place and answered with [`io::ErrorKind::AlreadyExists`].
    /// By default as [`Storage::remove_trees`].
    fn remove_links(&self, keys: &[String]) -> Vec<io::Result<()>> {
        self.remove_trees(keys)
    }

    /// Which registry this is, for a record that must not be used with another one (the
    /// `--unreferenced-for` state): by default what [`Storage::display`] calls its root.
    fn identity(&self) -> String {
        self.display("")
    }

    /// Finish what an interrupted run left half done before anything else happens (a real
    /// run, under the lock): the directories of an interrupted [`Storage::remove_links`] on a
    /// filesystem, copies in parts into the trash on S3. Returns how many it finished.
    fn finish_removals(&self) -> io::Result<usize> {
        Ok(0)
    }

    /// Move each `(from, to)` pair as [`Storage::rename`] does. Results in the order of
    /// `pairs`. Backends batch what they can (object storage: the copies at once, then the
    /// sources deleted 1,000 a request).
    fn rename_many(&self, pairs: &[(String, String)]) -> Vec<io::Result<()>> {
        pairs.par_iter().map(|(a, b)| self.rename(a, b)).collect()
    }

    /// Remove each key and everything below it, in place, for what nobody reads any more (a
    /// trash entry). Results in the order of `keys`; batched where the backend can.
    fn remove_in_place(&self, keys: &[String]) -> Vec<io::Result<()>> {
        keys.par_iter().map(|k| self.remove_all(k)).collect()
    }

    /// Uploads the store keeps outside its listing below `dir` (a repository's `_uploads`):
    /// S3's incomplete multipart uploads, which hold an upload's data until it completes.
    /// Read once per listing ([`Storage::refresh`] reads them again); none elsewhere.
    fn pending_uploads(&self, _dir: &str) -> io::Result<Vec<PendingUpload>> {
        Ok(Vec::new())
    }

    /// Abort pending uploads (their parts are freed). Results in the order of `uploads`.
    fn abort_uploads(&self, uploads: &[PendingUpload]) -> Vec<io::Result<()>> {
        uploads
            .iter()
            .map(|u| {
                Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    format!("{}: no pending uploads here", u.key),
                ))
            })
            .collect()
    }

    /// Read what is below `prefix` afresh. A backend that lists ahead (object storage) must
    /// see what changed since before a later look; a filesystem always answers afresh.
    fn refresh(&self, _prefix: &str) -> io::Result<()> {
        Ok(())
    }

    /// Replace the content of a small file whole, atomically: a reader sees the old content
    /// or the new one, never a mix, whenever the process is killed.
    fn write_atomic(&self, key: &str, _content: &[u8]) -> io::Result<()> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("{}: this storage view cannot write", self.display(key)),
        ))
    }

    /// Take the run lock: one real run per storage at a time, released when the guard drops.
    /// `wait` waits for another holder instead of failing with [`crate::error::Error::Locked`].
    fn lock(&self, _wait: bool) -> crate::error::Result<LockGuard> {
        Err(crate::error::Error::Usage(vec![
            "this storage view cannot be locked".into(),
        ]))
    }

    /// Requests sent so far, by kind (object storage only).
    fn requests(&self) -> Option<Requests> {
        None
    }

    /// The full path of a key, for messages.
    fn display(&self, key: &str) -> String;
}

/// An upload the store keeps outside its listing: see [`Storage::pending_uploads`].
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PendingUpload {
    /// The key the upload writes, relative to the registry's root.
    pub key: String,
    pub upload_id: String,
    /// When it began.
    #[serde(skip, default = "epoch")]
    pub initiated: SystemTime,
    /// When its newest part arrived (when it began, without parts).
    #[serde(skip, default = "epoch")]
    pub touched: SystemTime,
    /// The bytes its parts hold.
    #[serde(skip)]
    pub size: u64,
}

fn epoch() -> SystemTime {
    SystemTime::UNIX_EPOCH
}

/// Holds the run lock until dropped.
pub struct LockGuard(#[allow(dead_code)] Box<dyn Send>);

impl LockGuard {
    pub fn new(inner: impl Send + 'static) -> LockGuard {
        LockGuard(Box::new(inner))
    }
}

/// Requests sent to object storage, by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Requests {
    pub list: u64,
    pub get: u64,
    pub head: u64,
    pub delete: u64,
    pub put: u64,
    /// Requests sent again after a throttle (503 SlowDown), a server error or a time-out.
    pub retries: u64,
    /// Manifests read from the local cache instead of a GET.
    #[serde(default)]
    pub cached: u64,
}

impl Requests {
    pub fn total(&self) -> u64 {
        self.list + self.get + self.head + self.delete + self.put
    }
}

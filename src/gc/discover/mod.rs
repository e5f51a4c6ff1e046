//! Discover: walk the storage into a compact [`BlobIndex`] and one [`Repository`] at a time.
//!
//! The blob store is listed shard by shard (`blobs/<alg>/<xx>`): the directory name already is
//! the digest. A blob's `data` is stat'ed (never opened) only after the mark, and only when the
//! answer needs it ([`stat_blobs`]). Repositories are found at
//! any depth (a directory holding `_manifests` is one; `_`-prefixed components never are);
//! each is then read on its own (tags, revisions, layer links), so that the driver can mark it
//! and let it go before reading the next: memory stays bounded by the blob index. Link files are
//! read because the digest that counts is the one *inside* the link, not the one in its path.
//!
//! Discovery judges only what it can judge alone: a directory it cannot list is an error (what
//! it holds is unknown). Whether an unreadable link matters depends on the mode, so link
//! targets are carried as results for the mark to judge.
//!
//! [`blobs`] lists the blob store, [`repository`] reads repositories; both report through the
//! same [`Diagnostics`] and are used as `discover::...`.

mod blobs;
mod repository;

use std::sync::atomic::AtomicU64;

use crate::error::{Diagnostics, Error, Result};
use crate::registry::layout;
use crate::storage::{Entry, Kind, Storage};

pub use blobs::{discover_blobs, stat_blobs, BlobIndex, BlobShard, BlobState, UNKNOWN_SIZE};
pub use repository::{
    discover_repository, discover_tags, repository_names, upload_times, Link, LinkTarget,
    Repository, Tag, Upload,
};

/// A link file holds ~71 bytes (sha256) or ~135 (sha512); anything much larger is garbage.
pub const MAX_LINK_BYTES: u64 = 1024;

#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// List `tags/<tag>/index` (needed to delete the history entries of dead manifests).
    pub tag_history: bool,
    /// Record link modification times (needed unless the age check is disabled); without
    /// them a link read is open, read, close.
    pub link_times: bool,
    /// Read `_uploads/` (for housekeeping and reports).
    pub uploads: bool,
}

/// Counters that progress bars read; updated once per shard or repository, not per entry.
#[derive(Debug, Default)]
pub struct Counters {
    pub shards: AtomicU64,
    pub blobs: AtomicU64,
    pub repositories: AtomicU64,
    pub manifests: AtomicU64,
}

/// Whether the root is a registry that has never been written to: the directory (or bucket
/// prefix) exists and holds nothing at all, as after a fresh install of the registry.
pub fn is_empty_root(storage: &dyn Storage) -> bool {
    matches!(storage.stat(layout::V2), Err(e) if e.kind() == std::io::ErrorKind::NotFound)
        && storage.list_dir("").is_ok_and(|entries| entries.is_empty())
}

/// Check that the storage root is a registry before anything else happens. An empty root is
/// one (a fresh install, before its first push); a directory with other things in it and no
/// `docker/registry/v2` is not.
pub fn check_root(storage: &dyn Storage) -> Result<()> {
    if is_empty_root(storage) {
        return Ok(());
    }
    match storage.stat(layout::V2) {
        Ok(meta) if meta.kind == Kind::Dir => Ok(()),
        Ok(_) => Err(Error::target(
            storage.display(layout::V2),
            "is not a directory: not a registry storage root",
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::target(
            storage.display(""),
            "is not a registry storage root (no docker/registry/v2 below it)",
        )),
        Err(e) => Err(Error::io(storage.display(layout::V2), e)),
    }
}

/// List a directory that may legitimately be absent (an empty registry has no `blobs/`).
fn list_optional(storage: &dyn Storage, key: &str, diags: &mut Diagnostics) -> Option<Vec<Entry>> {
    match storage.list_dir(key) {
        Ok(entries) => Some(entries),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some(Vec::new()),
        Err(e) => {
            diags.error(storage.display(key), format!("cannot list directory: {e}"));
            None
        }
    }
}

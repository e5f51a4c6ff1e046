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

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::SystemTime;

use rayon::prelude::*;

use crate::digest::{Algorithm, Digest};
use crate::error::{Diagnostics, Error, Result};
use crate::layout;
use crate::storage::{Entry, Kind, Storage};

/// A link file holds ~71 bytes (sha256) or ~135 (sha512); anything much larger is garbage.
pub const MAX_LINK_BYTES: u64 = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobState {
    /// `data` is a regular file.
    Present,
    /// The blob directory has no `data`: an interrupted delete or upload. The registry
    /// considers the blob absent.
    NoData,
    /// `data` exists but is not a regular file (a directory, a link): not understood, never
    /// touched.
    Strange,
    /// Listed, then gone before it was stat'ed: someone else removed it. Not counted.
    Gone,
}

/// A size not yet known: the blob was listed but neither stat'ed nor declared by a descriptor.
pub const UNKNOWN_SIZE: u64 = u64::MAX;
/// In `BlobShard::sizes`: unknown, and "look in `big`".
const SMALL_UNKNOWN: u32 = u32::MAX;
const SMALL_BIG: u32 = u32::MAX - 1;

/// The blob store, listed shard by shard and kept compact: per blob only its digest bytes and
/// size, in struct-of-arrays form, 36 bytes for a sha256 blob; modification time and state
/// only for the few blobs that were stat'ed (those that may be deleted). Entries are sorted by digest within each shard, so a digest is found by
/// two binary searches and the live set can be a bitset over the same positions.
#[derive(Debug, Default)]
pub struct BlobIndex {
    /// Sorted by (algorithm, prefix).
    pub shards: Vec<BlobShard>,
}

#[derive(Debug)]
pub struct BlobShard {
    pub algorithm: Algorithm,
    pub prefix: u8,
    /// Directory entries the shard held when listed, blobs or not: the plan removes a shard
    /// directory only when every entry in it is deleted.
    pub entries: usize,
    width: usize,
    digests: Vec<u8>,
    /// Declared by a live descriptor, or from stat; see [`BlobShard::size`]. 32 bits: sizes
    /// that do not fit (4 GiB and up) are kept in `big`.
    sizes: Vec<AtomicU32>,
    big: Mutex<HashMap<u32, u64>>,
    /// What stat found, for the blobs that were stat'ed, sorted by position. A blob not in it
    /// was never stat'ed: present as far as anyone knows, its time unknown (and not needed).
    stats: Vec<Stat>,
}

#[derive(Debug, Clone, Copy)]
struct Stat {
    position: u32,
    /// Seconds since the epoch; see [`blob_seconds`].
    modified: u32,
    state: BlobState,
}

impl BlobShard {
    pub fn len(&self) -> usize {
        self.sizes.len()
    }

    /// The blob's size, or [`UNKNOWN_SIZE`].
    pub fn size(&self, i: usize) -> u64 {
        match self.sizes[i].load(Ordering::Relaxed) {
            SMALL_UNKNOWN => UNKNOWN_SIZE,
            SMALL_BIG => self.big.lock().map_or(UNKNOWN_SIZE, |b| {
                b.get(&(i as u32)).copied().unwrap_or(UNKNOWN_SIZE)
            }),
            small => u64::from(small),
        }
    }

    /// Record a size (from any thread).
    pub fn set_size(&self, i: usize, size: u64) {
        match u32::try_from(size) {
            Ok(small) if small < SMALL_BIG => self.sizes[i].store(small, Ordering::Relaxed),
            _ => {
                if let Ok(mut big) = self.big.lock() {
                    big.insert(i as u32, size);
                }
                self.sizes[i].store(SMALL_BIG, Ordering::Relaxed);
            }
        }
    }

    fn stat(&self, i: usize) -> Option<&Stat> {
        self.stats
            .binary_search_by_key(&i, |s| s.position as usize)
            .ok()
            .map(|k| &self.stats[k])
    }

    /// The blob's state: what stat found, or present if it was never stat'ed.
    pub fn state(&self, i: usize) -> BlobState {
        self.stat(i).map_or(BlobState::Present, |s| s.state)
    }

    /// Modification time in whole seconds since the epoch, if the blob was stat'ed.
    pub fn modified(&self, i: usize) -> Option<u32> {
        self.stat(i).map(|s| s.modified)
    }

    pub fn is_empty(&self) -> bool {
        self.sizes.is_empty()
    }

    fn raw(&self, i: usize) -> &[u8] {
        &self.digests[i * self.width..(i + 1) * self.width]
    }

    pub fn digest(&self, i: usize) -> Digest {
        let raw = self.raw(i);
        match self.algorithm {
            Algorithm::Sha256 => Digest::Sha256(raw.try_into().expect("width 32")),
            Algorithm::Sha512 => Digest::Sha512(Box::new(raw.try_into().expect("width 64"))),
        }
    }

    /// Position of a digest in this shard. Digests are hashes, spread evenly: the search
    /// starts where the digest would sit if they were evenly spaced, gallops outward until it
    /// has bracketed it, then bisects. On a large registry that is two or three probes instead
    /// of a dozen (each a cache miss); unevenly spread names cost at most twice a bisection.
    pub fn find(&self, bytes: &[u8]) -> Option<usize> {
        use std::cmp::Ordering::{Equal, Greater, Less};
        let n = self.len();
        if n == 0 || bytes.len() != self.width {
            return None;
        }
        let key = order_key(bytes);
        // Every record shares the shard's first byte, so bytes 1..9 order them and spread them.
        let cmp = |i: usize| {
            let raw = self.raw(i);
            order_key(raw).cmp(&key).then_with(|| raw.cmp(bytes))
        };
        let guess = ((u128::from(key) * n as u128) >> 64) as usize;
        let (mut lo, mut hi) = match cmp(guess) {
            Equal => return Some(guess),
            Less => {
                let (mut lo, mut hi, mut step) = (guess + 1, n, 1);
                while guess + step < n {
                    match cmp(guess + step) {
                        Equal => return Some(guess + step),
                        Less => lo = guess + step + 1,
                        Greater => {
                            hi = guess + step;
                            break;
                        }
                    }
                    step *= 2;
                }
                (lo, hi)
            }
            Greater => {
                let (mut lo, mut hi, mut step) = (0, guess, 1);
                while step <= guess {
                    match cmp(guess - step) {
                        Equal => return Some(guess - step),
                        Greater => hi = guess - step,
                        Less => {
                            lo = guess - step + 1;
                            break;
                        }
                    }
                    step *= 2;
                }
                (lo, hi)
            }
        };
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match cmp(mid) {
                Less => lo = mid + 1,
                Greater => hi = mid,
                Equal => return Some(mid),
            }
        }
        None
    }

    pub fn prefix_hex(&self) -> String {
        format!("{:02x}", self.prefix)
    }
}

/// Bytes 1..9 of a digest as a number: within a shard (which fixes byte 0) the same order as
/// the bytes, and a uniform position for a hash.
fn order_key(raw: &[u8]) -> u64 {
    let mut k = [0u8; 8];
    k.copy_from_slice(&raw[1..9]);
    u64::from_be_bytes(k)
}

impl BlobIndex {
    /// (shard, position) of a digest, if the blob store holds it.
    pub fn locate(&self, d: &Digest) -> Option<(usize, usize)> {
        let key = (d.algorithm(), d.bytes()[0]);
        let s = self
            .shards
            .binary_search_by(|s| (s.algorithm, s.prefix).cmp(&key))
            .ok()?;
        Some((s, self.shards[s].find(d.bytes())?))
    }

    pub fn len(&self) -> usize {
        self.shards.iter().map(BlobShard::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Whole seconds since the epoch; times before it count as the epoch (old).
pub fn epoch_seconds(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// A blob's modification time as stored in the index: whole seconds since the epoch in 32
/// bits (enough until 2106; later saturates, which only ever makes a blob count as young).
fn blob_seconds(t: SystemTime) -> u32 {
    u32::try_from(epoch_seconds(t)).unwrap_or(u32::MAX)
}

/// What a link file says, or why it could not be read.
pub type LinkTarget = std::result::Result<Digest, String>;

/// A link file found under a directory named by a digest (a revision or a layer link).
#[derive(Debug, Clone)]
pub struct Link {
    /// The digest in the path.
    pub digest: Digest,
    /// The digest inside the link file.
    pub target: LinkTarget,
    /// Modification time of the link file (of its directory if the file is missing).
    pub modified: SystemTime,
}

#[derive(Debug, Clone)]
pub struct Tag {
    pub name: String,
    pub current: LinkTarget,
    /// Modification time of `current/link` (when the tag was last pushed), if the file exists
    /// and times were asked for.
    pub pushed: Option<SystemTime>,
    /// When the link is missing: when the tag's directory was made (a push in progress makes
    /// the directory, then writes the link).
    pub made: Option<SystemTime>,
    /// Every digest the tag has pointed at (`tags/<tag>/index`); only listed when asked for.
    pub history: Vec<Digest>,
}

#[derive(Debug, Clone)]
pub struct Repository {
    pub name: String,
    pub tags: Vec<Tag>,
    pub revisions: Vec<Link>,
    pub layers: Vec<Link>,
    /// False when some directory of this repository could not be listed: its manifests and
    /// links are then never deleted, whatever else happens.
    pub complete: bool,
    /// Uploads under `_uploads/` (only read when asked for).
    pub uploads: Vec<Upload>,
}

/// An upload under `_uploads/<uuid>/`: in progress, or abandoned.
#[derive(Debug, Clone)]
pub struct Upload {
    pub uuid: String,
    /// The time in `startedat` (RFC 3339, written by the registry when the upload began), or
    /// why it could not be read.
    pub started: std::result::Result<SystemTime, String>,
    /// The newest modification time of anything in the upload's directory: a client still
    /// sending data touches `data` and `hashstates/`.
    pub touched: SystemTime,
    /// Bytes received so far (`data`).
    pub size: u64,
    /// Something in the directory could not be read: its age is unknown, so it is never
    /// removed (and its repository never counts as empty).
    pub unreadable: bool,
}

impl Upload {
    /// When the upload began: `startedat`, or where that is missing or unreadable, the newest
    /// modification time in it.
    pub fn age_from(&self) -> SystemTime {
        *self.started.as_ref().unwrap_or(&self.touched)
    }
}

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

/// Check that the storage root is a registry before anything else happens.
pub fn check_root(storage: &dyn Storage) -> Result<()> {
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

/// List the blob store: every `blobs/<alg>/<xx>` shard in parallel. Sizes, times and states
/// are filled in later by [`stat_blobs`].
pub fn discover_blobs(storage: &dyn Storage, counters: &Counters) -> (BlobIndex, Diagnostics) {
    let mut diags = Diagnostics::default();
    let mut shard_keys = Vec::new();
    let Some(algs) = list_optional(storage, layout::BLOBS, &mut diags) else {
        return (BlobIndex::default(), diags);
    };
    for alg_entry in algs {
        // The trash of a run on a registry whose blobs/ is a filesystem of its own.
        if alg_entry.name == layout::TRASH_NAME {
            continue;
        }
        let key = format!("{}/{}", layout::BLOBS, alg_entry.name);
        let alg = match Algorithm::from_name(&alg_entry.name) {
            Some(alg) if alg_entry.kind == Kind::Dir => alg,
            _ => {
                diags.warn(
                    storage.display(&key),
                    "not a blob algorithm directory; left alone",
                );
                continue;
            }
        };
        let Some(shards) = list_optional(storage, &key, &mut diags) else {
            continue;
        };
        for shard in shards {
            let prefix = (shard.kind == Kind::Dir && shard.name.len() == 2)
                .then(|| u8::from_str_radix(&shard.name, 16).ok())
                .flatten()
                .filter(|p| format!("{p:02x}") == shard.name);
            match prefix {
                Some(p) => shard_keys.push((alg, p)),
                None => diags.warn(
                    storage.display(&layout::shard_dir(alg, &shard.name)),
                    "not a blob shard directory; left alone",
                ),
            }
        }
    }

    let mut shards: Vec<(BlobShard, Diagnostics)> = shard_keys
        .into_par_iter()
        .map(|(alg, prefix)| {
            let result = discover_shard(storage, alg, prefix);
            counters.shards.fetch_add(1, Ordering::Relaxed);
            counters
                .blobs
                .fetch_add(result.0.len() as u64, Ordering::Relaxed);
            result
        })
        .collect();
    shards.sort_by_key(|(s, _)| (s.algorithm, s.prefix));
    let mut index = BlobIndex {
        shards: Vec::with_capacity(shards.len()),
    };
    for (s, d) in shards {
        index.shards.push(s);
        diags.merge(d);
    }
    (index, diags)
}

fn discover_shard(storage: &dyn Storage, alg: Algorithm, prefix: u8) -> (BlobShard, Diagnostics) {
    match alg {
        Algorithm::Sha256 => list_shard::<32>(storage, alg, prefix),
        Algorithm::Sha512 => list_shard::<64>(storage, alg, prefix),
    }
}

/// List one shard straight into fixed-width digests (`N` bytes each), sorted: no owned name
/// or `Digest` per entry, so listing a large registry's shards leaves no garbage behind.
fn list_shard<const N: usize>(
    storage: &dyn Storage,
    alg: Algorithm,
    prefix: u8,
) -> (BlobShard, Diagnostics) {
    let mut diags = Diagnostics::default();
    let prefix_hex = format!("{prefix:02x}");
    let shard_key = layout::shard_dir(alg, &prefix_hex);
    let mut found: Vec<[u8; N]> = Vec::new();
    let mut entry_count = 0;
    let listed = storage.visit_dir(&shard_key, &mut |name, kind| {
        entry_count += 1;
        let key = || format!("{shard_key}/{}", String::from_utf8_lossy(name));
        let digest = std::str::from_utf8(name)
            .ok()
            .filter(|n| n.starts_with(&prefix_hex))
            .and_then(|n| Digest::from_parts(alg, n).ok());
        let Some(digest) = digest else {
            diags.warn(
                storage.display(&key()),
                "not a blob directory name; left alone",
            );
            return;
        };
        if kind != Kind::Dir {
            diags.warn(
                storage.display(&key()),
                if kind == Kind::Symlink {
                    "blob directory is a symbolic link; not followed, left alone"
                } else {
                    "blob entry is not a directory; left alone"
                },
            );
            return;
        }
        if let Ok(bytes) = digest.bytes().try_into() {
            found.push(bytes);
        }
    });
    if let Err(e) = listed {
        diags.error(
            storage.display(&shard_key),
            format!("cannot list directory: {e}"),
        );
        found.clear();
        entry_count = 0;
    }
    found.sort_unstable();
    let mut shard = BlobShard {
        algorithm: alg,
        prefix,
        entries: entry_count,
        width: N,
        digests: Vec::with_capacity(found.len() * N),
        sizes: Vec::with_capacity(found.len()),
        big: Mutex::new(HashMap::new()),
        stats: Vec::new(),
    };
    for d in &found {
        shard.digests.extend_from_slice(d);
        shard.sizes.push(AtomicU32::new(SMALL_UNKNOWN));
    }
    (shard, diags)
}

/// Stat the `data` of every blob for which `needs(shard, position)` holds (after the mark:
/// the blobs that may be deleted) or whose size is still unknown (live blobs no descriptor
/// sized), filling
/// in size, modification time and state. Live blobs with declared sizes are never touched:
/// on a cold cache, not stat'ing them saves two random reads per blob.
pub fn stat_blobs(
    storage: &dyn Storage,
    index: &mut BlobIndex,
    needs: impl Fn(usize, usize) -> bool + Sync,
) -> Diagnostics {
    let per_shard: Vec<Diagnostics> = index
        .shards
        .par_iter_mut()
        .enumerate()
        .map(|(s, shard)| {
            let mut diags = Diagnostics::default();
            let mut fresh = Vec::new();
            for i in 0..shard.len() {
                if needs(s, i) || shard.size(i) == UNKNOWN_SIZE {
                    fresh.push(stat_blob(storage, shard, i, &mut diags));
                }
            }
            // Keep earlier findings for positions not stat'ed again; both lists are sorted.
            let old = std::mem::take(&mut shard.stats);
            let again: std::collections::HashSet<u32> = fresh.iter().map(|s| s.position).collect();
            shard.stats = old
                .into_iter()
                .filter(|s| !again.contains(&s.position))
                .collect();
            shard.stats.extend(fresh);
            shard.stats.sort_unstable_by_key(|s| s.position);
            diags
        })
        .collect();
    let mut diags = Diagnostics::default();
    for d in per_shard {
        diags.merge(d);
    }
    diags
}

fn stat_blob(
    storage: &dyn Storage,
    shard: &mut BlobShard,
    i: usize,
    diags: &mut Diagnostics,
) -> Stat {
    let digest = shard.digest(i);
    let data_key = layout::blob_data(&digest);
    let (size, modified, state) = match storage.stat(&data_key) {
        Ok(meta) if meta.kind == Kind::File => {
            (meta.len, blob_seconds(meta.modified), BlobState::Present)
        }
        Ok(meta) => {
            diags.warn(
                storage.display(&data_key),
                "blob data is not a regular file; left alone",
            );
            (0, blob_seconds(meta.modified), BlobState::Strange)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let dir = layout::blob_dir(&digest);
            match storage.stat(&dir) {
                Ok(meta) => (0, blob_seconds(meta.modified), BlobState::NoData),
                // Vanished between listing and stat: someone else removed it.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => (0, 0, BlobState::Gone),
                Err(e) => {
                    diags.error(storage.display(&dir), format!("cannot stat: {e}"));
                    (0, u32::MAX, BlobState::Strange)
                }
            }
        }
        Err(e) => {
            diags.error(storage.display(&data_key), format!("cannot stat: {e}"));
            (0, u32::MAX, BlobState::Strange)
        }
    };
    shard.set_size(i, size);
    Stat {
        position: i as u32,
        modified,
        state,
    }
}

/// Every repository name in the registry, sorted.
pub fn repository_names(storage: &dyn Storage) -> (Vec<String>, Diagnostics) {
    let (mut names, diags) = find_repositories(storage, "");
    names.sort();
    (names, diags)
}

/// Find repository names below `repositories/<prefix>`, descending in parallel.
fn find_repositories(storage: &dyn Storage, prefix: &str) -> (Vec<String>, Diagnostics) {
    let mut diags = Diagnostics::default();
    let key = if prefix.is_empty() {
        layout::REPOSITORIES.to_string()
    } else {
        layout::repository_dir(prefix)
    };
    let entries = if prefix.is_empty() {
        list_optional(storage, &key, &mut diags).unwrap_or_default()
    } else {
        match storage.list_dir(&key) {
            Ok(entries) => entries,
            Err(e) => {
                diags.error(storage.display(&key), format!("cannot list directory: {e}"));
                return (Vec::new(), diags);
            }
        }
    };
    let mut names = Vec::new();
    let mut children = Vec::new();
    let mut is_repository = false;
    for entry in entries {
        let child_key = format!("{key}/{}", entry.name);
        if layout::REPOSITORY_MARKERS.contains(&entry.name.as_str()) && !prefix.is_empty() {
            is_repository = true;
            continue;
        }
        if layout::is_reserved_component(&entry.name) {
            continue;
        }
        match entry.kind {
            // The registry's filesystem driver follows links, so a linked directory may hold
            // live images that we will not read: refuse rather than guess.
            Kind::Symlink => diags.error(
                storage.display(&child_key),
                "symbolic link inside repositories/ (not followed); its images could be live",
            ),
            Kind::Dir if !entry.utf8 => diags.error(
                storage.display(&child_key),
                "repository path component is not valid UTF-8",
            ),
            Kind::Dir => children.push(if prefix.is_empty() {
                entry.name
            } else {
                format!("{prefix}/{}", entry.name)
            }),
            _ => {}
        }
    }
    if is_repository {
        names.push(prefix.to_string());
    }
    let nested: Vec<(Vec<String>, Diagnostics)> = children
        .into_par_iter()
        .map(|child| find_repositories(storage, &child))
        .collect();
    for (n, d) in nested {
        names.extend(n);
        diags.merge(d);
    }
    (names, diags)
}

struct RepoWalker<'a> {
    storage: &'a dyn Storage,
    link_times: bool,
    name: &'a str,
    diags: Diagnostics,
    complete: bool,
    buf: Vec<u8>,
}

impl RepoWalker<'_> {
    /// List a directory of this repository; absence is an empty listing, any other failure
    /// makes the repository incomplete.
    fn list(&mut self, key: &str) -> Vec<Entry> {
        match self.storage.list_dir(key) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => {
                // A file where `_layers` or `revisions` should be fails every per-algorithm
                // listing below it: name the file, once (identical problems are merged).
                let parent = key.rsplit_once('/').map(|(p, _)| p);
                match parent.filter(|p| self.storage.stat(p).is_ok_and(|m| m.kind != Kind::Dir)) {
                    Some(p) => self
                        .diags
                        .error(self.storage.display(p), "is not a directory"),
                    None => self.diags.error(
                        self.storage.display(key),
                        format!("cannot list directory: {e}"),
                    ),
                }
                self.complete = false;
                Vec::new()
            }
        }
    }

    /// Read a link file: its target, and the file's modification time. `None` when the file
    /// does not exist.
    fn read_link(&mut self, key: &str) -> Option<(LinkTarget, SystemTime)> {
        let read = if self.link_times {
            self.storage
                .read_into(key, MAX_LINK_BYTES, &mut self.buf)
                .map(|meta| meta.modified)
        } else {
            // Without an age check, every link counts as old.
            self.storage
                .read_content(key, MAX_LINK_BYTES, &mut self.buf)
                .map(|()| SystemTime::UNIX_EPOCH)
        };
        match read {
            Ok(modified) => Some((
                Digest::parse_link(&self.buf).map_err(|e| format!("invalid link file: {e}")),
                modified,
            )),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                let modified = self
                    .storage
                    .stat(key.rsplit_once('/').map_or(key, |(dir, _)| dir))
                    .map(|m| m.modified)
                    .unwrap_or(SystemTime::UNIX_EPOCH);
                Some((Err(format!("cannot read link file: {e}")), modified))
            }
        }
    }

    /// The uploads under `_uploads/`. An upload is small (a handful of files), so each is
    /// read whole: `startedat`, and the times of everything in it.
    fn uploads(&mut self) -> Vec<Upload> {
        let dir = layout::uploads_dir(self.name);
        let mut uploads = Vec::new();
        for entry in self.list(&dir) {
            let key = format!("{dir}/{}", entry.name);
            if entry.kind != Kind::Dir || !entry.utf8 {
                self.diags.warn(
                    self.storage.display(&key),
                    "not an upload directory; left alone",
                );
                continue;
            }
            uploads.push(self.upload(entry.name, &key));
        }
        uploads.sort_by(|a, b| a.uuid.cmp(&b.uuid));
        uploads
    }

    fn upload(&mut self, uuid: String, key: &str) -> Upload {
        let (touched, size, unreadable) = upload_times(self.storage, key);
        let started_key = format!("{key}/{}", layout::STARTEDAT_FILE);
        let started = match self
            .storage
            .read_into(&started_key, MAX_LINK_BYTES, &mut self.buf)
        {
            Ok(_) => std::str::from_utf8(&self.buf)
                .map_err(|e| e.to_string())
                .and_then(|t| humantime::parse_rfc3339_weak(t.trim()).map_err(|e| e.to_string())),
            Err(e) => Err(e.to_string()),
        };
        if let Err(e) = &started {
            self.diags.warn(
                self.storage.display(&started_key),
                format!("upload start time unreadable ({e}); its age is the newest modification time in it"),
            );
        }
        if unreadable {
            self.diags.warn(
                self.storage.display(key),
                "upload could not be read whole; it is kept",
            );
        }
        Upload {
            uuid,
            started,
            touched,
            size,
            unreadable,
        }
    }

    /// Entries of `<dir>/<alg>/` for every algorithm, as digests.
    fn digest_dirs(&mut self, alg_dir: impl Fn(Algorithm) -> String) -> Vec<(Digest, String)> {
        let mut out = Vec::new();
        for alg in Algorithm::ALL {
            let dir = alg_dir(alg);
            if dir.is_empty() {
                continue;
            }
            for entry in self.list(&dir) {
                let key = format!("{dir}/{}", entry.name);
                match Digest::from_parts(alg, &entry.name) {
                    Ok(d) if entry.kind == Kind::Dir => out.push((d, key)),
                    Ok(_) if entry.kind == Kind::Symlink => self.diags.error(
                        self.storage.display(&key),
                        "symbolic link inside a repository (not followed)",
                    ),
                    _ => self.diags.warn(
                        self.storage.display(&key),
                        "not a digest directory; left alone",
                    ),
                }
            }
        }
        out
    }

    fn links(&mut self, alg_dir: impl Fn(Algorithm) -> String) -> Vec<Link> {
        self.digest_dirs(alg_dir)
            .into_iter()
            .filter_map(|(digest, dir)| {
                // The registry deletes a manifest or a blob link by removing the `link` file
                // and leaving its directory: such a directory is not a link (its reference
                // enumerator also counts only `link` files).
                let (target, modified) = self.read_link(&format!("{dir}/{}", layout::LINK_FILE))?;
                Some(Link {
                    digest,
                    target,
                    modified,
                })
            })
            .collect()
    }

    /// Layer links. A sha256 link is taken to point at its own digest without being read: the
    /// registry writes nothing else there (sha256 is the canonical digest of content), and a
    /// link that pointed elsewhere could not serve a working pull anyway, because clients
    /// verify the digest of what they receive. Alias links (sha512) are read: their content is
    /// the only way to the blob. This saves three system calls for nearly every blob link.
    fn layer_links(&mut self) -> Vec<Link> {
        let name = self.name;
        let mut links = self.links(|alg| match alg {
            Algorithm::Sha256 => String::new(),
            _ => layout::layers_alg_dir(name, alg),
        });
        let dirs = self.digest_dirs(|alg| match alg {
            Algorithm::Sha256 => layout::layers_alg_dir(name, alg),
            _ => String::new(),
        });
        for (digest, dir) in dirs {
            let modified = if self.link_times {
                let link = format!("{dir}/{}", layout::LINK_FILE);
                match self
                    .storage
                    .stat(&link)
                    .or_else(|_| self.storage.stat(&dir))
                {
                    Ok(meta) => meta.modified,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => {
                        self.diags
                            .error(self.storage.display(&dir), format!("cannot stat: {e}"));
                        self.complete = false;
                        continue;
                    }
                }
            } else {
                SystemTime::UNIX_EPOCH
            };
            links.push(Link {
                target: Ok(digest.clone()),
                digest,
                modified,
            });
        }
        links
    }

    fn tags(&mut self, history: bool) -> Vec<Tag> {
        let name = self.name;
        let dir = layout::tags_dir(name);
        let mut tags = Vec::new();
        for entry in self.list(&dir) {
            let key = format!("{dir}/{}", entry.name);
            match entry.kind {
                Kind::Dir if entry.utf8 => {}
                // A plain file cannot hold a `current` link: it is no tag and no root.
                Kind::File | Kind::Other => {
                    self.diags.warn(
                        self.storage.display(&key),
                        "not a tag directory; left alone",
                    );
                    continue;
                }
                // A linked or unnameable tag may point anywhere: refuse rather than guess.
                _ => {
                    self.diags.error(
                        self.storage.display(&key),
                        "tag is a symbolic link or has a name that is not UTF-8 (not followed)",
                    );
                    self.complete = false;
                    continue;
                }
            }
            let current_key = layout::tag_current_link(name, &entry.name);
            let read = self.read_link(&current_key);
            let pushed = match &read {
                Some((_, modified)) if self.link_times => Some(*modified),
                _ => None,
            };
            // No link: when the tag's directory was made tells a push in progress from damage.
            let made = if read.is_none() {
                let current_dir = current_key.rsplit_once('/').map_or("", |(d, _)| d);
                self.storage
                    .stat(current_dir)
                    .or_else(|_| self.storage.stat(&key))
                    .ok()
                    .map(|m| m.modified)
            } else {
                None
            };
            let current = read.map_or_else(
                || Err("tag has no current link".to_string()),
                |(target, _)| target,
            );
            let history = if history {
                self.digest_dirs(|alg| layout::tag_index_alg_dir(name, &entry.name, alg))
                    .into_iter()
                    .map(|(d, _)| d)
                    .collect()
            } else {
                Vec::new()
            };
            tags.push(Tag {
                name: entry.name,
                current,
                pushed,
                made,
                history,
            });
        }
        tags.sort_by(|a, b| a.name.cmp(&b.name));
        tags
    }
}

/// The newest modification time of anything in an upload's directory (the directory itself,
/// its files, `hashstates/<alg>/<offset>`), the size of its `data`, and whether anything in it
/// could not be read. Also the last look before an upload is removed: a client that touched it
/// since the run began is still sending.
pub fn upload_times(storage: &dyn Storage, key: &str) -> (SystemTime, u64, bool) {
    let mut newest = SystemTime::UNIX_EPOCH;
    let mut size = 0;
    let mut unreadable = false;
    let mut pending = vec![key.to_string()];
    while let Some(dir) = pending.pop() {
        match storage.stat(&dir) {
            Ok(meta) => newest = newest.max(meta.modified),
            Err(_) => unreadable = true,
        }
        let entries = match storage.list_dir(&dir) {
            Ok(entries) => entries,
            Err(_) => {
                unreadable = true;
                continue;
            }
        };
        for e in entries {
            let child = format!("{dir}/{}", e.name);
            match e.kind {
                Kind::Dir => pending.push(child),
                _ => match storage.stat(&child) {
                    Ok(meta) => {
                        newest = newest.max(meta.modified);
                        if dir == key && e.name == layout::DATA_FILE {
                            size = meta.len;
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(_) => unreadable = true,
                },
            }
        }
    }
    (newest, size, unreadable)
}

/// The tags of one repository, with the modification time of each `current/link` (the time of
/// the last push), sorted by name. The flag is false when the tags directory could not be
/// listed completely.
pub fn discover_tags(storage: &dyn Storage, name: &str) -> (Vec<Tag>, bool, Diagnostics) {
    let mut w = RepoWalker {
        storage,
        link_times: true,
        name,
        diags: Diagnostics::default(),
        complete: true,
        buf: Vec::with_capacity(256),
    };
    let tags = w.tags(false);
    (tags, w.complete, w.diags)
}

pub fn discover_repository(
    storage: &dyn Storage,
    name: String,
    options: Options,
) -> (Repository, Diagnostics) {
    let mut w = RepoWalker {
        storage,
        link_times: options.link_times,
        name: &name,
        diags: Diagnostics::default(),
        complete: true,
        buf: Vec::with_capacity(256),
    };
    let tags = w.tags(options.tag_history);
    let revisions = w.links(|alg| layout::revisions_alg_dir(&name, alg));
    let layers = w.layer_links();
    let uploads = if options.uploads {
        w.uploads()
    } else {
        Vec::new()
    };
    let complete = w.complete;
    let diags = w.diags;
    (
        Repository {
            name,
            tags,
            revisions,
            layers,
            complete,
            uploads,
        },
        diags,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shard(mut digests: Vec<[u8; 32]>) -> BlobShard {
        digests.sort_unstable();
        digests.dedup();
        BlobShard {
            algorithm: Algorithm::Sha256,
            prefix: 0xab,
            entries: digests.len(),
            width: 32,
            sizes: digests
                .iter()
                .map(|_| AtomicU32::new(SMALL_UNKNOWN))
                .collect(),
            digests: digests.concat(),
            big: Mutex::new(HashMap::new()),
            stats: Vec::new(),
        }
    }

    /// A small deterministic generator (xorshift): no extra dependency for a unit test.
    fn next(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    fn digest_from(state: &mut u64, spread: impl Fn(u64) -> u64) -> [u8; 32] {
        let mut d = [0u8; 32];
        d[0] = 0xab;
        d[1..9].copy_from_slice(&spread(next(state)).to_be_bytes());
        for chunk in d[9..].chunks_mut(8) {
            let v = next(state).to_be_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
        d
    }

    #[test]
    fn find_agrees_with_a_linear_scan_however_the_digests_are_spread() {
        let spreads: Vec<Box<dyn Fn(u64) -> u64>> = vec![
            Box::new(|v| v),                         // hashes: even
            Box::new(|v| v >> 40),                   // all bunched at the start
            Box::new(|v| u64::MAX - (v >> 40)),      // all bunched at the end
            Box::new(|v| v & 0xff00_0000_0000_0000), // many equal order keys
        ];
        let mut state = 0x9e37_79b9_7f4a_7c15;
        for spread in &spreads {
            for n in [0, 1, 2, 3, 17, 1000] {
                let present: Vec<[u8; 32]> =
                    (0..n).map(|_| digest_from(&mut state, spread)).collect();
                let s = shard(present.clone());
                for d in &present {
                    let i = s.find(d).expect("present digest found");
                    assert_eq!(s.raw(i), d);
                }
                for _ in 0..200 {
                    let absent = digest_from(&mut state, spread);
                    let linear = (0..s.len()).find(|&i| s.raw(i) == absent);
                    assert_eq!(s.find(&absent), linear);
                }
                // A key from another shard, or of the wrong width, is never found.
                if let Some(d) = present.first() {
                    let mut other = *d;
                    other[0] = 0xac;
                    assert_eq!(s.find(&other), None);
                    assert_eq!(s.find(&d[..31]), None);
                }
            }
        }
    }
}

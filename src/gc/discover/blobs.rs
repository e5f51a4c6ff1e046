//! The blob store, listed shard by shard into a compact [`BlobIndex`]; sizes and times
//! filled in after the mark, for the blobs whose answer needs them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::SystemTime;

use rayon::prelude::*;

use crate::error::Diagnostics;
use crate::registry::digest::{Algorithm, Digest};
use crate::registry::layout;
use crate::storage::{epoch_seconds, Kind, Storage};

use super::{list_optional, Counters};

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

/// A blob's modification time as stored in the index: whole seconds since the epoch in 32
/// bits (enough until 2106; later saturates, which only ever makes a blob count as young).
fn blob_seconds(t: SystemTime) -> u32 {
    u32::try_from(epoch_seconds(t)).unwrap_or(u32::MAX)
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

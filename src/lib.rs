//! regsweep: an offline mark-and-sweep garbage collector for container registries in the
//! CNCF distribution layout, on a filesystem or in object storage.
//!
//! The data flows one way, one module per phase:
//! [`discover`] -> [`parse`] -> [`mark`] -> [`plan`] -> [`sweep`] (or not, in a dry run) ->
//! [`report`]; [`collect`] drives them for `gc`, [`apply`] for `delete` and `prune`.
//! [`layout`] is the only module that knows the registry's paths and [`storage`] the only one
//! that does I/O (one backend per file); [`sweep`] is the only one that removes anything.

pub mod apply;
pub mod check;
pub mod collect;
pub mod delete;
pub mod digest;
pub mod discover;
pub mod edit;
pub mod error;
pub mod layout;
pub mod lock;
pub mod manifest;
pub mod manifest_cache;
pub mod mark;
pub mod metrics;
pub mod parse;
pub mod plan;
pub mod progress;
pub mod prune;
pub mod recheck;
pub mod registry_cache;
pub mod report;
pub mod select;
pub mod storage;
pub mod sweep;
pub mod synth;
pub mod target;
pub mod unreferenced;
pub mod usage;

use std::time::Duration;

pub use apply::{edit, EditOptions, Selector};
pub use collect::{
    collect, cutoff, gc, read_and_mark_all, GcOptions, RepoLiveness, StateAt, Unreferenced,
    DEFAULT_UPLOADS_OLDER_THAN,
};

/// Worker threads when `--jobs` is not given: 32 per core, between 16 and 128. Nearly all
/// the work is waiting for the filesystem (a directory listing, a stat, a 71-byte read), so
/// on a cold cache the disk, not the CPU, is the limit, and it answers faster the more
/// requests it has in flight: on the 2-core machine of BENCHMARKS.md a cold run takes 11.7 s
/// with 2 threads and 3.8 s with 64. On a warm cache the extra threads cost almost nothing.
pub fn default_jobs() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    (cores * 32).clamp(16, 128)
}

/// Requests in flight on object storage when `--jobs` is not given: each waits tens of
/// milliseconds on the network, and S3 serves thousands a second per prefix.
pub const DEFAULT_S3_JOBS: usize = 64;

/// The most worker threads `--jobs` accepts. Past a few hundred the disk answers no faster,
/// and each thread costs a stack and start-up time: 15,000 of them took minutes to start.
pub const MAX_JOBS: usize = 1024;

/// Parse a duration as administrators write it (`30m`, `1h`, `7d`); `0` means none.
pub fn parse_duration(s: &str) -> std::result::Result<Duration, String> {
    if s.trim() == "0" {
        return Ok(Duration::ZERO);
    }
    humantime::parse_duration(s).map_err(|e| format!("{e} (examples: 30m, 1h, 7d, 0)"))
}

/// Parse an age that may be switched off: `off` (or `never`) is `None`, anything else as
/// [`parse_duration`].
pub fn parse_age_or_off(s: &str) -> std::result::Result<Option<Duration>, String> {
    match s.trim() {
        "off" | "never" => Ok(None),
        other => parse_duration(other).map(Some),
    }
}

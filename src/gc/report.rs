//! The collector's report: what a run found and did, as the driver assembles it. Plain data
//! with serde, so it is the JSON document; `crate::output::report` renders it for people.

use serde::{Deserialize, Serialize};

use crate::cache::registry::CacheReport;
use crate::error::Problem;
use crate::gc::plan::{Census, Deleted};

/// Bumped on any incompatible change of the JSON report.
pub const REPORT_VERSION: u32 = 1;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    #[serde(flatten)]
    pub census: Census,
    pub deleted_blobs: usize,
    pub deleted_bytes: u64,
    pub deleted_manifests: usize,
    pub deleted_tag_index_entries: usize,
    pub deleted_layer_links: usize,
    pub deleted_shards: usize,
    /// Abandoned uploads removed, and the bytes they held.
    #[serde(default)]
    pub deleted_uploads: usize,
    #[serde(default)]
    pub deleted_upload_bytes: u64,
    /// Repositories removed because nothing was left in them.
    #[serde(default)]
    pub deleted_repositories: usize,
    pub failed_deletions: usize,
    /// Dropped from the plan (or put back from the trash) because a look after the mark found
    /// them live: pushes made during the run. Always 0 in a dry run.
    #[serde(default)]
    pub rescued_manifests: usize,
    #[serde(default)]
    pub rescued_layer_links: usize,
    #[serde(default)]
    pub rescued_blobs: usize,
    /// Blobs an interrupted earlier run had left in the trash, put back before this run.
    #[serde(default)]
    pub restored_from_trash: usize,
    pub elapsed_seconds: f64,
}

/// Where a run's time went, phase by phase, in seconds (`-v` prints them). A phase a run did
/// not reach (a dry run sweeps nothing) is 0.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Timings {
    /// Putting back what an interrupted run left in the trash.
    pub recover: f64,
    /// Listing the blob store and the repositories, reading and marking every repository.
    pub mark: f64,
    /// Sizing and dating the candidates, and assembling the plan.
    pub plan: f64,
    /// The look after the mark: every repository read again (real runs).
    pub second_look: f64,
    /// Removing tag-history entries, manifest revisions and layer links.
    pub references: f64,
    /// Moving dead blobs out of the registry's reach.
    pub trash: f64,
    /// The look after the move, on a view in which trashed blobs are still readable.
    pub last_look: f64,
    /// Removing the trashed blobs (and putting back what the last look found live).
    pub delete: f64,
    /// Empty shard directories, abandoned uploads, empty repositories, the trash itself.
    pub tidy: f64,
    /// Reconciling the registry's cache.
    pub cache: f64,
}

/// Seconds since `start`, and restart the clock: for timing phases one after another.
pub fn lap(start: &mut std::time::Instant) -> f64 {
    let now = std::time::Instant::now();
    let seconds = now.duration_since(*start).as_secs_f64();
    *start = now;
    seconds
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GcReport {
    pub version: u32,
    pub dry_run: bool,
    pub root: String,
    /// Why this root: named on the command line, or read from the registry's config (which
    /// key, or which environment override). Empty when the library is called directly.
    #[serde(default)]
    pub root_source: String,
    pub delete_untagged: bool,
    pub min_age_seconds: u64,
    /// True when the run refused to delete anything because the live set may be incomplete.
    pub refused: bool,
    pub summary: Summary,
    pub deleted: Deleted,
    pub warnings: Vec<Problem>,
    pub errors: Vec<Problem>,
    /// Requests sent, by kind (object storage only; absent on a filesystem).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests: Option<crate::storage::Requests>,
    /// `--unreferenced-for`, when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unreferenced_for_seconds: Option<u64>,
    /// What `--unreferenced-for` kept: unreferenced, but not yet for long enough.
    #[serde(default)]
    pub waiting: Vec<crate::gc::unreferenced::Waiting>,
    /// The registry's blob-descriptor cache after the run (set by the command line tool).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<CacheReport>,
    /// Where the time went, by phase.
    #[serde(default)]
    pub timings: Timings,
}

impl GcReport {
    /// The process exit code this report calls for (see the README).
    pub fn exit_code(&self) -> i32 {
        if self.refused || !self.errors.is_empty() || self.summary.failed_deletions > 0 {
            1
        } else {
            0
        }
    }
}

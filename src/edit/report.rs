//! The report of `delete` and `prune`, as the edit driver assembles it; rendered by
//! `crate::output::report`.

use serde::{Deserialize, Serialize};

use crate::cache::registry::CacheReport;
use crate::edit::edits::RepoEdits;
use crate::error::Problem;
use crate::gc::report::GcReport;

/// Totals of an edit run (`delete` or `prune`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EditSummary {
    pub repositories_deleted: usize,
    pub tags_deleted: usize,
    pub manifests_deleted: usize,
    /// Tags a policy considered and kept (prune only).
    pub tags_kept: usize,
    pub failed_deletions: usize,
    pub elapsed_seconds: f64,
}

/// The report of `delete` and `prune`: what was (or, in a dry run, would be) removed per
/// repository and why, and the collector's report when `--gc` ran it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EditReport {
    pub version: u32,
    /// `delete` or `prune`.
    pub command: String,
    pub dry_run: bool,
    pub root: String,
    /// Why this root: named on the command line, or read from the registry's config (which
    /// key, or which environment override). Empty when the library is called directly.
    #[serde(default)]
    pub root_source: String,
    /// True when problems (listed in `errors`) stopped the run before it changed anything.
    pub refused: bool,
    pub summary: EditSummary,
    /// Only repositories with something removed.
    pub repositories: Vec<RepoEdits>,
    pub warnings: Vec<Problem>,
    pub errors: Vec<Problem>,
    /// The collector's report (`--gc`); in a dry run, what it would do after these edits.
    pub gc: Option<GcReport>,
    /// The registry's blob-descriptor cache after the edits and the collector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<CacheReport>,
}

impl EditReport {
    pub fn exit_code(&self) -> i32 {
        let own = if self.refused || !self.errors.is_empty() || self.summary.failed_deletions > 0 {
            1
        } else {
            0
        };
        own.max(self.gc.as_ref().map_or(0, GcReport::exit_code))
    }
}

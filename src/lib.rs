//! regsweep: an offline mark-and-sweep garbage collector for filesystem-backed container
//! registries (the CNCF distribution layout).
//!
//! The data flows one way, one module per phase:
//! [`discover`] -> [`parse`] -> [`mark`] -> [`plan`] -> [`sweep`] (or not, in a dry run) ->
//! [`report`]. [`layout`] is the only module that knows on-disk paths and [`storage`] the only
//! one that does I/O; [`sweep`] is the only one that removes anything.

pub mod digest;
pub mod discover;
pub mod error;
pub mod layout;
pub mod lock;
pub mod manifest;
pub mod mark;
pub mod parse;
pub mod plan;
pub mod progress;
pub mod report;
pub mod storage;
pub mod sweep;
pub mod synth;
pub mod target;

use std::sync::atomic::{AtomicU64, Ordering};

use rayon::prelude::*;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::error::{Diagnostics, Result};
use crate::progress::Ticker;
use crate::report::{Deleted, GcReport, Summary, REPORT_VERSION};
use crate::storage::{FsStorage, Storage};

#[derive(Debug, Clone)]
pub struct GcOptions {
    pub dry_run: bool,
    pub delete_untagged: bool,
    /// Anything modified more recently than this is kept. Zero disables the check.
    pub min_age: Duration,
    /// Sweep even when the live set may be incomplete. Dangerous; for administrators who have
    /// read every error and decided the named files do not matter.
    pub ignore_errors: bool,
    /// Wait for another run's lock instead of refusing.
    pub wait_for_lock: bool,
    /// Draw progress on stderr.
    pub progress: bool,
}

/// The instant before which something must have been modified to be deleted.
pub fn cutoff(now: SystemTime, min_age: Duration) -> SystemTime {
    if min_age.is_zero() {
        // Disabled: even a file stamped in the future (clock skew) is old enough.
        now + Duration::from_secs(100 * 365 * 24 * 3600)
    } else {
        now.checked_sub(min_age).unwrap_or(SystemTime::UNIX_EPOCH)
    }
}

/// Collect garbage in the registry stored at `storage`'s root.
pub fn gc(storage: &FsStorage, options: &GcOptions) -> Result<GcReport> {
    let started = Instant::now();
    discover::check_root(storage)?;
    // Taken before anything is read, so that the plan is built on a view no other
    // regsweep run is changing.
    let _lock = if options.dry_run {
        None
    } else {
        Some(lock::Lock::acquire(storage.root(), options.wait_for_lock)?)
    };
    let cutoff = cutoff(SystemTime::now(), options.min_age);

    let counters = Arc::new(discover::Counters::default());
    let ticker = {
        let c = counters.clone();
        Ticker::spinner(options.progress, move |bar| {
            bar.set_message(format!(
                "{} blobs in {} shards; {} repositories marked, {} manifests read",
                c.blobs.load(Ordering::Relaxed),
                c.shards.load(Ordering::Relaxed),
                c.repositories.load(Ordering::Relaxed),
                c.manifests.load(Ordering::Relaxed),
            ))
        })
    };
    let mut diagnostics = Diagnostics::default();

    // The blob store first: the live set is a bitset over its listing.
    let (index, diags) = discover::discover_blobs(storage, &counters);
    diagnostics.merge(diags);
    let live = mark::LiveSet::new(&index);
    let (names, diags) = discover::repository_names(storage);
    diagnostics.merge(diags);

    // Then each repository on its own: discover, parse, mark, plan, and keep only the plan, so
    // memory is bounded by the blob index and one repository per worker.
    let discover_options = discover::Options {
        tag_history: options.delete_untagged,
        link_times: !options.min_age.is_zero(),
    };
    let mark_options = mark::Options {
        delete_untagged: options.delete_untagged,
        cutoff,
    };
    let plan_options = plan::Options {
        delete_untagged: options.delete_untagged,
        cutoff,
        ignore_errors: options.ignore_errors,
    };
    let display = |key: &str| storage.display(key);
    let per_repo: Vec<(plan::RepoPlan, Diagnostics)> = names
        .into_par_iter()
        .map_init(
            || Vec::with_capacity(16 * 1024),
            |buf, name| {
                let (repo, mut diags) =
                    discover::discover_repository(storage, name, discover_options);
                let manifests = parse::load_repository(storage, &repo, buf, &counters.manifests);
                let (rmark, blobs, mark_diags) =
                    mark::mark_repository(&repo, &manifests, mark_options, &display);
                for d in &blobs {
                    live.keep(&index, d);
                }
                diags.merge(mark_diags);
                counters.repositories.fetch_add(1, Ordering::Relaxed);
                (plan::plan_repository(&repo, &rmark, plan_options), diags)
            },
        )
        .collect();
    drop(ticker);
    let mut repo_plans = Vec::with_capacity(per_repo.len());
    for (p, d) in per_repo {
        repo_plans.push(p);
        diagnostics.merge(d);
    }
    diagnostics.sort();

    let plan = plan::assemble(
        repo_plans,
        &index,
        &live,
        !diagnostics.errors.is_empty(),
        plan_options,
    );
    drop(index);

    let (deleted, failures) = if options.dry_run {
        (
            Deleted {
                blobs: plan.blobs.clone(),
                manifests: plan.manifests.clone(),
                layer_links: plan.layer_links.clone(),
                shards: plan.shards.clone(),
            },
            Vec::new(),
        )
    } else {
        let done = Arc::new(AtomicU64::new(0));
        let total =
            (plan.manifests.len() + plan.layer_links.len() + plan.blobs.len() + plan.shards.len())
                as u64;
        let d = done.clone();
        let _t = Ticker::bar(options.progress && total > 0, total, move |bar| {
            bar.set_message("sweeping");
            bar.set_position(d.load(Ordering::Relaxed));
        });
        let outcome = sweep::sweep(storage, &plan, &done);
        (
            Deleted {
                blobs: outcome.blobs,
                manifests: outcome.manifests,
                layer_links: outcome.layer_links,
                shards: outcome.shards,
            },
            outcome.failures,
        )
    };

    let summary = Summary {
        census: plan.census.clone(),
        deleted_blobs: deleted.blobs.len(),
        deleted_bytes: deleted.blobs.iter().map(|b| b.size).sum(),
        deleted_manifests: deleted.manifests.len(),
        deleted_tag_index_entries: deleted.manifests.iter().map(|m| m.tags.len()).sum(),
        deleted_layer_links: deleted.layer_links.len(),
        deleted_shards: deleted.shards.len(),
        failed_deletions: failures.len(),
        elapsed_seconds: started.elapsed().as_secs_f64(),
    };
    let mut errors = diagnostics.errors;
    errors.extend(failures);
    Ok(GcReport {
        version: REPORT_VERSION,
        dry_run: options.dry_run,
        root: storage.root().display().to_string(),
        delete_untagged: options.delete_untagged,
        min_age_seconds: options.min_age.as_secs(),
        refused: plan.refused,
        summary,
        deleted,
        warnings: diagnostics.warnings,
        errors,
    })
}

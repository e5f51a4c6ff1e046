//! regsweep: an offline mark-and-sweep garbage collector for filesystem-backed container
//! registries (the CNCF distribution layout).
//!
//! The data flows one way, one module per phase:
//! [`discover`] -> [`parse`] -> [`mark`] -> [`plan`] -> [`sweep`] (or not, in a dry run) ->
//! [`report`]. [`layout`] is the only module that knows on-disk paths and [`storage`] the only
//! one that does I/O; [`sweep`] is the only one that removes anything.

pub mod check;
pub mod delete;
pub mod digest;
pub mod discover;
pub mod edit;
pub mod error;
pub mod layout;
pub mod lock;
pub mod manifest;
pub mod mark;
pub mod parse;
pub mod plan;
pub mod progress;
pub mod prune;
pub mod recheck;
pub mod report;
pub mod select;
pub mod storage;
pub mod sweep;
pub mod synth;
pub mod target;
pub mod usage;

use std::sync::atomic::{AtomicU64, Ordering};

use rayon::prelude::*;
use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::digest::Digest;
use crate::error::{Diagnostics, Error, Result};
use crate::progress::Ticker;
use crate::report::{Deleted, EditReport, EditSummary, GcReport, Summary, REPORT_VERSION};
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
    /// Remove uploads that began longer ago than this; `None` leaves uploads alone.
    pub uploads_older_than: Option<Duration>,
    /// Remove repositories the run leaves with nothing in them.
    pub empty_repositories: bool,
}

/// The age after which an upload is abandoned when `--uploads-older-than` is not given: the
/// registry's own purge age (`storage.maintenance.uploadpurging.age`, 168 h).
pub const DEFAULT_UPLOADS_OLDER_THAN: Duration = Duration::from_secs(7 * 24 * 3600);

/// Worker threads when `--jobs` is not given: 32 per core, between 16 and 128. Nearly all
/// the work is waiting for the filesystem (a directory listing, a stat, a 71-byte read), so
/// on a cold cache the disk, not the CPU, is the limit, and it answers faster the more
/// requests it has in flight: on the 2-core machine of BENCHMARKS.md a cold run takes 11.7 s
/// with 2 threads and 3.8 s with 64. On a warm cache the extra threads cost almost nothing.
pub fn default_jobs() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    (cores * 32).clamp(16, 128)
}

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

/// One repository read and marked: what every command that needs liveness does per
/// repository (gc, its later looks, report).
pub struct RepoLiveness {
    pub repo: discover::Repository,
    pub mark: mark::RepoMark,
    pub blobs: Vec<mark::LiveBlob>,
    pub diagnostics: Diagnostics,
}

/// Discover, load and mark every named repository in parallel (each worker reusing one
/// manifest buffer) and hand each result to `each`, on the worker. The collector, its later
/// looks and the usage report all read repositories this way.
pub fn read_and_mark_all<R: Send>(
    storage: &dyn Storage,
    names: Vec<String>,
    discover_options: discover::Options,
    mark_options: mark::Options,
    manifests_read: &AtomicU64,
    each: impl Fn(RepoLiveness) -> R + Sync + Send,
) -> Vec<R> {
    names
        .into_par_iter()
        .map_init(
            || Vec::with_capacity(16 * 1024),
            |buf, name| {
                each(read_and_mark(
                    storage,
                    name,
                    discover_options,
                    mark_options,
                    buf,
                    manifests_read,
                ))
            },
        )
        .collect()
}

/// Discover one repository, load its manifests into `buf`'s reuse, and mark it.
fn read_and_mark(
    storage: &dyn Storage,
    name: String,
    discover_options: discover::Options,
    mark_options: mark::Options,
    buf: &mut Vec<u8>,
    manifests_read: &AtomicU64,
) -> RepoLiveness {
    let (repo, mut diagnostics) = discover::discover_repository(storage, name, discover_options);
    let manifests = parse::load_repository(storage, &repo, buf, manifests_read);
    let display = |key: &str| storage.display(key);
    let (mark, blobs, mark_diags) =
        mark::mark_repository(&repo, &manifests, mark_options, &display);
    diagnostics.merge(mark_diags);
    RepoLiveness {
        repo,
        mark,
        blobs,
        diagnostics,
    }
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
    discover::check_root(storage)?;
    // Taken before anything is read, so that the plan is built on a view no other
    // regsweep run is changing.
    let _lock = if options.dry_run {
        None
    } else {
        Some(lock::Lock::acquire(storage.root(), options.wait_for_lock)?)
    };
    Ok(collect(storage, storage.root(), options))
}

/// The collector proper, on any storage view. The caller has checked the root and, unless
/// this is a dry run, holds the lock.
pub fn collect(storage: &dyn Storage, root: &Path, options: &GcOptions) -> GcReport {
    let started = Instant::now();
    let run_start = SystemTime::now();
    let cutoff = cutoff(run_start, options.min_age);
    let mut diagnostics = Diagnostics::default();

    // A killed run may have left dead blobs in the trash: put them all back first and let
    // this run decide afresh. A dry run cannot, and says so.
    let mut restored_from_trash = 0;
    if options.dry_run {
        for trash in layout::TRASHES {
            if storage.stat(trash).is_err() {
                continue;
            }
            diagnostics.warn(
                storage.display(trash),
                "an interrupted run left blobs in the trash; the next real run puts them back \
                 (this dry run counts them as deleted)",
            );
        }
    } else {
        let (restored, problems) = sweep::recover_trash(storage);
        restored_from_trash = restored;
        diagnostics.errors.extend(problems);
    }

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

    // The blob store first: the live set is a bitset over its listing. Finding the
    // repositories does not depend on it, so both walks run at once.
    let ((index, diags), (names, name_diags)) = rayon::join(
        || discover::discover_blobs(storage, &counters),
        || discover::repository_names(storage),
    );
    diagnostics.merge(diags);
    diagnostics.merge(name_diags);
    let live = mark::LiveSet::new(&index);

    // Then each repository on its own: discover, parse, mark, plan, and keep only the plan, so
    // memory is bounded by the blob index and one repository per worker.
    let discover_options = discover::Options {
        tag_history: options.delete_untagged,
        link_times: !options.min_age.is_zero(),
        uploads: options.uploads_older_than.is_some() || options.empty_repositories,
    };
    let mark_options = mark::Options {
        delete_untagged: options.delete_untagged,
        cutoff,
    };
    let plan_options = plan::Options {
        delete_untagged: options.delete_untagged,
        cutoff,
        ignore_errors: options.ignore_errors,
        uploads_before: options
            .uploads_older_than
            .map(|age| run_start.checked_sub(age).unwrap_or(SystemTime::UNIX_EPOCH)),
        empty_repositories: options.empty_repositories,
    };
    let per_repo = read_and_mark_all(
        storage,
        names,
        discover_options,
        mark_options,
        &counters.manifests,
        |r| {
            for (d, size) in &r.blobs {
                live.keep(&index, d, *size);
            }
            counters.repositories.fetch_add(1, Ordering::Relaxed);
            (
                plan::plan_repository(&r.repo, &r.mark, plan_options),
                r.diagnostics,
            )
        },
    );
    let mut repo_plans = Vec::with_capacity(per_repo.len());
    for (p, d) in per_repo {
        repo_plans.push(p);
        diagnostics.merge(d);
    }
    // Now that the live set is known, stat only what the answer needs: blobs that may be
    // deleted (their size, age and state decide it) and live blobs no descriptor sized.
    let mut index = index;
    diagnostics.merge(discover::stat_blobs(storage, &mut index, |s, i| {
        !live.contains(s, i)
    }));
    drop(ticker);
    diagnostics.sort();

    let mut plan = plan::assemble(
        repo_plans,
        &index,
        &live,
        !diagnostics.errors.is_empty(),
        plan_options,
    );
    drop(index);

    let mut rescued = (0, 0, 0);
    let (deleted, failures) = if options.dry_run {
        // The plan is the report: moved, not copied (on a large registry it is tens of MB).
        (
            Deleted {
                blobs: std::mem::take(&mut plan.blobs),
                manifests: std::mem::take(&mut plan.manifests),
                layer_links: std::mem::take(&mut plan.layer_links),
                shards: std::mem::take(&mut plan.shards),
                uploads: std::mem::take(&mut plan.uploads),
                repositories: std::mem::take(&mut plan.repositories),
            },
            Vec::new(),
        )
    } else {
        // A second look before deleting anything: what a push made live while we marked is
        // dropped from the plan (see recheck).
        let look = |view: &dyn Storage, candidates: &HashSet<Digest>| {
            let mut look = recheck::look_again(view, candidates, run_start, plan_options);
            if options.ignore_errors {
                let errors = std::mem::take(&mut look.diagnostics.errors);
                look.diagnostics.warnings.extend(errors);
            }
            look
        };
        if !plan.refused && !plan.is_empty() {
            let candidates = plan.blobs.iter().map(|b| b.digest.clone()).collect();
            let second = look(storage, &candidates);
            if second.diagnostics.errors.is_empty() {
                rescued = recheck::narrow(&mut plan, &second);
            } else {
                plan.refuse();
            }
            diagnostics.merge(second.diagnostics);
        }
        let done = Arc::new(AtomicU64::new(0));
        let total = (plan.manifests.len()
            + plan.layer_links.len()
            + plan.blobs.len()
            + plan.shards.len()
            + plan.uploads.len()
            + plan.repositories.len()) as u64;
        let d = done.clone();
        let _t = Ticker::bar(options.progress && total > 0, total, move |bar| {
            bar.set_message("sweeping");
            bar.set_position(d.load(Ordering::Relaxed));
        });
        let outcome = sweep::sweep(storage, &plan, run_start, &done, look);
        rescued.2 += outcome.rescued_blobs;
        diagnostics.merge(outcome.diagnostics);
        (
            Deleted {
                blobs: outcome.blobs,
                manifests: outcome.manifests,
                layer_links: outcome.layer_links,
                shards: outcome.shards,
                uploads: outcome.uploads,
                repositories: outcome.repositories,
            },
            outcome.failures,
        )
    };
    diagnostics.sort();

    let summary = Summary {
        census: plan.census.clone(),
        deleted_blobs: deleted.blobs.len(),
        deleted_bytes: deleted.blobs.iter().map(|b| b.size).sum(),
        deleted_manifests: deleted.manifests.len(),
        deleted_tag_index_entries: deleted.manifests.iter().map(|m| m.tags.len()).sum(),
        deleted_layer_links: deleted.layer_links.len(),
        deleted_shards: deleted.shards.len(),
        deleted_uploads: deleted.uploads.len(),
        deleted_upload_bytes: deleted.uploads.iter().map(|u| u.size).sum(),
        deleted_repositories: deleted.repositories.len(),
        failed_deletions: failures.len(),
        rescued_manifests: rescued.0,
        rescued_layer_links: rescued.1,
        rescued_blobs: rescued.2,
        restored_from_trash,
        elapsed_seconds: started.elapsed().as_secs_f64(),
    };
    let mut errors = diagnostics.errors;
    errors.extend(failures);
    GcReport {
        version: REPORT_VERSION,
        dry_run: options.dry_run,
        root: root.display().to_string(),
        root_source: String::new(),
        delete_untagged: options.delete_untagged,
        min_age_seconds: options.min_age.as_secs(),
        refused: plan.refused,
        summary,
        deleted,
        warnings: diagnostics.warnings,
        errors,
    }
}

#[derive(Debug, Clone)]
pub struct EditOptions {
    pub dry_run: bool,
    pub wait_for_lock: bool,
    /// Run the collector right after the edits, under the same lock (in a dry run: on a view
    /// of the storage without the edited paths, so it shows what the real run would collect).
    pub gc: Option<GcOptions>,
}

/// Decides what an edit command removes, given the storage and its repository names.
pub type Selector<'a> = dyn FnOnce(
        &dyn Storage,
        &[String],
    ) -> std::result::Result<(Vec<edit::RepoEdits>, Diagnostics), Vec<String>>
    + 'a;

/// Run `delete` or `prune`: select the edits, then (unless a dry run) apply them, then
/// optionally collect. References that match nothing stop the run with [`Error::Usage`]
/// before anything is touched; problems reading the storage make it refuse (exit 1).
pub fn edit(
    storage: &FsStorage,
    command: &str,
    options: &EditOptions,
    select: Box<Selector<'_>>,
) -> Result<EditReport> {
    let started = Instant::now();
    discover::check_root(storage)?;
    let _lock = if options.dry_run {
        None
    } else {
        Some(lock::Lock::acquire(storage.root(), options.wait_for_lock)?)
    };
    let (names, mut diagnostics) = discover::repository_names(storage);
    let (edits, diags) = select(storage, &names).map_err(Error::Usage)?;
    diagnostics.merge(diags);
    diagnostics.sort();
    let refused = !diagnostics.errors.is_empty();
    let tags_kept = edits.iter().map(|e| e.kept_tags).sum();
    let edits: Vec<edit::RepoEdits> = edits.into_iter().filter(|e| !e.is_empty()).collect();

    let (done, failures, gc_report) = if refused {
        (Vec::new(), Vec::new(), None)
    } else if options.dry_run {
        let hidden = edits.iter().flat_map(edit::RepoEdits::keys);
        let view = storage::Hiding::new(storage, hidden);
        let gc_report = options.gc.as_ref().map(|g| {
            let g = GcOptions {
                dry_run: true,
                ..g.clone()
            };
            collect(&view, storage.root(), &g)
        });
        (edits, Vec::new(), gc_report)
    } else {
        let (done, failures) = sweep::apply_edits(storage, &edits);
        let gc_report = options
            .gc
            .as_ref()
            .map(|g| collect(storage, storage.root(), g));
        (done, failures, gc_report)
    };

    let summary = EditSummary {
        repositories_deleted: done.iter().filter(|e| e.repository).count(),
        tags_deleted: done.iter().map(|e| e.tags.len()).sum(),
        manifests_deleted: done.iter().map(|e| e.manifests.len()).sum(),
        tags_kept,
        failed_deletions: failures.len(),
        elapsed_seconds: started.elapsed().as_secs_f64(),
    };
    let mut errors = diagnostics.errors;
    errors.extend(failures);
    Ok(EditReport {
        version: REPORT_VERSION,
        command: command.to_string(),
        dry_run: options.dry_run,
        root: storage.root().display().to_string(),
        root_source: String::new(),
        refused,
        summary,
        repositories: done,
        warnings: diagnostics.warnings,
        errors,
        gc: gc_report,
    })
}

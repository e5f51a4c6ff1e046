//! The collector's driver: discover -> parse -> mark -> plan -> look again -> sweep -> report,
//! each phase one call. It owns the order of the phases and nothing else: what each phase
//! does lives in its module.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::error::{Diagnostics, Result};
use crate::gc::discover;
use crate::gc::mark::{self, LiveSet};
use crate::gc::plan::Deleted;
use crate::gc::plan::{self, Plan};
use crate::gc::read;
use crate::gc::recheck;
use crate::gc::report::{lap, GcReport, Summary, Timings, REPORT_VERSION};
use crate::gc::sweep;
use crate::gc::unreferenced;
use crate::progress::Ticker;
use crate::registry::digest::Digest;
use crate::registry::layout;
use crate::storage::Storage;

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
    /// Delete only what every real run has seen unreferenced for this long (`--unreferenced-for`).
    pub unreferenced: Option<Unreferenced>,
}

/// Where the `--unreferenced-for` state lives.
#[derive(Debug, Clone)]
pub enum StateAt {
    /// A key of the storage (the default: beside the registry's data, so it travels with it,
    /// is shared by every host that collects it, and is covered by the run lock).
    Storage(String),
    /// A local file (`--state PATH`).
    File(std::path::PathBuf),
}

#[derive(Debug, Clone)]
pub struct Unreferenced {
    pub window: Duration,
    pub state: StateAt,
    /// Start the state over (`--reset-state`).
    pub reset: bool,
    /// The rule's clock (tests may set it: `REGSWEEP_TEST_NOW`).
    pub now: SystemTime,
}

/// The age after which an upload is abandoned when `--uploads-older-than` is not given: the
/// registry's own purge age (`storage.maintenance.uploadpurging.age`, 168 h).
pub const DEFAULT_UPLOADS_OLDER_THAN: Duration = Duration::from_secs(7 * 24 * 3600);

/// Collect garbage in the registry behind `storage`: check it is one, take the run lock (not
/// in a dry run), collect.
pub fn gc(storage: &dyn Storage, options: &GcOptions) -> Result<GcReport> {
    discover::check_root(storage)?;
    // Taken before anything is read, so that the plan is built on a view no other
    // regsweep run is changing.
    let _lock = if options.dry_run {
        None
    } else {
        Some(storage.lock(options.wait_for_lock)?)
    };
    Ok(collect(storage, options))
}

/// One run's fixed points in time and the options each phase gets.
struct Run {
    started: Instant,
    start: SystemTime,
    discover: discover::Options,
    mark: mark::Options,
    plan: plan::Options,
}

impl Run {
    fn new(options: &GcOptions) -> Run {
        let start = SystemTime::now();
        let cutoff = mark::cutoff(start, options.min_age);
        Run {
            started: Instant::now(),
            start,
            discover: discover::Options {
                tag_history: options.delete_untagged,
                link_times: !options.min_age.is_zero(),
                uploads: options.uploads_older_than.is_some() || options.empty_repositories,
            },
            mark: mark::Options {
                delete_untagged: options.delete_untagged,
                cutoff,
            },
            plan: plan::Options {
                delete_untagged: options.delete_untagged,
                cutoff,
                ignore_errors: options.ignore_errors,
                uploads_before: options
                    .uploads_older_than
                    .map(|age| start.checked_sub(age).unwrap_or(SystemTime::UNIX_EPOCH)),
                empty_repositories: options.empty_repositories,
            },
        }
    }
}

/// The collector proper, on any storage view. The caller has checked the root and, unless
/// this is a dry run, holds the lock.
pub fn collect(storage: &dyn Storage, options: &GcOptions) -> GcReport {
    let run = Run::new(options);
    let mut diagnostics = Diagnostics::default();
    let mut timings = Timings::default();
    let mut clock = Instant::now();
    let restored_from_trash = recover(storage, options.dry_run, &mut diagnostics);
    timings.recover = lap(&mut clock);
    let mut plan = mark_and_plan(
        storage,
        &run,
        options.progress,
        &mut diagnostics,
        &mut timings,
    );
    let applied = match &options.unreferenced {
        Some(rule) if !plan.refused => Some(apply_unreferenced(
            storage,
            &mut plan,
            rule,
            &mut diagnostics,
        )),
        _ => None,
    };
    let (deleted, failures, rescued) = if options.dry_run {
        (plan.take_deleted(), Vec::new(), (0, 0, 0))
    } else {
        execute(
            storage,
            &mut plan,
            &run,
            options,
            &mut diagnostics,
            &mut timings,
        )
    };
    let mut waiting = Vec::new();
    if let (Some(rule), Some(applied)) = (&options.unreferenced, applied) {
        if !options.dry_run {
            write_state(storage, rule, applied.state, &deleted, &mut diagnostics);
        }
        waiting = applied.waiting;
    }
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
        elapsed_seconds: run.started.elapsed().as_secs_f64(),
    };
    let mut errors = diagnostics.errors;
    errors.extend(failures);
    GcReport {
        version: REPORT_VERSION,
        dry_run: options.dry_run,
        root: storage.display(""),
        root_source: String::new(),
        delete_untagged: options.delete_untagged,
        min_age_seconds: options.min_age.as_secs(),
        refused: plan.refused,
        summary,
        deleted,
        warnings: diagnostics.warnings,
        errors,
        requests: storage.requests(),
        unreferenced_for_seconds: options.unreferenced.as_ref().map(|u| u.window.as_secs()),
        waiting,
        cache: None,
        timings,
    }
}

fn state_name(storage: &dyn Storage, at: &StateAt) -> String {
    match at {
        StateAt::Storage(key) => storage.display(key),
        StateAt::File(path) => path.display().to_string(),
    }
}

/// Read the previous state and keep in the plan only what the rule lets go. A missing state
/// is a first run (said as a warning); an unreadable one protects everything (an error).
fn apply_unreferenced(
    storage: &dyn Storage,
    plan: &mut Plan,
    rule: &Unreferenced,
    diagnostics: &mut Diagnostics,
) -> unreferenced::Applied {
    let name = state_name(storage, &rule.state);
    let previous = if rule.reset {
        Ok(None)
    } else {
        let mut buf = Vec::new();
        let read = match &rule.state {
            StateAt::Storage(key) => storage.read_into(key, 1 << 32, &mut buf).map(|_| ()),
            StateAt::File(path) => std::fs::read(path).map(|b| buf = b),
        };
        match read {
            Ok(()) => unreferenced::State::decode(&buf).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.to_string()),
        }
    };
    match previous {
        Ok(Some(state)) => unreferenced::apply(plan, Some(&state), rule.now, rule.window),
        Ok(None) => {
            diagnostics.warn(
                name,
                "no state of earlier runs (first run, or --reset-state): everything unreferenced \
                 is seen for the first time, and nothing is deleted by --unreferenced-for yet",
            );
            unreferenced::apply(
                plan,
                Some(&unreferenced::State::default()),
                rule.now,
                rule.window,
            )
        }
        Err(e) => {
            diagnostics.error(
                name,
                format!(
                    "cannot read the --unreferenced-for state ({e}): nothing it protects is \
                     deleted; --reset-state starts it over"
                ),
            );
            unreferenced::apply(plan, None, rule.now, rule.window)
        }
    }
}

/// After a real run: the state of this run's candidates, less what it deleted, written
/// atomically.
fn write_state(
    storage: &dyn Storage,
    rule: &Unreferenced,
    mut state: unreferenced::State,
    deleted: &Deleted,
    diagnostics: &mut Diagnostics,
) {
    use unreferenced::Candidate;
    for b in &deleted.blobs {
        state.first_seen.remove(&Candidate::Blob(b.digest.clone()));
    }
    for m in &deleted.manifests {
        state
            .first_seen
            .remove(&Candidate::Manifest(m.repository.clone(), m.digest.clone()));
    }
    for l in &deleted.layer_links {
        state.first_seen.remove(&Candidate::LayerLink(
            l.repository.clone(),
            l.digest.clone(),
        ));
    }
    for r in &deleted.repositories {
        state
            .first_seen
            .remove(&Candidate::Repository(r.name.clone()));
    }
    let bytes = state.encode();
    let written = match &rule.state {
        StateAt::Storage(key) => storage.write_atomic(key, &bytes),
        StateAt::File(path) => crate::storage::fs::write_file_atomically(path, &bytes),
    };
    if let Err(e) = written {
        diagnostics.error(
            state_name(storage, &rule.state),
            format!("cannot write the --unreferenced-for state: {e}; the previous one stands"),
        );
    }
}

/// A killed run may have left dead blobs in the trash: a real run puts them all back first and
/// lets this run decide afresh; a dry run cannot, and says so. Returns how many came back.
fn recover(storage: &dyn Storage, dry_run: bool, diagnostics: &mut Diagnostics) -> usize {
    if !dry_run {
        let (restored, problems) = sweep::recover_trash(storage);
        diagnostics.errors.extend(problems);
        return restored;
    }
    for trash in layout::TRASHES {
        if storage.stat(trash).is_ok() {
            diagnostics.warn(
                storage.display(trash),
                "an interrupted run left blobs in the trash; the next real run puts them back \
                 (this dry run counts them as deleted)",
            );
        }
    }
    0
}

/// Discover, parse, mark and plan: the blob store first (the live set is a bitset over its
/// listing; finding the repositories does not depend on it, so both walks run at once), then
/// each repository on its own, keeping only its plan, so memory is bounded by the blob index
/// and one repository per worker. Then stat only what the answer needs, and assemble.
fn mark_and_plan(
    storage: &dyn Storage,
    run: &Run,
    progress: bool,
    diagnostics: &mut Diagnostics,
    timings: &mut Timings,
) -> Plan {
    let mut clock = Instant::now();
    let counters = Arc::new(discover::Counters::default());
    let ticker = {
        let c = counters.clone();
        Ticker::spinner(progress, move |bar| {
            bar.set_message(format!(
                "{} blobs in {} shards; {} repositories marked, {} manifests read",
                c.blobs.load(Ordering::Relaxed),
                c.shards.load(Ordering::Relaxed),
                c.repositories.load(Ordering::Relaxed),
                c.manifests.load(Ordering::Relaxed),
            ))
        })
    };
    let ((mut index, diags), (names, name_diags)) = rayon::join(
        || discover::discover_blobs(storage, &counters),
        || discover::repository_names(storage),
    );
    diagnostics.merge(diags);
    diagnostics.merge(name_diags);
    let live = LiveSet::new(&index);
    let per_repo = read::read_and_mark_all(
        storage,
        names,
        run.discover,
        run.mark,
        &counters.manifests,
        |r| {
            for (d, size) in &r.blobs {
                live.keep(&index, d, *size);
            }
            counters.repositories.fetch_add(1, Ordering::Relaxed);
            (
                plan::plan_repository(&r.repo, &r.mark, run.plan),
                r.diagnostics,
            )
        },
    );
    let mut repo_plans = Vec::with_capacity(per_repo.len());
    for (p, d) in per_repo {
        repo_plans.push(p);
        diagnostics.merge(d);
    }
    timings.mark = lap(&mut clock);
    // Blobs that may be deleted (their size, age and state decide it) and live blobs no
    // descriptor sized.
    diagnostics.merge(discover::stat_blobs(storage, &mut index, |s, i| {
        !live.contains(s, i)
    }));
    drop(ticker);
    diagnostics.sort();
    let plan = plan::assemble(
        repo_plans,
        &index,
        &live,
        !diagnostics.errors.is_empty(),
        run.plan,
    );
    timings.plan = lap(&mut clock);
    plan
}

/// A real run: a second look before deleting anything (what a push made live while we marked
/// is dropped from the plan, see recheck), then the sweep, which takes a last look of its own.
/// Returns what was deleted, the failures, and what the looks rescued.
fn execute(
    storage: &dyn Storage,
    plan: &mut Plan,
    run: &Run,
    options: &GcOptions,
    diagnostics: &mut Diagnostics,
    timings: &mut Timings,
) -> (Deleted, Vec<crate::error::Problem>, (usize, usize, usize)) {
    let mut clock = Instant::now();
    let look = |view: &dyn Storage, candidates: &HashSet<Digest>| {
        let mut look = recheck::look_again(view, candidates, run.start, run.plan);
        if options.ignore_errors {
            let errors = std::mem::take(&mut look.diagnostics.errors);
            look.diagnostics.warnings.extend(errors);
        }
        look
    };
    let mut rescued = (0, 0, 0);
    if !plan.refused && !plan.is_empty() {
        let candidates = plan.blobs.iter().map(|b| b.digest.clone()).collect();
        let second = look(storage, &candidates);
        if second.diagnostics.errors.is_empty() {
            rescued = recheck::narrow(plan, &second);
        } else {
            plan.refuse();
        }
        diagnostics.merge(second.diagnostics);
    }
    timings.second_look = lap(&mut clock);
    let done = Arc::new(AtomicU64::new(0));
    let d = done.clone();
    let total = plan.len() as u64;
    let _t = Ticker::bar(options.progress && total > 0, total, move |bar| {
        bar.set_message("sweeping");
        bar.set_position(d.load(Ordering::Relaxed));
    });
    let outcome = sweep::sweep(storage, plan, run.start, &done, look, timings);
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
        rescued,
    )
}

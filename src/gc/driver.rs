//! The collector's driver: discover -> parse -> mark -> plan -> look again -> sweep -> report,
//! each phase one call. It owns the order of the phases and nothing else: what each phase
//! does lives in its module.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::cache::registry::{evict_ahead, CacheReport, EntryCounts};
use crate::config::redis::RegistryCache;
use crate::error::{Diagnostics, Result};
use crate::gc::discover;
use crate::gc::mark::{self, LiveSet};
use crate::gc::plan::Deleted;
use crate::gc::plan::{self, MaxDelete, Plan};
use crate::gc::read;
use crate::gc::recheck::{self, Removed};
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
    /// Refuse a plan that deletes more blobs than this.
    pub max_delete: Option<MaxDelete>,
    /// The registry's blob-descriptor cache, whose entries for what a real run removes are
    /// evicted before it removes them (and again once its dead blobs are in the trash).
    pub cache: RegistryCache,
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
    if discover::is_empty_root(storage) {
        // A fresh install: nothing to collect, and nothing may be created there (a lock or a
        // state written as this user would leave the registry a tree it cannot write).
        let mut report = collect(
            storage,
            &GcOptions {
                dry_run: true,
                unreferenced: None,
                ..options.clone()
            },
        );
        report.dry_run = options.dry_run;
        report.warnings.push(crate::error::Problem::new(
            storage.display(""),
            "an empty registry (no docker/registry/v2 yet: nothing was pushed since it was \
             installed); nothing to collect",
        ));
        return Ok(report);
    }
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
                // Always: what was linked since the run began is young whatever --min-age
                // says (see mark::cutoff), and the dry run must plan what the real run does.
                link_times: true,
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
    crate::hooks::pause("mark");
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
    if let Some(cap) = options.max_delete {
        if let Some(why) = cap.exceeded(plan.blobs.len(), plan.census.blobs) {
            diagnostics.error(storage.display(""), why);
            plan.refuse();
        }
    }
    // What this run may delete: once it has run, none of it has waited for anything any more
    // (deleted, or found live by a later look and so referenced again: its wait starts over).
    let eligible = applied.as_ref().map(|_| unreferenced::candidates(&plan));
    let evicted = std::sync::Mutex::new(EntryCounts::default());
    let (deleted, failures, rescued) = if options.dry_run {
        (plan.take_deleted(), Vec::new(), (0, 0, 0))
    } else {
        execute(
            storage,
            &mut plan,
            &run,
            options,
            &evicted,
            &mut diagnostics,
            &mut timings,
        )
    };
    let evicted = evicted.into_inner().unwrap_or_default();
    let mut waiting = Vec::new();
    if let (Some(rule), Some((applied, writable))) = (&options.unreferenced, applied) {
        if !options.dry_run && writable {
            let eligible = eligible.unwrap_or_default();
            write_state(storage, rule, applied.state, &eligible, &mut diagnostics);
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
        cache: (evicted.total() > 0).then(|| CacheReport::ahead(evicted)),
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
/// The second value says whether this run may write the state afterwards: not over a damaged
/// one, which goes on protecting everything until `--reset-state`.
fn apply_unreferenced(
    storage: &dyn Storage,
    plan: &mut Plan,
    rule: &Unreferenced,
    diagnostics: &mut Diagnostics,
) -> (unreferenced::Applied, bool) {
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
        // Another registry's state (copied, or one --state PATH for two): trusting it would
        // let go at once what this registry never waited on.
        // A state written before the identity named the endpoint and account (its root as
        // displayed) is this registry's: the next write records the identity in full.
        Ok(Some(state))
            if !state.registry.is_empty()
                && state.registry != storage.identity()
                && state.registry != storage.display("") =>
        {
            diagnostics.error(
                name,
                format!(
                    "this --unreferenced-for state belongs to another registry ({}), not to this \
                     one ({}): nothing it would protect is deleted; give this registry its own \
                     --state, or --reset-state to start one here",
                    state.registry,
                    storage.identity()
                ),
            );
            (
                unreferenced::apply(plan, None, rule.now, rule.window),
                false,
            )
        }
        Ok(Some(state)) => (
            unreferenced::apply(plan, Some(&state), rule.now, rule.window),
            true,
        ),
        Ok(None) => {
            diagnostics.warn(
                name,
                "no state of earlier runs (first run, or --reset-state): everything unreferenced \
                 is seen for the first time, and nothing is deleted by --unreferenced-for yet",
            );
            (
                unreferenced::apply(
                    plan,
                    Some(&unreferenced::State::default()),
                    rule.now,
                    rule.window,
                ),
                true,
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
            (
                unreferenced::apply(plan, None, rule.now, rule.window),
                false,
            )
        }
    }
}

/// After a real run: the state of this run's candidates, less those it was allowed to delete
/// (deleted, or rescued by a later look: either way no longer waiting), written atomically.
fn write_state(
    storage: &dyn Storage,
    rule: &Unreferenced,
    mut state: unreferenced::State,
    eligible: &HashSet<unreferenced::Candidate>,
    diagnostics: &mut Diagnostics,
) {
    state.first_seen.retain(|c, _| !eligible.contains(c));
    state.registry = storage.identity();
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
    if names.is_empty() && !index.is_empty() {
        // Every blob would be garbage. A registry does not get there by use (its catalog
        // keeps emptied repositories until something removes them): a `repositories/` that
        // did not mount, a root or prefix that points at half a tree, a bucket typo.
        diagnostics.error(
            storage.display(layout::REPOSITORIES),
            format!(
                "{} blobs and no repository at all: this looks like a storage that is not \
                 (all) there (an unmounted volume, a wrong rootdirectory or bucket prefix for \
                 one half of the tree), not an empty registry; nothing is deleted. If every \
                 repository really is gone, delete docker/registry/v2/blobs by hand",
                index.len()
            ),
        );
    }
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
    evicted: &std::sync::Mutex<EntryCounts>,
    diagnostics: &mut Diagnostics,
    timings: &mut Timings,
) -> (Deleted, Vec<crate::error::Problem>, (usize, usize, usize)) {
    let mut clock = Instant::now();
    let look = |view: &dyn Storage, candidates: &HashSet<Digest>, removed: &Removed| {
        let mut look = recheck::look_again(view, candidates, removed, run.start, run.plan);
        if options.ignore_errors {
            let errors = std::mem::take(&mut look.diagnostics.errors);
            look.diagnostics.warnings.extend(errors);
        }
        look
    };
    let mut rescued = (0, 0, 0);
    crate::hooks::pause("second-look");
    if !plan.refused && !plan.is_empty() {
        let candidates = plan.blobs.iter().map(|b| b.digest.clone()).collect();
        let second = look(storage, &candidates, &Removed::default());
        if second.diagnostics.errors.is_empty() {
            rescued = recheck::narrow(plan, &second);
        } else {
            plan.refuse();
        }
        diagnostics.merge(second.diagnostics);
    }
    timings.second_look = lap(&mut clock);
    crate::hooks::pause("references");
    let done = Arc::new(AtomicU64::new(0));
    let d = done.clone();
    let total = plan.len() as u64;
    let _t = Ticker::bar(options.progress && total > 0, total, move |bar| {
        bar.set_message("sweeping");
        bar.set_position(d.load(Ordering::Relaxed));
    });
    let evict = |blobs: &[Digest], links: &[(String, Digest)]| {
        let counts = evict_ahead(&options.cache, blobs, links)?;
        if let Ok(mut e) = evicted.lock() {
            e.add(counts);
        }
        Ok(())
    };
    let outcome = sweep::sweep(storage, plan, run.start, &done, look, &evict, timings);
    rescued.0 += outcome.rescued_manifests;
    rescued.1 += outcome.rescued_layer_links;
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

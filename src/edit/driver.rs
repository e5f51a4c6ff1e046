//! The edit driver of `delete` and `prune`: select the edits, apply them (or not, in a dry
//! run), then optionally collect.

use std::time::Instant;

use crate::edit::edits::{self, RepoEdits};
use crate::edit::report::{EditReport, EditSummary};
use crate::error::{Diagnostics, Error, Result};
use crate::gc::discover;
use crate::gc::driver::{collect, GcOptions};
use crate::gc::report::REPORT_VERSION;
use crate::storage::{self, Storage};

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
    ) -> std::result::Result<(Vec<RepoEdits>, Diagnostics), Vec<String>>
    + 'a;

/// Run `delete` or `prune`: select the edits, then (unless a dry run) apply them, then
/// optionally collect. References that match nothing stop the run with [`Error::Usage`]
/// before anything is touched; problems reading the storage make it refuse (exit 1).
pub fn edit(
    storage: &dyn Storage,
    command: &str,
    options: &EditOptions,
    select: Box<Selector<'_>>,
) -> Result<EditReport> {
    let started = Instant::now();
    discover::check_root(storage)?;
    let _lock = if options.dry_run {
        None
    } else {
        Some(storage.lock(options.wait_for_lock)?)
    };
    let (names, mut diagnostics) = discover::repository_names(storage);
    let (edits, diags) = select(storage, &names).map_err(Error::Usage)?;
    diagnostics.merge(diags);
    diagnostics.sort();
    let refused = !diagnostics.errors.is_empty();
    let tags_kept = edits.iter().map(|e| e.kept_tags).sum();
    let edits: Vec<RepoEdits> = edits.into_iter().filter(|e| !e.is_empty()).collect();

    let (done, failures, gc_report) = if refused {
        (Vec::new(), Vec::new(), None)
    } else if options.dry_run {
        let hidden = edits.iter().flat_map(RepoEdits::keys);
        let view = storage::Hiding::new(storage, hidden);
        let gc_report = options.gc.as_ref().map(|g| {
            let g = GcOptions {
                dry_run: true,
                ..g.clone()
            };
            collect(&view, &g)
        });
        (edits, Vec::new(), gc_report)
    } else {
        let (done, failures) = edits::apply_edits(storage, &edits);
        let gc_report = options.gc.as_ref().map(|g| collect(storage, g));
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
        root: storage.display(""),
        root_source: String::new(),
        refused,
        summary,
        repositories: done,
        warnings: diagnostics.warnings,
        errors,
        gc: gc_report,
        cache: None,
    })
}

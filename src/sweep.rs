//! Sweep: the only module that removes anything.
//!
//! Executes a [`Plan`] in the order of the semantics, each step finishing before the next
//! starts, so that references always go before what they reference:
//! 1. dead manifests: their tag-history entries, then the revision directory;
//! 2. layer links no live manifest of their repository references;
//! 3. blob directories;
//! 4. shard directories the sweep left empty (only if they really are empty now).
//!
//! An interrupted sweep therefore never leaves a live image pointing at a removed blob, and a
//! second run finishes the job. A missing path is success (someone already removed it); any
//! other failure is reported with its path and the sweep goes on with the rest.

use std::sync::atomic::{AtomicU64, Ordering};

use rayon::prelude::*;

use crate::edit::RepoEdits;
use crate::error::Problem;
use crate::layout;
use crate::plan::{BlobDeletion, LayerLinkDeletion, ManifestDeletion, Plan, ShardDeletion};
use crate::storage::Storage;

/// What the sweep actually removed, and what it failed to remove.
#[derive(Debug, Default)]
pub struct Outcome {
    pub manifests: Vec<ManifestDeletion>,
    pub layer_links: Vec<LayerLinkDeletion>,
    pub blobs: Vec<BlobDeletion>,
    pub shards: Vec<ShardDeletion>,
    pub failures: Vec<Problem>,
}

fn remove(storage: &dyn Storage, key: &str) -> Result<(), Problem> {
    storage
        .remove_all(key)
        .map_err(|e| Problem::new(storage.display(key), format!("cannot delete: {e}")))
}

/// Run `f` over `items` in parallel, splitting them into the ones that succeeded and the
/// failures; each worker keeps its own lists, merged once at the end.
fn run_step<T, F>(items: &[T], done: &AtomicU64, f: F) -> (Vec<T>, Vec<Problem>)
where
    T: Clone + Send + Sync,
    F: Fn(&T) -> Result<(), Vec<Problem>> + Sync,
{
    items
        .par_iter()
        .fold(
            || (Vec::new(), Vec::new()),
            |(mut ok, mut failed), item| {
                match f(item) {
                    Ok(()) => ok.push(item.clone()),
                    Err(problems) => failed.extend(problems),
                }
                done.fetch_add(1, Ordering::Relaxed);
                (ok, failed)
            },
        )
        .reduce(
            || (Vec::new(), Vec::new()),
            |(mut ok, mut failed), (ok2, failed2)| {
                ok.extend(ok2);
                failed.extend(failed2);
                (ok, failed)
            },
        )
}

pub fn sweep(storage: &dyn Storage, plan: &Plan, done: &AtomicU64) -> Outcome {
    let mut outcome = Outcome::default();

    let (manifests, failed) = run_step(&plan.manifests, done, |m| {
        let mut problems = Vec::new();
        for tag in &m.tags {
            if let Err(p) = remove(
                storage,
                &layout::tag_index_entry(&m.repository, tag, &m.digest),
            ) {
                problems.push(p);
            }
        }
        // Only remove the revision once nothing in the tag history still names it.
        if problems.is_empty() {
            if let Err(p) = remove(storage, &layout::revision_dir(&m.repository, &m.digest)) {
                problems.push(p);
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    });
    outcome.manifests = manifests;
    outcome.failures.extend(failed);

    let (links, failed) = run_step(&plan.layer_links, done, |l| {
        remove(storage, &layout::layer_dir(&l.repository, &l.digest)).map_err(|p| vec![p])
    });
    outcome.layer_links = links;
    outcome.failures.extend(failed);

    let (blobs, failed) = run_step(&plan.blobs, done, |b| {
        remove(storage, &layout::blob_dir(&b.digest)).map_err(|p| vec![p])
    });
    outcome.blobs = blobs;
    outcome.failures.extend(failed);

    // A shard only goes if it is empty now: a blob pushed into it meanwhile keeps it.
    for shard in &plan.shards {
        let key = layout::shard_dir(shard.algorithm, &shard.prefix);
        match storage.remove_empty_dir(&key) {
            Ok(true) => outcome.shards.push(shard.clone()),
            Ok(false) => {}
            Err(e) => outcome.failures.push(Problem::new(
                storage.display(&key),
                format!("cannot delete: {e}"),
            )),
        }
        done.fetch_add(1, Ordering::Relaxed);
    }

    outcome.manifests.sort();
    outcome.layer_links.sort();
    outcome.blobs.sort();
    outcome.failures.sort();
    outcome
}

/// Carry out the edits of `delete` and `prune`: repositories in parallel, each one's keys in
/// the order [`RepoEdits::keys`] gives. The first failure in a repository stops the rest of
/// that repository's edits (a revision is never removed while a tag that names it could not
/// be), and is reported with its path. Returns the repositories whose edits all succeeded.
pub fn apply_edits(storage: &dyn Storage, edits: &[RepoEdits]) -> (Vec<RepoEdits>, Vec<Problem>) {
    let done = AtomicU64::new(0);
    let (mut ok, mut failed) = run_step(edits, &done, |e| {
        for key in e.keys() {
            remove(storage, &key).map_err(|p| vec![p])?;
        }
        if e.repository {
            remove_empty_ancestors(storage, &layout::repository_dir(&e.name));
        }
        Ok(())
    });
    ok.sort_by(|a, b| a.name.cmp(&b.name));
    failed.sort();
    (ok, failed)
}

/// Remove a deleted repository's directory and the parents it leaves empty, up to (not
/// including) `repositories/`. A directory that still holds anything (a nested repository)
/// stays, and so do all above it.
fn remove_empty_ancestors(storage: &dyn Storage, dir: &str) {
    let mut dir = dir;
    while dir.len() > layout::REPOSITORIES.len() && dir.starts_with(layout::REPOSITORIES) {
        match storage.remove_empty_dir(dir) {
            Ok(true) => {}
            _ => break,
        }
        dir = match dir.rsplit_once('/') {
            Some((parent, _)) => parent,
            None => break,
        };
    }
}

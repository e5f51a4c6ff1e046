//! Sweep: the only module that removes anything.
//!
//! Executes a [`Plan`] in the order of the semantics, each step finishing before the next
//! starts, so that references always go before what they reference:
//! 1. dead manifests: their tag-history entries, then the revision directory;
//! 2. layer links no live manifest of their repository references;
//! 3. blob directories: moved to the trash, then (after a last look, see [`crate::gc::recheck`])
//!    deleted or put back;
//! 4. shard directories the sweep left empty (only if they really are empty now);
//! 5. housekeeping: abandoned uploads, then repositories left with nothing in them (each after
//!    a last look of its own).
//!
//! An interrupted sweep therefore never leaves a live image pointing at a removed blob, and a
//! second run finishes the job. A missing path is success (someone already removed it); any
//! other failure is reported with its path and the sweep goes on with the rest of its step,
//! but a failed manifest or layer-link deletion stops the sweep before the blob step: the
//! blobs it references must outlive it, or the tree is left with references to nothing.

use std::collections::HashSet;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime};

use rayon::prelude::*;

use crate::error::Diagnostics;
use crate::gc::discover;
use crate::gc::recheck::{Look, Removed, TrashView};
use crate::registry::digest::{Algorithm, Digest};

use crate::error::Problem;
use crate::gc::plan::{
    BlobDeletion, LayerLinkDeletion, ManifestDeletion, Plan, RepositoryDeletion, ShardDeletion,
    UploadDeletion,
};
use crate::gc::report::{lap, Timings};
use crate::registry::layout;
use crate::storage::{PendingUpload, Storage};

/// Evicts the registry's cache entries for blobs and (repository, digest) links about to go.
pub type Evict<'a> = dyn Fn(&[Digest], &[(String, Digest)]) -> Result<(), String> + 'a;

/// What the sweep actually removed, and what it failed to remove.
#[derive(Debug, Default)]
pub struct Outcome {
    pub manifests: Vec<ManifestDeletion>,
    pub layer_links: Vec<LayerLinkDeletion>,
    pub blobs: Vec<BlobDeletion>,
    pub shards: Vec<ShardDeletion>,
    pub uploads: Vec<UploadDeletion>,
    pub repositories: Vec<RepositoryDeletion>,
    pub failures: Vec<Problem>,
    /// Blobs moved to the trash and put back because the last look found them live.
    pub rescued_blobs: usize,
    /// Revisions and layer links removed, then written back because the last look found
    /// them needed again (a tag pushed, an index naming a child, a manifest using a blob).
    pub rescued_manifests: usize,
    pub rescued_layer_links: usize,
    /// What the last look found wrong (then every blob was put back).
    pub diagnostics: Diagnostics,
}

/// Remove one tree per item (`key` names it) in one call to the backend, which batches what
/// it can, and split the items into those removed and the failures.
fn remove_each<T: Clone>(
    storage: &dyn Storage,
    items: &[T],
    done: &AtomicU64,
    key: impl Fn(&T) -> String,
) -> (Vec<T>, Vec<Problem>) {
    remove_each_with(storage, items, done, key, |keys| storage.remove_trees(keys))
}

/// [`remove_each`] for link directories ([`Storage::remove_links`]).
fn remove_links_each<T: Clone>(
    storage: &dyn Storage,
    items: &[T],
    done: &AtomicU64,
    key: impl Fn(&T) -> String,
) -> (Vec<T>, Vec<Problem>) {
    remove_each_with(storage, items, done, key, |keys| storage.remove_links(keys))
}

fn remove_each_with<T: Clone>(
    storage: &dyn Storage,
    items: &[T],
    done: &AtomicU64,
    key: impl Fn(&T) -> String,
    remove: impl FnOnce(&[String]) -> Vec<io::Result<()>>,
) -> (Vec<T>, Vec<Problem>) {
    let keys: Vec<String> = items.iter().map(key).collect();
    let results = remove(&keys);
    let mut ok = Vec::with_capacity(items.len());
    let mut failed = Vec::new();
    for ((item, key), result) in items.iter().zip(&keys).zip(results) {
        match result {
            Ok(()) => ok.push(item.clone()),
            // Written again by a push: not deleted, and nothing failed.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => failed.push(Problem::new(
                storage.display(key),
                format!("cannot delete: {e}"),
            )),
        }
    }
    done.fetch_add(items.len() as u64, Ordering::Relaxed);
    (ok, failed)
}

/// Run `f` over `items` in parallel, splitting them into the ones that succeeded and the
/// failures; each worker keeps its own lists, merged once at the end.
pub(crate) fn run_step<T, F>(items: &[T], done: &AtomicU64, f: F) -> (Vec<T>, Vec<Problem>)
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

/// Execute `plan`. Dead blobs are first moved to the trash; `last_look` is then asked which of
/// them something now references (see [`crate::gc::recheck`]; it gets a view of the storage in
/// which trashed blobs are still readable), those are put back, and the rest are deleted. If
/// the last look has errors, every blob is put back.
pub fn sweep(
    storage: &dyn Storage,
    plan: &Plan,
    since: SystemTime,
    done: &AtomicU64,
    last_look: impl FnOnce(&dyn Storage, &HashSet<Digest>, &Removed) -> Look,
    evict: &Evict<'_>,
    timings: &mut Timings,
) -> Outcome {
    let mut outcome = Outcome::default();
    let mut clock = Instant::now();

    // A registry that caches blob descriptors must stop believing its cache about what is
    // going before it goes; if it cannot be told, nothing goes.
    let blobs: Vec<Digest> = plan.blobs.iter().map(|b| b.digest.clone()).collect();
    let links: Vec<(String, Digest)> = (plan.manifests.iter())
        .map(|m| (m.repository.clone(), m.digest.clone()))
        .chain(
            plan.layer_links
                .iter()
                .map(|l| (l.repository.clone(), l.digest.clone())),
        )
        .collect();
    if let Err(e) = evict(&blobs, &links) {
        outcome.diagnostics.error(
            e,
            "cannot evict the registry's cache entries for what this run would remove, so \
             nothing was removed (the registry would go on answering for them); run again once \
             its Redis is reachable, or with --no-cache-evict after putting the registry in \
             read-only mode",
        );
        return outcome;
    }

    // Tag-history entries first: a revision goes only once nothing in the history names it.
    let entries: Vec<(usize, String)> = plan
        .manifests
        .iter()
        .enumerate()
        .flat_map(|(i, m)| {
            m.tags
                .iter()
                .map(move |t| (i, layout::tag_index_entry(&m.repository, t, &m.digest)))
        })
        .collect();
    let (removed, failed) =
        remove_links_each(storage, &entries, &AtomicU64::new(0), |e| e.1.clone());
    outcome.failures.extend(failed);
    let mut entries_left: Vec<usize> = plan.manifests.iter().map(|m| m.tags.len()).collect();
    for (i, _) in removed {
        entries_left[i] -= 1;
    }
    crate::hooks::pause("revisions");
    let ready: Vec<ManifestDeletion> = plan
        .manifests
        .iter()
        .zip(entries_left)
        .filter(|(_, left)| *left == 0)
        .map(|(m, _)| m.clone())
        .collect();
    let (manifests, failed) = remove_links_each(storage, &ready, done, |m| {
        layout::revision_dir(&m.repository, &m.digest)
    });
    outcome.manifests = manifests;
    outcome.failures.extend(failed);

    crate::hooks::pause("layer-links");
    let (links, failed) = remove_links_each(storage, &plan.layer_links, done, |l| {
        layout::layer_dir(&l.repository, &l.digest)
    });
    outcome.layer_links = links;
    outcome.failures.extend(failed);
    timings.references = lap(&mut clock);
    if !outcome.failures.is_empty() {
        // References that could not be removed still name their blobs: leave every blob (and
        // shard) for a run that can remove the references first.
        outcome.diagnostics.error(
            storage.display(layout::BLOBS),
            format!(
                "no blob was deleted: {} manifest or layer-link deletions failed (listed here), \
                 and the blobs they reference must outlive them; run again once they can be \
                 deleted",
                outcome.failures.len()
            ),
        );
        outcome.manifests.sort();
        outcome.layer_links.sort();
        outcome.failures.sort();
        tidy_trash(storage);
        timings.tidy = lap(&mut clock);
        return outcome;
    }

    sweep_blobs_through_trash(storage, plan, done, last_look, evict, &mut outcome, timings);
    crate::hooks::pause("tidy");
    clock = Instant::now();

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

    housekeeping(storage, plan, since, done, &mut outcome);
    tidy_trash(storage);
    timings.tidy = lap(&mut clock);

    outcome.manifests.sort();
    outcome.layer_links.sort();
    outcome.blobs.sort();
    outcome.failures.sort();
    outcome
}

/// Dead blobs: to the trash, a last look (on a view in which
/// trashed blobs are still readable), back what is live, then delete the rest. If the last look
/// has errors, every blob is put back.
fn sweep_blobs_through_trash(
    storage: &dyn Storage,
    plan: &Plan,
    done: &AtomicU64,
    last_look: impl FnOnce(&dyn Storage, &HashSet<Digest>, &Removed) -> Look,
    evict: &Evict<'_>,
    outcome: &mut Outcome,
    timings: &mut Timings,
) {
    crate::hooks::pause("trash");
    let mut clock = Instant::now();
    let trash = blob_trash(storage);
    let pairs: Vec<(String, String)> = plan
        .blobs
        .iter()
        .map(|b| {
            (
                layout::blob_dir(&b.digest),
                layout::trash_entry(trash, &b.digest),
            )
        })
        .collect();
    let mut trashed = Vec::with_capacity(plan.blobs.len());
    let mut failed = Vec::new();
    for ((b, (from, _)), result) in plan
        .blobs
        .iter()
        .zip(&pairs)
        .zip(storage.rename_many(&pairs))
    {
        match result {
            Ok(()) => trashed.push(b.clone()),
            // Someone (an earlier, interrupted run) already removed it.
            Err(e) if e.kind() == io::ErrorKind::NotFound => trashed.push(b.clone()),
            Err(e) => failed.push(Problem::new(
                storage.display(from),
                format!("cannot move to the trash: {e}"),
            )),
        }
    }
    let moved = Instant::now();
    done.fetch_add(plan.blobs.len() as u64, Ordering::Relaxed);
    outcome.failures.extend(failed);
    timings.trash = lap(&mut clock);
    let candidates: HashSet<Digest> = trashed.iter().map(|b| b.digest.clone()).collect();
    crate::hooks::pause("last-look");
    // A manifest PUT the registry began before the move may have found a doomed blob present
    // and not yet written its links (its blob, revision link and tag come tens of
    // milliseconds apart on a busy host). Let it finish before reading, so that the look sees
    // what it links: what is left of the window is a PUT that takes longer than the slack.
    if !candidates.is_empty() {
        std::thread::sleep(crate::gc::mark::SLACK.saturating_sub(moved.elapsed()));
    }
    // The references removed above are checked too: a push since may need one again.
    let removed = Removed {
        manifests: outcome
            .manifests
            .iter()
            .map(|m| (m.repository.clone(), m.digest.clone()))
            .collect(),
        layer_links: outcome
            .layer_links
            .iter()
            .map(|l| (l.repository.clone(), l.digest.clone()))
            .collect(),
    };
    // Evicted again: between the first eviction and the move, the registry may have cached
    // these once more. From now on it finds them missing in storage.
    let trashed_digests: Vec<Digest> = candidates.iter().cloned().collect();
    let removed_links: Vec<(String, Digest)> = removed
        .manifests
        .iter()
        .chain(&removed.layer_links)
        .cloned()
        .collect();
    let evicted = evict(&trashed_digests, &removed_links);
    let look = if candidates.is_empty() && removed.is_empty() {
        Look::default()
    } else {
        last_look(
            &TrashView::new(storage, trash, &candidates),
            &candidates,
            &removed,
        )
    };
    timings.last_look = lap(&mut clock);
    if let Err(e) = &evicted {
        outcome.diagnostics.error(
            e.clone(),
            "cannot evict the registry's cache entries for the blobs in the trash: every blob \
             was put back (the registry may have accepted a manifest that needs one)",
        );
    }
    let keep_all = !look.diagnostics.errors.is_empty() || evicted.is_err();
    write_back(storage, &look.needed, outcome);
    let (back, gone): (Vec<BlobDeletion>, Vec<BlobDeletion>) = trashed
        .into_iter()
        .partition(|b| keep_all || look.live_blobs.contains(&b.digest));
    outcome.rescued_blobs = back.len();
    for b in &back {
        if let Err(p) = restore(storage, &layout::trash_entry(trash, &b.digest), &b.digest) {
            outcome.failures.push(p);
        }
    }
    outcome.diagnostics.merge(look.diagnostics);
    crate::hooks::pause("delete");
    // Removed in place: a trash entry half-removed by a kill is put back by the next run as a
    // blob directory without data, which the registry counts as absent and gc sweeps.
    let keys: Vec<String> = gone
        .iter()
        .map(|b| layout::trash_entry(trash, &b.digest))
        .collect();
    let mut blobs = Vec::with_capacity(gone.len());
    let mut failed = Vec::new();
    for ((b, key), result) in gone
        .into_iter()
        .zip(&keys)
        .zip(storage.remove_in_place(&keys))
    {
        match result {
            Ok(()) => blobs.push(b),
            Err(e) => failed.push(Problem::new(
                storage.display(key),
                format!("cannot delete: {e}"),
            )),
        }
    }
    outcome.blobs = blobs;
    outcome.failures.extend(failed);
    timings.delete = lap(&mut clock);
}

/// Write back the references this run removed that the last look found needed again: the
/// revision link, the history entries of the tags that still exist, the layer link. Each is
/// determined by its digest (a link holds `sha256:<hex>`), so it is written exactly as the
/// registry wrote it. Written back, they are no longer reported as deleted.
fn write_back(storage: &dyn Storage, needed: &Removed, outcome: &mut Outcome) {
    if needed.is_empty() {
        return;
    }
    let write = |key: String, digest: &Digest| -> Result<(), Problem> {
        storage
            .write_atomic(&key, digest.to_string().as_bytes())
            .map_err(|e| {
                Problem::new(
                    storage.display(&key),
                    format!(
                        "removed by this run and needed again by a push since, but cannot be \
                         written back: {e}; write `{digest}` there, or push the image again"
                    ),
                )
            })
    };
    let (back, kept): (Vec<ManifestDeletion>, Vec<ManifestDeletion>) =
        std::mem::take(&mut outcome.manifests)
            .into_iter()
            .partition(|m| {
                needed
                    .manifests
                    .contains(&(m.repository.clone(), m.digest.clone()))
            });
    outcome.manifests = kept;
    for m in back {
        let mut result = write(layout::revision_link(&m.repository, &m.digest), &m.digest);
        for tag in &m.tags {
            // Only the history of a tag that still exists: an entry alone would make a tag
            // without a current link.
            if storage
                .stat(&layout::tag_current_link(&m.repository, tag))
                .is_ok()
            {
                let key = layout::tag_index_link(&m.repository, tag, &m.digest);
                result = result.and(write(key, &m.digest));
            }
        }
        match result {
            Ok(()) => outcome.rescued_manifests += 1,
            Err(p) => outcome.failures.push(p),
        }
    }
    let (back, kept): (Vec<LayerLinkDeletion>, Vec<LayerLinkDeletion>) =
        std::mem::take(&mut outcome.layer_links)
            .into_iter()
            .partition(|l| {
                needed
                    .layer_links
                    .contains(&(l.repository.clone(), l.digest.clone()))
            });
    outcome.layer_links = kept;
    for l in back {
        let key = layout::layer_link(&l.repository, &l.digest);
        // An alias link (sha512 in its path) holds the blob's sha256, which the plan did not
        // keep: say so rather than write a wrong link.
        let result = if l.digest.algorithm() == Algorithm::Sha256 {
            write(key, &l.digest)
        } else {
            Err(Problem::new(
                storage.display(&key),
                "removed by this run and needed again by a push since, but an alias link's \
                 content is not known: push the blob to this repository again",
            ))
        };
        match result {
            Ok(()) => outcome.rescued_layer_links += 1,
            Err(p) => outcome.failures.push(p),
        }
    }
}

/// Abandoned uploads, then repositories left with nothing in them. Each gets a last look
/// right before it goes: an upload a client touched since the run began is still in progress,
/// and a repository into which anything was pushed meanwhile is no longer empty.
fn housekeeping(
    storage: &dyn Storage,
    plan: &Plan,
    since: SystemTime,
    done: &AtomicU64,
    outcome: &mut Outcome,
) {
    let since = since
        .checked_sub(crate::gc::mark::SLACK)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let abandoned: Vec<UploadDeletion> = plan
        .uploads
        .par_iter()
        .filter(|u| {
            let key = layout::upload_dir(&u.repository, &u.uuid);
            let (touched, _, unreadable) = discover::upload_times(storage, &key);
            !unreadable && touched < since
        })
        .cloned()
        .collect();
    let (uploads, failed) = remove_each(storage, &abandoned, done, |u| {
        layout::upload_dir(&u.repository, &u.uuid)
    });
    // Their data the store keeps outside the listing goes with them: an upload counts as
    // removed once every part of it is.
    let pending: Vec<PendingUpload> = uploads.iter().flat_map(|u| u.multipart.clone()).collect();
    let aborted = storage.abort_uploads(&pending);
    let mut not_aborted = HashSet::new();
    for (p, result) in pending.iter().zip(aborted) {
        if let Err(e) = result {
            not_aborted.insert(p.upload_id.clone());
            outcome.failures.push(Problem::new(
                storage.display(&p.key),
                format!("cannot abort the multipart upload {}: {e}", p.upload_id),
            ));
        }
    }
    let uploads = uploads
        .into_iter()
        .filter(|u| {
            !u.multipart
                .iter()
                .any(|p| not_aborted.contains(&p.upload_id))
        })
        .collect();
    outcome.uploads = uploads;
    outcome.uploads.sort();
    outcome.failures.extend(failed);

    let gone: HashSet<(&str, &str)> = outcome
        .uploads
        .iter()
        .map(|u| (u.repository.as_str(), u.uuid.as_str()))
        .collect();
    let planned: HashSet<(&str, &str)> = plan
        .uploads
        .iter()
        .map(|u| (u.repository.as_str(), u.uuid.as_str()))
        .collect();
    // Each repository checked right before its own removal, and again before its last part:
    // a push completed by cross-repository mounts and a manifest PUT between a check of every
    // repository and the removal of them all lost its tag and revision. `_uploads` and
    // `_manifests` first, `_layers` (what the catalog lists) last.
    let results: Vec<(Option<RepositoryDeletion>, Vec<Problem>)> = plan
        .repositories
        .par_iter()
        .map(|r| {
            // Every upload planned for it must be gone: one kept by its last look keeps it.
            let uploads_gone = planned
                .iter()
                .filter(|(repo, _)| *repo == r.name)
                .all(|k| gone.contains(k));
            if !uploads_gone || !is_empty(storage, &r.name) {
                return (None, Vec::new());
            }
            let parts = layout::repository_parts(&r.name);
            let mut failed = Vec::new();
            for (i, part) in parts.iter().enumerate() {
                if i == parts.len() - 1 && !is_empty(storage, &r.name) {
                    return (None, failed);
                }
                let (_, f) = remove_each(
                    storage,
                    std::slice::from_ref(part),
                    &AtomicU64::new(0),
                    |k| k.clone(),
                );
                if !f.is_empty() {
                    failed.extend(f);
                    return (None, failed);
                }
            }
            done.fetch_add(1, Ordering::Relaxed);
            (Some(r.clone()), failed)
        })
        .collect();
    let mut repositories = Vec::new();
    let mut failed = Vec::new();
    for (r, f) in results {
        repositories.extend(r);
        failed.extend(f);
    }
    for r in &repositories {
        remove_empty_ancestors(storage, &layout::repository_dir(&r.name));
    }
    outcome.repositories = repositories;
    outcome.repositories.sort();
    outcome.failures.extend(failed);
}

/// Whether a repository holds nothing any more: no tag, revision, layer link or upload, and
/// nothing unreadable.
fn is_empty(storage: &dyn Storage, name: &str) -> bool {
    let options = discover::Options {
        tag_history: false,
        link_times: false,
        uploads: true,
    };
    let (repo, diags) = discover::discover_repository(storage, name.to_string(), options);
    repo.complete
        && diags.errors.is_empty()
        && repo.tags.is_empty()
        && repo.revisions.is_empty()
        && repo.layers.is_empty()
        && repo.uploads.is_empty()
}

/// The trash dead blobs move to: beside `blobs/` when both are on one filesystem, inside it
/// when `blobs/` is a filesystem of its own, so that moving a blob is always a rename.
fn blob_trash(storage: &dyn Storage) -> &'static str {
    match storage.same_filesystem(layout::BLOBS, layout::V2) {
        Ok(false) => layout::BLOBS_TRASH,
        _ => layout::TRASH,
    }
}

/// Remove the trash directories when nothing is left in them: its shards, then itself.
pub(crate) fn tidy_trash(storage: &dyn Storage) {
    let _ = storage.remove_empty_dir(layout::TRASH_GONE);
    for trash in layout::TRASHES {
        if let Ok(entries) = storage.list_dir(trash) {
            let shards: Vec<String> = entries
                .iter()
                .filter(|e| layout::is_trash_shard(&e.name))
                .map(|e| format!("{trash}/{}", e.name))
                .collect();
            shards.par_iter().for_each(|s| {
                let _ = storage.remove_empty_dir(s);
            });
        }
        let _ = storage.remove_empty_dir(trash);
    }
}

/// Put a blob back from the trash (from `entry`). If the blob was pushed again meanwhile (its
/// directory exists), the trashed copy is the same content and is simply removed.
fn restore(storage: &dyn Storage, entry: &str, digest: &Digest) -> Result<(), Problem> {
    match storage.rename(entry, &layout::blob_dir(digest)) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => storage
            .remove_all(entry)
            .map_err(|e| Problem::new(storage.display(entry), format!("cannot delete: {e}"))),
        Err(e) => Err(Problem::new(
            storage.display(entry),
            format!(
                "cannot put back from the trash to {}: {e}",
                storage.display(&layout::blob_dir(digest))
            ),
        )),
    }
}

/// The blobs in a trash, by the key of their entry: in its shards, or flat (older runs).
fn trash_contents(storage: &dyn Storage, trash: &str) -> (Vec<(String, Digest)>, Vec<Problem>) {
    let mut found = Vec::new();
    let mut problems = Vec::new();
    let mut dirs = vec![trash.to_string()];
    while let Some(dir) = dirs.pop() {
        let entries = match storage.list_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => {
                problems.push(Problem::new(
                    storage.display(&dir),
                    format!("cannot list the trash of an interrupted run: {e}"),
                ));
                continue;
            }
        };
        for entry in entries {
            let key = format!("{dir}/{}", entry.name);
            if dir == trash && layout::is_trash_shard(&entry.name) {
                dirs.push(key);
                continue;
            }
            // `gone/` is emptied before the trash is read.
            if dir == layout::TRASH && entry.name == "gone" {
                continue;
            }
            let digest = entry
                .name
                .split_once('-')
                .and_then(|(alg, hex)| format!("{alg}:{hex}").parse::<Digest>().ok())
                .filter(|_| entry.utf8);
            match digest {
                Some(d) => found.push((key, d)),
                None => problems.push(Problem::new(
                    storage.display(&key),
                    "not a blob in regsweep's trash; left alone",
                )),
            }
        }
    }
    (found, problems)
}

/// Put back everything a killed run left in the trash, before anything else happens: the
/// mark then decides afresh. First finish the link removals it left half done. Returns how
/// many blobs came back, and the problems.
pub fn recover_trash(storage: &dyn Storage) -> (usize, Vec<Problem>) {
    if let Err(e) = storage.finish_removals() {
        return (
            0,
            vec![Problem::new(
                storage.display(layout::REMOVING),
                format!("cannot finish the removals of an interrupted run: {e}"),
            )],
        );
    }
    // Half-finished deletions of a killed run: finish them.
    if let Err(e) = storage.remove_all(layout::TRASH_GONE) {
        return (
            0,
            vec![Problem::new(
                storage.display(layout::TRASH_GONE),
                format!("cannot finish the deletions of an interrupted run: {e}"),
            )],
        );
    }
    let mut restored = 0;
    let mut problems = Vec::new();
    for trash in layout::TRASHES {
        let (found, listed) = trash_contents(storage, trash);
        problems.extend(listed);
        for (entry, digest) in found {
            match restore(storage, &entry, &digest) {
                Ok(()) => restored += 1,
                Err(p) => problems.push(p),
            }
        }
    }
    if problems.is_empty() {
        tidy_trash(storage);
    }
    (restored, problems)
}

/// Remove a deleted repository's directory and the parents it leaves empty, up to (not
/// including) `repositories/`. A directory that still holds anything (a nested repository)
/// stays, and so do all above it.
pub(crate) fn remove_empty_ancestors(storage: &dyn Storage, dir: &str) {
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

//! Edits: the tags, manifests and repositories that `delete` and `prune` remove.
//!
//! [`crate::edit::delete`] and [`crate::edit::prune`] decide what to remove and why; the result is a list of
//! [`RepoEdits`], which [`crate::gc::sweep::apply_edits`] carries out (or a dry run prints). Edits
//! only remove references (tags, revision links, layer links): no blob is touched until the
//! collector runs, so an interrupted edit never breaks an image that is still tagged.

use serde::{Deserialize, Serialize};

use std::sync::atomic::AtomicU64;

use crate::cache::registry::Gone;
use crate::error::Problem;
use crate::gc::sweep;
use crate::registry::layout;
use crate::storage::Storage;

/// A tag to remove: its whole `tags/<tag>` directory, current link and history. The manifest
/// it pointed at stays as an untagged revision, as when the registry deletes a tag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TagRemoval {
    pub tag: String,
    /// The digest the tag pointed at, when its `current` link could be read.
    pub digest: Option<String>,
    /// When the tag was last pushed (modification time of `current/link`), RFC 3339.
    pub pushed: Option<String>,
    /// Why it goes: the reference given on the command line, or the rule and conditions.
    pub reason: String,
}

/// A manifest to delete the way the registry's API does: its revision and every tag whose
/// `current` link names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestRemoval {
    pub digest: String,
    pub tags: Vec<String>,
}

/// Everything removed from one repository.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepoEdits {
    pub name: String,
    /// The whole repository goes (its `_manifests`, `_layers` and `_uploads`; repositories
    /// nested below it stay).
    pub repository: bool,
    pub tags: Vec<TagRemoval>,
    pub manifests: Vec<ManifestRemoval>,
    /// Tags considered and kept (prune only).
    pub kept_tags: usize,
}

impl RepoEdits {
    pub fn new(name: impl Into<String>) -> RepoEdits {
        RepoEdits {
            name: name.into(),
            ..RepoEdits::default()
        }
    }

    pub fn is_empty(&self) -> bool {
        !self.repository && self.tags.is_empty() && self.manifests.is_empty()
    }

    /// The storage keys to remove, in the order that keeps every intermediate state valid:
    /// tags (the roots) before the revisions they name, and for a whole repository, tags
    /// first, then the rest of `_manifests`, then layer links and uploads. Removing a key
    /// removes everything below it.
    pub fn keys(&self) -> Vec<String> {
        let name = &self.name;
        if self.repository {
            return vec![
                layout::tags_dir(name),
                layout::manifests_dir(name),
                layout::layers_dir(name),
                layout::uploads_dir(name),
            ];
        }
        let mut keys: Vec<String> = self
            .tags
            .iter()
            .map(|t| layout::tag_dir(name, &t.tag))
            .collect();
        for m in &self.manifests {
            keys.extend(m.tags.iter().map(|t| layout::tag_dir(name, t)));
        }
        for m in &self.manifests {
            // Digests were parsed when the edit was made; a bad one cannot get here.
            if let Ok(d) = m.digest.parse() {
                keys.push(layout::revision_dir(name, &d));
            }
        }
        let mut seen = std::collections::HashSet::new();
        keys.retain(|k| seen.insert(k.clone()));
        keys
    }
}

/// Tell the registry's cache what the edits removed.
pub fn add_to(edits: &[RepoEdits], gone: &mut Gone) {
    for e in edits {
        gone.add(e.keys(), 0, e.manifests.len() + usize::from(e.repository));
    }
}

/// Carry out the edits of `delete` and `prune`: repositories in parallel, each one's keys in
/// the order [`RepoEdits::keys`] gives. The first failure in a repository stops the rest of
/// that repository's edits (a revision is never removed while a tag that names it could not
/// be), and is reported with its path. Returns the repositories whose edits all succeeded.
pub fn apply_edits(storage: &dyn Storage, edits: &[RepoEdits]) -> (Vec<RepoEdits>, Vec<Problem>) {
    let done = AtomicU64::new(0);
    let (mut ok, mut failed) = sweep::run_step(edits, &done, |e| {
        for key in e.keys() {
            if let Some(Err(err)) = storage.remove_trees(std::slice::from_ref(&key)).pop() {
                return Err(vec![Problem::new(
                    storage.display(&key),
                    format!("cannot delete: {err}"),
                )]);
            }
        }
        if e.repository {
            sweep::remove_empty_ancestors(storage, &layout::repository_dir(&e.name));
        }
        Ok(())
    });
    sweep::tidy_trash(storage);
    ok.sort_by(|a, b| a.name.cmp(&b.name));
    failed.sort();
    (ok, failed)
}

//! Looking again: a real sweep re-reads the repositories before it deletes, and once more after
//! it has moved dead blobs to the trash, so that pushes made while the run was marking are not
//! broken.
//!
//! A push writes blobs, then layer links, then the manifest's revision link and tag. The first
//! look (the mark) may have missed all of it. Each later look reads every repository again,
//! with anything modified since the run started counted as young, so new revisions, tags and
//! layer links are roots, and marks from them. What they keep is dropped from the plan (or
//! taken back out of the trash).
//!
//! Why a trash: the registry checks that every blob a manifest references exists before it
//! accepts the manifest. Once a dead blob is in the trash, a push that reuses it fails loudly
//! (and the client uploads it again) instead of succeeding against a blob about to vanish; a
//! push whose manifest was accepted before the move is seen by the last look, which puts the
//! blob back. Only a manifest accepted in the instant between the move and the last look's
//! reading of its repository can slip through; read-only mode closes that too (see README).

use std::collections::{HashMap, HashSet};
use std::io;
use std::time::SystemTime;

use crate::error::Diagnostics;
use crate::gc::discover;
use crate::gc::mark;
use crate::gc::plan;
use crate::registry::digest::Digest;
use crate::registry::layout;
use crate::storage::{Entry, Meta, Storage};

/// What a look found still deletable, and what it found live among the candidates.
#[derive(Debug, Default)]
pub struct Look {
    /// Candidate blobs something now references.
    pub live_blobs: HashSet<Digest>,
    /// (repository, digest) of manifests this look would delete too.
    pub manifests: HashSet<(String, Digest)>,
    /// (repository, digest) of layer links this look would delete too.
    pub layer_links: HashSet<(String, Digest)>,
    /// (repository, uuid) of uploads this look would delete too.
    pub uploads: HashSet<(String, String)>,
    /// Repositories this look would remove too.
    pub repositories: HashSet<String>,
    /// Among the references this run already removed ([`Removed`]): the revisions a tag, a
    /// live index or a live subject names again, and the layer links a live manifest of
    /// their repository needs again. The sweep writes them back.
    pub needed: Removed,
    pub diagnostics: Diagnostics,
}

/// References a run has removed, by (repository, digest): what a later look must check are
/// not needed again.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Removed {
    pub manifests: HashSet<(String, Digest)>,
    pub layer_links: HashSet<(String, Digest)>,
}

impl Removed {
    pub fn is_empty(&self) -> bool {
        self.manifests.is_empty() && self.layer_links.is_empty()
    }
}

/// Read every repository again and mark, with everything modified since `since` (minus a
/// little slack) counted as young. `candidates` are the blobs still to be deleted; only those
/// are tracked. `options` are the run's plan options.
pub fn look_again(
    storage: &dyn Storage,
    candidates: &HashSet<Digest>,
    removed: &Removed,
    since: SystemTime,
    options: plan::Options,
) -> Look {
    let delete_untagged = options.delete_untagged;
    let cutoff = options.cutoff.min(
        since
            .checked_sub(mark::SLACK)
            .unwrap_or(SystemTime::UNIX_EPOCH),
    );
    let mut look = Look::default();
    // A backend that lists ahead must see what was pushed since.
    if let Err(e) = storage.refresh(layout::REPOSITORIES) {
        look.diagnostics.error(
            storage.display(layout::REPOSITORIES),
            format!("cannot list again: {e}"),
        );
        return look;
    }
    let (names, diags) = discover::repository_names(storage);
    look.diagnostics.merge(diags);
    let discover_options = discover::Options {
        tag_history: delete_untagged,
        link_times: true,
        uploads: options.uploads_before.is_some() || options.empty_repositories,
    };
    let mark_options = mark::Options {
        delete_untagged,
        cutoff,
    };
    let plan_options = plan::Options {
        cutoff,
        ignore_errors: false,
        ..options
    };
    let counter = std::sync::atomic::AtomicU64::new(0);
    let per_repo = crate::gc::read::read_and_mark_all(
        storage,
        names,
        discover_options,
        mark_options,
        &counter,
        |r| {
            let live: Vec<Digest> = r
                .blobs
                .into_iter()
                .map(|(d, _)| d)
                .filter(|d| candidates.contains(d))
                .collect();
            let plan = plan::plan_repository(&r.repo, &r.mark, plan_options);
            let name = &r.repo.name;
            let needed = Removed {
                manifests: needed_again(&removed.manifests, name, &r.mark.live_manifests),
                layer_links: needed_again(&removed.layer_links, name, &r.mark.referenced),
            };
            (plan, live, needed, r.diagnostics)
        },
    );
    for (p, live, needed, diags) in per_repo {
        look.live_blobs.extend(live);
        look.needed.manifests.extend(needed.manifests);
        look.needed.layer_links.extend(needed.layer_links);
        look.manifests
            .extend(p.manifests.into_iter().map(|m| (m.repository, m.digest)));
        look.layer_links
            .extend(p.layer_links.into_iter().map(|l| (l.repository, l.digest)));
        look.uploads
            .extend(p.uploads.into_iter().map(|u| (u.repository, u.uuid)));
        if p.empty {
            look.repositories.insert(p.name);
        }
        look.diagnostics.merge(diags);
    }
    look
}

/// The removed references of repository `name` whose digest is in `live`.
fn needed_again(
    removed: &HashSet<(String, Digest)>,
    name: &str,
    live: &HashSet<Digest>,
) -> HashSet<(String, Digest)> {
    if removed.is_empty() {
        return HashSet::new();
    }
    live.iter()
        .map(|d| (name.to_string(), d.clone()))
        .filter(|k| removed.contains(k))
        .collect()
}

/// The storage as the last look must see it: blobs moved to the trash are still readable at
/// their usual keys, because a push may have made one of them a live manifest again (the
/// registry does not rewrite a blob it already has) and the look must read it to mark from it.
pub struct TrashView<'a> {
    inner: &'a dyn Storage,
    /// `blobs/.../<hex>/data` -> `.regsweep-trash/<alg>-<hex>/data`.
    moved: HashMap<String, String>,
}

impl<'a> TrashView<'a> {
    pub fn new(inner: &'a dyn Storage, trash: &str, trashed: &HashSet<Digest>) -> TrashView<'a> {
        let moved = trashed
            .iter()
            .map(|d| {
                (
                    layout::blob_data(d),
                    format!("{}/{}", layout::trash_entry(trash, d), layout::DATA_FILE),
                )
            })
            .collect();
        TrashView { inner, moved }
    }

    fn key<'k>(&'k self, key: &'k str) -> &'k str {
        self.moved.get(key).map_or(key, String::as_str)
    }
}

impl Storage for TrashView<'_> {
    fn list_dir(&self, key: &str) -> io::Result<Vec<Entry>> {
        self.inner.list_dir(key)
    }
    fn stat(&self, key: &str) -> io::Result<Meta> {
        self.inner.stat(self.key(key))
    }
    fn read_into(&self, key: &str, limit: u64, buf: &mut Vec<u8>) -> io::Result<Meta> {
        self.inner.read_into(self.key(key), limit, buf)
    }
    fn read_content(&self, key: &str, limit: u64, buf: &mut Vec<u8>) -> io::Result<()> {
        self.inner.read_content(self.key(key), limit, buf)
    }
    fn read_chunks(&self, key: &str, f: &mut dyn FnMut(&[u8])) -> io::Result<u64> {
        self.inner.read_chunks(self.key(key), f)
    }
    fn remove_all(&self, key: &str) -> io::Result<()> {
        self.inner.remove_all(key)
    }
    fn remove_empty_dir(&self, key: &str) -> io::Result<bool> {
        self.inner.remove_empty_dir(key)
    }
    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        self.inner.rename(from, to)
    }
    fn same_filesystem(&self, a: &str, b: &str) -> io::Result<bool> {
        self.inner.same_filesystem(a, b)
    }
    fn refresh(&self, prefix: &str) -> io::Result<()> {
        self.inner.refresh(prefix)
    }
    fn identity(&self) -> String {
        self.inner.identity()
    }
    fn display(&self, key: &str) -> String {
        self.inner.display(key)
    }
}

/// Narrow a plan to what a later look agrees is dead. Returns how many manifests, layer links
/// and blobs were rescued (uploads and repositories a look keeps are simply not deleted).
pub fn narrow(plan: &mut plan::Plan, look: &Look) -> (usize, usize, usize) {
    plan.uploads.retain(|u| {
        look.uploads
            .contains(&(u.repository.clone(), u.uuid.clone()))
    });
    plan.repositories
        .retain(|r| look.repositories.contains(&r.name));
    let (m, l, b) = (
        plan.manifests.len(),
        plan.layer_links.len(),
        plan.blobs.len(),
    );
    plan.manifests.retain(|x| {
        look.manifests
            .contains(&(x.repository.clone(), x.digest.clone()))
    });
    plan.layer_links.retain(|x| {
        look.layer_links
            .contains(&(x.repository.clone(), x.digest.clone()))
    });
    plan.blobs.retain(|x| !look.live_blobs.contains(&x.digest));
    (
        m - plan.manifests.len(),
        l - plan.layer_links.len(),
        b - plan.blobs.len(),
    )
}

//! Mark: roots and edges in, live set out. Pure: no I/O, so it is tested on hand-made graphs.
//!
//! Liveness of a manifest is per repository (a tag, an index's children and a referrer's
//! subject are all looked up in the repository that holds them), so repositories are marked in
//! parallel, each into its own result, and the live blob sets are merged once. Blobs are shared:
//! a blob is live when any live manifest in any repository needs it.
//!
//! Roots:
//! - every tag's `current` target;
//! - without `delete_untagged`, every revision; with it, revisions younger than the cutoff
//!   (a push in progress may not have tagged its manifest yet);
//! - the targets of layer links younger than the cutoff (a blob just pushed or mounted into a
//!   repository whose manifest has not arrived yet).
//!
//! Edges: manifest -> its blobs; index -> its children (any depth, cycles terminate); with
//! `delete_untagged`, manifest -> the revisions whose `subject` names it (referrers). A child
//! or tag target without a revision link in the repository (deleted through the API) is not
//! followed: the registry cannot serve it. Its digest is kept as a blob, nothing more.
//!
//! A blob reference is resolved through the repository's layer link, because a blob pushed
//! under an alias digest (sha512) is stored under the digest inside the link.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use rayon::prelude::*;

use crate::error::Diagnostics;
use crate::gc::discover::{BlobIndex, Link, Repository};
use crate::gc::parse::Manifests;
use crate::registry::digest::{Algorithm, Digest};
use crate::registry::layout;

/// Clock skew and coarse timestamps: anything modified this long before a run started counts
/// as modified during it.
pub const SLACK: Duration = Duration::from_secs(2);

/// The instant before which something must have been modified to be deleted: `min_age` before
/// the run's start, and never later than the start less [`SLACK`], whatever `min_age` says.
/// The registry writes a manifest's blob before its revision link and its tag (about 20 ms
/// apart on a busy host): a run that lists in between sees a blob nothing links yet, and no
/// later look can see a link that is not yet written. Only the blob's own time shows that it
/// is a write in progress, so whatever was written since the run began is young. `--min-age`
/// stays what it is for: uploads and pushes that take longer than that.
pub fn cutoff(start: SystemTime, min_age: Duration) -> SystemTime {
    let begun = start.checked_sub(SLACK).unwrap_or(SystemTime::UNIX_EPOCH);
    start
        .checked_sub(min_age)
        .unwrap_or(SystemTime::UNIX_EPOCH)
        .min(begun)
}

#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub delete_untagged: bool,
    /// Anything modified after this instant is too young to delete, and so is a root.
    pub cutoff: SystemTime,
}

/// The result of marking one repository.
#[derive(Debug, Default, Clone)]
pub struct RepoMark {
    /// Revision digests (as addressed through the API) that are live in this repository.
    pub live_manifests: HashSet<Digest>,
    /// Digests that live manifests of this repository reference: its layer links for these
    /// must stay, so the images still pull through this repository.
    pub referenced: HashSet<Digest>,
    /// Live manifests (named by a tag, a live index or as a subject) without a revision link
    /// in this repository. Their content is followed when it was loaded (see
    /// [`RepoMark::to_load`]), so everything they need is kept: a revision link written back
    /// (by `check --repair`, or by a run that removed it and finds it needed) makes them pull
    /// again.
    pub unlinked: HashSet<Digest>,
    /// Unlinked live manifests whose content the mark was not given: load them and mark
    /// again.
    pub to_load: Vec<Digest>,
    /// With `delete_untagged`: what each dead revision references (its content, its blobs
    /// and its children), so that a rule that keeps it waiting (`--unreferenced-for`) can
    /// keep it whole.
    pub dead_references: HashMap<Digest, Vec<Digest>>,
}

#[derive(Debug, Default)]
pub struct Marked {
    pub live_blobs: HashSet<Digest>,
    /// One per repository, in the inventory's order.
    pub repositories: Vec<RepoMark>,
    pub diagnostics: Diagnostics,
}

/// A blob kept alive, with the size its descriptor declares (if one does).
pub type LiveBlob = (Digest, Option<u64>);

/// The live blobs: one bit per blob of the [`BlobIndex`], set from any thread without a lock.
/// A digest the blob store does not hold (a missing layer, an alias) has no bit and needs none.
#[derive(Debug)]
pub struct LiveSet {
    bits: Vec<Vec<AtomicU64>>,
}

impl LiveSet {
    pub fn new(index: &BlobIndex) -> LiveSet {
        LiveSet {
            bits: index
                .shards
                .iter()
                .map(|s| {
                    (0..s.len().div_ceil(64))
                        .map(|_| AtomicU64::new(0))
                        .collect()
                })
                .collect(),
        }
    }

    /// Mark a blob live, recording the size its descriptor declares (if any), so that live
    /// blobs need no stat.
    pub fn keep(&self, index: &BlobIndex, d: &Digest, size: Option<u64>) {
        if let Some((s, i)) = index.locate(d) {
            self.bits[s][i / 64].fetch_or(1 << (i % 64), Ordering::Relaxed);
            if let Some(size) = size {
                index.shards[s].set_size(i, size);
            }
        }
    }

    pub fn contains(&self, shard: usize, i: usize) -> bool {
        self.bits[shard][i / 64].load(Ordering::Relaxed) & (1 << (i % 64)) != 0
    }
}

/// Map a storage key to a path for messages. Passed in so that this module stays pure.
pub type Display<'a> = &'a (dyn Fn(&str) -> String + Sync);

/// Mark several repositories against one manifest map, collecting the live blobs in a set
/// (for tests and benches; the driver marks one repository at a time into a [`LiveSet`]).
pub fn mark(
    repositories: &[Repository],
    manifests: &Manifests,
    options: Options,
    display: Display<'_>,
) -> Marked {
    let per_repo: Vec<(RepoMark, Vec<LiveBlob>, Diagnostics)> = repositories
        .par_iter()
        .map(|repo| mark_repository(repo, manifests, options, display))
        .collect();

    let total: usize = per_repo.iter().map(|(_, blobs, _)| blobs.len()).sum();
    let mut marked = Marked {
        live_blobs: HashSet::with_capacity(total),
        repositories: Vec::with_capacity(per_repo.len()),
        diagnostics: Diagnostics::default(),
    };
    for (repo_mark, blobs, diags) in per_repo {
        marked.live_blobs.extend(blobs.into_iter().map(|(d, _)| d));
        marked.repositories.push(repo_mark);
        marked.diagnostics.merge(diags);
    }
    marked
}

struct RepoMarker<'a> {
    repo: &'a Repository,
    manifests: &'a Manifests,
    options: Options,
    display: Display<'a>,
    revisions: HashMap<&'a Digest, &'a Link>,
    layers: HashMap<&'a Digest, &'a Link>,
    live_blobs: Vec<LiveBlob>,
    result: RepoMark,
    diags: Diagnostics,
}

impl<'a> RepoMarker<'a> {
    fn young(&self, t: SystemTime) -> bool {
        t > self.options.cutoff
    }

    /// Keep a blob a manifest of this repository references, and whatever the repository's
    /// layer link for it points at.
    fn keep_blob(&mut self, digest: &Digest, size: Option<u64>) {
        self.result.referenced.insert(digest.clone());
        self.live_blobs.push((digest.clone(), size));
        if let Some(link) = self.layers.get(digest) {
            self.keep_link_target(link);
        }
    }

    fn keep_link_target(&mut self, link: &Link) {
        match &link.target {
            Ok(target) => {
                if *target != link.digest {
                    self.live_blobs.push((target.clone(), None));
                }
            }
            // A sha256 link can only ever point at its own digest (the canonical digest of
            // content is its sha256), which is already kept. An alias link is the only way to
            // the blob it names: without it the live set is incomplete.
            Err(e)
                if link.digest.algorithm() == Algorithm::Sha256
                    || link.partial && self.young(link.modified) =>
            {
                self.diags.warn(
                    (self.display)(&layout::layer_link(&self.repo.name, &link.digest)),
                    format!("layer link of a live blob: {e}"),
                )
            }
            Err(e) => self.diags.error(
                (self.display)(&layout::layer_link(&self.repo.name, &link.digest)),
                format!("alias layer link of a live blob cannot be resolved: {e}"),
            ),
        }
    }

    fn roots(&mut self) -> (Vec<Digest>, HashMap<&'a Digest, Vec<&'a Digest>>) {
        let repo = self.repo;
        let mut roots = Vec::new();
        for tag in &repo.tags {
            match &tag.current {
                Ok(d) => roots.push(d.clone()),
                // A push in progress: the registry writes the manifest's revision link (a
                // root while it is young) before the tag's, so nothing it needs can go.
                Err(e) if tag.made.is_some_and(|t| self.young(t)) => self.diags.warn(
                    (self.display)(&layout::tag_current_link(&repo.name, &tag.name)),
                    format!(
                        "tag {:?} of {}: {e} yet; made within --min-age or during the run: \
                             a push in progress",
                        tag.name, repo.name
                    ),
                ),
                Err(e) => self.diags.error(
                    (self.display)(&layout::tag_current_link(&repo.name, &tag.name)),
                    format!("tag {:?} of {}: {e}", tag.name, repo.name),
                ),
            }
        }
        let mut referrers: HashMap<&Digest, Vec<&Digest>> = HashMap::new();
        for rev in &repo.revisions {
            let target = match &rev.target {
                Ok(t) => t,
                // A revision link being written (it read empty or short, again and again):
                // the registry writes a revision's own digest there, and while it is young
                // it is a root, so nothing it needs can go.
                Err(e) if rev.partial && self.young(rev.modified) => {
                    self.diags.warn(
                        (self.display)(&layout::revision_link(&repo.name, &rev.digest)),
                        format!(
                            "manifest revision {} of {}: {e}; written during the run: a push \
                             in progress, kept",
                            rev.digest, repo.name
                        ),
                    );
                    &rev.digest
                }
                Err(e) => {
                    // Without the target we cannot tell what this manifest keeps alive.
                    self.diags.error(
                        (self.display)(&layout::revision_link(&repo.name, &rev.digest)),
                        format!("manifest revision {} of {}: {e}", rev.digest, repo.name),
                    );
                    continue;
                }
            };
            if !self.options.delete_untagged || self.young(rev.modified) {
                roots.push(rev.digest.clone());
            }
            if self.options.delete_untagged {
                match self.manifests.get(target) {
                    Some(Ok(m)) => {
                        if let Some(subject) = &m.subject {
                            referrers.entry(subject).or_default().push(&rev.digest);
                        }
                    }
                    // An unreadable manifest might be a referrer of a live image.
                    Some(Err(e)) => self.diags.error(e.path.clone(), e.message.clone()),
                    None => self.diags.error(
                        (self.display)(&layout::blob_data(target)),
                        format!("manifest {target} was not loaded"),
                    ),
                }
            }
        }
        for link in &repo.layers {
            if self.young(link.modified) {
                self.live_blobs.push((link.digest.clone(), None));
                self.keep_link_target(link);
            }
        }
        (roots, referrers)
    }

    fn run(mut self) -> (RepoMark, Vec<LiveBlob>, Diagnostics) {
        let (mut stack, referrers) = self.roots();
        while let Some(d) = stack.pop() {
            if !self.result.live_manifests.insert(d.clone()) {
                continue;
            }
            self.result.referenced.insert(d.clone());
            let content = match self.revisions.get(&d).map(|l| (l, &l.target)) {
                Some((_, Ok(target))) => target.clone(),
                // Being written (see roots()): its own digest.
                Some((l, Err(_))) if l.partial && self.young(l.modified) => d.clone(),
                // Already reported as an error in roots().
                Some((_, Err(_))) => continue,
                None => {
                    // A tag or a live index names a manifest whose revision link is gone from
                    // this repository: the registry does not serve it now, but a link written
                    // back would make it pull again (a run that removed the link finds it
                    // needed and writes it back; `check --repair` does too). So while its
                    // content exists, everything it references is kept, as if it were linked.
                    self.result.unlinked.insert(d.clone());
                    match self.manifests.get(&d) {
                        Some(Ok(_)) => {
                            if self.repo.complete {
                                self.diags.warn(
                                    (self.display)(&layout::revision_link(&self.repo.name, &d)),
                                    format!(
                                        "manifest {d} is named by a tag or a live index of {} but has no revision link there, so it does not pull; everything it references is kept (`regsweep check --repair` writes the link back)",
                                        self.repo.name
                                    ),
                                );
                            }
                            d.clone()
                        }
                        None => {
                            self.result.to_load.push(d.clone());
                            self.live_blobs.push((d.clone(), None));
                            continue;
                        }
                        // Its content is gone too: nothing can bring it back, so only its own
                        // digest is kept. When the repository could not be listed whole, the
                        // revision may well be there: the listing error already says so, and
                        // "already broken" would be a false alarm.
                        Some(Err(_)) => {
                            if self.repo.complete {
                                self.diags.warn(
                                    (self.display)(&layout::revision_link(&self.repo.name, &d)),
                                    format!(
                                        "manifest {d} is named by a tag or a live index of {} but was deleted from it, and its content is gone; that image is already broken",
                                        self.repo.name
                                    ),
                                );
                            }
                            self.live_blobs.push((d.clone(), None));
                            continue;
                        }
                    }
                }
            };
            if content != d {
                self.live_blobs.push((d.clone(), None));
                self.result.referenced.insert(content.clone());
            }
            let loaded = self.manifests.get(&content);
            let len = match loaded {
                Some(Ok(m)) => Some(m.len),
                _ => None,
            };
            self.live_blobs.push((content.clone(), len));
            match loaded {
                Some(Ok(m)) => {
                    let m = m.clone();
                    for blob in &m.blobs {
                        self.keep_blob(&blob.digest, blob.size);
                    }
                    for child in &m.children {
                        if !self.result.live_manifests.contains(child) {
                            stack.push(child.clone());
                        }
                    }
                }
                // Nothing brings missing content back, and every later run would refuse on
                // it: say the one command that clears the dangling name.
                Some(Err(e)) if e.missing => self.diags.error(
                    e.path.clone(),
                    format!(
                        "{}; {}@{d} does not pull: if its content is gone for good, \
                         `regsweep delete ROOT {}@{d}` removes the name and its tags, and runs \
                         go on",
                        e.message, self.repo.name, self.repo.name
                    ),
                ),
                Some(Err(e)) => self.diags.error(e.path.clone(), e.message.clone()),
                None => self.diags.error(
                    (self.display)(&layout::blob_data(&content)),
                    format!("live manifest {content} was not loaded"),
                ),
            }
            if let Some(refs) = referrers.get(&d) {
                stack.extend(refs.iter().map(|r| (*r).clone()));
            }
        }
        if self.options.delete_untagged {
            for rev in &self.repo.revisions {
                let Ok(target) = &rev.target else { continue };
                if self.result.live_manifests.contains(&rev.digest) {
                    continue;
                }
                let mut refs = vec![target.clone()];
                if let Some(Ok(m)) = self.manifests.get(target) {
                    refs.extend(m.blobs.iter().map(|b| b.digest.clone()));
                    refs.extend(m.children.iter().cloned());
                }
                self.result.dead_references.insert(rev.digest.clone(), refs);
            }
        }
        (self.result, self.live_blobs, self.diags)
    }
}

/// Mark one repository: its live manifests, the digests its live manifests reference, and
/// every blob digest it keeps alive with the size a descriptor declares for it (to be set in a
/// [`LiveSet`] or collected).
pub fn mark_repository(
    repo: &Repository,
    manifests: &Manifests,
    options: Options,
    display: Display<'_>,
) -> (RepoMark, Vec<LiveBlob>, Diagnostics) {
    RepoMarker {
        repo,
        manifests,
        options,
        display,
        revisions: repo.revisions.iter().map(|l| (&l.digest, l)).collect(),
        layers: repo.layers.iter().map(|l| (&l.digest, l)).collect(),
        live_blobs: Vec::new(),
        result: RepoMark::default(),
        diags: Diagnostics::default(),
    }
    .run()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gc::discover::Tag;
    use crate::gc::parse::{LoadError, Loaded};
    use crate::registry::manifest::{BlobRef, Kind, Manifest};
    use std::sync::Arc;
    use std::time::Duration;

    fn d(n: u8) -> Digest {
        Digest::Sha256([n; 32])
    }

    fn old() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_000)
    }

    fn link(n: u8) -> Link {
        Link {
            digest: d(n),
            target: Ok(d(n)),
            modified: old(),
            partial: false,
        }
    }

    fn image(blobs: &[u8], subject: Option<u8>) -> Loaded {
        Ok(Arc::new(Manifest {
            kind: Kind::OciManifest,
            blobs: blobs
                .iter()
                .map(|&b| BlobRef {
                    digest: d(b),
                    size: None,
                    foreign: false,
                })
                .collect(),
            children: vec![],
            subject: subject.map(d),
            len: 0,
        }))
    }

    fn index(children: &[u8]) -> Loaded {
        Ok(Arc::new(Manifest {
            kind: Kind::OciIndex,
            blobs: vec![],
            children: children.iter().map(|&c| d(c)).collect(),
            subject: None,
            len: 0,
        }))
    }

    fn repo(name: &str, tags: &[(&str, u8)], revisions: &[u8], layers: &[u8]) -> Repository {
        Repository {
            name: name.into(),
            tags: tags
                .iter()
                .map(|(t, n)| Tag {
                    name: t.to_string(),
                    current: Ok(d(*n)),
                    pushed: None,
                    made: None,
                    history: vec![],
                })
                .collect(),
            revisions: revisions.iter().map(|&n| link(n)).collect(),
            layers: layers.iter().map(|&n| link(n)).collect(),
            complete: true,
            uploads: vec![],
        }
    }

    fn opts(delete_untagged: bool) -> Options {
        Options {
            delete_untagged,
            cutoff: old() + Duration::from_secs(3600),
        }
    }

    fn run(repos: &[Repository], manifests: Vec<(u8, Loaded)>, delete_untagged: bool) -> Marked {
        let map = manifests.into_iter().map(|(n, m)| (d(n), m)).collect();
        mark(
            repos,
            &Manifests::from_map(map),
            opts(delete_untagged),
            &|k: &str| k.to_string(),
        )
    }

    fn set(ns: &[u8]) -> HashSet<Digest> {
        ns.iter().map(|&n| d(n)).collect()
    }

    #[test]
    fn nested_indexes_keep_every_level_under_delete_untagged() {
        // tag -> index 10 -> index 11 -> image 12 (blobs 100, 101); 13 is untagged garbage.
        let r = repo("a", &[("v1", 10)], &[10, 11, 12, 13], &[100, 101, 102]);
        let m = run(
            &[r],
            vec![
                (10, index(&[11])),
                (11, index(&[12])),
                (12, image(&[100, 101], None)),
                (13, image(&[102], None)),
            ],
            true,
        );
        assert!(m.diagnostics.errors.is_empty(), "{:?}", m.diagnostics);
        assert_eq!(m.repositories[0].live_manifests, set(&[10, 11, 12]));
        assert_eq!(m.live_blobs, set(&[10, 11, 12, 100, 101]));
    }

    #[test]
    fn without_delete_untagged_every_revision_is_a_root() {
        let r = repo("a", &[("v1", 10)], &[10, 13], &[]);
        let m = run(
            &[r],
            vec![(10, image(&[100], None)), (13, image(&[102], None))],
            false,
        );
        assert_eq!(m.live_blobs, set(&[10, 13, 100, 102]));
    }

    #[test]
    fn index_cycles_terminate() {
        let r = repo("a", &[("v1", 1)], &[1, 2, 3], &[]);
        let m = run(
            &[r],
            vec![(1, index(&[2])), (2, index(&[3, 1])), (3, index(&[1, 2]))],
            true,
        );
        assert_eq!(m.repositories[0].live_manifests, set(&[1, 2, 3]));
    }

    #[test]
    fn referrers_of_live_images_stay_and_of_dead_images_go() {
        // 20 is tagged; 21 refers to 20; 22 refers to 21 (a signature of an SBOM);
        // 30 is untagged and 31 refers to it: both dead.
        let r = repo("a", &[("v1", 20)], &[20, 21, 22, 30, 31], &[]);
        let m = run(
            &[r],
            vec![
                (20, image(&[200], None)),
                (21, image(&[210], Some(20))),
                (22, image(&[220], Some(21))),
                (30, image(&[230], None)),
                (31, image(&[231], Some(30))),
            ],
            true,
        );
        assert_eq!(m.repositories[0].live_manifests, set(&[20, 21, 22]));
        assert_eq!(m.live_blobs, set(&[20, 21, 22, 200, 210, 220]));
    }

    #[test]
    fn referrers_only_count_within_their_repository() {
        // b holds a referrer of a's live image, but subjects are per repository.
        let a = repo("a", &[("v1", 20)], &[20], &[]);
        let b = repo("b", &[], &[21], &[]);
        let m = run(
            &[a, b],
            vec![(20, image(&[200], None)), (21, image(&[210], Some(20)))],
            true,
        );
        assert!(m.repositories[1].live_manifests.is_empty());
        assert!(!m.live_blobs.contains(&d(210)));
    }

    #[test]
    fn blobs_shared_across_repositories_stay_while_any_user_lives() {
        // a's image 1 is untagged (dead), b's image 2 is tagged; both use blob 100.
        let a = repo("a", &[], &[1], &[100, 101]);
        let b = repo("b", &[("v1", 2)], &[2], &[100]);
        let m = run(
            &[a, b],
            vec![(1, image(&[100, 101], None)), (2, image(&[100], None))],
            true,
        );
        assert!(m.live_blobs.contains(&d(100)));
        assert!(!m.live_blobs.contains(&d(101)));
        // ... but a's layer link for 100 is no longer referenced in a.
        assert!(!m.repositories[0].referenced.contains(&d(100)));
        assert!(m.repositories[1].referenced.contains(&d(100)));
    }

    #[test]
    fn link_targets_are_marked_not_link_paths() {
        // The manifest references an alias digest; the layer link resolves it to blob 7.
        let alias = Digest::Sha512(Box::new([9; 64]));
        let mut r = repo("a", &[("v1", 1)], &[1], &[]);
        r.layers.push(Link {
            digest: alias.clone(),
            target: Ok(d(7)),
            modified: old(),
            partial: false,
        });
        // And a revision whose link content differs from its path.
        r.revisions.push(Link {
            digest: d(2),
            target: Ok(d(3)),
            modified: old(),
            partial: false,
        });
        let manifest = Ok(Arc::new(Manifest {
            kind: Kind::OciManifest,
            blobs: vec![BlobRef {
                digest: alias.clone(),
                size: None,
                foreign: false,
            }],
            children: vec![],
            subject: None,
            len: 0,
        }));
        let map = [(d(1), manifest), (d(3), image(&[50], None))]
            .into_iter()
            .collect();
        let m = mark(&[r], &Manifests::from_map(map), opts(false), &|k: &str| {
            k.to_string()
        });
        assert!(m.live_blobs.contains(&d(7)), "alias target kept");
        assert!(m.live_blobs.contains(&d(3)) && m.live_blobs.contains(&d(50)));
    }

    #[test]
    fn young_revisions_and_layer_links_are_roots() {
        let mut r = repo("a", &[], &[1], &[5]);
        let young = old() + Duration::from_secs(7200);
        r.revisions[0].modified = young;
        r.layers[0].modified = young;
        r.layers[0].target = Ok(d(6));
        let m = run(&[r], vec![(1, image(&[100], None))], true);
        assert_eq!(m.live_blobs, set(&[1, 100, 5, 6]));
    }

    #[test]
    fn unreadable_roots_and_broken_live_manifests_are_errors() {
        let mut r = repo("a", &[("v1", 1), ("v2", 2)], &[1, 2, 3], &[]);
        r.tags[1].current = Err("link file is missing".into());
        r.revisions[2].target = Err("invalid link file".into());
        let broken: Loaded = Err(LoadError {
            path: "blobs/1".into(),
            message: "manifest: not JSON".into(),
            missing: false,
        });
        let mut m = run(&[r], vec![(1, broken), (2, image(&[], None))], true);
        m.diagnostics.sort();
        let paths: Vec<_> = m
            .diagnostics
            .errors
            .iter()
            .map(|p| p.path.as_str())
            .collect();
        assert_eq!(paths.len(), 3, "{:?}", m.diagnostics.errors);
        assert!(paths.contains(&"blobs/1"));
        assert!(paths.iter().any(|p| p.ends_with("tags/v2/current/link")));
        assert!(paths
            .iter()
            .any(|p| p.contains("_manifests/revisions/sha256/0303")));
    }

    #[test]
    fn a_missing_manifest_blob_behind_a_live_revision_is_an_error() {
        let r = repo("a", &[("v1", 1)], &[1, 2], &[]);
        let missing: Loaded = Err(LoadError {
            path: "blobs/2".into(),
            message: "manifest: blob data is missing".into(),
            missing: true,
        });
        let m = run(&[r], vec![(1, index(&[2])), (2, missing)], true);
        assert!(m.diagnostics.errors.iter().any(|p| p.path == "blobs/2"));
    }

    #[test]
    fn a_child_without_its_revision_link_keeps_what_it_references_while_its_content_exists() {
        // Index 1 lists 2, whose revision link is gone (deleted through the API, or removed by
        // a run a moment before a push named it again): the registry does not serve 2 now,
        // but writing its link back would, so its layer 100 must not go while 2's content
        // exists (a regression guard: it used to be swept, leaving nothing to repair).
        let r = repo("a", &[("v1", 1)], &[1], &[]);
        let m = run(&[r], vec![(1, index(&[2])), (2, image(&[100], None))], true);
        assert!(m.diagnostics.errors.is_empty());
        assert_eq!(m.diagnostics.warnings.len(), 1);
        assert!(m.diagnostics.warnings[0].message.contains("check --repair"));
        assert_eq!(m.live_blobs, set(&[1, 2, 100]));
    }

    #[test]
    fn a_child_whose_link_and_content_are_gone_is_already_broken() {
        let r = repo("a", &[("v1", 1)], &[1], &[]);
        let gone: Loaded = Err(LoadError {
            path: "blobs/2".into(),
            message: "manifest: blob data is missing".into(),
            missing: true,
        });
        let m = run(&[r], vec![(1, index(&[2])), (2, gone)], true);
        assert!(m.diagnostics.errors.is_empty());
        assert!(m.diagnostics.warnings[0].message.contains("already broken"));
        assert_eq!(m.live_blobs, set(&[1, 2]));
    }
}

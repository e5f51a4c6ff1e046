//! Plan: live set + inventory -> what to delete, grouped in the order it must be deleted.
//!
//! The plan is the single source of truth for both a dry run (printed) and a real run
//! (executed), so the dry run shows exactly what the real run would do.
//!
//! Invariants:
//! - nothing modified after the cutoff is planned (it is counted as too young instead);
//! - if the live set may be incomplete (any error so far) the plan deletes nothing, unless the
//!   administrator said `--unsafe-ignore-errors`; even then, manifests and links of a
//!   repository that could not be fully listed are never planned;
//! - a blob directory whose `data` is not a regular file is never planned;
//! - an upload is planned only when it began before `uploads_before` and nothing in it was
//!   touched after the cutoff; a repository only when nothing at all is left in it (no tag,
//!   and every revision, layer link and upload planned).

use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::cache::registry::Gone;
use crate::gc::discover::{BlobIndex, BlobState, Repository};
use crate::gc::mark::{LiveSet, RepoMark};
use crate::registry::digest::{Algorithm, Digest};
use crate::registry::layout;
use crate::storage::{epoch_seconds, PendingUpload};

/// In a dry run: what would be deleted. After a real sweep: what was deleted.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Deleted {
    pub blobs: Vec<BlobDeletion>,
    pub manifests: Vec<ManifestDeletion>,
    pub layer_links: Vec<LayerLinkDeletion>,
    pub shards: Vec<ShardDeletion>,
    #[serde(default)]
    pub uploads: Vec<UploadDeletion>,
    #[serde(default)]
    pub repositories: Vec<RepositoryDeletion>,
}

impl Deleted {
    /// Tell the registry's cache what went: blob directories, revisions, layer links and
    /// repositories (tag-history entries go with their revisions).
    pub fn add_to(&self, gone: &mut Gone) {
        let keys = (self.blobs.iter().map(|b| layout::blob_dir(&b.digest)))
            .chain(
                self.manifests
                    .iter()
                    .map(|m| layout::revision_dir(&m.repository, &m.digest)),
            )
            .chain(
                self.layer_links
                    .iter()
                    .map(|l| layout::layer_dir(&l.repository, &l.digest)),
            )
            .chain(
                self.repositories
                    .iter()
                    .map(|r| layout::repository_dir(&r.name)),
            );
        gone.add(
            keys,
            self.blobs.len(),
            self.manifests.len() + self.layer_links.len(),
        );
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub delete_untagged: bool,
    pub cutoff: SystemTime,
    pub ignore_errors: bool,
    /// Uploads that began before this are abandoned; `None` leaves every upload alone.
    pub uploads_before: Option<SystemTime>,
    /// Remove repositories this plan leaves with nothing in them.
    pub empty_repositories: bool,
}

/// `--max-delete`: the most blobs one run may delete, as a count or a share of the blobs in
/// the store. A plan over it is refused whole: stopping halfway would leave manifests that
/// name deleted blobs, so a cap can only ever be all or nothing.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MaxDelete {
    Blobs(u64),
    Percent(f64),
}

impl std::str::FromStr for MaxDelete {
    type Err = String;

    fn from_str(s: &str) -> Result<MaxDelete, String> {
        let s = s.trim();
        let bad = || format!("{s:?} is neither a count nor a percentage (examples: 5000, 20%)");
        match s.strip_suffix('%') {
            Some(p) => match p.trim().parse::<f64>() {
                Ok(p) if (0.0..=100.0).contains(&p) => Ok(MaxDelete::Percent(p)),
                _ => Err(bad()),
            },
            None => s.parse().map(MaxDelete::Blobs).map_err(|_| bad()),
        }
    }
}

impl std::fmt::Display for MaxDelete {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MaxDelete::Blobs(n) => write!(f, "{n}"),
            MaxDelete::Percent(p) => write!(f, "{p}%"),
        }
    }
}

impl MaxDelete {
    /// Why a plan deleting `blobs` of the store's `total` is over the cap, if it is.
    pub fn exceeded(&self, blobs: usize, total: usize) -> Option<String> {
        let over = match *self {
            MaxDelete::Blobs(n) => blobs as u64 > n,
            MaxDelete::Percent(p) => blobs as f64 > total as f64 * p / 100.0,
        };
        over.then(|| {
            format!(
                "this run would delete {blobs} of {total} blobs, more than --max-delete {self}: \
                 nothing is deleted. Look at the dry run (`-d -v`); if it is right, run once \
                 with a higher --max-delete"
            )
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ManifestDeletion {
    pub repository: String,
    pub digest: Digest,
    /// Tags whose history (`tags/<tag>/index`) names this digest; those entries go too.
    pub tags: Vec<String>,
    /// Its content, blobs and children: what it keeps while a rule keeps it waiting.
    #[serde(skip)]
    pub references: Vec<Digest>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct LayerLinkDeletion {
    pub repository: String,
    pub digest: Digest,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct BlobDeletion {
    pub digest: Digest,
    pub size: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct UploadDeletion {
    pub repository: String,
    pub uuid: String,
    /// Bytes received before it was abandoned.
    pub size: u64,
    /// When it began (RFC 3339): `startedat`, or the newest modification time in it.
    pub started: String,
    /// Its incomplete multipart uploads (S3), each by key and upload id: aborted with it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub multipart: Vec<PendingUpload>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RepositoryDeletion {
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ShardDeletion {
    pub algorithm: Algorithm,
    pub prefix: String,
}

/// What was found, independent of what is deleted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Census {
    pub repositories: usize,
    pub tags: usize,
    pub manifests: usize,
    pub live_manifests: usize,
    pub blobs: usize,
    pub bytes: u64,
    pub live_blobs: usize,
    pub live_bytes: u64,
    /// Unreachable blobs, whether or not they are old enough to delete.
    pub dead_blobs: usize,
    pub dead_bytes: u64,
    pub too_young_blobs: usize,
    pub too_young_bytes: u64,
    pub too_young_manifests: usize,
    pub too_young_layer_links: usize,
    /// Uploads found (only counted when uploads are looked at), and their bytes.
    #[serde(default)]
    pub uploads: usize,
    #[serde(default)]
    pub upload_bytes: u64,
}

#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub manifests: Vec<ManifestDeletion>,
    pub layer_links: Vec<LayerLinkDeletion>,
    pub blobs: Vec<BlobDeletion>,
    pub shards: Vec<ShardDeletion>,
    pub uploads: Vec<UploadDeletion>,
    pub repositories: Vec<RepositoryDeletion>,
    pub census: Census,
    /// The live set may be incomplete: nothing is planned.
    pub refused: bool,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.manifests.is_empty()
            && self.layer_links.is_empty()
            && self.blobs.is_empty()
            && self.shards.is_empty()
            && self.uploads.is_empty()
            && self.repositories.is_empty()
    }

    /// Refuse after all (a later look found the live set incomplete): plan nothing.
    pub fn refuse(&mut self) {
        self.refused = true;
        self.manifests.clear();
        self.layer_links.clear();
        self.blobs.clear();
        self.shards.clear();
        self.uploads.clear();
        self.repositories.clear();
    }

    /// How many deletions the plan holds (for progress).
    pub fn len(&self) -> usize {
        self.manifests.len()
            + self.layer_links.len()
            + self.blobs.len()
            + self.shards.len()
            + self.uploads.len()
            + self.repositories.len()
    }

    /// What a dry run reports: the plan itself, moved out rather than copied (on a large
    /// registry it is tens of MB).
    pub fn take_deleted(&mut self) -> crate::gc::plan::Deleted {
        crate::gc::plan::Deleted {
            blobs: std::mem::take(&mut self.blobs),
            manifests: std::mem::take(&mut self.manifests),
            layer_links: std::mem::take(&mut self.layer_links),
            shards: std::mem::take(&mut self.shards),
            uploads: std::mem::take(&mut self.uploads),
            repositories: std::mem::take(&mut self.repositories),
        }
    }

    pub fn tag_index_entries(&self) -> usize {
        self.manifests.iter().map(|m| m.tags.len()).sum()
    }
}

/// What one repository contributes to the plan: its deletion candidates and its counts.
#[derive(Debug, Clone, Default)]
pub struct RepoPlan {
    pub manifests: Vec<ManifestDeletion>,
    pub layer_links: Vec<LayerLinkDeletion>,
    pub uploads: Vec<UploadDeletion>,
    /// Nothing is left in the repository once this plan is carried out.
    pub empty: bool,
    pub upload_count: usize,
    pub upload_bytes: u64,
    pub name: String,
    pub tags: usize,
    pub revisions: usize,
    pub live_manifests: usize,
    pub too_young_manifests: usize,
    pub too_young_layer_links: usize,
}

/// Plan one repository from its mark. Whether the run as a whole may delete is decided later,
/// in [`assemble`], once every repository has been marked.
pub fn plan_repository(repo: &Repository, rmark: &RepoMark, options: Options) -> RepoPlan {
    let young = |t: SystemTime| t > options.cutoff;
    let mut p = RepoPlan {
        name: repo.name.clone(),
        tags: repo.tags.len(),
        revisions: repo.revisions.len(),
        live_manifests: repo
            .revisions
            .iter()
            .filter(|r| rmark.live_manifests.contains(&r.digest))
            .count(),
        ..RepoPlan::default()
    };
    // Nothing of a repository that could not be fully listed is ever planned.
    let deletable = repo.complete;

    if options.delete_untagged {
        for rev in &repo.revisions {
            // A revision whose link could not be read has unknown liveness: never planned.
            if rev.target.is_err() || rmark.live_manifests.contains(&rev.digest) {
                continue;
            }
            if young(rev.modified) {
                p.too_young_manifests += 1;
            } else if deletable {
                p.manifests.push(ManifestDeletion {
                    repository: repo.name.clone(),
                    digest: rev.digest.clone(),
                    tags: repo
                        .tags
                        .iter()
                        .filter(|t| t.history.contains(&rev.digest))
                        .map(|t| t.name.clone())
                        .collect(),
                    references: rmark
                        .dead_references
                        .get(&rev.digest)
                        .cloned()
                        .unwrap_or_default(),
                });
            }
        }
    }

    for link in &repo.layers {
        if rmark.referenced.contains(&link.digest) {
            continue;
        }
        if young(link.modified) {
            p.too_young_layer_links += 1;
        } else if deletable {
            p.layer_links.push(LayerLinkDeletion {
                repository: repo.name.clone(),
                digest: link.digest.clone(),
            });
        }
    }

    p.upload_count = repo.uploads.len();
    p.upload_bytes = repo.uploads.iter().map(|u| u.size).sum();
    if let Some(before) = options.uploads_before {
        for u in &repo.uploads {
            if deletable && !u.unreadable && u.age_from() < before && !young(u.touched) {
                p.uploads.push(UploadDeletion {
                    repository: repo.name.clone(),
                    uuid: u.uuid.clone(),
                    size: u.size,
                    started: humantime::format_rfc3339_seconds(u.age_from()).to_string(),
                    multipart: u.multipart.clone(),
                });
            }
        }
    }

    // Empty once this plan is done: no tag (a tag directory without `current` counts), and
    // every revision, layer link and upload goes now. Anything kept (young, unreadable,
    // live) keeps the repository.
    p.empty = options.empty_repositories
        && deletable
        && repo.tags.is_empty()
        && p.manifests.len() == repo.revisions.len()
        && p.layer_links.len() == repo.layers.len()
        && p.uploads.len() == repo.uploads.len();
    p
}

/// Put the run's plan together from the repositories' plans and the blob index.
pub fn assemble(
    repos: Vec<RepoPlan>,
    index: &BlobIndex,
    live: &LiveSet,
    has_errors: bool,
    options: Options,
) -> Plan {
    let refused = has_errors && !options.ignore_errors;
    let mut p = Plan {
        refused,
        ..Plan::default()
    };
    if !refused {
        // Sized once: growing by doubling would hold two copies at the peak of a large run.
        p.manifests
            .reserve_exact(repos.iter().map(|r| r.manifests.len()).sum());
        p.layer_links
            .reserve_exact(repos.iter().map(|r| r.layer_links.len()).sum());
    }
    let c = &mut p.census;
    c.repositories = repos.len();
    for r in repos {
        c.tags += r.tags;
        c.manifests += r.revisions;
        c.live_manifests += r.live_manifests;
        c.too_young_manifests += r.too_young_manifests;
        c.too_young_layer_links += r.too_young_layer_links;
        c.uploads += r.upload_count;
        c.upload_bytes += r.upload_bytes;
        if !refused {
            p.manifests.extend(r.manifests);
            p.layer_links.extend(r.layer_links);
            p.uploads.extend(r.uploads);
            if r.empty {
                p.repositories.push(RepositoryDeletion { name: r.name });
            }
        }
    }

    // Blob times are whole seconds: a blob stamped in the cutoff's second counts as young.
    let cutoff = epoch_seconds(options.cutoff);
    for (s, shard) in index.shards.iter().enumerate() {
        let mut planned = 0;
        for i in 0..shard.len() {
            if shard.state(i) == BlobState::Gone {
                continue;
            }
            let size = shard.size(i);
            c.blobs += 1;
            c.bytes += size;
            if live.contains(s, i) {
                c.live_blobs += 1;
                c.live_bytes += size;
                continue;
            }
            c.dead_blobs += 1;
            c.dead_bytes += size;
            if i64::from(shard.modified(i).unwrap_or(u32::MAX)) >= cutoff {
                c.too_young_blobs += 1;
                c.too_young_bytes += size;
            } else if !refused && shard.state(i) != BlobState::Strange {
                planned += 1;
                p.blobs.push(BlobDeletion {
                    digest: shard.digest(i),
                    size,
                });
            }
        }
        // A shard goes when the sweep empties it, or when it is empty already (left so by an
        // interrupted sweep), so a second run ends where an uninterrupted one would.
        if !refused && planned == shard.entries {
            p.shards.push(ShardDeletion {
                algorithm: shard.algorithm,
                prefix: shard.prefix_hex(),
            });
        }
    }

    // Parallel discovery has no order; plans and reports do. Ord is derived over every field,
    // so entries that compare equal are identical and an unstable sort gives the same result,
    // in place (a stable sort would allocate half the plan again at the peak of a large run).
    p.manifests.sort_unstable();
    p.layer_links.sort_unstable();
    p.blobs.sort_unstable();
    p.shards.sort_unstable();
    p.uploads.sort_unstable();
    p.repositories.sort_unstable();
    p
}

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
//! - a blob directory whose `data` is not a regular file is never planned.

use std::collections::HashMap;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::digest::{Algorithm, Digest};
use crate::discover::{BlobState, Inventory};
use crate::mark::Marked;

#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub delete_untagged: bool,
    pub cutoff: SystemTime,
    pub ignore_errors: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ManifestDeletion {
    pub repository: String,
    pub digest: Digest,
    /// Tags whose history (`tags/<tag>/index`) names this digest; those entries go too.
    pub tags: Vec<String>,
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
}

#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub manifests: Vec<ManifestDeletion>,
    pub layer_links: Vec<LayerLinkDeletion>,
    pub blobs: Vec<BlobDeletion>,
    pub shards: Vec<ShardDeletion>,
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
    }

    pub fn tag_index_entries(&self) -> usize {
        self.manifests.iter().map(|m| m.tags.len()).sum()
    }
}

pub fn plan(inventory: &Inventory, marked: &Marked, has_errors: bool, options: Options) -> Plan {
    let young = |t: SystemTime| t > options.cutoff;
    let refused = has_errors && !options.ignore_errors;
    let mut p = Plan {
        refused,
        ..Plan::default()
    };
    let c = &mut p.census;
    c.repositories = inventory.repositories.len();

    for (repo, rmark) in inventory.repositories.iter().zip(&marked.repositories) {
        c.tags += repo.tags.len();
        c.manifests += repo.revisions.len();
        c.live_manifests += repo
            .revisions
            .iter()
            .filter(|r| rmark.live_manifests.contains(&r.digest))
            .count();
        let deletable = !refused && repo.complete;

        if options.delete_untagged {
            for rev in &repo.revisions {
                // A revision whose link could not be read has unknown liveness: never planned.
                if rev.target.is_err() || rmark.live_manifests.contains(&rev.digest) {
                    continue;
                }
                if young(rev.modified) {
                    c.too_young_manifests += 1;
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
                    });
                }
            }
        }

        for link in &repo.layers {
            if rmark.referenced.contains(&link.digest) {
                continue;
            }
            if young(link.modified) {
                c.too_young_layer_links += 1;
            } else if deletable {
                p.layer_links.push(LayerLinkDeletion {
                    repository: repo.name.clone(),
                    digest: link.digest.clone(),
                });
            }
        }
    }

    let mut planned_per_shard: HashMap<(Algorithm, String), usize> = HashMap::new();
    c.blobs = inventory.blobs.len();
    for blob in &inventory.blobs {
        c.bytes += blob.size;
        if marked.live_blobs.contains(&blob.digest) {
            c.live_blobs += 1;
            c.live_bytes += blob.size;
            continue;
        }
        c.dead_blobs += 1;
        c.dead_bytes += blob.size;
        if young(blob.modified) {
            c.too_young_blobs += 1;
            c.too_young_bytes += blob.size;
        } else if !refused && blob.state != BlobState::Strange {
            *planned_per_shard
                .entry((blob.digest.algorithm(), blob.digest.hex()[..2].to_string()))
                .or_default() += 1;
            p.blobs.push(BlobDeletion {
                digest: blob.digest.clone(),
                size: blob.size,
            });
        }
    }

    for shard in &inventory.shards {
        let key = (shard.algorithm, shard.prefix.clone());
        if planned_per_shard.get(&key) == Some(&shard.entries) {
            p.shards.push(ShardDeletion {
                algorithm: shard.algorithm,
                prefix: shard.prefix.clone(),
            });
        }
    }

    // Parallel discovery has no order; plans and reports do.
    p.manifests.sort();
    p.layer_links.sort();
    p.blobs.sort();
    p.shards.sort();
    p
}

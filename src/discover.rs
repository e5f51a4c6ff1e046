//! Discover: walk the storage and build an [`Inventory`] of blobs and repositories.
//!
//! The blob store is listed shard by shard (`blobs/<alg>/<xx>`) and each blob's `data` is
//! stat'ed, never opened: the directory name already is the digest. Repositories are found at
//! any depth (a directory holding `_manifests` is one; `_`-prefixed components never are), then
//! each repository's tags, revisions and layer links are read in parallel. Link files are read
//! because the digest that counts is the one *inside* the link, not the one in its path.
//!
//! Discovery judges only what it can judge alone: a directory it cannot list is an error (what
//! it holds is unknown). Whether an unreadable link matters depends on the mode, so link
//! targets are carried as results for the mark to judge.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use rayon::prelude::*;

use crate::digest::{Algorithm, Digest};
use crate::error::{Diagnostics, Error, Result};
use crate::layout;
use crate::storage::{Entry, Kind, Storage};

/// A link file holds ~71 bytes (sha256) or ~135 (sha512); anything much larger is garbage.
const MAX_LINK_BYTES: u64 = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobState {
    /// `data` is a regular file.
    Present,
    /// The blob directory has no `data`: an interrupted delete or upload. The registry
    /// considers the blob absent.
    NoData,
    /// `data` exists but is not a regular file (a directory, a link): not understood, never
    /// touched.
    Strange,
}

#[derive(Debug, Clone)]
pub struct Blob {
    pub digest: Digest,
    pub size: u64,
    pub modified: SystemTime,
    pub state: BlobState,
}

/// One `blobs/<alg>/<xx>` directory and how many entries it held when listed, so the plan can
/// tell which shards a sweep leaves empty.
#[derive(Debug, Clone)]
pub struct Shard {
    pub algorithm: Algorithm,
    pub prefix: String,
    pub entries: usize,
}

/// What a link file says, or why it could not be read.
pub type LinkTarget = std::result::Result<Digest, String>;

/// A link file found under a directory named by a digest (a revision or a layer link).
#[derive(Debug, Clone)]
pub struct Link {
    /// The digest in the path.
    pub digest: Digest,
    /// The digest inside the link file.
    pub target: LinkTarget,
    /// Modification time of the link file (of its directory if the file is missing).
    pub modified: SystemTime,
}

#[derive(Debug, Clone)]
pub struct Tag {
    pub name: String,
    pub current: LinkTarget,
    pub modified: SystemTime,
    /// Every digest the tag has pointed at (`tags/<tag>/index`); only listed when asked for.
    pub history: Vec<Digest>,
}

#[derive(Debug, Clone)]
pub struct Repository {
    pub name: String,
    pub tags: Vec<Tag>,
    pub revisions: Vec<Link>,
    pub layers: Vec<Link>,
    /// False when some directory of this repository could not be listed: its manifests and
    /// links are then never deleted, whatever else happens.
    pub complete: bool,
}

#[derive(Debug, Default)]
pub struct Inventory {
    pub blobs: Vec<Blob>,
    pub shards: Vec<Shard>,
    pub repositories: Vec<Repository>,
    pub diagnostics: Diagnostics,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// List `tags/<tag>/index` (needed to delete the history entries of dead manifests).
    pub tag_history: bool,
}

/// Counters that progress bars read; updated once per shard or repository, not per entry.
#[derive(Debug, Default)]
pub struct Counters {
    pub shards: AtomicU64,
    pub blobs: AtomicU64,
    pub repositories: AtomicU64,
}

/// Check that the storage root is a registry before anything else happens.
pub fn check_root(storage: &dyn Storage) -> Result<()> {
    match storage.stat(layout::V2) {
        Ok(meta) if meta.kind == Kind::Dir => Ok(()),
        Ok(_) => Err(Error::target(
            storage.display(layout::V2),
            "is not a directory: not a registry storage root",
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::target(
            storage.display(""),
            "is not a registry storage root (no docker/registry/v2 below it)",
        )),
        Err(e) => Err(Error::io(storage.display(layout::V2), e)),
    }
}

pub fn discover(storage: &dyn Storage, options: Options, counters: &Counters) -> Inventory {
    let (blob_side, repo_side) = rayon::join(
        || discover_blobs(storage, counters),
        || discover_repositories(storage, options, counters),
    );
    let (blobs, shards, mut diagnostics) = blob_side;
    let (repositories, repo_diags) = repo_side;
    diagnostics.merge(repo_diags);
    Inventory {
        blobs,
        shards,
        repositories,
        diagnostics,
    }
}

/// List a directory that may legitimately be absent (an empty registry has no `blobs/`).
fn list_optional(storage: &dyn Storage, key: &str, diags: &mut Diagnostics) -> Option<Vec<Entry>> {
    match storage.list_dir(key) {
        Ok(entries) => Some(entries),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some(Vec::new()),
        Err(e) => {
            diags.error(storage.display(key), format!("cannot list directory: {e}"));
            None
        }
    }
}

fn discover_blobs(
    storage: &dyn Storage,
    counters: &Counters,
) -> (Vec<Blob>, Vec<Shard>, Diagnostics) {
    let mut diags = Diagnostics::default();
    let mut shard_keys = Vec::new();
    let Some(algs) = list_optional(storage, layout::BLOBS, &mut diags) else {
        return (Vec::new(), Vec::new(), diags);
    };
    for alg_entry in algs {
        let key = format!("{}/{}", layout::BLOBS, alg_entry.name);
        let alg = match Algorithm::from_name(&alg_entry.name) {
            Some(alg) if alg_entry.kind == Kind::Dir => alg,
            _ => {
                diags.warn(
                    storage.display(&key),
                    "not a blob algorithm directory; left alone",
                );
                continue;
            }
        };
        let Some(shards) = list_optional(storage, &key, &mut diags) else {
            continue;
        };
        for shard in shards {
            let shard_key = layout::shard_dir(alg, &shard.name);
            let valid = shard.kind == Kind::Dir
                && shard.name.len() == 2
                && shard
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
            if valid {
                shard_keys.push((alg, shard.name));
            } else {
                diags.warn(
                    storage.display(&shard_key),
                    "not a blob shard directory; left alone",
                );
            }
        }
    }

    let per_shard: Vec<(Vec<Blob>, Shard, Diagnostics)> = shard_keys
        .into_par_iter()
        .map(|(alg, prefix)| {
            let result = discover_shard(storage, alg, prefix);
            counters.shards.fetch_add(1, Ordering::Relaxed);
            counters
                .blobs
                .fetch_add(result.0.len() as u64, Ordering::Relaxed);
            result
        })
        .collect();

    let total = per_shard.iter().map(|s| s.0.len()).sum();
    let mut blobs = Vec::with_capacity(total);
    let mut shards = Vec::with_capacity(per_shard.len());
    for (b, s, d) in per_shard {
        blobs.extend(b);
        shards.push(s);
        diags.merge(d);
    }
    (blobs, shards, diags)
}

fn discover_shard(
    storage: &dyn Storage,
    alg: Algorithm,
    prefix: String,
) -> (Vec<Blob>, Shard, Diagnostics) {
    let mut diags = Diagnostics::default();
    let shard_key = layout::shard_dir(alg, &prefix);
    let entries = match storage.list_dir(&shard_key) {
        Ok(entries) => entries,
        Err(e) => {
            diags.error(
                storage.display(&shard_key),
                format!("cannot list directory: {e}"),
            );
            Vec::new()
        }
    };
    let mut blobs = Vec::with_capacity(entries.len());
    let shard = Shard {
        algorithm: alg,
        prefix,
        entries: entries.len(),
    };
    for entry in entries {
        let key = format!("{shard_key}/{}", entry.name);
        let digest = match Digest::from_parts(alg, &entry.name) {
            Ok(d) if entry.utf8 && entry.name.starts_with(&shard.prefix) => d,
            _ => {
                diags.warn(
                    storage.display(&key),
                    "not a blob directory name; left alone",
                );
                continue;
            }
        };
        if entry.kind != Kind::Dir {
            diags.warn(
                storage.display(&key),
                if entry.kind == Kind::Symlink {
                    "blob directory is a symbolic link; not followed, left alone"
                } else {
                    "blob entry is not a directory; left alone"
                },
            );
            continue;
        }
        let data_key = layout::blob_data(&digest);
        match storage.stat(&data_key) {
            Ok(meta) if meta.kind == Kind::File => blobs.push(Blob {
                digest,
                size: meta.len,
                modified: meta.modified,
                state: BlobState::Present,
            }),
            Ok(meta) => {
                diags.warn(
                    storage.display(&data_key),
                    "blob data is not a regular file; left alone",
                );
                blobs.push(Blob {
                    digest,
                    size: 0,
                    modified: meta.modified,
                    state: BlobState::Strange,
                });
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => match storage.stat(&key) {
                Ok(meta) => blobs.push(Blob {
                    digest,
                    size: 0,
                    modified: meta.modified,
                    state: BlobState::NoData,
                }),
                // Vanished between listing and stat: someone else removed it.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => diags.error(storage.display(&key), format!("cannot stat: {e}")),
            },
            Err(e) => diags.error(storage.display(&data_key), format!("cannot stat: {e}")),
        }
    }
    (blobs, shard, diags)
}

fn discover_repositories(
    storage: &dyn Storage,
    options: Options,
    counters: &Counters,
) -> (Vec<Repository>, Diagnostics) {
    let (names, mut diags) = find_repositories(storage, "");
    let per_repo: Vec<(Repository, Diagnostics)> = names
        .into_par_iter()
        .map(|name| {
            let result = discover_repository(storage, name, options);
            counters.repositories.fetch_add(1, Ordering::Relaxed);
            result
        })
        .collect();
    let mut repos = Vec::with_capacity(per_repo.len());
    for (r, d) in per_repo {
        repos.push(r);
        diags.merge(d);
    }
    repos.sort_by(|a, b| a.name.cmp(&b.name));
    (repos, diags)
}

/// Find repository names below `repositories/<prefix>`, descending in parallel.
fn find_repositories(storage: &dyn Storage, prefix: &str) -> (Vec<String>, Diagnostics) {
    let mut diags = Diagnostics::default();
    let key = if prefix.is_empty() {
        layout::REPOSITORIES.to_string()
    } else {
        layout::repository_dir(prefix)
    };
    let entries = if prefix.is_empty() {
        list_optional(storage, &key, &mut diags).unwrap_or_default()
    } else {
        match storage.list_dir(&key) {
            Ok(entries) => entries,
            Err(e) => {
                diags.error(storage.display(&key), format!("cannot list directory: {e}"));
                return (Vec::new(), diags);
            }
        }
    };
    let mut names = Vec::new();
    let mut children = Vec::new();
    for entry in entries {
        let child_key = format!("{key}/{}", entry.name);
        if entry.name == layout::MANIFESTS_DIR && !prefix.is_empty() {
            names.push(prefix.to_string());
            continue;
        }
        if layout::is_reserved_component(&entry.name) {
            continue;
        }
        match entry.kind {
            // The registry's filesystem driver follows links, so a linked directory may hold
            // live images that we will not read: refuse rather than guess.
            Kind::Symlink => diags.error(
                storage.display(&child_key),
                "symbolic link inside repositories/ (not followed); its images could be live",
            ),
            Kind::Dir if !entry.utf8 => diags.error(
                storage.display(&child_key),
                "repository path component is not valid UTF-8",
            ),
            Kind::Dir => children.push(if prefix.is_empty() {
                entry.name
            } else {
                format!("{prefix}/{}", entry.name)
            }),
            _ => {}
        }
    }
    let nested: Vec<(Vec<String>, Diagnostics)> = children
        .into_par_iter()
        .map(|child| find_repositories(storage, &child))
        .collect();
    for (n, d) in nested {
        names.extend(n);
        diags.merge(d);
    }
    (names, diags)
}

struct RepoWalker<'a> {
    storage: &'a dyn Storage,
    name: &'a str,
    diags: Diagnostics,
    complete: bool,
    buf: Vec<u8>,
}

impl RepoWalker<'_> {
    /// List a directory of this repository; absence is an empty listing, any other failure
    /// makes the repository incomplete.
    fn list(&mut self, key: &str) -> Vec<Entry> {
        match list_optional(self.storage, key, &mut self.diags) {
            Some(entries) => entries,
            None => {
                self.complete = false;
                Vec::new()
            }
        }
    }

    /// Read a link file: its target, and the file's modification time. `None` when the file
    /// does not exist.
    fn read_link(&mut self, key: &str) -> Option<(LinkTarget, SystemTime)> {
        match self.storage.read_into(key, MAX_LINK_BYTES, &mut self.buf) {
            Ok(meta) => Some((
                Digest::parse_link(&self.buf).map_err(|e| format!("invalid link file: {e}")),
                meta.modified,
            )),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                let modified = self
                    .storage
                    .stat(key.rsplit_once('/').map_or(key, |(dir, _)| dir))
                    .map(|m| m.modified)
                    .unwrap_or(SystemTime::UNIX_EPOCH);
                Some((Err(format!("cannot read link file: {e}")), modified))
            }
        }
    }

    /// Entries of `<dir>/<alg>/` for every algorithm, as digests.
    fn digest_dirs(&mut self, alg_dir: impl Fn(Algorithm) -> String) -> Vec<(Digest, String)> {
        let mut out = Vec::new();
        for alg in Algorithm::ALL {
            let dir = alg_dir(alg);
            for entry in self.list(&dir) {
                let key = format!("{dir}/{}", entry.name);
                match Digest::from_parts(alg, &entry.name) {
                    Ok(d) if entry.kind == Kind::Dir => out.push((d, key)),
                    Ok(_) if entry.kind == Kind::Symlink => self.diags.error(
                        self.storage.display(&key),
                        "symbolic link inside a repository (not followed)",
                    ),
                    _ => self.diags.warn(
                        self.storage.display(&key),
                        "not a digest directory; left alone",
                    ),
                }
            }
        }
        out
    }

    fn links(&mut self, alg_dir: impl Fn(Algorithm) -> String) -> Vec<Link> {
        self.digest_dirs(alg_dir)
            .into_iter()
            .filter_map(|(digest, dir)| {
                // The registry deletes a manifest or a blob link by removing the `link` file
                // and leaving its directory: such a directory is not a link (its reference
                // enumerator also counts only `link` files).
                let (target, modified) = self.read_link(&format!("{dir}/{}", layout::LINK_FILE))?;
                Some(Link {
                    digest,
                    target,
                    modified,
                })
            })
            .collect()
    }

    fn tags(&mut self, history: bool) -> Vec<Tag> {
        let name = self.name;
        let dir = layout::tags_dir(name);
        let mut tags = Vec::new();
        for entry in self.list(&dir) {
            let key = format!("{dir}/{}", entry.name);
            match entry.kind {
                Kind::Dir if entry.utf8 => {}
                // A plain file cannot hold a `current` link: it is no tag and no root.
                Kind::File | Kind::Other => {
                    self.diags.warn(
                        self.storage.display(&key),
                        "not a tag directory; left alone",
                    );
                    continue;
                }
                // A linked or unnameable tag may point anywhere: refuse rather than guess.
                _ => {
                    self.diags.error(
                        self.storage.display(&key),
                        "tag is a symbolic link or has a name that is not UTF-8 (not followed)",
                    );
                    self.complete = false;
                    continue;
                }
            }
            let current_key = layout::tag_current_link(name, &entry.name);
            let (current, modified) = self.read_link(&current_key).unwrap_or_else(|| {
                let modified = self
                    .storage
                    .stat(&layout::tag_dir(name, &entry.name))
                    .map(|m| m.modified)
                    .unwrap_or(SystemTime::UNIX_EPOCH);
                (Err("tag has no current link".to_string()), modified)
            });
            let history = if history {
                self.digest_dirs(|alg| layout::tag_index_alg_dir(name, &entry.name, alg))
                    .into_iter()
                    .map(|(d, _)| d)
                    .collect()
            } else {
                Vec::new()
            };
            tags.push(Tag {
                name: entry.name,
                current,
                modified,
                history,
            });
        }
        tags.sort_by(|a, b| a.name.cmp(&b.name));
        tags
    }
}

fn discover_repository(
    storage: &dyn Storage,
    name: String,
    options: Options,
) -> (Repository, Diagnostics) {
    let mut w = RepoWalker {
        storage,
        name: &name,
        diags: Diagnostics::default(),
        complete: true,
        buf: Vec::with_capacity(256),
    };
    let tags = w.tags(options.tag_history);
    let revisions = w.links(|alg| layout::revisions_alg_dir(&name, alg));
    let layers = w.links(|alg| layout::layers_alg_dir(&name, alg));
    let complete = w.complete;
    let diags = w.diags;
    (
        Repository {
            name,
            tags,
            revisions,
            layers,
            complete,
        },
        diags,
    )
}

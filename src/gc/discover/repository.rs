//! Repositories: found at any depth, then each read on its own (tags, revisions, layer
//! links, uploads), link targets carried as results for the mark to judge.

use std::time::SystemTime;

use rayon::prelude::*;

use crate::error::Diagnostics;
use crate::registry::digest::{Algorithm, Digest};
use crate::registry::layout;
use crate::storage::{Entry, Kind, PendingUpload, Storage};

use super::{list_optional, Options, MAX_LINK_BYTES};

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
    /// The file read empty or short even when read again: a write in progress if it is young
    /// (the filesystem driver truncates, then writes), damage if it is old.
    pub partial: bool,
}

#[derive(Debug, Clone)]
pub struct Tag {
    pub name: String,
    pub current: LinkTarget,
    /// Modification time of `current/link` (when the tag was last pushed), if the file exists
    /// and times were asked for.
    pub pushed: Option<SystemTime>,
    /// When the link is missing: when the tag's directory was made (a push in progress makes
    /// the directory, then writes the link).
    pub made: Option<SystemTime>,
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
    /// Uploads under `_uploads/` (only read when asked for).
    pub uploads: Vec<Upload>,
}

/// An upload under `_uploads/<uuid>/`: in progress, or abandoned.
#[derive(Debug, Clone)]
pub struct Upload {
    pub uuid: String,
    /// The time in `startedat` (RFC 3339, written by the registry when the upload began), or
    /// why it could not be read.
    pub started: std::result::Result<SystemTime, String>,
    /// The newest modification time of anything in the upload's directory: a client still
    /// sending data touches `data` and `hashstates/`.
    pub touched: SystemTime,
    /// Bytes received so far (`data`).
    pub size: u64,
    /// Something in the directory could not be read: its age is unknown, so it is never
    /// removed (and its repository never counts as empty).
    pub unreadable: bool,
    /// Its data as the store keeps it outside the listing (S3's incomplete multipart
    /// uploads): aborted with it. An upload whose directory the registry already purged is
    /// these alone.
    pub multipart: Vec<PendingUpload>,
}

impl Upload {
    /// When the upload began: `startedat`, or where that is missing or unreadable, the newest
    /// modification time in it.
    pub fn age_from(&self) -> SystemTime {
        *self.started.as_ref().unwrap_or(&self.touched)
    }
}

/// Every repository name in the registry, sorted.
pub fn repository_names(storage: &dyn Storage) -> (Vec<String>, Diagnostics) {
    let (mut names, diags) = find_repositories(storage, "");
    names.sort();
    (names, diags)
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
    // A directory with nothing in it is a repository with nothing in it: what a run killed
    // between removing an empty repository's last part and its directory leaves, which the
    // next run with --empty-repositories finishes.
    let mut is_repository = entries.is_empty() && !prefix.is_empty();
    for entry in entries {
        let child_key = format!("{key}/{}", entry.name);
        if layout::REPOSITORY_MARKERS.contains(&entry.name.as_str()) && !prefix.is_empty() {
            is_repository = true;
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
    if is_repository {
        names.push(prefix.to_string());
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
    link_times: bool,
    name: &'a str,
    diags: Diagnostics,
    complete: bool,
    buf: Vec<u8>,
}

impl RepoWalker<'_> {
    /// List a directory of this repository; absence is an empty listing, any other failure
    /// makes the repository incomplete.
    fn list(&mut self, key: &str) -> Vec<Entry> {
        match self.storage.list_dir(key) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => {
                // A file where `_layers` or `revisions` should be fails every per-algorithm
                // listing below it: name the file, once (identical problems are merged).
                let parent = key.rsplit_once('/').map(|(p, _)| p);
                match parent.filter(|p| self.storage.stat(p).is_ok_and(|m| m.kind != Kind::Dir)) {
                    Some(p) => self
                        .diags
                        .error(self.storage.display(p), "is not a directory"),
                    None => self.diags.error(
                        self.storage.display(key),
                        format!("cannot list directory: {e}"),
                    ),
                }
                self.complete = false;
                Vec::new()
            }
        }
    }

    /// Read a link file once.
    fn read_link_once(&mut self, key: &str) -> std::io::Result<SystemTime> {
        if self.link_times {
            self.storage
                .read_into(key, MAX_LINK_BYTES, &mut self.buf)
                .map(|meta| meta.modified)
        } else {
            // Without an age check, every link counts as old.
            self.storage
                .read_content(key, MAX_LINK_BYTES, &mut self.buf)
                .map(|()| SystemTime::UNIX_EPOCH)
        }
    }

    /// Read a link file: its target, the file's modification time, and whether it read empty
    /// or short every time (see [`Link::partial`]). `None` when the file does not exist. A
    /// link that reads empty or short is read again a few times: the registry's filesystem
    /// driver rewrites a link in place (truncate, then write), and the write is usually done
    /// within microseconds.
    fn read_link(&mut self, key: &str) -> Option<(LinkTarget, SystemTime, bool)> {
        let mut read = self.read_link_once(key);
        for wait_ms in [5, 50, 250] {
            if !(read.is_ok() && Digest::is_partial_link(&self.buf)) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(wait_ms));
            read = self.read_link_once(key);
        }
        match read {
            Ok(modified) => Some((
                Digest::parse_link(&self.buf).map_err(|e| format!("invalid link file: {e}")),
                modified,
                Digest::is_partial_link(&self.buf),
            )),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                let modified = self
                    .storage
                    .stat(key.rsplit_once('/').map_or(key, |(dir, _)| dir))
                    .map(|m| m.modified)
                    .unwrap_or(SystemTime::UNIX_EPOCH);
                Some((Err(format!("cannot read link file: {e}")), modified, false))
            }
        }
    }

    /// The uploads under `_uploads/`. An upload is small (a handful of files), so each is
    /// read whole: `startedat`, and the times of everything in it.
    fn uploads(&mut self) -> Vec<Upload> {
        let dir = layout::uploads_dir(self.name);
        let mut uploads = Vec::new();
        for entry in self.list(&dir) {
            let key = format!("{dir}/{}", entry.name);
            if entry.kind != Kind::Dir || !entry.utf8 {
                self.diags.warn(
                    self.storage.display(&key),
                    "not an upload directory; left alone",
                );
                continue;
            }
            uploads.push(self.upload(entry.name, &key));
        }
        let pending = match self.storage.pending_uploads(&dir) {
            Ok(p) => p,
            Err(e) => {
                self.diags.warn(
                    self.storage.display(&dir),
                    format!(
                        "cannot list its incomplete multipart uploads ({e}); they are left alone"
                    ),
                );
                Vec::new()
            }
        };
        for p in pending {
            // `<dir>/<uuid>/data`: anything else is not the registry's.
            let Some(uuid) = p.key[dir.len() + 1..].split('/').next().map(str::to_string) else {
                continue;
            };
            match uploads.iter_mut().find(|u| u.uuid == uuid) {
                // Its times and bytes are already in the upload's (`upload_times`).
                Some(u) => u.multipart.push(p),
                // Dated by its last activity (the newest part), never only by when it began:
                // S3-compatible servers are not all truthful about `Initiated` (moto answers a
                // fixed date), and a push still sending parts is not abandoned.
                None => uploads.push(Upload {
                    uuid,
                    started: Ok(p.touched),
                    touched: p.touched,
                    size: p.size,
                    unreadable: false,
                    multipart: vec![p],
                }),
            }
        }
        uploads.sort_by(|a, b| a.uuid.cmp(&b.uuid));
        uploads
    }

    fn upload(&mut self, uuid: String, key: &str) -> Upload {
        let (touched, size, unreadable) = upload_times(self.storage, key);
        let started_key = format!("{key}/{}", layout::STARTEDAT_FILE);
        let started = match self
            .storage
            .read_into(&started_key, MAX_LINK_BYTES, &mut self.buf)
        {
            Ok(_) => std::str::from_utf8(&self.buf)
                .map_err(|e| e.to_string())
                .and_then(|t| humantime::parse_rfc3339_weak(t.trim()).map_err(|e| e.to_string())),
            Err(e) => Err(e.to_string()),
        };
        if let Err(e) = &started {
            self.diags.warn(
                self.storage.display(&started_key),
                format!("upload start time unreadable ({e}); its age is the newest modification time in it"),
            );
        }
        if unreadable {
            self.diags.warn(
                self.storage.display(key),
                "upload could not be read whole; it is kept",
            );
        }
        Upload {
            uuid,
            started,
            touched,
            size,
            unreadable,
            multipart: Vec::new(),
        }
    }

    /// Entries of `<dir>/<alg>/` for every algorithm, as digests.
    fn digest_dirs(&mut self, alg_dir: impl Fn(Algorithm) -> String) -> Vec<(Digest, String)> {
        let mut out = Vec::new();
        for alg in Algorithm::ALL {
            let dir = alg_dir(alg);
            if dir.is_empty() {
                continue;
            }
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
                let (target, modified, partial) =
                    self.read_link(&format!("{dir}/{}", layout::LINK_FILE))?;
                Some(Link {
                    digest,
                    target,
                    modified,
                    partial,
                })
            })
            .collect()
    }

    /// Layer links. A sha256 link is taken to point at its own digest without being read: the
    /// registry writes nothing else there (sha256 is the canonical digest of content), and a
    /// link that pointed elsewhere could not serve a working pull anyway, because clients
    /// verify the digest of what they receive. Alias links (sha512) are read: their content is
    /// the only way to the blob. This saves three system calls for nearly every blob link.
    fn layer_links(&mut self) -> Vec<Link> {
        let name = self.name;
        let mut links = self.links(|alg| match alg {
            Algorithm::Sha256 => String::new(),
            _ => layout::layers_alg_dir(name, alg),
        });
        let dirs = self.digest_dirs(|alg| match alg {
            Algorithm::Sha256 => layout::layers_alg_dir(name, alg),
            _ => String::new(),
        });
        for (digest, dir) in dirs {
            let modified = if self.link_times {
                let link = format!("{dir}/{}", layout::LINK_FILE);
                match self
                    .storage
                    .stat(&link)
                    .or_else(|_| self.storage.stat(&dir))
                {
                    Ok(meta) => meta.modified,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => {
                        self.diags
                            .error(self.storage.display(&dir), format!("cannot stat: {e}"));
                        self.complete = false;
                        continue;
                    }
                }
            } else {
                SystemTime::UNIX_EPOCH
            };
            links.push(Link {
                target: Ok(digest.clone()),
                digest,
                modified,
                partial: false,
            });
        }
        links
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
            let read = self.read_link(&current_key);
            let pushed = match &read {
                Some((_, modified, _)) if self.link_times => Some(*modified),
                _ => None,
            };
            // No link, or one being written: when the tag's directory was made (or the link
            // truncated) tells a push in progress from damage.
            let made = if let Some((Err(_), modified, true)) = &read {
                Some(*modified)
            } else if read.is_none() {
                let current_dir = current_key.rsplit_once('/').map_or("", |(d, _)| d);
                self.storage
                    .stat(current_dir)
                    .or_else(|_| self.storage.stat(&key))
                    .ok()
                    .map(|m| m.modified)
            } else {
                None
            };
            let current = read.map_or_else(
                || Err("tag has no current link".to_string()),
                |(target, _, _)| target,
            );
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
                pushed,
                made,
                history,
            });
        }
        tags.sort_by(|a, b| a.name.cmp(&b.name));
        tags
    }
}

/// The newest modification time of anything in an upload's directory (the directory itself,
/// its files, `hashstates/<alg>/<offset>`), the size of its `data`, and whether anything in it
/// could not be read. Also the last look before an upload is removed: a client that touched it
/// since the run began is still sending.
pub fn upload_times(storage: &dyn Storage, key: &str) -> (SystemTime, u64, bool) {
    let mut newest = SystemTime::UNIX_EPOCH;
    let mut size = 0;
    let mut unreadable = false;
    // Its data kept outside the listing (S3 multipart uploads) is part of it; an upload that
    // is only that has no directory to read.
    let parent = key.rsplit_once('/').map_or("", |(p, _)| p);
    let mut pending = false;
    match storage.pending_uploads(parent) {
        Ok(all) => {
            let under = format!("{key}/");
            for p in all.iter().filter(|p| p.key.starts_with(&under)) {
                pending = true;
                newest = newest.max(p.touched);
                size = size.max(p.size);
            }
        }
        Err(_) => unreadable = true,
    }
    if pending
        && storage
            .stat(key)
            .is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound)
    {
        return (newest, size, unreadable);
    }
    let mut pending = vec![key.to_string()];
    while let Some(dir) = pending.pop() {
        match storage.stat(&dir) {
            Ok(meta) => newest = newest.max(meta.modified),
            Err(_) => unreadable = true,
        }
        let entries = match storage.list_dir(&dir) {
            Ok(entries) => entries,
            Err(_) => {
                unreadable = true;
                continue;
            }
        };
        for e in entries {
            let child = format!("{dir}/{}", e.name);
            match e.kind {
                Kind::Dir => pending.push(child),
                _ => match storage.stat(&child) {
                    Ok(meta) => {
                        newest = newest.max(meta.modified);
                        if dir == key && e.name == layout::DATA_FILE {
                            size = size.max(meta.len);
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(_) => unreadable = true,
                },
            }
        }
    }
    (newest, size, unreadable)
}

/// The tags of one repository, with the modification time of each `current/link` (the time of
/// the last push), sorted by name. The flag is false when the tags directory could not be
/// listed completely.
pub fn discover_tags(storage: &dyn Storage, name: &str) -> (Vec<Tag>, bool, Diagnostics) {
    let mut w = RepoWalker {
        storage,
        link_times: true,
        name,
        diags: Diagnostics::default(),
        complete: true,
        buf: Vec::with_capacity(256),
    };
    let tags = w.tags(false);
    (tags, w.complete, w.diags)
}

pub fn discover_repository(
    storage: &dyn Storage,
    name: String,
    options: Options,
) -> (Repository, Diagnostics) {
    let mut w = RepoWalker {
        storage,
        link_times: options.link_times,
        name: &name,
        diags: Diagnostics::default(),
        complete: true,
        buf: Vec::with_capacity(256),
    };
    let tags = w.tags(options.tag_history);
    let revisions = w.links(|alg| layout::revisions_alg_dir(&name, alg));
    let layers = w.layer_links();
    let uploads = if options.uploads {
        w.uploads()
    } else {
        Vec::new()
    };
    let complete = w.complete;
    let diags = w.diags;
    (
        Repository {
            name,
            tags,
            revisions,
            layers,
            complete,
            uploads,
        },
        diags,
    )
}

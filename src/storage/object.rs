//! A registry in object storage (S3, GCS, Azure Blob: each service's requests behind
//! [`Bucket`]), read the way object storage is fast.
//!
//! - The registry's keys are listed once, up front, without a delimiter: every key with its
//!   size, time and MD5, a page at a time (1,000 keys on S3, 5,000 on GCS and Azure). Where the first page ends tells how large the bucket is
//!   (hashes spread evenly over the blob shards); a large one has the rest of its key space
//!   split at fixed points (blob shards, repository names), the ranges listed at once with
//!   `start-after` (S3) or `startOffset` (GCS); Azure lists in sequence. Each range ends in a partial page, so there are only as many ranges as
//!   cost at most an eighth more pages than one sequential listing: a small bucket is listed
//!   in sequence, a large one in parallel.
//!   Directory listings and stats are then answered from memory; [`Storage::refresh`] lists a
//!   prefix again before a later look.
//! - A link object is written whole by one PUT, so the store knows the MD5 of its content (an
//!   S3 ETag, GCS `md5Hash`, Azure `Content-MD5`), and a link can only hold a digest: a link
//!   whose MD5 is that of the digest its key names (or, for a tag's `current` link, of a digest
//!   some link's key names) is known without a GET. Without an MD5 (multipart, encrypted,
//!   composite) nothing is proven: the link is read.
//! - Manifests are read through the local [`ManifestCache`]; a key the listing does not hold
//!   is absent whatever the cache says.
//! - Deletes go in batches (S3 DeleteObjects: 1,000 keys; GCS batch: 100; Azure Blob Batch:
//!   256). There is no rename: a move into the trash is a server-side copy of any size and the
//!   sources deleted in batches. Killed between the two, both copies exist; the next run keeps the blob and drops
//!   the trash copy.
//! - The run lock is an object created only if absent, holding its holder and expiry.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::ops::Bound;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use md5::{Digest as _, Md5};
use rayon::prelude::*;

use super::bucket::Multipart;
use super::bucket::{Bucket, Listed};
use super::listing;
use super::{too_large, Entry, Kind, LockGuard, Meta, PendingUpload, Requests, Storage};
use crate::error::Result;
use crate::registry::digest::{Algorithm, Digest};
use crate::registry::layout;
use crate::storage::manifest_cache::ManifestCache;

/// What the listing said of one key.
#[derive(Debug, Clone, Copy)]
struct Object {
    size: u64,
    /// Seconds since the epoch.
    modified: u64,
    /// The ETag when it is a plain MD5 (32 hex digits).
    md5: Option<[u8; 16]>,
}

impl Object {
    fn of(l: &Listed) -> Object {
        Object {
            size: l.size,
            modified: super::epoch_seconds(l.modified).max(0) as u64,
            md5: l.md5,
        }
    }

    fn modified(&self) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(self.modified)
    }
}

fn md5_of(content: &[u8]) -> [u8; 16] {
    Md5::digest(content).into()
}

pub struct ObjectStorage {
    client: Arc<dyn Bucket>,
    /// The registry's `rootdirectory` in the bucket, without slashes around it ("" for none).
    prefix: String,
    /// Every key below `docker/registry/v2/`, relative to the root (as layout builds them).
    index: RwLock<BTreeMap<String, Object>>,
    /// MD5 of `<alg>:<hex>` -> that content, for every digest a link's key names; built when a
    /// tag's `current` link is first read, dropped on refresh.
    link_contents: RwLock<Option<HashMap<[u8; 16], String>>>,
    cache: Option<ManifestCache>,
    cached: AtomicU64,
    /// Incomplete multipart uploads under the repositories, read on first use after each
    /// listing (only housekeeping of uploads asks).
    pending: Mutex<Option<Arc<Vec<PendingUpload>>>>,
}

impl ObjectStorage {
    /// List the registry under `prefix` in the bucket.
    pub fn open(
        client: Arc<dyn Bucket>,
        prefix: &str,
        cache: Option<ManifestCache>,
    ) -> io::Result<ObjectStorage> {
        let storage = ObjectStorage {
            client,
            prefix: prefix.trim_matches('/').to_string(),
            index: RwLock::new(BTreeMap::new()),
            link_contents: RwLock::new(None),
            cache,
            cached: AtomicU64::new(0),
            pending: Mutex::new(None),
        };
        storage.refresh(layout::V2)?;
        Ok(storage)
    }

    fn full(&self, rel: &str) -> String {
        match (self.prefix.is_empty(), rel.is_empty()) {
            (true, _) => rel.to_string(),
            (false, true) => self.prefix.clone(),
            (false, false) => format!("{}/{rel}", self.prefix),
        }
    }

    fn relative<'a>(&self, full: &'a str) -> Option<&'a str> {
        if self.prefix.is_empty() {
            Some(full)
        } else {
            full.strip_prefix(&self.prefix)?.strip_prefix('/')
        }
    }

    /// The digest named by a link key's path (`.../<alg>/<hex>/link`), as link content.
    fn path_link_content(key: &str) -> Option<String> {
        let mut parts = key.rsplit('/');
        let (link, hex, alg) = (parts.next()?, parts.next()?, parts.next()?);
        (link == layout::LINK_FILE && Algorithm::from_name(alg).is_some())
            .then(|| format!("{alg}:{hex}"))
    }

    /// The digest of the blob whose `data` this key is.
    fn blob_digest(key: &str) -> Option<Digest> {
        let rest = key.strip_prefix(layout::BLOBS)?.strip_prefix('/')?;
        let mut parts = rest.split('/');
        let (alg, _shard, hex, data) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if data != layout::DATA_FILE || parts.next().is_some() {
            return None;
        }
        Digest::from_parts(Algorithm::from_name(alg)?, hex).ok()
    }

    /// A link's content from its ETag alone, when the ETag proves it.
    fn link_from_etag(&self, key: &str, obj: &Object) -> Option<String> {
        let md5 = obj.md5?;
        if let Some(content) = Self::path_link_content(key) {
            if md5_of(content.as_bytes()) == md5 && obj.size == content.len() as u64 {
                return Some(content);
            }
        }
        // A tag's `current` (or any other) link: the digest of some link's key. The map is
        // built once, by the first reader, under the write lock: every worker reads tag links
        // at the same moment, and one map each would cost a copy per worker.
        {
            let known = self.link_contents.read().ok()?;
            if let Some(map) = known.as_ref() {
                return map
                    .get(&md5)
                    .filter(|c| c.len() as u64 == obj.size)
                    .cloned();
            }
        }
        let mut known = self.link_contents.write().ok()?;
        if known.is_none() {
            let index = self.index.read().ok()?;
            *known = Some(
                index
                    .keys()
                    .filter_map(|k| Self::path_link_content(k))
                    .map(|c| (md5_of(c.as_bytes()), c))
                    .collect(),
            );
        }
        known
            .as_ref()?
            .get(&md5)
            .filter(|c| c.len() as u64 == obj.size)
            .cloned()
    }

    fn object(&self, key: &str) -> Option<Object> {
        self.index.read().ok()?.get(key).copied()
    }

    /// Read a key's content: from its ETag for links, from the cache for manifests, else GET.
    fn read(&self, key: &str, limit: u64, buf: &mut Vec<u8>) -> io::Result<Object> {
        let Some(obj) = self.object(key) else {
            return self.read_unlisted(key, limit, buf);
        };
        if key.ends_with(layout::LINK_FILE) {
            if let Some(content) = self.link_from_etag(key, &obj) {
                buf.clear();
                buf.extend_from_slice(content.as_bytes());
                return Ok(obj);
            }
        }
        if obj.size > limit {
            return Err(too_large(limit));
        }
        let digest = Self::blob_digest(key);
        if let (Some(cache), Some(d)) = (&self.cache, &digest) {
            if cache.get(d, buf) {
                self.cached.fetch_add(1, Ordering::Relaxed);
                return Ok(obj);
            }
        }
        self.client.get(&self.full(key), limit, buf)?;
        if let (Some(cache), Some(d)) = (&self.cache, &digest) {
            cache.put(d, buf);
        }
        Ok(obj)
    }

    /// A blob's data the listing did not have: written since (a push during the run, whose
    /// revision link a later look found). Read from the bucket; what is there is young by
    /// definition, so it is dated now, and it joins the listing. Only blob data: links,
    /// uploads and the rest are what the listing (refreshed by each look) says.
    fn read_unlisted(&self, key: &str, limit: u64, buf: &mut Vec<u8>) -> io::Result<Object> {
        if Self::blob_digest(key).is_none() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{}: not in the bucket's listing", self.display(key)),
            ));
        }
        self.client.get(&self.full(key), limit, buf)?;
        let obj = Object {
            size: buf.len() as u64,
            modified: super::epoch_seconds(SystemTime::now()).max(0) as u64,
            md5: None,
        };
        if let Ok(mut index) = self.index.write() {
            index.entry(key.to_string()).or_insert(obj);
        }
        Ok(obj)
    }

    /// Keys at or below `key` (the key itself, then everything under `key/`).
    fn tree(&self, key: &str) -> Vec<String> {
        let Ok(index) = self.index.read() else {
            return Vec::new();
        };
        let dir = if key.is_empty() {
            String::new()
        } else {
            format!("{key}/")
        };
        let mut out: Vec<String> = index
            .range::<str, _>((Bound::Included(dir.as_str()), Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(&dir))
            .map(|(k, _)| k.clone())
            .collect();
        if index.contains_key(key) {
            out.push(key.to_string());
        }
        out
    }

    /// Delete keys (relative), 1,000 a request, the requests at once; drop the deleted ones from
    /// the index. Returns the keys that could not be deleted, with why.
    fn delete_keys(&self, keys: &[String]) -> HashMap<String, String> {
        let failed: HashMap<String, String> = keys
            .par_chunks(self.client.delete_batch_size())
            .flat_map_iter(|batch| {
                let full: Vec<String> = batch.iter().map(|k| self.full(k)).collect();
                match self.client.delete_batch(&full) {
                    Ok(errors) => {
                        let by_key: HashMap<String, String> = errors.into_iter().collect();
                        batch
                            .iter()
                            .zip(&full)
                            .filter_map(|(k, f)| by_key.get(f).map(|e| (k.clone(), e.clone())))
                            .collect::<Vec<_>>()
                    }
                    Err(e) => batch.iter().map(|k| (k.clone(), e.to_string())).collect(),
                }
            })
            .collect();
        if let Ok(mut index) = self.index.write() {
            for k in keys {
                if !failed.contains_key(k) {
                    index.remove(k);
                }
            }
        }
        failed
    }

    /// Every incomplete upload of a repository's `_uploads`, with its parts' size and newest
    /// time: listed once (the first caller lists while the others wait), again after a refresh.
    fn all_pending(&self) -> io::Result<Arc<Vec<PendingUpload>>> {
        let mut held = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(all) = held.as_ref() {
            return Ok(all.clone());
        }
        let prefix = format!("{}/", self.full(layout::REPOSITORIES));
        let listed = self.client.list_multipart(&prefix)?;
        let found: io::Result<Vec<Option<PendingUpload>>> = listed
            .par_iter()
            .filter_map(|m| {
                let key = self.relative(&m.key)?.to_string();
                key.contains("/_uploads/").then_some((m, key))
            })
            .map(|(m, key)| {
                let (size, newest) = match self.client.multipart_parts(m) {
                    Ok(parts) => parts,
                    // Completed or aborted since it was listed.
                    Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
                    Err(e) => return Err(e),
                };
                Ok(Some(PendingUpload {
                    key,
                    upload_id: m.upload_id.clone(),
                    initiated: m.initiated,
                    touched: newest.unwrap_or(m.initiated).max(m.initiated),
                    size,
                }))
            })
            .collect();
        let all: Arc<Vec<PendingUpload>> = Arc::new(found?.into_iter().flatten().collect());
        *held = Some(all.clone());
        Ok(all)
    }

    fn dir_meta(&self, key: &str) -> Option<Meta> {
        let index = self.index.read().ok()?;
        let dir = format!("{key}/");
        let mut newest = None;
        // A directory's time is its newest entry's; a huge prefix is sampled (nothing reads
        // the time of one).
        for (_, o) in index
            .range::<str, _>((Bound::Included(dir.as_str()), Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(&dir))
            .take(10_000)
        {
            newest = newest.max(Some(o.modified));
        }
        newest.map(|m| Meta {
            kind: Kind::Dir,
            len: 0,
            modified: SystemTime::UNIX_EPOCH + Duration::from_secs(m),
        })
    }
}

impl Storage for ObjectStorage {
    fn list_dir(&self, key: &str) -> io::Result<Vec<Entry>> {
        let mut out = Vec::new();
        self.visit_dir(key, &mut |name, kind| {
            out.push(Entry {
                name: String::from_utf8_lossy(name).into_owned(),
                kind,
                utf8: true,
            })
        })?;
        Ok(out)
    }

    fn visit_dir(&self, key: &str, f: &mut dyn FnMut(&[u8], Kind)) -> io::Result<()> {
        let index = self
            .index
            .read()
            .map_err(|_| io::Error::other("index poisoned"))?;
        let dir = if key.is_empty() {
            String::new()
        } else {
            format!("{key}/")
        };
        if index.contains_key(key) && !key.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "is not a directory",
            ));
        }
        let mut from = dir.clone();
        let mut any = false;
        while let Some((k, _)) = index
            .range::<str, _>((Bound::Included(from.as_str()), Bound::Unbounded))
            .next()
        {
            if !k.starts_with(&dir) {
                break;
            }
            any = true;
            let rest = &k[dir.len()..];
            match rest.split_once('/') {
                Some((child, _)) => {
                    f(child.as_bytes(), Kind::Dir);
                    // Skip the child's subtree: the next key after `<dir><child>/…`.
                    from = format!("{dir}{child}0");
                }
                None => {
                    f(rest.as_bytes(), Kind::File);
                    from = format!("{k}\0");
                }
            }
        }
        if any {
            Ok(())
        } else {
            Err(io::Error::new(io::ErrorKind::NotFound, "no such prefix"))
        }
    }

    fn stat(&self, key: &str) -> io::Result<Meta> {
        if let Some(o) = self.object(key) {
            return Ok(Meta {
                kind: Kind::File,
                len: o.size,
                modified: o.modified(),
            });
        }
        self.dir_meta(key)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no such key"))
    }

    fn read_into(&self, key: &str, limit: u64, buf: &mut Vec<u8>) -> io::Result<Meta> {
        let obj = self.read(key, limit, buf)?;
        Ok(Meta {
            kind: Kind::File,
            len: obj.size,
            modified: obj.modified(),
        })
    }

    fn read_content(&self, key: &str, limit: u64, buf: &mut Vec<u8>) -> io::Result<()> {
        self.read(key, limit, buf).map(|_| ())
    }

    fn remove_all(&self, key: &str) -> io::Result<()> {
        self.remove_trees(&[key.to_string()])
            .pop()
            .unwrap_or(Ok(()))
    }

    fn remove_trees(&self, keys: &[String]) -> Vec<io::Result<()>> {
        // Every object of every tree, deleted 1,000 a request, the requests at once.
        let objects: Vec<(usize, String)> = keys
            .iter()
            .enumerate()
            .flat_map(|(i, k)| self.tree(k).into_iter().map(move |o| (i, o)))
            .collect();
        let all: Vec<String> = objects.iter().map(|(_, k)| k.clone()).collect();
        let failed = self.delete_keys(&all);
        let mut results: Vec<io::Result<()>> = keys.iter().map(|_| Ok(())).collect();
        for (i, k) in &objects {
            if let Some(e) = failed.get(k) {
                if results[*i].is_ok() {
                    results[*i] = Err(io::Error::other(e.clone()));
                }
            }
        }
        results
    }

    fn remove_empty_dir(&self, key: &str) -> io::Result<bool> {
        // A prefix with nothing under it is gone by itself.
        Ok(self.tree(key).is_empty())
    }

    fn read_chunks(&self, key: &str, f: &mut dyn FnMut(&[u8])) -> io::Result<u64> {
        if self.object(key).is_none() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                "not in the listing",
            ));
        }
        self.client.get_chunks(&self.full(key), f)
    }

    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        self.rename_many(&[(from.to_string(), to.to_string())])
            .pop()
            .unwrap_or(Ok(()))
    }

    fn rename_many(&self, pairs: &[(String, String)]) -> Vec<io::Result<()>> {
        // Copy every object of every pair at once; then delete the sources of the pairs whose
        // copies all succeeded, 1,000 a request.
        let copied: Vec<io::Result<Vec<(String, String, Object)>>> = pairs
            .par_iter()
            .map(|(from, to)| {
                let objects = self.tree(from);
                if objects.is_empty() {
                    return Err(io::Error::new(io::ErrorKind::NotFound, "no such key"));
                }
                if !self.tree(to).is_empty() {
                    return Err(io::Error::new(
                        io::ErrorKind::AlreadyExists,
                        format!("{} already exists", self.display(to)),
                    ));
                }
                let mut moved = Vec::with_capacity(objects.len());
                for key in objects {
                    let obj = self
                        .object(&key)
                        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no such key"))?;
                    let dest = format!("{to}{}", &key[from.len()..]);
                    // A copy answering 404 (a lost answer retried, a status poll) proves
                    // nothing about the blob, which the listing showed there: a failure to
                    // report, never "already removed", which would count it as deleted.
                    self.client
                        .copy(&self.full(&key), &self.full(&dest), obj.size)
                        .map_err(|e| match e.kind() {
                            io::ErrorKind::NotFound => io::Error::other(format!(
                                "the copy into the trash answered not found ({e}); the blob \
                                 is left where it is"
                            )),
                            _ => e,
                        })?;
                    moved.push((key, dest, obj));
                }
                Ok(moved)
            })
            .collect();
        let sources: Vec<String> = copied
            .iter()
            .flatten()
            .flat_map(|m| m.iter().map(|(k, _, _)| k.clone()))
            .collect();
        let failed: HashMap<String, String> = self.delete_keys(&sources);
        let now = super::epoch_seconds(SystemTime::now()).max(0) as u64;
        let mut index = match self.index.write() {
            Ok(index) => index,
            Err(_) => {
                return pairs
                    .iter()
                    .map(|_| Err(io::Error::other("index poisoned")))
                    .collect()
            }
        };
        copied
            .into_iter()
            .map(|r| {
                let moved = r?;
                for (key, dest, obj) in &moved {
                    index.insert(
                        dest.clone(),
                        Object {
                            modified: now,
                            ..*obj
                        },
                    );
                    if let Some(e) = failed.get(key) {
                        return Err(io::Error::other(format!(
                            "copied to the trash, but the original could not be deleted: {e}"
                        )));
                    }
                    index.remove(key);
                }
                Ok(())
            })
            .collect()
    }

    fn remove_in_place(&self, keys: &[String]) -> Vec<io::Result<()>> {
        self.remove_trees(keys)
    }

    fn refresh(&self, prefix: &str) -> io::Result<()> {
        let listed = listing::list_all(
            self.client.as_ref(),
            &self.full(prefix),
            &self.full(layout::V2),
            &|l: Listed| {
                self.relative(&l.key)
                    .map(|rel| (rel.to_string(), Object::of(&l)))
            },
        )?;
        let dir = format!("{prefix}/");
        let fresh: BTreeMap<String, Object> = listed.into_iter().collect();
        let mut index = self
            .index
            .write()
            .map_err(|_| io::Error::other("index poisoned"))?;
        index.retain(|k, _| !k.starts_with(&dir));
        index.extend(fresh);
        if let Ok(mut known) = self.link_contents.write() {
            *known = None;
        }
        if let Ok(mut pending) = self.pending.lock() {
            *pending = None;
        }
        Ok(())
    }

    fn write_atomic(&self, key: &str, content: &[u8]) -> io::Result<()> {
        // One PUT replaces an object whole.
        self.client.put(&self.full(key), content, false)?;
        if let Ok(mut index) = self.index.write() {
            let now = super::epoch_seconds(SystemTime::now()).max(0) as u64;
            index.insert(
                key.to_string(),
                Object {
                    size: content.len() as u64,
                    modified: now,
                    md5: Some(md5_of(content)),
                },
            );
        }
        Ok(())
    }

    fn finish_removals(&self) -> io::Result<usize> {
        // A killed run's copies in parts into the trash never complete, and the store keeps
        // their parts: only regsweep writes there and this run holds the lock, so every one is
        // a leftover. Best effort: they cost storage, not correctness.
        let prefix = format!("{}/", self.full(layout::TRASH));
        let leaked = self.client.list_multipart(&prefix).unwrap_or_default();
        let aborted = leaked
            .par_iter()
            .filter(|m| self.client.abort_multipart(m).is_ok())
            .count();
        Ok(aborted)
    }

    fn pending_uploads(&self, dir: &str) -> io::Result<Vec<PendingUpload>> {
        let all = self.all_pending()?;
        let under = format!("{dir}/");
        Ok(all
            .iter()
            .filter(|p| p.key.starts_with(&under))
            .cloned()
            .collect())
    }

    fn abort_uploads(&self, uploads: &[PendingUpload]) -> Vec<io::Result<()>> {
        uploads
            .par_iter()
            .map(|u| {
                self.client.abort_multipart(&Multipart {
                    key: self.full(&u.key),
                    upload_id: u.upload_id.clone(),
                    initiated: u.initiated,
                })
            })
            .collect()
    }

    fn lock(&self, wait: bool) -> Result<LockGuard> {
        super::object_lock::ObjectLock::acquire(
            self.client.clone(),
            self.full(layout::LOCK_FILE),
            wait,
        )
        .map(LockGuard::new)
    }

    fn requests(&self) -> Option<Requests> {
        let mut r = self.client.requests();
        r.cached = self.cached.load(Ordering::Relaxed);
        Some(r)
    }

    fn display(&self, key: &str) -> String {
        let full = self.full(key);
        format!("{}/{full}", self.client.url())
    }

    /// The bucket with its account and endpoint, and the prefix: two registries with the
    /// same bucket name on different servers or accounts are two registries.
    fn identity(&self) -> String {
        format!("{} under {:?}", self.client.identity(), self.full(""))
    }
}

/// Put every file of a local registry tree (the directory holding `docker/registry/v2`) into
/// the bucket under `prefix`, in parallel: how the generator and the tests load the same
/// registry into a bucket. Returns how many objects were written.
pub fn load_tree(client: &dyn Bucket, prefix: &str, root: &std::path::Path) -> io::Result<usize> {
    fn walk(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) -> io::Result<()> {
        for e in std::fs::read_dir(dir)? {
            let e = e?;
            let t = e.file_type()?;
            if t.is_dir() {
                walk(&e.path(), out)?;
            } else if t.is_file() {
                out.push(e.path());
            }
        }
        Ok(())
    }
    let mut files = Vec::new();
    walk(&root.join(layout::V2), &mut files)?;
    let prefix = prefix.trim_matches('/');
    files
        .par_iter()
        .map(|path| {
            let rel = path
                .strip_prefix(root)
                .map_err(|e| io::Error::other(e.to_string()))?
                .to_string_lossy()
                .into_owned();
            let key = if prefix.is_empty() {
                rel
            } else {
                format!("{prefix}/{rel}")
            };
            client.put(&key, &std::fs::read(path)?, false).map(|_| ())
        })
        .collect::<io::Result<Vec<()>>>()
        .map(|v| v.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_content_from_a_key() {
        let hex = "ab".repeat(32);
        let key = format!("docker/registry/v2/repositories/a/_layers/sha256/{hex}/link");
        assert_eq!(
            ObjectStorage::path_link_content(&key),
            Some(format!("sha256:{hex}"))
        );
        assert_eq!(
            ObjectStorage::path_link_content("a/tags/v1/current/link"),
            None
        );
        let data = format!("docker/registry/v2/blobs/sha256/ab/{hex}/data");
        assert_eq!(
            ObjectStorage::blob_digest(&data).unwrap().to_string(),
            format!("sha256:{hex}")
        );
    }
}

//! A local cache of manifests read from object storage, across runs.
//!
//! Manifests are immutable and named by their digest, so a nightly run needs to GET only the
//! manifests pushed since the last one. The cache gives content only: whether a manifest
//! exists is what the listing says. Each entry is a file named by the digest; it is checked
//! against its digest when read (a damaged entry is a miss, and is replaced), written to a
//! temporary file and renamed into place (two runs sharing the directory never see half an
//! entry), and the oldest entries go when the cache outgrows its bound.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::registry::digest::{Algorithm, Digest};

/// The default bound: plenty for millions of manifests of a few KiB.
pub const DEFAULT_MAX_BYTES: u64 = 1 << 30;

pub struct ManifestCache {
    dir: PathBuf,
    max_bytes: u64,
}

/// The default place: `$XDG_CACHE_HOME/regsweep/manifests`, else `~/.cache/regsweep/manifests`.
pub fn default_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache")))?;
    Some(base.join("regsweep").join("manifests"))
}

impl ManifestCache {
    pub fn new(dir: impl Into<PathBuf>, max_bytes: u64) -> ManifestCache {
        ManifestCache {
            dir: dir.into(),
            max_bytes,
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, d: &Digest) -> PathBuf {
        let hex = d.hex();
        self.dir
            .join(d.algorithm().name())
            .join(&hex[..2])
            .join(hex)
    }

    /// The manifest with this digest, if cached and intact.
    pub fn get(&self, d: &Digest, buf: &mut Vec<u8>) -> bool {
        let Ok(content) = fs::read(self.path(d)) else {
            return false;
        };
        if Digest::of(d.algorithm(), &content) != *d {
            return false;
        }
        *buf = content;
        true
    }

    /// Keep `content` if it really is the manifest `d` (a damaged object is never cached).
    /// Failures are ignored: the cache only ever saves requests.
    pub fn put(&self, d: &Digest, content: &[u8]) {
        if Digest::of(d.algorithm(), content) != *d {
            return;
        }
        let path = self.path(d);
        let Some(parent) = path.parent() else { return };
        if fs::create_dir_all(parent).is_err() {
            return;
        }
        let tmp = parent.join(format!(".{}.{}.tmp", d.hex(), std::process::id()));
        if fs::write(&tmp, content).is_ok() && fs::rename(&tmp, &path).is_err() {
            let _ = fs::remove_file(&tmp);
        }
    }

    /// Bring the cache under its bound, oldest entries first (reading an entry does not make it
    /// younger; a manifest still in use is fetched and cached again). Returns entries removed.
    pub fn prune(&self) -> io::Result<usize> {
        let mut entries: Vec<(SystemTime, u64, PathBuf)> = Vec::new();
        let mut total = 0;
        for alg in Algorithm::ALL {
            let dir = self.dir.join(alg.name());
            let Ok(shards) = fs::read_dir(&dir) else {
                continue;
            };
            for shard in shards.flatten() {
                for e in fs::read_dir(shard.path())?.flatten() {
                    if let Ok(meta) = e.metadata() {
                        total += meta.len();
                        entries.push((
                            meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                            meta.len(),
                            e.path(),
                        ));
                    }
                }
            }
        }
        if total <= self.max_bytes {
            return Ok(0);
        }
        entries.sort();
        let mut removed = 0;
        for (_, len, path) in entries {
            if total <= self.max_bytes / 10 * 9 {
                break;
            }
            if fs::remove_file(&path).is_ok() {
                total -= len;
                removed += 1;
            }
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_verified_and_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ManifestCache::new(dir.path(), 100);
        let m = br#"{"schemaVersion":2}"#;
        let d = Digest::of(Algorithm::Sha256, m);
        let mut buf = Vec::new();
        assert!(!cache.get(&d, &mut buf));
        cache.put(&d, m);
        assert!(cache.get(&d, &mut buf));
        assert_eq!(buf, m);
        // Content that is not what its digest says is never cached, and a damaged entry is a
        // miss.
        let other = Digest::of(Algorithm::Sha256, b"other");
        cache.put(&other, m);
        assert!(!cache.get(&other, &mut buf));
        fs::write(cache.path(&d), b"tampered").unwrap();
        assert!(!cache.get(&d, &mut buf));
        // Over the bound, the oldest go.
        for i in 0..20 {
            let content = format!("{{\"n\":{i}}}");
            cache.put(
                &Digest::of(Algorithm::Sha256, content.as_bytes()),
                content.as_bytes(),
            );
        }
        assert!(cache.prune().unwrap() > 0);
        assert_eq!(cache.prune().unwrap(), 0);
    }
}

//! Parse: read every manifest the mark may need, once, in parallel.
//!
//! Manifests are loaded by content digest, per repository, into a [`Manifests`] map: the
//! targets of the repository's revision links, which is every manifest the registry can serve
//! from it (the mark follows nothing else). After this phase the mark needs no I/O. A manifest
//! shared by several repositories is read once for each; that costs little and keeps memory
//! bounded by one repository at a time.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::gc::discover::Repository;
use crate::registry::digest::Digest;
use crate::registry::layout;
use crate::registry::manifest::{Manifest, MAX_MANIFEST_BYTES};
use crate::storage::Storage;

/// Why a manifest could not be loaded, with the path that caused it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadError {
    pub path: String,
    pub message: String,
    /// The content is not there at all (not merely unreadable or unparseable).
    pub missing: bool,
}

pub type Loaded = Result<Arc<Manifest>, LoadError>;

#[derive(Debug, Default)]
pub struct Manifests {
    map: HashMap<Digest, Loaded>,
}

impl Manifests {
    pub fn get(&self, digest: &Digest) -> Option<&Loaded> {
        self.map.get(digest)
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Load `digests` too (manifests a tag names without a revision link), each once.
    pub fn load_more(
        &mut self,
        storage: &dyn Storage,
        digests: &[Digest],
        buf: &mut Vec<u8>,
        counter: &AtomicU64,
    ) {
        for d in digests {
            if !self.map.contains_key(d) {
                self.map.insert(d.clone(), load_one(storage, d, buf));
                counter.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Build from already-parsed manifests (tests and benches of the pure phases).
    pub fn from_map(map: HashMap<Digest, Loaded>) -> Manifests {
        Manifests { map }
    }
}

pub fn load_one(storage: &dyn Storage, digest: &Digest, buf: &mut Vec<u8>) -> Loaded {
    let key = layout::blob_data(digest);
    let path = || storage.display(&key);
    match storage.read_content(&key, MAX_MANIFEST_BYTES, buf) {
        Ok(()) => Manifest::parse(buf).map(Arc::new).map_err(|e| LoadError {
            path: path(),
            message: format!("manifest {digest}: {e}"),
            missing: false,
        }),
        Err(e) => Err(LoadError {
            path: path(),
            message: if e.kind() == std::io::ErrorKind::NotFound {
                format!("manifest {digest}: blob data is missing")
            } else {
                format!("manifest {digest}: cannot read: {e}")
            },
            missing: e.kind() == std::io::ErrorKind::NotFound,
        }),
    }
}

/// Load the manifests behind one repository's revision links: every manifest the registry can
/// serve from it (the mark follows nothing else). `buf` is reused across calls.
pub fn load_repository(
    storage: &dyn Storage,
    repo: &Repository,
    buf: &mut Vec<u8>,
    counter: &AtomicU64,
) -> Manifests {
    let mut map = HashMap::with_capacity(repo.revisions.len());
    for rev in &repo.revisions {
        // A link being written names its own revision (the mark decides whether it is young).
        let named = rev
            .target
            .as_ref()
            .ok()
            .or(rev.partial.then_some(&rev.digest));
        if let Some(target) = named {
            if !map.contains_key(target) {
                map.insert(target.clone(), load_one(storage, target, buf));
            }
        }
    }
    counter.fetch_add(map.len() as u64, Ordering::Relaxed);
    Manifests { map }
}

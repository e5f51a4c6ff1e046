//! Parse: read every manifest the mark may need, once, in parallel.
//!
//! Manifests are content-addressed and shared between repositories, so they are loaded by
//! content digest into one [`Manifests`] map: the targets of every revision link, which is every
//! manifest the registry can serve (the mark follows nothing else). After this phase the mark
//! needs no I/O.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use rayon::prelude::*;

use crate::digest::Digest;
use crate::discover::Inventory;
use crate::layout;
use crate::manifest::{Manifest, MAX_MANIFEST_BYTES};
use crate::storage::Storage;

/// Why a manifest could not be loaded, with the path that caused it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadError {
    pub path: String,
    pub message: String,
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

    /// Build from already-parsed manifests (tests and benches of the pure phases).
    pub fn from_map(map: HashMap<Digest, Loaded>) -> Manifests {
        Manifests { map }
    }
}

pub fn load_one(storage: &dyn Storage, digest: &Digest, buf: &mut Vec<u8>) -> Loaded {
    let key = layout::blob_data(digest);
    let path = || storage.display(&key);
    match storage.read_into(&key, MAX_MANIFEST_BYTES, buf) {
        Ok(_) => Manifest::parse(buf).map(Arc::new).map_err(|e| LoadError {
            path: path(),
            message: format!("manifest {digest}: {e}"),
        }),
        Err(e) => Err(LoadError {
            path: path(),
            message: if e.kind() == std::io::ErrorKind::NotFound {
                format!("manifest {digest}: blob data is missing")
            } else {
                format!("manifest {digest}: cannot read: {e}")
            },
        }),
    }
}

pub fn load(storage: &dyn Storage, inventory: &Inventory, counter: &AtomicU64) -> Manifests {
    let wanted: HashSet<&Digest> = inventory
        .repositories
        .iter()
        .flat_map(|repo| repo.revisions.iter().filter_map(|r| r.target.as_ref().ok()))
        .collect();
    let map: HashMap<Digest, Loaded> = wanted
        .into_par_iter()
        .map_init(
            || Vec::with_capacity(16 * 1024),
            |buf, digest| {
                let loaded = load_one(storage, digest, buf);
                counter.fetch_add(1, Ordering::Relaxed);
                (digest.clone(), loaded)
            },
        )
        .collect();
    Manifests { map }
}

//! Read and mark: discover one repository, load its manifests, mark it; every repository in
//! parallel, each worker reusing one manifest buffer. The collector, its later looks and the
//! usage report all read repositories this way, so that they agree on what is live.

use std::sync::atomic::AtomicU64;

use rayon::prelude::*;

use crate::error::Diagnostics;
use crate::gc::{discover, mark, parse};
use crate::storage::Storage;

/// One repository read and marked: what every command that needs liveness does per
/// repository (gc, its later looks, report).
pub struct RepoLiveness {
    pub repo: discover::Repository,
    pub mark: mark::RepoMark,
    pub blobs: Vec<mark::LiveBlob>,
    pub diagnostics: Diagnostics,
}

/// Discover, load and mark every named repository in parallel (each worker reusing one
/// manifest buffer) and hand each result to `each`, on the worker. The collector, its later
/// looks and the usage report all read repositories this way.
pub fn read_and_mark_all<R: Send>(
    storage: &dyn Storage,
    names: Vec<String>,
    discover_options: discover::Options,
    mark_options: mark::Options,
    manifests_read: &AtomicU64,
    each: impl Fn(RepoLiveness) -> R + Sync + Send,
) -> Vec<R> {
    names
        .into_par_iter()
        .map_init(
            || Vec::with_capacity(16 * 1024),
            |buf, name| {
                each(read_and_mark(
                    storage,
                    name,
                    discover_options,
                    mark_options,
                    buf,
                    manifests_read,
                ))
            },
        )
        .collect()
}

/// Discover one repository, load its manifests into `buf`'s reuse, and mark it.
fn read_and_mark(
    storage: &dyn Storage,
    name: String,
    discover_options: discover::Options,
    mark_options: mark::Options,
    buf: &mut Vec<u8>,
    manifests_read: &AtomicU64,
) -> RepoLiveness {
    let (repo, mut diagnostics) = discover::discover_repository(storage, name, discover_options);
    let mut manifests = parse::load_repository(storage, &repo, buf, manifests_read);
    let display = |key: &str| storage.display(key);
    // A live manifest without a revision link is followed through its content, which the
    // revision links did not load: load it and mark again, until nothing new is named (each
    // round loads at least one manifest, so this ends).
    let (mark, blobs, mark_diags) = loop {
        let (mark, blobs, diags) = mark::mark_repository(&repo, &manifests, mark_options, &display);
        if mark.to_load.is_empty() {
            break (mark, blobs, diags);
        }
        manifests.load_more(storage, &mark.to_load, buf, manifests_read);
    };
    diagnostics.merge(mark_diags);
    RepoLiveness {
        repo,
        mark,
        blobs,
        diagnostics,
    }
}

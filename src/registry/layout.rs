//! The on-disk layout of the CNCF distribution registry: the ONLY module that knows paths.
//!
//! Every path here is a storage key relative to the storage root (the directory that holds
//! `docker/registry/v2`), with `/` separators, so that a non-filesystem backend can map keys to
//! objects. Nothing here touches storage.
//!
//! ```text
//! docker/registry/v2/
//!   blobs/<alg>/<first 2 hex>/<hex>/data
//!   repositories/<name...>/
//!     _manifests/revisions/<alg>/<hex>/link
//!     _manifests/tags/<tag>/current/link
//!     _manifests/tags/<tag>/index/<alg>/<hex>/link
//!     _layers/<alg>/<hex>/link
//!     _uploads/<uuid>/...
//! ```

use crate::registry::digest::{Algorithm, Digest};

/// Root of the registry's data, relative to the storage root.
pub const V2: &str = "docker/registry/v2";
pub const BLOBS: &str = "docker/registry/v2/blobs";
pub const REPOSITORIES: &str = "docker/registry/v2/repositories";

/// The directory that marks a directory under `repositories/` as a repository.
pub const MANIFESTS_DIR: &str = "_manifests";

/// A directory holding any of these is a repository. The registry's catalog lists those with
/// `_layers`; a first push creates `_uploads` and `_layers` before `_manifests` exists, and
/// what it links must be seen (young links keep their blobs, abandoned uploads are purged).
pub const REPOSITORY_MARKERS: [&str; 3] = [MANIFESTS_DIR, "_layers", "_uploads"];

/// The file in an upload's directory that holds when it began (RFC 3339).
pub const STARTEDAT_FILE: &str = "startedat";
pub const LINK_FILE: &str = "link";
pub const DATA_FILE: &str = "data";

/// Path components starting with `_` are never part of a repository name.
pub fn is_reserved_component(name: &str) -> bool {
    name.starts_with('_')
}

pub fn blob_alg_dir(alg: Algorithm) -> String {
    format!("{BLOBS}/{alg}")
}

pub fn shard_dir(alg: Algorithm, prefix: &str) -> String {
    format!("{BLOBS}/{alg}/{prefix}")
}

/// The two-character shard a digest lives in.
pub fn shard_of(digest: &Digest) -> String {
    digest.hex()[..2].to_string()
}

pub fn blob_dir(digest: &Digest) -> String {
    let hex = digest.hex();
    format!("{BLOBS}/{}/{}/{hex}", digest.algorithm(), &hex[..2])
}

pub fn blob_data(digest: &Digest) -> String {
    format!("{}/{DATA_FILE}", blob_dir(digest))
}

pub fn repository_dir(repo: &str) -> String {
    format!("{REPOSITORIES}/{repo}")
}

pub fn manifests_dir(repo: &str) -> String {
    format!("{REPOSITORIES}/{repo}/{MANIFESTS_DIR}")
}

pub fn layers_dir(repo: &str) -> String {
    format!("{REPOSITORIES}/{repo}/_layers")
}

pub fn revisions_alg_dir(repo: &str, alg: Algorithm) -> String {
    format!("{REPOSITORIES}/{repo}/_manifests/revisions/{alg}")
}

pub fn revision_dir(repo: &str, digest: &Digest) -> String {
    format!(
        "{}/{}",
        revisions_alg_dir(repo, digest.algorithm()),
        digest.hex()
    )
}

pub fn revision_link(repo: &str, digest: &Digest) -> String {
    format!("{}/{LINK_FILE}", revision_dir(repo, digest))
}

pub fn tags_dir(repo: &str) -> String {
    format!("{REPOSITORIES}/{repo}/_manifests/tags")
}

pub fn tag_dir(repo: &str, tag: &str) -> String {
    format!("{}/{tag}", tags_dir(repo))
}

pub fn tag_current_link(repo: &str, tag: &str) -> String {
    format!("{}/{tag}/current/{LINK_FILE}", tags_dir(repo))
}

pub fn tag_index_alg_dir(repo: &str, tag: &str, alg: Algorithm) -> String {
    format!("{}/{tag}/index/{alg}", tags_dir(repo))
}

/// The directory of one tag-history entry (it holds a `link`).
pub fn tag_index_entry(repo: &str, tag: &str, digest: &Digest) -> String {
    format!(
        "{}/{}",
        tag_index_alg_dir(repo, tag, digest.algorithm()),
        digest.hex()
    )
}

pub fn tag_index_link(repo: &str, tag: &str, digest: &Digest) -> String {
    format!("{}/{LINK_FILE}", tag_index_entry(repo, tag, digest))
}

pub fn layers_alg_dir(repo: &str, alg: Algorithm) -> String {
    format!("{REPOSITORIES}/{repo}/_layers/{alg}")
}

pub fn layer_dir(repo: &str, digest: &Digest) -> String {
    format!(
        "{}/{}",
        layers_alg_dir(repo, digest.algorithm()),
        digest.hex()
    )
}

pub fn layer_link(repo: &str, digest: &Digest) -> String {
    format!("{}/{LINK_FILE}", layer_dir(repo, digest))
}

pub fn uploads_dir(repo: &str) -> String {
    format!("{REPOSITORIES}/{repo}/_uploads")
}

pub fn upload_dir(repo: &str, uuid: &str) -> String {
    format!("{REPOSITORIES}/{repo}/_uploads/{uuid}")
}

/// What a repository's directory holds of its own: removing these removes the repository
/// (`_layers` last: it is what the registry's catalog lists, so an interrupted removal leaves
/// the repository visible, and the next run finishes it).
pub fn repository_parts(repo: &str) -> [String; 3] {
    [uploads_dir(repo), manifests_dir(repo), layers_dir(repo)]
}

/// Where a real sweep moves dead blobs before the last look, so that a blob a concurrent push
/// made live can be put back. Beside `blobs/`, where the registry never looks: to the registry
/// a blob in here is already deleted. Emptied and removed at the end of every run; a run that
/// finds it (the previous one was killed) first puts everything back.
pub const TRASH: &str = "docker/registry/v2/.regsweep-trash";

/// The trash when `blobs/` is a filesystem of its own (a big volume mounted there): a move
/// must stay a rename on one filesystem, so the trash goes inside `blobs/`. The registry only
/// ever opens blobs by digest there; its own collector walks `blobs/` and would stumble on
/// this directory, which is why it is used only when it must be, and is empty between runs.
pub const BLOBS_TRASH: &str = "docker/registry/v2/blobs/.regsweep-trash";

/// The name of a trash directory inside `blobs/`, which blob discovery skips.
pub const TRASH_NAME: &str = ".regsweep-trash";

/// Every place a run may have left blobs in a trash.
pub const TRASHES: [&str; 2] = [TRASH, BLOBS_TRASH];

/// Where directories go, in one rename, to be deleted: a kill never leaves one half-removed.
pub const TRASH_GONE: &str = "docker/registry/v2/.regsweep-trash/gone";

/// A blob's place in a trash (one of [`TRASHES`]): a directory per blob, `<alg>-<hex>`, in a
/// shard named by the first two hex digits. One flat directory of tens of thousands of entries
/// would be one lock every removal waits for (a kernel takes a directory's lock to remove an
/// entry from it); 256 shards let removals run side by side. Older runs trashed flat
/// (`<trash>/<alg>-<hex>`); recovery takes both.
pub fn trash_entry(trash: &str, digest: &Digest) -> String {
    let hex = digest.hex();
    format!("{trash}/{}/{}-{hex}", &hex[..2], digest.algorithm())
}

/// Whether a name in a trash is one of its shards.
pub fn is_trash_shard(name: &str) -> bool {
    name.len() == 2 && name.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Link directories (tag-history entries, revisions, layer links) a run is removing in place,
/// one key a line, written before it starts and removed when it ends: a run killed between
/// removing a `link` and its directory leaves an empty directory, and the next run removes
/// those it finds empty here, so it ends where an uninterrupted run does.
pub const REMOVING: &str = "docker/registry/v2/.regsweep-removing";

/// Where `--unreferenced-for` keeps, between runs, when each candidate was first seen
/// unreferenced (unless `--state PATH`).
pub const UNREFERENCED_STATE: &str = "docker/registry/v2/.regsweep-unreferenced";

/// Where regsweep keeps its lock: beside `blobs/` and `repositories/`, where the registry
/// never looks.
pub const LOCK_FILE: &str = "docker/registry/v2/.regsweep.lock";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_match_the_registry_layout() {
        let d: Digest = format!("sha256:{}", "ab".repeat(32)).parse().unwrap();
        let hex = "ab".repeat(32);
        assert_eq!(
            blob_data(&d),
            format!("docker/registry/v2/blobs/sha256/ab/{hex}/data")
        );
        assert_eq!(
            revision_link("team/app", &d),
            format!(
                "docker/registry/v2/repositories/team/app/_manifests/revisions/sha256/{hex}/link"
            )
        );
        assert_eq!(
            tag_current_link("team/app", "v1"),
            "docker/registry/v2/repositories/team/app/_manifests/tags/v1/current/link"
        );
        assert_eq!(
            tag_index_entry("a", "v1", &d),
            format!("docker/registry/v2/repositories/a/_manifests/tags/v1/index/sha256/{hex}")
        );
        assert_eq!(
            layer_link("a/b/c", &d),
            format!("docker/registry/v2/repositories/a/b/c/_layers/sha256/{hex}/link")
        );
        assert_eq!(shard_of(&d), "ab");
    }
}

//! The standard scenario, pushed through a real registry's HTTP API: what the sample fixture
//! holds and what the end-to-end tests build live. Each step records, by its intent, what each
//! gc mode must delete and what must keep working.
#![allow(dead_code)]

use std::collections::BTreeSet;

use regsweep::registry::digest::Digest;
use serde_json::json;

use super::images::{bytes, push_image, push_index, push_referrer, Format, Pushed};
use super::registry::Client;

#[derive(Default, Debug)]
pub struct Expect {
    /// Blobs dead in both modes.
    pub dead: BTreeSet<Digest>,
    /// Blobs dead only with --delete-untagged.
    pub dead_untagged_only: BTreeSet<Digest>,
    /// (repository, digest, tag-history tags) of manifests deleted with --delete-untagged.
    pub manifests_untagged: Vec<(String, Digest, Vec<String>)>,
    /// Layer links dead in both modes.
    pub links: Vec<(String, Digest)>,
    /// Layer links dead only with --delete-untagged.
    pub links_untagged_only: Vec<(String, Digest)>,
    /// Tags that must pull, on every platform, after either mode.
    pub live_tags: Vec<(String, String, Pushed)>,
    /// Untagged manifests that must stay pullable by digest in both modes (referrers of live
    /// images, children of live indexes).
    pub live_untagged: Vec<Pushed>,
    /// (repository, blob, other repository): after either mode the blob must answer 404 through
    /// the first repository and 200 through the second.
    pub unlinked: Vec<(String, Digest, String)>,
}

impl Expect {
    pub fn dead_blobs(&self, untagged: bool) -> BTreeSet<Digest> {
        let mut out = self.dead.clone();
        if untagged {
            out.extend(self.dead_untagged_only.iter().cloned());
        }
        out
    }

    pub fn dead_links(&self, untagged: bool) -> BTreeSet<(String, Digest)> {
        let mut out: BTreeSet<_> = self.links.iter().cloned().collect();
        if untagged {
            out.extend(self.links_untagged_only.iter().cloned());
        }
        out
    }

    /// The expectations as the JSON file committed beside a fixture.
    pub fn to_json(&self) -> serde_json::Value {
        let digests = |s: &BTreeSet<Digest>| s.iter().map(|d| d.to_string()).collect::<Vec<_>>();
        let links = |s: BTreeSet<(String, Digest)>| {
            s.into_iter()
                .map(|(r, d)| json!({"repository": r, "digest": d.to_string()}))
                .collect::<Vec<_>>()
        };
        let mut manifests = self.manifests_untagged.clone();
        manifests.sort();
        json!({
            "comment": "Written by tests/support/scenario.rs from the intent of each scenario step; see that file.",
            "dead_blobs": digests(&self.dead_blobs(false)),
            "dead_blobs_untagged": digests(&self.dead_blobs(true)),
            "deleted_manifests_untagged": manifests.iter().map(|(r, d, t)| json!({"repository": r, "digest": d.to_string(), "tags": t})).collect::<Vec<_>>(),
            "deleted_layer_links": links(self.dead_links(false)),
            "deleted_layer_links_untagged": links(self.dead_links(true)),
            "live_tags": self.live_tags.iter().map(|(r, t, p)| json!({"repository": r, "tag": t, "digest": p.digest.to_string()})).collect::<Vec<_>>(),
        })
    }
}

/// Several nested repositories, shared and mounted layers, an OCI index and a Docker manifest
/// list, an index of an index, referrers of a live and of a deleted image, a retagged tag, a
/// manifest deleted through the API, an orphan blob and an abandoned upload.
pub fn standard(c: &Client) -> Expect {
    let mut e = Expect::default();

    // library/alpine: Docker schema 2. `latest` is retagged from a1 to a2, so a1 becomes an
    // untagged revision (dead only with -m). An uploaded blob that no manifest uses is dead.
    let alpine = "library/alpine";
    let a1 = push_image(
        c,
        alpine,
        Some("latest"),
        Format::Docker,
        "amd64",
        &["base", "alpine-v1"],
    );
    let a2 = push_image(
        c,
        alpine,
        Some("latest"),
        Format::Docker,
        "amd64",
        &["base", "alpine-v2"],
    );
    c.put_manifest(
        alpine,
        "3.19",
        a2.media_type,
        &c.get_manifest(alpine, &a2.digest.to_string()).1,
    );
    let base = a2.blobs[1].clone();
    let orphan = c.push_blob(alpine, &bytes("orphan blob nobody references", 700));
    e.dead.insert(orphan.clone());
    e.links.push((alpine.into(), orphan));
    // a1's config and its own layer are unique to it; `base` is shared.
    e.dead_untagged_only.insert(a1.digest.clone());
    for d in [&a1.blobs[0], &a1.blobs[2]] {
        e.dead_untagged_only.insert(d.clone());
        e.links_untagged_only.push((alpine.into(), d.clone()));
    }
    e.manifests_untagged
        .push((alpine.into(), a1.digest.clone(), vec!["latest".into()]));
    e.live_tags
        .push((alpine.into(), "latest".into(), a2.clone()));
    e.live_tags.push((alpine.into(), "3.19".into(), a2.clone()));

    // library/busybox: mounts `base` from alpine, is tagged, then deleted through the API. Its
    // blobs go, and `base` must stop being served through busybox while alpine keeps it.
    let busybox = "library/busybox";
    assert!(c.mount_blob(busybox, &base, alpine), "mount base layer");
    let bb = push_image(
        c,
        busybox,
        Some("1.36"),
        Format::Docker,
        "amd64",
        &["base", "busybox-own"],
    );
    c.delete_manifest(busybox, &bb.digest);
    e.dead.insert(bb.digest.clone());
    e.dead.insert(bb.blobs[0].clone());
    e.dead.insert(bb.blobs[2].clone());
    for d in &bb.blobs {
        e.links.push((busybox.into(), d.clone()));
    }
    e.unlinked
        .push((busybox.into(), base.clone(), alpine.into()));

    // team/app: an OCI index over two platforms with an SBOM referrer (live in both modes).
    // `old` is pushed with a signature referrer, then deleted through the API.
    let app = "team/app";
    let amd = push_image(c, app, None, Format::Oci, "amd64", &["base", "app-amd64"]);
    let arm = push_image(
        c,
        app,
        None,
        Format::Oci,
        "arm64",
        &["base-arm", "app-arm64"],
    );
    let index = push_index(c, app, Some("v1"), Format::Oci, &[&amd, &arm]);
    let sbom = push_referrer(c, app, &index, "sbom of v1");
    e.live_tags.push((app.into(), "v1".into(), index.clone()));
    e.live_untagged.push(sbom);
    let old = push_image(c, app, Some("old"), Format::Oci, "amd64", &["app-old"]);
    let old_sig = push_referrer(c, app, &old, "signature of old");
    c.delete_manifest(app, &old.digest);
    e.dead.insert(old.digest.clone());
    for d in &old.blobs {
        e.dead.insert(d.clone());
        e.links.push((app.into(), d.clone()));
    }
    // The signature's config is the empty `{}` the SBOM shares; its payload is its own.
    e.dead_untagged_only.insert(old_sig.digest.clone());
    e.dead_untagged_only.insert(old_sig.blobs[1].clone());
    e.links_untagged_only
        .push((app.into(), old_sig.blobs[1].clone()));
    e.manifests_untagged
        .push((app.into(), old_sig.digest.clone(), vec![]));
    c.abandon_upload(app, &bytes("an upload nobody finished", 500));

    // team/app/cache: nested below a repository that is itself one. Its base layer is mounted
    // from library/alpine. An image pushed by digest only is dead with -m.
    let cache = "team/app/cache";
    assert!(c.mount_blob(cache, &base, alpine), "mount base layer");
    let build = push_image(
        c,
        cache,
        Some("buildcache"),
        Format::Docker,
        "amd64",
        &["base", "cache-layer"],
    );
    e.live_tags.push((cache.into(), "buildcache".into(), build));
    let tmp = push_image(c, cache, None, Format::Docker, "amd64", &["cache-tmp"]);
    e.dead_untagged_only.insert(tmp.digest.clone());
    for d in &tmp.blobs {
        e.dead_untagged_only.insert(d.clone());
        e.links_untagged_only.push((cache.into(), d.clone()));
    }
    e.manifests_untagged
        .push((cache.into(), tmp.digest.clone(), vec![]));

    // a/b/c/d: a Docker manifest list, and an OCI index whose child is an index. Their children
    // are untagged but live: the reference collector's -m deletes them, regsweep must not.
    let deep = "a/b/c/d";
    assert!(c.mount_blob(deep, &base, alpine), "mount base layer");
    let d_amd = push_image(c, deep, None, Format::Docker, "amd64", &["base", "d-amd64"]);
    let d_arm = push_image(c, deep, None, Format::Docker, "arm64", &["d-arm64"]);
    let list = push_index(c, deep, Some("multi"), Format::Docker, &[&d_amd, &d_arm]);
    e.live_tags.push((deep.into(), "multi".into(), list));
    let leaf = push_image(c, deep, None, Format::Oci, "riscv64", &["d-nested"]);
    let inner = push_index(c, deep, None, Format::Oci, &[&leaf]);
    let outer = push_index(c, deep, Some("nested"), Format::Oci, &[&inner]);
    e.live_tags.push((deep.into(), "nested".into(), outer));
    e
}

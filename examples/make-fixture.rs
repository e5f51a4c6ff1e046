//! Regenerate `fixtures/registry/`: a small, complete registry written by the real registry
//! server (Debian's `docker-registry`), pushed over its HTTP API.
//!
//! Also writes `fixtures/registry.expect.json`: what each gc mode must delete, stated by the
//! intent of each scenario below (which image was deleted, which tag moved), not computed by
//! regsweep. The integration tests hold regsweep to it.
//!
//! Usage: cargo run --example make-fixture -- [OUT_DIR]   (default: fixtures/registry)

#[path = "../tests/support/images.rs"]
mod images;
#[path = "../tests/support/registry.rs"]
mod registry;

use std::collections::BTreeSet;
use std::path::PathBuf;

use images::{bytes, push_image, push_index, push_referrer, Format};
use regsweep::digest::Digest;
use serde_json::json;

#[derive(Default)]
struct Expect {
    dead: BTreeSet<Digest>,
    dead_untagged_only: BTreeSet<Digest>,
    manifests_untagged: Vec<serde_json::Value>,
    links: Vec<(String, Digest)>,
    links_untagged_only: Vec<(String, Digest)>,
    live_tags: Vec<(String, String, Digest)>,
}

fn links_json(links: &[(String, Digest)]) -> serde_json::Value {
    let mut v: Vec<_> = links
        .iter()
        .map(|(r, d)| json!({"repository": r, "digest": d.to_string()}))
        .collect();
    v.sort_by_key(|x| x.to_string());
    serde_json::Value::Array(v)
}

fn main() {
    let out = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "fixtures/registry".to_string()),
    );
    if !registry::server_available() {
        eprintln!("make-fixture: {} is not installed", registry::SERVER);
        std::process::exit(2);
    }
    if out.exists() {
        std::fs::remove_dir_all(&out).expect("remove old fixture");
    }
    let server = registry::Registry::start(&out);
    let c = server.client();
    let mut e = Expect::default();

    // library/alpine: Docker schema 2. `latest` is retagged from a1 to a2, so a1 becomes an
    // untagged revision (dead only with -m). An uploaded blob that no manifest uses is dead.
    let alpine = "library/alpine";
    let a1 = push_image(
        &c,
        alpine,
        Some("latest"),
        Format::Docker,
        "amd64",
        &["base", "alpine-v1"],
    );
    let a2 = push_image(
        &c,
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
        .push(json!({"repository": alpine, "digest": a1.digest.to_string(), "tags": ["latest"]}));
    e.live_tags
        .push((alpine.into(), "latest".into(), a2.digest.clone()));
    e.live_tags
        .push((alpine.into(), "3.19".into(), a2.digest.clone()));

    // team/app: an OCI index over two platforms with an SBOM referrer (live in both modes).
    // `old` is pushed with a signature referrer, then deleted through the API.
    let app = "team/app";
    let amd = push_image(&c, app, None, Format::Oci, "amd64", &["base", "app-amd64"]);
    let arm = push_image(
        &c,
        app,
        None,
        Format::Oci,
        "arm64",
        &["base-arm", "app-arm64"],
    );
    let index = push_index(&c, app, Some("v1"), Format::Oci, &[&amd, &arm]);
    let _sbom = push_referrer(&c, app, &index, "sbom of v1");
    e.live_tags
        .push((app.into(), "v1".into(), index.digest.clone()));
    let old = push_image(&c, app, Some("old"), Format::Oci, "amd64", &["app-old"]);
    let old_sig = push_referrer(&c, app, &old, "signature of old");
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
        .push(json!({"repository": app, "digest": old_sig.digest.to_string(), "tags": []}));
    c.abandon_upload(app, &bytes("an upload nobody finished", 500));

    // team/app/cache: nested below a repository that is itself one. Its base layer is mounted
    // from library/alpine. An image pushed by digest only is dead with -m.
    let cache = "team/app/cache";
    assert!(
        c.mount_blob(cache, &a2.blobs[1], alpine),
        "mount base layer"
    );
    let build = push_image(
        &c,
        cache,
        Some("buildcache"),
        Format::Docker,
        "amd64",
        &["base", "cache-layer"],
    );
    e.live_tags
        .push((cache.into(), "buildcache".into(), build.digest.clone()));
    let tmp = push_image(&c, cache, None, Format::Docker, "amd64", &["cache-tmp"]);
    e.dead_untagged_only.insert(tmp.digest.clone());
    for d in &tmp.blobs {
        e.dead_untagged_only.insert(d.clone());
        e.links_untagged_only.push((cache.into(), d.clone()));
    }
    e.manifests_untagged
        .push(json!({"repository": cache, "digest": tmp.digest.to_string(), "tags": []}));

    // a/b/c/d: a Docker manifest list, and an OCI index whose child is an index. Their children
    // are untagged but live: the reference collector's -m deletes them, regsweep must not.
    let deep = "a/b/c/d";
    assert!(c.mount_blob(deep, &a2.blobs[1], alpine), "mount base layer");
    let d_amd = push_image(
        &c,
        deep,
        None,
        Format::Docker,
        "amd64",
        &["base", "d-amd64"],
    );
    let d_arm = push_image(&c, deep, None, Format::Docker, "arm64", &["d-arm64"]);
    let list = push_index(&c, deep, Some("multi"), Format::Docker, &[&d_amd, &d_arm]);
    e.live_tags
        .push((deep.into(), "multi".into(), list.digest.clone()));
    let leaf = push_image(&c, deep, None, Format::Oci, "riscv64", &["d-nested"]);
    let inner = push_index(&c, deep, None, Format::Oci, &[&leaf]);
    let outer = push_index(&c, deep, Some("nested"), Format::Oci, &[&inner]);
    e.live_tags
        .push((deep.into(), "nested".into(), outer.digest.clone()));

    drop(server);
    let mut dead_untagged: BTreeSet<Digest> = e.dead.clone();
    dead_untagged.extend(e.dead_untagged_only.iter().cloned());
    let mut links_untagged = e.links.clone();
    links_untagged.extend(e.links_untagged_only.iter().cloned());
    e.manifests_untagged.sort_by_key(|x| x.to_string());
    let expect = json!({
        "comment": "Written by examples/make-fixture.rs from the intent of each scenario; see that file.",
        "dead_blobs": e.dead.iter().map(|d| d.to_string()).collect::<Vec<_>>(),
        "dead_blobs_untagged": dead_untagged.iter().map(|d| d.to_string()).collect::<Vec<_>>(),
        "deleted_manifests_untagged": e.manifests_untagged,
        "deleted_layer_links": links_json(&e.links),
        "deleted_layer_links_untagged": links_json(&links_untagged),
        "live_tags": e.live_tags.iter().map(|(r, t, d)| json!({"repository": r, "tag": t, "digest": d.to_string()})).collect::<Vec<_>>(),
    });
    let expect_path = out.with_extension("expect.json");
    std::fs::write(
        &expect_path,
        serde_json::to_string_pretty(&expect).unwrap() + "\n",
    )
    .expect("write expectations");
    eprintln!("wrote {} and {}", out.display(), expect_path.display());
}

//! A corpus of damaged and hostile registries. Each case starts from the same small registry,
//! damages it one way, runs `regsweep gc` as a user would (both modes), and asserts the
//! expected outcome: a clear error naming the path (and nothing deleted), or the correct
//! result. In every case no live blob is lost and nothing outside the root is touched.

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use regsweep::registry::digest::Digest;
use std::time::Duration;

use support::tree::{age_tree, blobs_on_disk, gc_json, run, v2, TreeBuilder};

/// The registry every case starts from: `app:v1` (config + layer), an untagged image in
/// `app`, a tagged image in `team/lib` sharing app's layer, and one orphan blob.
struct Base {
    dir: tempfile::TempDir,
    v1: Digest,
    v1_blobs: Vec<Digest>,
    untagged: Digest,
    untagged_blobs: Vec<Digest>,
    lib: Digest,
    orphan: Digest,
}

impl Base {
    fn new() -> Base {
        let dir = tempfile::tempdir().unwrap();
        let t = TreeBuilder::new(dir.path());
        let v1_blobs = vec![t.blob(b"config v1"), t.blob(b"layer shared")];
        let v1 = t.image("app", &v1_blobs, None);
        t.tag("app", "v1", &v1);
        let untagged_blobs = vec![t.blob(b"config old"), t.blob(b"layer old")];
        let untagged = t.image("app", &untagged_blobs, None);
        let lib = t.image(
            "team/lib",
            &[t.blob(b"config lib"), v1_blobs[1].clone()],
            None,
        );
        t.tag("team/lib", "1.0", &lib);
        let orphan = t.blob(b"nobody needs me");
        Base {
            dir,
            v1,
            v1_blobs,
            untagged,
            untagged_blobs,
            lib,
            orphan,
        }
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }

    fn t(&self) -> TreeBuilder {
        TreeBuilder {
            root: self.root().to_path_buf(),
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        v2(self.root()).join(rel)
    }

    fn data(&self, d: &Digest) -> PathBuf {
        self.t().blob_path(d).join("data")
    }

    fn write(&self, rel: &str, content: &[u8]) -> PathBuf {
        let p = self.path(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, content).unwrap();
        p
    }
}

enum Outcome {
    /// Exit 1, nothing deleted, and stderr names every one of these paths.
    Refused(Vec<PathBuf>),
    /// Exit 0 and exactly these blobs deleted without / with `-m`.
    Deletes(BTreeSet<Digest>, BTreeSet<Digest>),
}

fn set(items: &[&Digest]) -> BTreeSet<Digest> {
    items.iter().map(|d| (*d).clone()).collect()
}

/// Run both modes (dry run, then a real run on the result of the check) and assert.
fn check(name: &str, base: &Base, outcome: Outcome, must_keep: &[&Digest]) {
    // Old enough for --min-age and for the real run's later looks (anything modified since the
    // run started counts as a push in progress).
    age_tree(base.root(), Duration::from_secs(86400));
    let before = blobs_on_disk(base.root());
    for untagged in [false, true] {
        let mut args = vec!["--min-age", "0", "-d"];
        if untagged {
            args.push("-m");
        }
        let (r, out) = gc_json(base.root(), &args);
        assert!(
            !out.stderr.contains("panicked"),
            "{name}: panic\n{}",
            out.stderr
        );
        match &outcome {
            Outcome::Refused(paths) => {
                assert_eq!(out.code, 1, "{name} (-m {untagged}): {}", out.stderr);
                assert!(r.refused, "{name}: not refused");
                assert!(r.deleted.blobs.is_empty(), "{name}: deletes while refusing");
                for p in paths {
                    let p = p.display().to_string();
                    assert!(
                        r.errors.iter().any(|e| e.path == p),
                        "{name}: no error names {p}: {:?}",
                        r.errors
                    );
                    assert!(out.stderr.contains(&p), "{name}: stderr does not name {p}");
                }
            }
            Outcome::Deletes(plain, with_m) => {
                assert_eq!(out.code, 0, "{name} (-m {untagged}): {}", out.stderr);
                let want = if untagged { with_m } else { plain };
                let got: BTreeSet<Digest> =
                    r.deleted.blobs.iter().map(|b| b.digest.clone()).collect();
                assert_eq!(&got, want, "{name} (-m {untagged})");
            }
        }
        for d in must_keep {
            assert!(
                !r.deleted.blobs.iter().any(|b| &b.digest == *d),
                "{name}: would delete live {d}"
            );
        }
    }
    // The real run, with -m: it must do what the dry run said, and keep what must be kept.
    let (r, out) = gc_json(base.root(), &["--min-age", "0", "-m"]);
    assert!(!out.stderr.contains("panicked"), "{name}: panic");
    let after = blobs_on_disk(base.root());
    let gone: BTreeSet<Digest> = before.difference(&after).cloned().collect();
    match &outcome {
        Outcome::Refused(_) => assert!(gone.is_empty(), "{name}: a refused run deleted {gone:?}"),
        Outcome::Deletes(_, with_m) => {
            // `gone` only sees blobs with a `data` file; a planned blob without one is gone too.
            assert!(gone.is_subset(with_m), "{name}: real run deleted {gone:?}");
            assert!(
                after.is_disjoint(with_m),
                "{name}: real run left some of {with_m:?}"
            );
            assert_eq!(r.summary.failed_deletions, 0, "{name}: {:?}", r.errors);
        }
    }
    for d in must_keep {
        assert!(
            after.contains(*d) || !before.contains(*d),
            "{name}: lost {d}"
        );
    }
}

fn normal(base: &Base) -> Outcome {
    Outcome::Deletes(
        set(&[&base.orphan]),
        set(&[
            &base.orphan,
            &base.untagged,
            &base.untagged_blobs[0],
            &base.untagged_blobs[1],
        ]),
    )
}

fn live(base: &Base) -> Vec<Digest> {
    let mut v = vec![base.v1.clone(), base.lib.clone()];
    v.extend(base.v1_blobs.iter().cloned());
    v
}

macro_rules! case {
    ($name:ident, |$b:ident| $body:block) => {
        #[test]
        fn $name() {
            let $b = Base::new();
            let outcome: Outcome = $body;
            let mut keep = live(&$b);
            if let Outcome::Deletes(_, with_m) = &outcome {
                keep.retain(|d| !with_m.contains(d));
            }
            check(
                stringify!($name),
                &$b,
                outcome,
                &keep.iter().collect::<Vec<_>>(),
            );
        }
    };
}

fn v1_current(b: &Base) -> &'static str {
    let _ = b;
    "repositories/app/_manifests/tags/v1/current/link"
}

case!(corrupt_manifest, |b| {
    std::fs::write(b.data(&b.v1), b"{\"schemaVersion\": 2, \"config\": ").unwrap();
    Outcome::Refused(vec![b.data(&b.v1)])
});

case!(truncated_manifest, |b| {
    let bytes = std::fs::read(b.data(&b.lib)).unwrap();
    std::fs::write(b.data(&b.lib), &bytes[..bytes.len() / 2]).unwrap();
    Outcome::Refused(vec![b.data(&b.lib)])
});

case!(oversized_manifest, |b| {
    let mut big = b"{\"schemaVersion\": 2, \"layers\": [".to_vec();
    big.resize(5 << 20, b' ');
    std::fs::write(b.data(&b.v1), big).unwrap();
    Outcome::Refused(vec![b.data(&b.v1)])
});

case!(empty_tag_link, |b| {
    Outcome::Refused(vec![b.write(v1_current(&b), b"")])
});

case!(garbage_tag_link, |b| {
    Outcome::Refused(vec![b.write(v1_current(&b), b"hello, registry")])
});

case!(upper_case_tag_link, |b| {
    let upper = b.v1.to_string().to_uppercase().replace("SHA256", "sha256");
    Outcome::Refused(vec![b.write(v1_current(&b), upper.as_bytes())])
});

case!(wrong_algorithm_tag_link, |b| {
    let md5 = format!("md5:{}", "ab".repeat(16));
    Outcome::Refused(vec![b.write(v1_current(&b), md5.as_bytes())])
});

case!(whitespace_padded_tag_link_is_fine, |b| {
    b.write(v1_current(&b), format!("  {}\n", b.v1).as_bytes());
    normal(&b)
});

case!(garbage_revision_link, |b| {
    let rel = format!(
        "repositories/app/_manifests/revisions/sha256/{}/link",
        b.untagged.hex()
    );
    Outcome::Refused(vec![b.write(&rel, b"sha256:nothex")])
});

case!(revision_link_to_a_missing_manifest_blob, |b| {
    std::fs::remove_dir_all(b.t().blob_path(&b.v1)).unwrap();
    Outcome::Refused(vec![b.data(&b.v1)])
});

case!(tag_pointing_at_a_deleted_revision_is_already_broken, |b| {
    // The registry no longer serves it: a warning, and its blob (if any) is kept.
    let ghost = b.t().blob(b"{\"ghost\": true}");
    b.write(v1_current(&b), ghost.to_string().as_bytes());
    // v1's own manifest is now untagged: -m collects it and its config (the layer is shared).
    Outcome::Deletes(
        set(&[&b.orphan]),
        set(&[
            &b.orphan,
            &b.untagged,
            &b.untagged_blobs[0],
            &b.untagged_blobs[1],
            &b.v1,
            &b.v1_blobs[0],
        ]),
    )
});

#[test]
fn tag_without_current_link() {
    let b = Base::new();
    let rel = format!(
        "repositories/app/_manifests/tags/v2/index/sha256/{}/link",
        b.v1.hex()
    );
    b.write(&rel, b.v1.to_string().as_bytes());
    // A tag directory without `current`: what the tag points at is unknown, so refuse.
    let current = b.path("repositories/app/_manifests/tags/v2/current/link");
    check(
        "tag_without_current_link",
        &b,
        Outcome::Refused(vec![current]),
        &live(&b).iter().collect::<Vec<_>>(),
    );
}

case!(orphan_blob_directory_without_data, |b| {
    std::fs::remove_file(b.data(&b.orphan)).unwrap();
    normal(&b)
});

case!(blob_data_that_is_a_directory_is_left_alone, |b| {
    std::fs::remove_file(b.data(&b.orphan)).unwrap();
    std::fs::create_dir(b.data(&b.orphan)).unwrap();
    let mut o = normal(&b);
    if let Outcome::Deletes(plain, with_m) = &mut o {
        plain.remove(&b.orphan);
        with_m.remove(&b.orphan);
    }
    o
});

#[test]
fn symlinks_inside_repositories_and_blobs_point_outside() {
    let b = Base::new();
    let outside = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(outside.path().join("evil/_manifests/tags")).unwrap();
    std::fs::write(outside.path().join("precious"), b"keep me").unwrap();
    let link_repo = b.path("repositories/evil");
    std::os::unix::fs::symlink(outside.path().join("evil"), &link_repo).unwrap();
    // A shard entry that links outside: never followed, never deleted through.
    let shard = b.t().blob_path(&b.orphan).parent().unwrap().to_path_buf();
    std::os::unix::fs::symlink(outside.path(), shard.join("ab".repeat(32))).unwrap();
    check(
        "symlinks",
        &b,
        Outcome::Refused(vec![link_repo]),
        &live(&b).iter().collect::<Vec<_>>(),
    );
    assert!(outside.path().join("precious").exists());
    assert!(outside.path().join("evil/_manifests/tags").exists());
}

case!(index_cycle_terminates, |b| {
    // Content addressing makes a cycle of blobs impossible, but not a cycle of revisions: A
    // lists B, and B's revision link points at content that lists A.
    let t = b.t();
    let index_of = |children: &[&Digest]| {
        serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": children.iter().map(|c| serde_json::json!({
                "mediaType": "application/vnd.oci.image.index.v1+json",
                "digest": c.to_string(), "size": 1})).collect::<Vec<_>>()
        }))
        .unwrap()
    };
    let fake_b = Digest::of(regsweep::registry::digest::Algorithm::Sha256, b"revision b");
    let a = t.manifest("app", &index_of(&[&fake_b, &b.v1]));
    let content_b = t.blob(&index_of(&[&a]));
    b.write(
        &format!(
            "repositories/app/_manifests/revisions/sha256/{}/link",
            fake_b.hex()
        ),
        content_b.to_string().as_bytes(),
    );
    t.tag("app", "cycle", &a);
    normal(&b)
});

case!(very_deep_nesting, |b| {
    let t = b.t();
    let mut top = b.untagged.clone();
    for _ in 0..300 {
        top = t.index("app", &[top]);
    }
    t.tag("app", "deep", &top);
    // The untagged image is now live through 300 levels of indexes.
    Outcome::Deletes(set(&[&b.orphan]), set(&[&b.orphan]))
});

case!(index_with_ten_thousand_children, |b| {
    let t = b.t();
    let children: Vec<Digest> = (0..10_000)
        .map(|i| {
            let bytes = serde_json::to_vec(&serde_json::json!({
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"digest": b.v1_blobs[0].to_string(), "size": 9},
                "layers": [],
                "annotations": {"n": i.to_string()}
            }))
            .unwrap();
            t.manifest("app", &bytes)
        })
        .collect();
    let idx = t.index("app", &children);
    t.tag("app", "wide", &idx);
    normal(&b)
});

case!(unknown_media_type_of_a_live_manifest, |b| {
    let bytes = br#"{"schemaVersion": 2, "mediaType": "application/x-mystery+json", "stuff": []}"#;
    let m = b.t().manifest("app", bytes);
    b.t().tag("app", "mystery", &m);
    Outcome::Refused(vec![b.data(&m)])
});

case!(schema1_signed_manifest_keeps_its_layers, |b| {
    let t = b.t();
    let layer = t.blob(b"schema1 layer");
    let bytes = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 1,
        "name": "app", "tag": "old", "architecture": "amd64",
        "fsLayers": [{"blobSum": layer.to_string()}],
        "history": [{"v1Compatibility": "{}"}],
        "signatures": [{"header": {"alg": "ES256"}, "signature": "x", "protected": "y"}]
    }))
    .unwrap();
    let m = t.manifest("app", &bytes);
    t.layer_link("app", &layer);
    t.tag("app", "old", &m);
    normal(&b)
});

case!(foreign_layer_with_urls_need_not_exist, |b| {
    let t = b.t();
    let missing = Digest::of(
        regsweep::registry::digest::Algorithm::Sha256,
        b"never uploaded",
    );
    let bytes = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": b.v1_blobs[0].to_string(), "size": 9},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
                    "digest": missing.to_string(), "size": 5, "urls": ["https://example.invalid/l"]}]
    }))
    .unwrap();
    let m = t.manifest("app", &bytes);
    t.tag("app", "windows", &m);
    normal(&b)
});

case!(sha512_blob_behind_an_alias_link, |b| {
    let t = b.t();
    let content = b"sha512 pushed layer";
    let sha256 = t.blob(content);
    let sha512 = Digest::of(regsweep::registry::digest::Algorithm::Sha512, content);
    b.write(
        &format!("repositories/app/_layers/sha512/{}/link", sha512.hex()),
        sha256.to_string().as_bytes(),
    );
    let bytes = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"digest": b.v1_blobs[0].to_string(), "size": 9},
        "layers": [{"digest": sha512.to_string(), "size": content.len()}]
    }))
    .unwrap();
    let m = t.manifest("app", &bytes);
    t.tag("app", "sha512", &m);
    normal(&b)
});

#[test]
fn non_utf8_repository_name() {
    use std::os::unix::ffi::OsStrExt;
    let b = Base::new();
    let name = std::ffi::OsStr::from_bytes(b"bad\xffname");
    let dir = b.path("repositories").join(name);
    std::fs::create_dir_all(dir.join("_manifests/tags")).unwrap();
    check(
        "non_utf8",
        &b,
        Outcome::Refused(vec![dir]),
        &live(&b).iter().collect::<Vec<_>>(),
    );
}

case!(odd_but_valid_repository_names, |b| {
    let t = b.t();
    for name in ["a.b/c-d/e_f", "x/y/z/w/v/u", "library/a__b", "0/9"] {
        let m = t.image(name, &[b.v1_blobs[0].clone()], None);
        t.tag(name, "t", &m);
    }
    normal(&b)
});

#[test]
fn empty_registry() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(v2(dir.path())).unwrap();
    for args in [&["--min-age", "0"][..], &["--min-age", "0", "-m"]] {
        let (r, out) = gc_json(dir.path(), args);
        assert_eq!(out.code, 0, "{}", out.stderr);
        assert_eq!(r.summary.census.blobs, 0);
        assert!(r.deleted.blobs.is_empty() && r.errors.is_empty());
    }
}

#[test]
fn not_registries_are_refused_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    // Not empty: an empty directory is a registry before its first push.
    std::fs::write(dir.path().join("unrelated"), b"x").unwrap();
    for target in ["/", "/nonexistent/registry", dir.path().to_str().unwrap()] {
        let out = run(&["gc", "--min-age", "0", target]);
        assert_eq!(out.code, 2, "{target}: {}", out.stderr);
        assert!(
            out.stderr.contains("registry") || out.stderr.contains(target),
            "{}",
            out.stderr
        );
    }
}

/// A blob that cannot be deleted (an immutable directory, like a read-only mount): the failure
/// is reported with its path, the rest of the sweep goes on, and the run exits 1.
#[test]
fn failed_deletions_are_reported_and_the_rest_goes_on() {
    let b = Base::new();
    age_tree(b.root(), Duration::from_secs(86400));
    let stuck = b.t().blob_path(&b.orphan);
    let immutable = std::process::Command::new("chattr")
        .arg("+i")
        .arg(&stuck)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !immutable {
        // Not root, or a filesystem without the immutable flag: make the shard unwritable.
        let shard = stuck.parent().unwrap();
        let mut perm = std::fs::metadata(shard).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o555);
        std::fs::set_permissions(shard, perm).unwrap();
    }
    let (r, out) = gc_json(b.root(), &["--min-age", "0", "-m"]);
    let _ = std::process::Command::new("chattr")
        .arg("-i")
        .arg(&stuck)
        .status();
    if immutable || !nix_is_root() {
        assert_eq!(out.code, 1, "{}", out.stderr);
        assert_eq!(r.summary.failed_deletions, 1, "{:?}", r.errors);
        let p = stuck.display().to_string();
        assert!(r.errors.iter().any(|e| e.path == p), "{:?}", r.errors);
        assert!(out.stderr.contains(&p));
        // The rest of the plan was carried out.
        let after = blobs_on_disk(b.root());
        assert!(!after.contains(&b.untagged) && after.contains(&b.orphan));
    }
    for d in live(&b) {
        assert!(blobs_on_disk(b.root()).contains(&d));
    }
}

fn nix_is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

case!(
    field_names_in_another_case_are_followed_as_the_registry_follows_them,
    |b| {
        // #22: the registry decodes with Go's encoding/json, which matches "Layers" to `layers`
        // and "Config" to `config`; a manifest spelt so pulls, and its blobs must stay.
        let t = b.t();
        let config = t.blob(b"config spelt oddly");
        let layer = t.blob(b"layer spelt oddly");
        let json = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","Config":{{"mediaType":"application/vnd.oci.image.config.v1+json","Digest":"{config}","size":18}},"Layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{layer}","size":17}}]}}"#
        );
        let m = t.manifest("app", json.as_bytes());
        t.tag("app", "odd", &m);
        age_tree(b.root(), Duration::from_secs(86400));
        let (r, out) = gc_json(b.root(), &["-m", "--min-age", "0", "-d"]);
        assert_eq!(out.code, 0, "{}", out.stderr);
        let planned: BTreeSet<Digest> = r.deleted.blobs.iter().map(|x| x.digest.clone()).collect();
        assert!(!planned.contains(&config) && !planned.contains(&layer));
        normal(&b)
    }
);

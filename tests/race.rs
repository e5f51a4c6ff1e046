//! The race harness: a real registry keeps taking pushes, tags and deletes while a real
//! `gc -m` runs on its storage. The binary, built with the `test-hooks` feature, stops at a
//! named point of the run (src/hooks.rs); the test then performs every registry operation of
//! the matrix there, through the registry's API, and lets the run go on.
//!
//! After each run: it exited 0; every tag that exists pulls (every manifest and blob through
//! the API, digests checked), each operation's image among them; a deleted image stays
//! deleted. Then an idle real run collects exactly what the operations left as garbage, every
//! tag still pulls, and a dry run after it finds nothing. Each point runs on disk and on S3
//! (moto, the registry writing its bucket through its own s3 driver).

#![cfg(feature = "test-hooks")]

mod support;

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use regsweep::gc::report::GcReport;
use regsweep::registry::digest::{Algorithm, Digest};
use support::emulators::blobs_in;
use support::images::{
    push_as_a_client, push_image, push_with_retry, Format, Pushed, OCI_INDEX, OCI_MANIFEST,
};
use support::pause::Paused;
use support::pull::{every_tag_pulls, peers};
use support::redis_server::{self, Redis};
use support::registry::{Client, Registry};
use support::s3::{self, Moto};
use support::tree::{age_tree, blobs_on_disk, regsweep};

/// Every pause point of a real `gc` run, in the order the run reaches them.
const POINTS: &[&str] = &[
    "mark",
    "second-look",
    "references",
    "revisions",
    "layer-links",
    "trash",
    "last-look",
    "delete",
    "tidy",
];

/// Where the registry keeps its bytes, and how regsweep and the test reach them.
enum Store<'a> {
    Disk(tempfile::TempDir),
    /// On disk, the registry caching blob descriptors in a real redis-server.
    DiskRedis(tempfile::TempDir, &'a Redis),
    S3 {
        moto: &'a Moto,
        bucket: String,
        cache: tempfile::TempDir,
    },
}

const S3_PREFIX: &str = "reg";

impl Store<'_> {
    fn start_registry(&self) -> Registry {
        match self {
            Store::Disk(root) => Registry::start(root.path()),
            Store::DiskRedis(root, redis) => Registry::start_with_redis(root.path(), &redis.addr()),
            Store::S3 { moto, bucket, .. } => {
                Registry::start_s3(&moto.endpoint(), bucket, S3_PREFIX)
            }
        }
    }

    /// Make everything written so far old: the first mark then sees it as collectable.
    fn age(&self) {
        match self {
            Store::Disk(root) | Store::DiskRedis(root, _) => {
                age_tree(root.path(), Duration::from_secs(3 * 3600))
            }
            // Object times cannot be set: wait out the later looks' slack instead.
            Store::S3 { .. } => std::thread::sleep(Duration::from_millis(2600)),
        }
    }

    fn gc(&self, args: &[&str]) -> Command {
        let mut cmd = regsweep();
        cmd.arg("gc")
            .args(args)
            .args(["--min-age", "0", "--json", "-"]);
        match self {
            Store::Disk(root) => {
                cmd.arg(root.path());
            }
            Store::DiskRedis(root, redis) => {
                cmd.arg("--redis").arg(redis.url()).arg(root.path());
            }
            Store::S3 {
                moto,
                bucket,
                cache,
            } => {
                cmd.arg(format!("s3://{bucket}/{S3_PREFIX}"))
                    .arg("--s3-endpoint")
                    .arg(moto.endpoint())
                    .arg("--cache-dir")
                    .arg(cache.path())
                    .env("AWS_ACCESS_KEY_ID", s3::KEY)
                    .env("AWS_SECRET_ACCESS_KEY", s3::SECRET)
                    .env_remove("AWS_ENDPOINT_URL")
                    .env_remove("AWS_PROFILE");
            }
        }
        cmd
    }

    fn blobs(&self) -> BTreeSet<Digest> {
        match self {
            Store::Disk(root) | Store::DiskRedis(root, _) => blobs_on_disk(root.path()),
            Store::S3 { moto, bucket, .. } => blobs_in(&moto.client(bucket), S3_PREFIX),
        }
    }
}

/// What the operations start from, pushed before the run.
struct Scene {
    keep: Pushed,
    /// Deleted through the API: its blobs are dead in both modes.
    reused: Pushed,
    /// Untagged: dead with `-m`.
    to_tag: Pushed,
    to_tag_bytes: Vec<u8>,
    child: Pushed,
    /// Deleted through the API; a layer of it is mounted elsewhere during the run.
    mounted: Pushed,
    /// Tagged: live until the operation deletes it.
    to_delete: Pushed,
}

fn seeds(name: &str) -> Vec<String> {
    (0..2).map(|i| format!("{name}-{i}")).collect()
}

fn refs(s: &[String]) -> Vec<&str> {
    s.iter().map(String::as_str).collect()
}

fn scene(c: &Client) -> Scene {
    let img = |repo: &str, tag: Option<&str>, name: &str| {
        push_image(c, repo, tag, Format::Oci, "amd64", &refs(&seeds(name)))
    };
    let keep = img("app", Some("keep"), "keep");
    let reused = img("reuse-src", Some("v"), "reused");
    c.delete_manifest("reuse-src", &reused.digest);
    let to_tag = img("tagme", None, "to-tag");
    let (status, to_tag_bytes) = c.get_manifest("tagme", &to_tag.digest.to_string());
    assert_eq!(status, 200);
    let child = img("multi", None, "child");
    let mounted = img("mount-src", Some("v"), "mounted");
    c.delete_manifest("mount-src", &mounted.digest);
    let to_delete = img("gone", Some("t"), "to-delete");
    Scene {
        keep,
        reused,
        to_tag,
        to_tag_bytes,
        child,
        mounted,
        to_delete,
    }
}

/// Perform every operation, as a client would: a push the registry refuses because a blob it
/// needs went to the trash meanwhile is pushed again, blobs and all. Returns the images that
/// must pull afterwards, by (repository, tag).
fn operate(c: &Client, s: &Scene) -> Vec<(String, String, Digest)> {
    let mut must_pull = Vec::new();
    // Push a new image.
    let (d, _) = push_with_retry(c, "fresh", &refs(&seeds("fresh")));
    must_pull.push(("fresh".into(), "latest".into(), d));
    // Push an image reusing blobs the run is deleting: as clients do, each blob is first
    // mounted from the repository that had it (a registry that caches blob descriptors
    // answers from its cache there), and uploaded only when that fails.
    let (d, _) = push_as_a_client(c, "reuse-dst", Some("reuse-src"), &refs(&seeds("reused")));
    assert_eq!(d, s.reused.digest, "the same image, pushed again elsewhere");
    must_pull.push(("reuse-dst".into(), "latest".into(), d));
    // Tag a doomed manifest (crane tag, a re-push): PUT its bytes under a tag.
    let (status, _) = c.try_put_manifest("tagme", "keep", OCI_MANIFEST, &s.to_tag_bytes);
    if status != 201 {
        // Refused (its blobs are in the trash): push it again, blobs and all, then tag it.
        push_with_retry(c, "tagme", &refs(&seeds("to-tag")));
        c.put_manifest("tagme", "keep", OCI_MANIFEST, &s.to_tag_bytes);
    }
    must_pull.push(("tagme".into(), "keep".into(), s.to_tag.digest.clone()));
    // Push an index whose child is doomed.
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [{"mediaType": s.child.media_type, "digest": s.child.digest.to_string(),
                       "size": s.child.size, "platform": {"architecture": "amd64", "os": "linux"}}],
    }))
    .unwrap();
    if c.try_put_manifest("multi", "idx", OCI_INDEX, &index).0 != 201 {
        // The child's revision or blobs are gone: push the child again, then the index.
        push_with_retry(c, "multi", &refs(&seeds("child")));
        c.put_manifest("multi", "idx", OCI_INDEX, &index);
    }
    let index = Digest::of(Algorithm::Sha256, &index);
    must_pull.push(("multi".into(), "idx".into(), index));
    // Mount a doomed blob into another repository, then push the image that uses it there.
    let (d, _) = push_as_a_client(c, "mount-dst", Some("mount-src"), &refs(&seeds("mounted")));
    assert_eq!(d, s.mounted.digest, "the same image, mounted elsewhere");
    must_pull.push(("mount-dst".into(), "latest".into(), d));
    // Delete a tag (distribution 2.8 deletes by digest, taking the tags with it).
    c.delete_manifest("gone", &s.to_delete.digest);
    must_pull.push(("app".into(), "keep".into(), s.keep.digest.clone()));
    must_pull
}

fn report(out: &std::process::Output, cell: &str) -> GcReport {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{cell}: no JSON report ({e}): {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// One cell row: the whole matrix of operations at `point`, on `store`.
fn run_point(store: &Store, point: &str) {
    let cell = format!(
        "{point} on {}",
        match store {
            Store::Disk(_) => "disk",
            Store::DiskRedis(..) => "disk with a Redis cache",
            Store::S3 { .. } => "s3",
        }
    );
    let mut registry = store.start_registry();
    let c = registry.client();
    let s = scene(&c);
    store.age();

    let paused = Paused::start(store.gc(&["-m"]), point);
    let must_pull = operate(&c, &s);
    let out = paused.go();
    let first = report(&out, &cell);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{cell}: the run failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Every tag that exists pulls, each operation's image among them; a deleted one stays so.
    every_tag_pulls(&c, &cell);
    for (repo, tag, digest) in &must_pull {
        let (status, body) = c.get_manifest(repo, tag);
        assert_eq!(
            status, 200,
            "{cell}: {repo}:{tag} does not pull after the run"
        );
        assert_eq!(
            Digest::of(Algorithm::Sha256, &body),
            *digest,
            "{cell}: {repo}:{tag} names another manifest"
        );
    }
    assert_eq!(
        c.get_manifest("gone", "t").0,
        404,
        "{cell}: a deleted tag came back"
    );
    assert!(
        first
            .deleted
            .blobs
            .iter()
            .all(|b| !s.keep.all_blobs().contains(&b.digest)),
        "{cell}: a blob of a live image was deleted"
    );

    // An idle real run collects what the operations left as garbage, and only that.
    let idle = store.gc(&["-m"]).output().unwrap();
    let second = report(&idle, &cell);
    assert_eq!(
        idle.status.code(),
        Some(0),
        "{cell}: {}",
        String::from_utf8_lossy(&idle.stderr)
    );
    let live = every_tag_pulls(&c, &cell);
    let on_store = store.blobs();
    assert!(live.is_subset(&on_store), "{cell}: a live blob is missing");
    for b in s.to_delete.all_blobs() {
        assert!(
            !on_store.contains(&b),
            "{cell}: the deleted image's blob {b} is still stored"
        );
    }
    let deleted_twice: BTreeSet<Digest> = first
        .deleted
        .blobs
        .iter()
        .map(|b| b.digest.clone())
        .filter(|d| second.deleted.blobs.iter().any(|b| b.digest == *d))
        .collect();
    assert!(
        deleted_twice.is_empty(),
        "{cell}: deleted twice: {deleted_twice:?}"
    );
    let dry = store.gc(&["-m", "-d"]).output().unwrap();
    let third = report(&dry, &cell);
    assert!(
        third.deleted.blobs.is_empty() && third.deleted.manifests.is_empty(),
        "{cell}: the idle run left garbage: {:?}",
        third.deleted
    );
    registry.stop();
}

#[test]
fn every_operation_at_every_point_on_disk() {
    if !peers() {
        eprintln!(
            "skipping: docker-registry or skopeo is not installed (scripts/test installs them)"
        );
        return;
    }
    for point in POINTS {
        run_point(&Store::Disk(tempfile::tempdir().unwrap()), point);
    }
}

#[test]
fn every_operation_at_every_point_on_s3() {
    if !peers() || !s3::available() {
        eprintln!("skipping: the S3 peers are not installed (scripts/test installs them)");
        return;
    }
    let moto = Moto::start();
    for (i, point) in POINTS.iter().enumerate() {
        let bucket = format!("race-{i}");
        moto.create_bucket(&bucket);
        let store = Store::S3 {
            moto: &moto,
            bucket,
            cache: tempfile::tempdir().unwrap(),
        };
        run_point(&store, point);
    }
}

#[test]
fn every_operation_at_every_point_with_a_redis_cache() {
    if !peers() || !redis_server::available() {
        eprintln!(
            "skipping: the registry or redis-server is not installed (scripts/test installs them)"
        );
        return;
    }
    let redis = Redis::start();
    for point in POINTS {
        let mut con = redis.connection().unwrap();
        let _: () = ::redis::cmd("FLUSHALL").query(&mut con).unwrap();
        run_point(
            &Store::DiskRedis(tempfile::tempdir().unwrap(), &redis),
            point,
        );
    }
}

//! The registry's Redis blob-descriptor cache after a collection (issue 15), with the real
//! peers: Debian's `redis-server` and the registry configured to cache in it, skopeo as the
//! client. Without the eviction a re-pushed image is accepted and does not pull; with it, it
//! pulls. Entries for what is in storage stay; entries for what is not (whoever removed it)
//! go; a dry run writes nothing to Redis; an unreachable Redis does not undo the sweep.

mod support;

use std::collections::BTreeSet;
use std::path::Path;

use regsweep::cache::registry::CacheKind;
use regsweep::gc::report::GcReport;
use regsweep::registry::digest::{Algorithm, Digest};
use support::pull::{peers, skopeo_pull_all, skopeo_push_layout};
use support::redis_server::{self, Redis};
use support::registry::Registry;
use support::tree::{age_tree, aged_copy, fixture, gc_json, v2};

const DAY: std::time::Duration = std::time::Duration::from_secs(86400);

fn ready() -> bool {
    peers() && redis_server::available()
}

/// A registry with a Redis cache, its image `repo:tag` (from `seed`) pushed and then its
/// manifest deleted through the API (the tag goes with it), and the registry stopped.
struct Deleted {
    root: tempfile::TempDir,
    redis: Redis,
    registry: Registry,
}

fn push_then_delete(repos: &[&str], delete_from: &str, seed: &str) -> Deleted {
    let root = tempfile::tempdir().unwrap();
    let redis = Redis::start();
    let mut registry = Registry::start_with_redis(root.path(), &redis.addr());
    for repo in repos {
        skopeo_push_layout(&registry.host(), repo, "v1", seed);
    }
    let c = registry.client();
    let digest = manifest_of(&c, delete_from, "v1");
    c.delete_manifest(delete_from, &digest);
    registry.stop();
    // Pushed a day ago: a run that starts in the second of the push takes it for a push
    // racing the run and keeps it.
    age_tree(root.path(), DAY);
    Deleted {
        root,
        redis,
        registry,
    }
}

fn manifest_of(c: &support::registry::Client, repo: &str, tag: &str) -> Digest {
    let (status, body) = c.get_manifest(repo, tag);
    assert_eq!(status, 200, "{repo}:{tag}");
    Digest::of(Algorithm::Sha256, &body)
}

fn gc(config: &Path, args: &[&str]) -> GcReport {
    let mut all = vec!["-m", "--min-age", "0"];
    all.extend_from_slice(args);
    let (report, run) = gc_json(config, &all);
    assert_eq!(run.code, 0, "{}", run.stderr);
    report
}

#[test]
fn evicting_what_the_sweep_deleted_lets_the_image_be_pushed_again() {
    if !ready() {
        return;
    }
    // With the eviction: pushed again, it pulls.
    let mut d = push_then_delete(&["app"], "app", "evicted");
    let cached = d.redis.entries();
    assert!(
        cached
            .iter()
            .any(|e| e.starts_with("repository::app::blobs ")),
        "the registry caches in Redis: {cached:?}"
    );
    let report = gc(&d.registry.config, &[]);
    assert!(report.summary.deleted_blobs >= 3, "{:?}", report.summary);
    let cache = report.cache.expect("a cache report");
    assert_eq!(cache.kind, CacheKind::Redis);
    assert!(cache.evicted.blob_descriptors >= 2, "{cache:?}");
    assert!(cache.evicted.repository_memberships >= 2, "{cache:?}");
    assert!(cache.errors.is_empty(), "{:?}", cache.errors);
    for b in &report.deleted.blobs {
        let key = format!("blobs::{}", b.digest);
        assert!(!d.redis.entries().contains(&key), "{key} still cached");
    }
    d.registry.restart();
    skopeo_push_layout(&d.registry.host(), "app", "v1", "evicted");
    skopeo_pull_all(&d.registry.host(), "app", "v1").expect("the re-pushed image pulls");

    // The same with --no-cache-evict: the registry answers from its cache for blobs that are
    // gone, accepts the manifest, and the image does not pull. The eviction is what fixes it.
    let mut d = push_then_delete(&["app"], "app", "skipped");
    let report = gc(&d.registry.config, &["--no-cache-evict"]);
    assert!(report.summary.deleted_blobs >= 3);
    assert_eq!(report.cache.unwrap().kind, CacheKind::Skipped);
    d.registry.restart();
    skopeo_push_layout(&d.registry.host(), "app", "v1", "skipped");
    let broken = skopeo_pull_all(&d.registry.host(), "app", "v1");
    assert!(
        broken.is_err(),
        "without the eviction the registry must lie and the pull must break, or this test \
         proves nothing"
    );
}

#[test]
fn a_layer_link_gone_from_one_repository_is_linked_again_on_the_next_push() {
    if !ready() {
        return;
    }
    let mut d = push_then_delete(&["one", "two"], "one", "shared");
    let report = gc(&d.registry.config, &[]);
    // The blobs stay (two uses them, the manifest too: it is the same image); one's links
    // go, and so do one's memberships, while the global descriptors stay.
    assert_eq!(report.summary.deleted_blobs, 0);
    assert!(report.summary.deleted_layer_links >= 2);
    let cache = report.cache.unwrap();
    assert_eq!(cache.evicted.blob_descriptors, 0, "{cache:?}");
    assert!(cache.evicted.repository_memberships >= 2, "{cache:?}");
    let links = |repo: &str| -> BTreeSet<String> {
        std::fs::read_dir(v2(d.root.path()).join(format!("repositories/{repo}/_layers/sha256")))
            .map(|r| {
                r.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    assert!(links("one").is_empty());
    d.registry.restart();
    skopeo_push_layout(&d.registry.host(), "one", "v1", "shared");
    assert_eq!(
        links("one"),
        links("two"),
        "the push linked the blobs into one again"
    );
    skopeo_pull_all(&d.registry.host(), "one", "v1").expect("one pulls");
    skopeo_pull_all(&d.registry.host(), "two", "v1").expect("two pulls");
}

#[test]
fn stale_entries_go_whoever_left_them_and_live_ones_stay() {
    if !ready() {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let redis = Redis::start();
    let mut registry = Registry::start_with_redis(root.path(), &redis.addr());
    skopeo_push_layout(&registry.host(), "live", "v1", "live");
    registry.stop();
    let live = redis.entries();
    registry.restart();
    skopeo_push_layout(&registry.host(), "doomed", "v1", "doomed");
    registry.stop();
    age_tree(root.path(), DAY);
    let doomed: BTreeSet<String> = redis.entries().difference(&live).cloned().collect();
    assert!(!doomed.is_empty());

    // Someone removes the repository by hand: its blobs and links are gone, its cache
    // entries are not.
    let only_doomed: Vec<Digest> = doomed
        .iter()
        .filter_map(|e| e.strip_prefix("blobs::"))
        .filter_map(|d| d.parse().ok())
        .collect();
    std::fs::remove_dir_all(v2(root.path()).join("repositories/doomed")).unwrap();
    for d in &only_doomed {
        std::fs::remove_dir_all(v2(root.path()).join(format!(
            "blobs/sha256/{}/{}",
            &d.hex()[..2],
            d.hex()
        )))
        .unwrap();
    }

    // The dry run lists them and writes nothing to Redis.
    let (dry, run) = gc_json(&registry.config, &["-d", "-m", "--min-age", "0"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let cache = dry.cache.unwrap();
    let listed: BTreeSet<String> = cache
        .evicted_entries
        .iter()
        .map(|e| match &e.member {
            Some(m) => format!("{} {m}", e.key),
            None => e.key.clone(),
        })
        .collect();
    assert_eq!(listed, doomed, "exactly the stale entries");
    assert_eq!(cache.kept.total(), live.len(), "{cache:?}");
    assert_eq!(redis.entries().len(), live.len() + doomed.len());

    let report = gc(&registry.config, &[]);
    assert_eq!(report.cache.unwrap().evicted.total(), doomed.len());
    assert_eq!(redis.entries(), live, "live entries stay, stale ones go");
    registry.restart();
    skopeo_pull_all(&registry.host(), "live", "v1").expect("live pulls");
}

#[test]
fn an_unreachable_redis_does_not_undo_the_sweep() {
    let tree = aged_copy("registry");
    let dir = tempfile::tempdir().unwrap();
    // A port nothing listens on: bound, then released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = dir.path().join("config.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {}\n  cache:\n    \
             blobdescriptor: redis\n  maintenance:\n    readonly:\n      enabled: true\n\
             redis:\n  addr: 127.0.0.1:{port}\n  password: hunter2\n",
            tree.path().display()
        ),
    )
    .unwrap();
    let before = support::tree::blobs_on_disk(tree.path());
    // The cache cannot be told what is going, so nothing goes: while a blob is gone the
    // registry would go on answering for it from its cache (#22).
    let (report, run) = gc_json(&config, &["-m", "--min-age", "0"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_eq!(report.summary.deleted_blobs, 0);
    assert_eq!(report.summary.deleted_manifests, 0);
    assert_eq!(support::tree::blobs_on_disk(tree.path()), before);
    assert!(run.stderr.contains("cannot evict"), "{}", run.stderr);
    assert!(run.stderr.contains(&format!("redis://127.0.0.1:{port}/0")));
    assert!(!run.stderr.contains("hunter2") && !run.stdout.contains("hunter2"));
    let cache = report.cache.unwrap();
    assert_eq!(cache.kind, CacheKind::Redis);
    assert_eq!(cache.errors.len(), 1);
    // A dry run removed nothing, and says so (#25 item 9: it claimed "the blobs this command
    // removed").
    let (dry, run) = gc_json(&config, &["-d", "-m", "--min-age", "0"]);
    assert_eq!(run.code, 1);
    let message = &dry.cache.unwrap().errors[0].message;
    assert!(message.contains("nothing was removed"), "{message}");
    assert!(!message.contains("this command removed"), "{message}");
}

// #25 item 8: a Redis shared with other applications may hold keys named like the registry's
// of another type: one aborted every reconciliation (WRONGTYPE). They are not the registry's:
// left alone, and named.
#[test]
fn keys_of_another_type_are_not_the_registrys_and_stay() {
    if !redis_server::available() {
        return;
    }
    let redis = Redis::start();
    let mut con = redis.connection().unwrap();
    let d = format!("sha256:{}", "ab".repeat(32));
    let _: () = ::redis::cmd("SET")
        .arg(format!("blobs::{d}"))
        .arg("someone else's")
        .query(&mut con)
        .unwrap();
    let _: () = ::redis::cmd("RPUSH")
        .arg("repository::other-app::blobs")
        .arg("x")
        .query(&mut con)
        .unwrap();
    let _: () = ::redis::cmd("HSET")
        .arg(format!("blobs::sha256:{}", "cd".repeat(32)))
        .arg("digest")
        .arg("stale")
        .query(&mut con)
        .unwrap();
    let tree = aged_copy("registry");
    let (report, run) = gc_json(
        tree.path(),
        &["-m", "--min-age", "0", "--redis", &redis.url()],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let cache = report.cache.unwrap();
    assert!(cache.errors.is_empty(), "{:?}", cache.errors);
    assert!(cache.note.contains("another type"), "{}", cache.note);
    let entries = redis.entries();
    assert!(entries.contains(&format!("blobs::{d}")), "{entries:?}");
    assert!(entries.contains("repository::other-app::blobs"));
    // The registry's own stale entry (a hash for a blob not in storage) went.
    assert!(!entries.contains(&format!("blobs::sha256:{}", "cd".repeat(32))));
}

#[test]
fn an_in_memory_cache_asks_for_a_restart() {
    let tree = aged_copy("registry");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {}\n  cache:\n    \
             blobdescriptor: inmemory\n",
            tree.path().display()
        ),
    )
    .unwrap();
    let (report, run) = gc_json(&config, &["-d", "-m", "--min-age", "0"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let cache = report.cache.unwrap();
    assert_eq!(cache.kind, CacheKind::InMemory);
    assert!(cache.restart_required);
    let human = support::tree::run(&["gc", "-m", "--min-age", "0", config.to_str().unwrap()]);
    assert_eq!(human.code, 0, "{}", human.stderr);
    assert!(human.stdout.contains("restart it now"), "{}", human.stdout);
    let tree = aged_copy("registry");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {}\n  cache:\n    \
             blobdescriptor: inmemory\n",
            tree.path().display()
        ),
    )
    .unwrap();
    // Under --quiet (the packaged timer) it is still said, on stderr, and in the metrics: a
    // registry that is not restarted accepts pushes reusing deleted blobs (#25 item 1).
    let prom = dir.path().join("gc.prom");
    let quiet = support::tree::run(&[
        "gc",
        "-q",
        "-m",
        "--min-age",
        "0",
        "--metrics-file",
        prom.to_str().unwrap(),
        config.to_str().unwrap(),
    ]);
    assert_eq!(quiet.code, 0, "{}", quiet.stderr);
    assert!(quiet.stdout.is_empty());
    assert!(
        quiet.stderr.contains("RESTART THE REGISTRY") && quiet.stderr.contains("config.yml"),
        "{}",
        quiet.stderr
    );
    let metrics = std::fs::read_to_string(&prom).unwrap();
    assert!(
        metrics.contains("regsweep_registry_restart_required{command=\"gc\"} 1"),
        "{metrics}"
    );

    // A storage root names no cache: nothing to restart is claimed, the flag is offered.
    let plain = fixture("registry");
    let (report, _) = gc_json(&plain, &["-d"]);
    assert_eq!(report.cache.unwrap().kind, CacheKind::Unknown);
}

//! `--unreferenced-for` (issue 17), with the real registry: a tag deleted through its API keeps
//! its blobs for a day after, measured from when a run first saw them unreferenced; pushing the
//! tag again in between keeps them for good; the state survives a kill while it is written,
//! and a damaged state protects everything until `--reset-state`. The rule's clock is moved
//! with `REGSWEEP_TEST_NOW` (file times stay real, so `--min-age` still composes).

mod support;

use support::pause::Paused;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, SystemTime};

use regsweep::gc::report::GcReport;
use regsweep::registry::digest::Digest;
use support::images::{push_image, Format};
use support::registry::{server_available, Registry};
use support::tree::{age_tree, blobs_on_disk, copy_tree, regsweep, snapshot, v2};

const HOUR: Duration = Duration::from_secs(3600);

fn at(offset: Duration) -> String {
    humantime::format_rfc3339_seconds(SystemTime::now() + offset).to_string()
}

/// `gc -m --unreferenced-for 24h --json - ARGS ROOT` with the rule's clock `offset` ahead.
fn gc(root: &Path, offset: Duration, args: &[&str]) -> (GcReport, i32, String) {
    let out = regsweep()
        .args(["gc", "-m", "--unreferenced-for", "24h", "--json", "-"])
        .args(args)
        .arg(root)
        .env("REGSWEEP_TEST_NOW", at(offset))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let report =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("bad JSON ({e}): {stderr}"));
    (report, out.status.code().unwrap_or(-1), stderr)
}

fn deleted(r: &GcReport) -> BTreeSet<Digest> {
    r.deleted.blobs.iter().map(|b| b.digest.clone()).collect()
}

#[test]
#[cfg_attr(
    not(feature = "test-hooks"),
    ignore = "moves the clock: needs --features test-hooks (scripts/test)"
)]
fn a_deleted_tag_keeps_its_blobs_for_a_day_unless_pushed_again() {
    if !server_available() {
        eprintln!("skipped: docker-registry is not installed (scripts/test installs it)");
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let server = Registry::start(root.path());
    let c = server.client();
    push_image(
        &c,
        "app",
        Some("keep"),
        Format::Oci,
        "amd64",
        &["kept layer"],
    );
    let gone = push_image(
        &c,
        "app",
        Some("v1"),
        Format::Oci,
        "amd64",
        &["v1 layer", "v1 other"],
    );
    c.delete_manifest("app", &gone.digest);
    drop(server);
    age_tree(root.path(), 48 * HOUR);
    let v1: BTreeSet<Digest> = gone
        .blobs
        .iter()
        .cloned()
        .chain([gone.digest.clone()])
        .collect();

    // The first run sees them unreferenced for the first time: nothing goes, all of v1 waits.
    let (r, code, stderr) = gc(root.path(), Duration::ZERO, &[]);
    assert_eq!(code, 0, "{stderr}");
    assert!(deleted(&r).is_disjoint(&v1), "deleted on the first sight");
    assert!(r.deleted.manifests.is_empty());
    let waiting: BTreeSet<Digest> = r
        .waiting
        .iter()
        .filter(|w| w.kind == "blob")
        .filter_map(|w| w.digest.clone())
        .collect();
    assert!(v1.is_subset(&waiting), "{:?}", r.waiting);
    assert!(stderr.contains("seen for the first time"), "{stderr}");
    assert_eq!(r.unreferenced_for_seconds, Some(86400));
    let state = v2(root.path()).join(".regsweep-unreferenced");
    assert!(state.is_file());
    let human = regsweep()
        .args(["gc", "-d", "-m", "--unreferenced-for", "24h"])
        .arg(root.path())
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&human.stdout).contains("Waiting (unreferenced for less than"));

    // Branches of the story, each on the tree as the first run left it, put back in place
    // one after the other (the state belongs to this root: a copy elsewhere is another
    // registry, whose state is refused).
    let pristine = tempfile::tempdir().unwrap();
    copy_tree(root.path(), pristine.path());
    let branch = || {
        std::fs::remove_dir_all(root.path()).unwrap();
        std::fs::create_dir(root.path()).unwrap();
        copy_tree(pristine.path(), root.path());
        age_tree(root.path(), 48 * HOUR);
        root.path().to_path_buf()
    };

    // 25 hours on: a dry run shows them going and writes nothing; the real run deletes them.
    let later = branch();
    let snap = snapshot(later.as_path());
    let (dry, code, _) = gc(later.as_path(), 25 * HOUR, &["-d"]);
    assert_eq!(code, 0);
    assert!(v1.is_subset(&deleted(&dry)));
    assert_eq!(snapshot(later.as_path()), snap, "the dry run wrote");
    let (real, code, stderr) = gc(later.as_path(), 25 * HOUR, &[]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(deleted(&real), deleted(&dry));
    assert!(blobs_on_disk(later.as_path()).is_disjoint(&v1));
    // Both rules must allow a deletion: a long --min-age still keeps them.
    let strict = branch();
    let (r, _, _) = gc(strict.as_path(), 25 * HOUR, &["--min-age", "30d"]);
    assert!(deleted(&r).is_disjoint(&v1));

    // Pushed again 12 hours on: referenced, so it starts over; a day later nothing of it goes,
    // and the image pulls.
    let again = branch();
    let server = Registry::start(again.as_path());
    let c = server.client();
    push_image(
        &c,
        "app",
        Some("v1"),
        Format::Oci,
        "amd64",
        &["v1 layer", "v1 other"],
    );
    drop(server);
    age_tree(again.as_path(), 48 * HOUR);
    let (r, code, _) = gc(again.as_path(), 12 * HOUR, &[]);
    assert_eq!(code, 0);
    assert!(deleted(&r).is_disjoint(&v1));
    let (r, code, _) = gc(again.as_path(), 25 * HOUR, &[]);
    assert_eq!(code, 0);
    assert!(deleted(&r).is_disjoint(&v1));
    assert!(v1.is_subset(&blobs_on_disk(again.as_path())));
    let server = Registry::start(again.as_path());
    let (status, _) = server.client().get_manifest("app", "v1");
    assert_eq!(status, 200);
    for b in &gone.blobs {
        assert_eq!(server.client().get_blob("app", b).0, 200);
    }
    drop(server);

    // Pushed again *during* the run that would delete them (its second look rescues them),
    // then deleted again: their wait starts over. They used to keep their first-seen time in
    // the state and go at once the next day (#22).
    let rescued = branch();
    let server = Registry::start(rescued.as_path());
    let c = server.client();
    let mut cmd = regsweep();
    cmd.args(["gc", "-m", "--unreferenced-for", "24h", "--json", "-"])
        .arg(rescued.as_path())
        .env("REGSWEEP_TEST_NOW", at(25 * HOUR));
    let paused = Paused::start(cmd, "second-look");
    let pushed = push_image(
        &c,
        "app",
        Some("v1"),
        Format::Oci,
        "amd64",
        &["v1 layer", "v1 other"],
    );
    let out = paused.go();
    assert_eq!(out.status.code(), Some(0));
    let r: GcReport = serde_json::from_slice(&out.stdout).unwrap();
    assert!(deleted(&r).is_disjoint(&v1), "a rescued blob was deleted");
    assert!(r.summary.rescued_blobs + r.summary.rescued_manifests > 0);
    c.delete_manifest("app", &pushed.digest);
    drop(server);
    age_tree(rescued.as_path(), 48 * HOUR);
    let (r, code, stderr) = gc(rescued.as_path(), 26 * HOUR, &[]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        deleted(&r).is_disjoint(&v1),
        "unreferenced again for an hour, deleted as if for a day"
    );
    let waiting: BTreeSet<Digest> = r.waiting.iter().filter_map(|w| w.digest.clone()).collect();
    assert!(v1.is_subset(&waiting), "{:?}", r.waiting);
}

#[test]
#[cfg_attr(
    not(feature = "test-hooks"),
    ignore = "moves the clock: needs --features test-hooks (scripts/test)"
)]
fn the_state_survives_a_kill_and_a_damaged_one_protects_everything() {
    let dir = support::tree::aged_copy("registry");
    let root = dir.path();
    let (first, code, stderr) = gc(root, Duration::ZERO, &["--min-age", "0"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(first.deleted.blobs.is_empty() && !first.waiting.is_empty());
    let state = v2(root).join(".regsweep-unreferenced");
    let before = std::fs::read(&state).unwrap();

    // Killed between writing the new state and putting it in place: the old one stands.
    let out = regsweep()
        .args([
            "gc",
            "-m",
            "--min-age",
            "0",
            "--unreferenced-for",
            "24h",
            "-q",
        ])
        .arg(root)
        .env("REGSWEEP_TEST_NOW", at(HOUR))
        .env("REGSWEEP_TEST_DIE_BEFORE_STATE_RENAME", "1")
        .status()
        .unwrap();
    assert!(!out.success());
    assert_eq!(std::fs::read(&state).unwrap(), before);
    let (r, code, stderr) = gc(root, 25 * HOUR, &["--min-age", "0", "-d"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(!r.deleted.blobs.is_empty(), "the previous state was lost");

    // Damaged: nothing the rule protects goes, exit 1, the file named; --reset-state starts
    // over.
    std::fs::write(&state, b"not a state").unwrap();
    let snap = blobs_on_disk(root);
    let (r, code, stderr) = gc(root, 25 * HOUR, &["--min-age", "0"]);
    assert_eq!(code, 1);
    assert!(r.deleted.blobs.is_empty());
    assert!(stderr.contains(&state.display().to_string()), "{stderr}");
    assert_eq!(blobs_on_disk(root), snap);
    // And it goes on protecting: the refused run did not replace it with its own (#22), so a
    // second run the next day refuses too instead of deleting what was never waited on.
    assert_eq!(std::fs::read(&state).unwrap(), b"not a state");
    let (r, code, _) = gc(root, 50 * HOUR, &["--min-age", "0"]);
    assert_eq!(code, 1);
    assert!(r.deleted.blobs.is_empty());
    assert_eq!(blobs_on_disk(root), snap);
    let (r, code, stderr) = gc(root, 25 * HOUR, &["--min-age", "0", "--reset-state"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(r.deleted.blobs.is_empty() && !r.waiting.is_empty());

    // --state PATH keeps it elsewhere.
    let elsewhere = tempfile::tempdir().unwrap();
    let path = elsewhere.path().join("state");
    let p = path.to_str().unwrap();
    let (_, code, _) = gc(root, Duration::ZERO, &["--min-age", "0", "--state", p]);
    assert_eq!(code, 0);
    assert!(path.is_file());
}

// #25 item 4: the state recorded no registry; copied to another one (or one --state PATH
// shared by two) it let blobs go at once that were never waited on there.
#[test]
#[cfg_attr(
    not(feature = "test-hooks"),
    ignore = "moves the clock: needs --features test-hooks (scripts/test)"
)]
fn another_registrys_state_is_refused() {
    let a = support::tree::aged_copy("registry");
    let b = support::tree::aged_copy("registry");
    let (first, code, stderr) = gc(a.path(), Duration::ZERO, &["--min-age", "0"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(!first.waiting.is_empty());
    // Copied as a whole, with its state: on b nothing was ever waited on.
    let state = |root: &Path| v2(root).join(".regsweep-unreferenced");
    std::fs::copy(state(a.path()), state(b.path())).unwrap();
    let before = blobs_on_disk(b.path());
    let (r, code, stderr) = gc(b.path(), 25 * HOUR, &["--min-age", "0"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(r.deleted.blobs.is_empty());
    assert_eq!(blobs_on_disk(b.path()), before);
    assert!(stderr.contains("belongs to another registry"), "{stderr}");
    // Still a's: a goes on as before.
    let (r, code, stderr) = gc(a.path(), 25 * HOUR, &["--min-age", "0"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(!r.deleted.blobs.is_empty());
    // One --state PATH for two registries: the second is refused the same way.
    let shared = tempfile::tempdir().unwrap();
    let path = shared.path().join("state");
    let p = path.to_str().unwrap();
    let c = support::tree::aged_copy("registry");
    let d = support::tree::aged_copy("registry");
    let (_, code, _) = gc(c.path(), Duration::ZERO, &["--min-age", "0", "--state", p]);
    assert_eq!(code, 0);
    let (r, code, stderr) = gc(d.path(), 25 * HOUR, &["--min-age", "0", "--state", p]);
    assert_eq!(code, 1, "{stderr}");
    assert!(r.deleted.blobs.is_empty());
}

// #29: a layer whose day began in an earlier run (its image deleted) was reused by an image
// pushed afterwards whose tag then moved on. The next run deleted the layer (its day was over)
// while the untagged image waited its own day: that image no longer pulled by digest, and
// `check` reported the missing blob. Whatever the rule keeps waiting, it keeps whole.
#[test]
#[cfg_attr(
    not(feature = "test-hooks"),
    ignore = "moves the clock: needs --features test-hooks (scripts/test)"
)]
fn a_waiting_image_keeps_a_layer_whose_own_wait_is_over() {
    if !server_available() {
        eprintln!("skipped: docker-registry is not installed (scripts/test installs it)");
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let server = Registry::start(root.path());
    let c = server.client();
    push_image(&c, "app", Some("keep"), Format::Oci, "amd64", &["kept"]);
    let old = push_image(
        &c,
        "app",
        Some("old"),
        Format::Oci,
        "amd64",
        &["shared layer", "old only"],
    );
    c.delete_manifest("app", &old.digest);
    drop(server);
    age_tree(root.path(), 48 * HOUR);
    // The first run starts the shared layer's day.
    let (_, code, stderr) = gc(root.path(), Duration::ZERO, &[]);
    assert_eq!(code, 0, "{stderr}");

    // An image reusing it, whose tag then moves on: untagged, it waits a day of its own.
    let server = Registry::start(root.path());
    let c = server.client();
    let reused = push_image(
        &c,
        "app",
        Some("v2"),
        Format::Oci,
        "arm64",
        &["shared layer", "v2 only"],
    );
    push_image(&c, "app", Some("v2"), Format::Oci, "amd64", &["v2 next"]);
    drop(server);
    age_tree(root.path(), 48 * HOUR);
    let of = |seed: &str| {
        regsweep::registry::digest::Digest::of(
            regsweep::registry::digest::Algorithm::Sha256,
            &support::images::layer(seed),
        )
    };
    let (shared, old_only) = (of("shared layer"), of("old only"));
    assert!(old.blobs.contains(&shared) && reused.blobs.contains(&shared));

    let (r, code, stderr) = gc(root.path(), 25 * HOUR, &[]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        r.waiting
            .iter()
            .any(|w| w.kind == "manifest" && w.digest.as_ref() == Some(&reused.digest)),
        "{:?}",
        r.waiting
    );
    assert!(
        !deleted(&r).contains(&shared),
        "the layer of an image still waiting was deleted"
    );
    // The old image's own layer, whose wait is over and that nothing waiting uses, went.
    assert!(deleted(&r).contains(&old_only));
    let server = Registry::start(root.path());
    let fetched = support::pull::verify_image(&server.client(), "app", &reused.digest)
        .unwrap_or_else(|e| panic!("the waiting image does not pull by digest: {e}"));
    assert!(fetched.contains(&shared));
    drop(server);
}

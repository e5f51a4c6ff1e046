//! Housekeeping the reference collector never does (issue 14), with the real registry server:
//! abandoned uploads are purged and uploads in progress are not; repositories left empty leave
//! the catalog while every other one (nested ones included) stays; a cross-repository mount
//! into a brand-new repository during a real run keeps its blob.

mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime};

use regsweep::gc::report::GcReport;
use regsweep::registry::digest::{Algorithm, Digest};
use support::images::{bytes, push_image, Format};
use support::registry::{server_available, Registry};
use support::tree::{age_tree, blobs_on_disk, gc_json, regsweep, snapshot, v2};

const DAY: Duration = Duration::from_secs(86400);

fn uploads(root: &Path, repo: &str) -> BTreeSet<String> {
    std::fs::read_dir(v2(root).join(format!("repositories/{repo}/_uploads")))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Make an upload look as if it began `age` ago: its `startedat` and every time in it.
fn date_back(root: &Path, repo: &str, uuid: &str, age: Duration) {
    let dir = v2(root).join(format!("repositories/{repo}/_uploads/{uuid}"));
    let when = SystemTime::now() - age;
    std::fs::write(
        dir.join("startedat"),
        humantime::format_rfc3339_seconds(when).to_string(),
    )
    .unwrap();
    age_tree(&dir, age);
}

#[test]
fn abandoned_uploads_go_and_uploads_in_progress_complete() {
    if !server_available() {
        eprintln!("skipped: docker-registry is not installed (scripts/test installs it)");
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let registry = Registry::start(root.path());
    let c = registry.client();
    push_image(&c, "app", Some("v1"), Format::Oci, "amd64", &["a"]);

    let before = uploads(root.path(), "app");
    c.abandon_upload("app", &bytes("abandoned", 3000));
    let abandoned = uploads(root.path(), "app")
        .difference(&before)
        .next()
        .unwrap()
        .clone();
    c.abandon_upload("app", &bytes("young", 100));
    let young = uploads(root.path(), "app")
        .into_iter()
        .find(|u| *u != abandoned)
        .unwrap();
    let content = bytes("in progress", 5000);
    let location = c.start_upload("app", &content[..2000]);
    let kept: BTreeSet<String> = uploads(root.path(), "app")
        .into_iter()
        .filter(|u| *u != abandoned)
        .collect();
    assert_eq!(kept.len(), 2);
    date_back(root.path(), "app", &abandoned, 8 * DAY);

    // The dry run lists exactly the abandoned upload, with its bytes, and writes nothing.
    let snap = snapshot(root.path());
    let (dry, out) = gc_json(root.path(), &["-d", "-v"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let listed: Vec<&str> = dry
        .deleted
        .uploads
        .iter()
        .map(|u| u.uuid.as_str())
        .collect();
    assert_eq!(listed, [abandoned.as_str()]);
    assert_eq!(dry.deleted.uploads[0].repository, "app");
    assert_eq!(dry.summary.deleted_upload_bytes, 3000);
    assert_eq!(snapshot(root.path()), snap);
    let human = regsweep()
        .args(["gc", "-d", "-v"])
        .arg(root.path())
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&human.stdout).contains(&abandoned));

    // The real run, with the registry still serving: the abandoned upload goes, the others
    // stay, and the one in progress completes afterwards.
    let (r, out) = gc_json(root.path(), &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(r.deleted.uploads, dry.deleted.uploads);
    assert_eq!(uploads(root.path(), "app"), kept);
    let digest = Digest::of(Algorithm::Sha256, &content);
    assert_eq!(c.finish_upload(&location, &content[2000..], &digest), 201);
    let (status, got) = c.get_blob("app", &digest);
    assert_eq!(status, 200);
    assert_eq!(got, content);

    // `off` keeps even an old upload; report counts abandoned uploads as reclaimable.
    date_back(root.path(), "app", &young, 30 * DAY);
    let (r, _) = gc_json(root.path(), &["-d", "--uploads-older-than", "off"]);
    assert!(r.deleted.uploads.is_empty());
    let out = regsweep()
        .args(["report", "--json", "-"])
        .arg(root.path())
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let (dry, _) = gc_json(root.path(), &["-d", "--min-age", "0"]);
    assert_eq!(dry.summary.deleted_uploads, 1);
    assert_eq!(
        report["totals"]["reclaimable_bytes"].as_u64().unwrap(),
        dry.summary.deleted_bytes + dry.summary.deleted_upload_bytes
    );
    let app = report["repositories"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "app")
        .unwrap();
    assert!(app["reclaimable_bytes"].as_u64().unwrap() >= 100);
}

#[test]
fn a_repository_whose_tags_are_all_deleted_leaves_the_catalog() {
    if !server_available() {
        eprintln!("skipped: docker-registry is not installed (scripts/test installs it)");
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let mut registry = Registry::start(root.path());
    let c = registry.client();
    let gone = push_image(&c, "team", Some("v1"), Format::Oci, "amd64", &["t1"]);
    let gone2 = push_image(&c, "team", Some("v2"), Format::Docker, "arm64", &["t2"]);
    push_image(
        &c,
        "team/app",
        Some("v1"),
        Format::Oci,
        "amd64",
        &["t1", "n"],
    );
    push_image(&c, "other", Some("latest"), Format::Oci, "amd64", &["o"]);
    push_image(&c, "a/b/c", Some("1"), Format::Oci, "amd64", &["abc"]);
    c.delete_manifest("team", &gone.digest);
    c.delete_manifest("team", &gone2.digest);
    assert!(c.tags("team").is_empty());
    let before: BTreeSet<String> = c.catalog().into_iter().collect();
    assert!(before.contains("team"));
    registry.stop();
    age_tree(root.path(), DAY);

    // Without the flag the repository stays (and is not counted).
    let (r, _) = gc_json(root.path(), &["-d", "-m"]);
    assert!(r.deleted.repositories.is_empty());
    let (r, out) = gc_json(root.path(), &["-m", "--empty-repositories"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let removed: Vec<&str> = r
        .deleted
        .repositories
        .iter()
        .map(|x| x.name.as_str())
        .collect();
    assert_eq!(removed, ["team"]);
    // `team/` itself stays: it holds team/app.
    assert!(v2(root.path())
        .join("repositories/team/app/_layers")
        .is_dir());
    assert!(!v2(root.path()).join("repositories/team/_layers").exists());
    let (again, _) = gc_json(root.path(), &["-m", "--empty-repositories"]);
    assert!(again.deleted.repositories.is_empty());

    registry.restart();
    // A restarted registry listens on a new port.
    let c = registry.client();
    let after: BTreeSet<String> = c.catalog().into_iter().collect();
    let mut want = before.clone();
    want.remove("team");
    assert_eq!(after, want);
    for (repo, tag) in [("team/app", "v1"), ("other", "latest"), ("a/b/c", "1")] {
        assert_eq!(c.get_manifest(repo, tag).0, 200, "{repo}:{tag}");
    }
    // The name can be pushed to again.
    let again = push_image(&c, "team", Some("v3"), Format::Oci, "amd64", &["t3"]);
    let (status, body) = c.get_manifest("team", "v3");
    assert_eq!(status, 200);
    assert_eq!(Digest::of(Algorithm::Sha256, &body), again.digest);
    assert!(c.catalog().contains(&"team".to_string()));
}

#[test]
fn a_mount_into_a_brand_new_repository_during_a_run_keeps_its_blob() {
    if !server_available() {
        eprintln!("skipped: docker-registry is not installed (scripts/test installs it)");
        return;
    }
    let root = tempfile::tempdir().unwrap();
    regsweep::synth::generate(root.path(), support::tree::BUSY, 11).unwrap();
    let registry = Registry::start(root.path());
    let c = registry.client();
    age_tree(root.path(), DAY);
    let t0 = Instant::now();
    let dry = regsweep()
        .args(["gc", "-d", "-q"])
        .arg(root.path())
        .status()
        .unwrap();
    assert!(dry.success());
    let took = t0.elapsed().max(Duration::from_millis(300));

    let trials = 6;
    let mut mounted = 0;
    for t in 0..trials {
        // A blob that is dead when the run starts: its only image deleted, everything old.
        let victim = push_image(
            &c,
            "victim",
            Some("v"),
            Format::Oci,
            "amd64",
            &[&format!("m{t}")],
        );
        c.delete_manifest("victim", &victim.digest);
        let blob = victim.blobs.last().unwrap().clone();
        age_tree(root.path(), DAY);

        let child = regsweep()
            .args(["gc", "--min-age", "0", "--json", "-"])
            .arg(root.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // From just after the run starts to past the end of its sweep.
        std::thread::sleep(took.mul_f64(0.05 + 1.2 * t as f64 / trials as f64));
        let fresh = format!("fresh/{t}");
        let ok = c.mount_blob(&fresh, &blob, "victim");
        let out = child.wait_with_output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let _: GcReport = serde_json::from_slice(&out.stdout).unwrap();
        if !ok {
            // The blob was already in the trash or gone: the registry refused the mount, and
            // the client uploads the blob instead. Nothing to protect.
            continue;
        }
        mounted += 1;
        assert!(
            blobs_on_disk(root.path()).contains(&blob),
            "trial {t}: mounted blob lost"
        );
        assert_eq!(c.get_blob(&fresh, &blob).0, 200, "trial {t}");
    }
    assert!(
        mounted > 0,
        "no mount landed during a run: the test proves nothing"
    );
}

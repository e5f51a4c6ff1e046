//! Safe on a live registry (#22), the cases that are not a matrix: what protects a registry
//! whose `repositories/` is not there, the cap on one run's deletions, and a link that a push
//! writes again between the removal of a `link` file and of its directory.

mod support;

use support::pause::Paused;

use std::collections::BTreeSet;
use std::time::Duration;

use regsweep::registry::digest::Digest;
use support::tree::{aged_copy, blobs_on_disk, gc_json, regsweep, v2};

// Reproduction 3 of #22: with `repositories/` missing (a volume that did not mount, a root
// that points at half the tree) every blob looked like garbage, and a real run deleted them
// all and exited 0.
#[test]
fn a_registry_without_repositories_keeps_every_blob_and_says_why() {
    let dir = aged_copy("registry");
    let root = dir.path();
    let before = blobs_on_disk(root);
    assert!(!before.is_empty());
    std::fs::rename(v2(root).join("repositories"), root.join("elsewhere")).unwrap();
    for args in [
        &["--min-age", "0"][..],
        &["-m", "--min-age", "0"],
        &["-d", "--min-age", "0"],
    ] {
        let (r, out) = gc_json(root, args);
        assert_eq!(out.code, 1, "{args:?}: {}", out.stderr);
        assert!(r.refused, "{args:?}");
        assert!(r.deleted.blobs.is_empty(), "{args:?}");
        assert!(
            out.stderr.contains("docker/registry/v2/repositories")
                && out.stderr.contains("no repository at all"),
            "{args:?}: the refusal names the directory and why: {}",
            out.stderr
        );
        assert_eq!(blobs_on_disk(root), before, "{args:?}");
    }
    // Mounted again: an ordinary run.
    std::fs::rename(root.join("elsewhere"), v2(root).join("repositories")).unwrap();
    let (_, out) = gc_json(root, &["-m", "--min-age", "0"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
}

#[test]
fn max_delete_refuses_a_run_over_the_cap_and_lets_one_under_it_go() {
    let dir = aged_copy("registry");
    let root = dir.path();
    let (plan, _) = gc_json(root, &["-d", "-m", "--min-age", "0"]);
    let n = plan.deleted.blobs.len();
    let total = plan.summary.census.blobs;
    assert!(n > 1);
    let before = blobs_on_disk(root);
    let under_share = format!("{}%", (n - 1) * 100 / total);
    for cap in [format!("{}", n - 1), under_share] {
        for dry in [true, false] {
            let mut args = vec!["-m", "--min-age", "0", "--max-delete", cap.as_str()];
            if dry {
                args.push("-d");
            }
            let (r, out) = gc_json(root, &args);
            assert_eq!(out.code, 1, "--max-delete {cap}: {}", out.stderr);
            assert!(
                r.refused && r.deleted.blobs.is_empty(),
                "--max-delete {cap}"
            );
            assert!(
                out.stderr
                    .contains(&format!("would delete {n} of {total} blobs")),
                "{}",
                out.stderr
            );
            assert_eq!(blobs_on_disk(root), before);
        }
    }
    let (r, out) = gc_json(
        root,
        &["-m", "--min-age", "0", "--max-delete", &n.to_string()],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(r.deleted.blobs.len(), n);
    let bad = support::tree::run(&["gc", "--max-delete", "lots", root.to_str().unwrap()]);
    assert_eq!(bad.code, 2, "{}", bad.stderr);
}

// From a read of src/storage/fs.rs (#22): a link directory whose `rmdir` failed with
// ENOTEMPTY (the registry wrote `link` again after regsweep removed it) was removed whole,
// taking the push's link with it.
#[cfg(feature = "test-hooks")]
#[test]
fn a_link_written_again_between_unlink_and_rmdir_stays() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let b = support::tree::TreeBuilder::new(root);
    let config = b.blob(b"{}");
    let layer = b.blob(b"a layer only this manifest uses");
    let untagged = b.image("app", &[config.clone(), layer.clone()], None);
    let kept = b.image("app", &[config], None);
    b.tag("app", "v1", &kept);
    support::tree::age_tree(root, Duration::from_secs(3 * 3600));
    let revision = v2(root).join(format!(
        "repositories/app/_manifests/revisions/sha256/{}",
        untagged.hex()
    ));
    let mut cmd = regsweep();
    cmd.args(["gc", "-m", "--min-age", "0", "--json", "-"])
        .arg(root);
    let paused = Paused::start(cmd, "link-unlinked");
    // The registry's push of the same manifest, between the two removals.
    assert!(!revision.join("link").exists());
    std::fs::write(revision.join("link"), untagged.to_string()).unwrap();
    let out = paused.go();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: regsweep::gc::report::GcReport = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        std::fs::read_to_string(revision.join("link")).unwrap(),
        untagged.to_string(),
        "the push's link is gone"
    );
    assert!(report
        .deleted
        .manifests
        .iter()
        .all(|m| m.digest != untagged));
    let on_disk: BTreeSet<Digest> = blobs_on_disk(root);
    assert!(on_disk.contains(&untagged) && on_disk.contains(&layer));
    support::tree::assert_every_tag_pulls(root);
}

// #25 item 2: run as root on a registry that runs as its own user, regsweep made what it
// created root's (a shard directory put back, the lock, a link written back), after which the
// registry could not write there. Everything in the tree stays the registry user's.
#[cfg(feature = "test-hooks")]
#[test]
fn what_a_root_run_creates_belongs_to_the_registrys_user() {
    use std::os::unix::fs::MetadataExt;
    if unsafe { libc_geteuid() } != 0 {
        eprintln!("skipping: needs root to give the tree to another user");
        return;
    }
    const NOBODY: u32 = 65534;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let b = support::tree::TreeBuilder::new(root);
    let config = b.blob(b"{\"owner\": true}");
    let layer = b.blob(b"a layer of the doomed image");
    let doomed = b.image("app", &[config.clone(), layer], None);
    let kept = b.image("app", &[config], None);
    b.tag("app", "v1", &kept);
    support::tree::age_tree(root, Duration::from_secs(3 * 3600));
    let chown = |path: &std::path::Path| {
        for e in walkdir::WalkDir::new(path) {
            let e = e.unwrap();
            std::os::unix::fs::lchown(e.path(), Some(NOBODY), Some(NOBODY)).unwrap();
        }
    };
    chown(root);
    let mut cmd = regsweep();
    cmd.args(["gc", "-m", "--min-age", "0", "--json", "-"])
        .arg(root);
    let paused = Paused::start(cmd, "last-look");
    // A tag pushed for the doomed manifest after its revision went: the last look writes the
    // revision link (and its directories) back, and puts its blobs back.
    let tag = b.tag("app", "again", &doomed);
    for e in walkdir::WalkDir::new(v2(root).join("repositories/app/_manifests/tags/again")) {
        let e = e.unwrap();
        std::os::unix::fs::lchown(e.path(), Some(NOBODY), Some(NOBODY)).unwrap();
    }
    let _ = tag;
    let out = paused.go();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: regsweep::gc::report::GcReport = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        report.summary.rescued_manifests >= 1,
        "{:?}",
        report.summary
    );
    let mut roots_own = Vec::new();
    for e in walkdir::WalkDir::new(root) {
        let e = e.unwrap();
        let m = std::fs::symlink_metadata(e.path()).unwrap();
        if m.uid() != NOBODY || m.gid() != NOBODY {
            roots_own.push(e.path().display().to_string());
        }
    }
    assert!(roots_own.is_empty(), "created as root: {roots_own:#?}");
    support::tree::assert_every_tag_pulls(root);
}

extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}

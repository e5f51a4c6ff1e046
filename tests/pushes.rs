//! Nothing a push writes is lost, whatever the flags (#29): the registry's intermediate states
//! left at the run's pause points, as the registry leaves them on disk (a manifest blob written
//! with no link yet, a link truncated and not yet rewritten), and a layer directory whose link a
//! crash removed. Each test failed before its fix.

mod support;

use std::path::Path;
use std::time::Duration;

use regsweep::check::{CheckReport, ProblemKind};
use regsweep::gc::report::GcReport;
use regsweep::registry::digest::{Algorithm, Digest};
use support::tree::{age_tree, aged_copy, blobs_on_disk, regsweep, run, v2, TreeBuilder};

fn report(out: &std::process::Output) -> GcReport {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "no JSON report ({e}): {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// A registry with one tagged image and one dead image, everything a day old.
fn registry(root: &Path) -> (TreeBuilder, Digest, Digest) {
    let b = TreeBuilder::new(root);
    let config = b.blob(b"{}");
    let layer = b.blob(b"a layer the tagged image uses");
    let kept = b.image("app", &[config.clone(), layer], None);
    b.tag("app", "v1", &kept);
    let dead_layer = b.blob(b"a layer of an image deleted through the API");
    let dead = b.image("app", &[config, dead_layer.clone()], None);
    std::fs::remove_file(b.revision("app", &dead)).unwrap();
    age_tree(root, Duration::from_secs(86400));
    (b, kept, dead_layer)
}

// The manifest PUT writes the manifest's blob, then its revision link, then the tag, tens of
// milliseconds apart. With `--min-age 0` a run that listed the blob in between deleted it
// (nothing linked it yet); the tag the registry then wrote named a manifest that was gone,
// and every later run refused. Whatever was written since the run began is young now.
#[cfg(feature = "test-hooks")]
#[test]
fn a_manifest_blob_written_during_the_run_without_its_links_stays_with_min_age_0() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let (b, kept, dead_layer) = registry(root);
    let mut cmd = regsweep();
    cmd.args(["gc", "-m", "--min-age", "0", "--json", "-"])
        .arg(root);
    let paused = support::pause::Paused::start(cmd, "mark");
    // The push's first write: the manifest blob, nothing linking it yet.
    let config = Digest::of(Algorithm::Sha256, b"{}");
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config.to_string(), "size": 2},
        "layers": [],
    }))
    .unwrap();
    let pushed = b.blob(&manifest);
    let out = paused.go();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = report(&out);
    let on_disk = blobs_on_disk(root);
    assert!(
        on_disk.contains(&pushed),
        "the manifest blob a push wrote during the run was deleted"
    );
    assert!(r.deleted.blobs.iter().all(|x| x.digest != pushed));
    // The idle part of the tree was still collected.
    assert!(
        !on_disk.contains(&dead_layer),
        "the dead layer is still there"
    );
    assert!(on_disk.contains(&kept));
    // The push finishes: its links, then its tag. It pulls.
    b.revision("app", &pushed);
    b.tag("app", "v2", &pushed);
    support::tree::assert_every_tag_pulls(root);

    // The dry run plans what the real run does: a blob written within the slack before the
    // run began is not planned either.
    let young = b.blob(b"written a moment before the dry run");
    let (plan, out) = support::tree::gc_json(root, &["-d", "-m", "--min-age", "0"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(plan.deleted.blobs.iter().all(|x| x.digest != young));
}

// The filesystem driver writes a link in place (open, truncate, write): a run reading a tag's
// `current/link` or a revision link in between saw it empty and refused the whole run ("invalid
// link file: empty digest"), about one run in ten on a busy registry. A young link that reads
// empty or short is read again, and held as a write in progress; never a reason to refuse.
#[cfg(feature = "test-hooks")]
#[test]
fn a_link_being_rewritten_is_a_push_in_progress_not_a_refusal() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let (b, kept, dead_layer) = registry(root);
    let other = b.image(
        "app",
        &[b.blob(b"{}"), b.blob(b"another tagged layer")],
        None,
    );
    b.tag("app", "v2", &other);
    age_tree(root, Duration::from_secs(86400));
    let mut cmd = regsweep();
    cmd.args(["gc", "-m", "--min-age", "0", "--json", "-"])
        .arg(root);
    let paused = support::pause::Paused::start(cmd, "mark");
    // A re-push of v1 caught between truncate and write: its revision link written again (the
    // registry links the manifest before the tag), its tag link truncated.
    let revision = b.revision("app", &kept);
    let tag_link = v2(root).join("repositories/app/_manifests/tags/v1/current/link");
    std::fs::write(&tag_link, b"").unwrap();
    // And a revision link of v2's manifest caught half written.
    let revision2 = b.revision("app", &other);
    std::fs::write(&revision2, &other.to_string().as_bytes()[..20]).unwrap();
    let out = paused.go();
    assert_eq!(
        out.status.code(),
        Some(0),
        "a link being written made the run fail: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = report(&out);
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert!(
        r.warnings.iter().any(|w| w.message.contains("in progress")),
        "{:?}",
        r.warnings
    );
    // The writes complete; both tags pull, and the dead image was still collected.
    std::fs::write(&tag_link, kept.to_string()).unwrap();
    std::fs::write(&revision2, other.to_string()).unwrap();
    assert!(revision.exists());
    support::tree::assert_every_tag_pulls(root);
    assert!(!blobs_on_disk(root).contains(&dead_layer));
}

fn check_json(root: &Path, extra: &[&str]) -> (CheckReport, i32, String) {
    let mut args = vec!["check", "--json", "-"];
    args.extend_from_slice(extra);
    args.push(root.to_str().unwrap());
    let out = run(&args);
    let r: CheckReport = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", out.stdout, out.stderr));
    (r, out.code, out.stderr)
}

// A crash mid-removal leaves a `_layers` entry's directory without its `link`: the registry
// answers 404 for that blob through the repository, so the image does not pull. `check` said
// only "link file is missing" (no tag named) and `--repair` left it. Now it is a
// missing_layer_link naming the tags it breaks, and `--repair` writes it back, whether the
// directory is there or not.
#[test]
fn a_layer_directory_without_its_link_is_named_with_its_tags_and_repaired() {
    let dir = aged_copy("registry");
    let root = dir.path();
    let repo = v2(root).join("repositories/team/app");
    let current = std::fs::read(repo.join("_manifests/tags/v1/current/link")).unwrap();
    let read = |d: &Digest| {
        let hex = d.hex();
        let bytes =
            std::fs::read(v2(root).join(format!("blobs/sha256/{}/{hex}/data", &hex[..2]))).unwrap();
        regsweep::registry::manifest::Manifest::parse(&bytes).unwrap()
    };
    // v1 is a multi-arch index: the tag breaks through its child.
    let index = read(&Digest::parse_link(&current).unwrap());
    let m = read(&index.children[0]);
    assert!(m.blobs.len() >= 2);
    // One layer's link removed with its directory left, another's directory removed whole.
    let left = &m.blobs[m.blobs.len() - 1].digest;
    let whole = &m.blobs[0].digest;
    let left_dir = repo.join(format!("_layers/sha256/{}", left.hex()));
    std::fs::remove_file(left_dir.join("link")).unwrap();
    std::fs::remove_dir_all(repo.join(format!("_layers/sha256/{}", whole.hex()))).unwrap();

    let (r, code, stderr) = check_json(root, &[]);
    assert_eq!(code, 1, "{stderr}");
    for d in [left, whole] {
        let p = r
            .problems
            .iter()
            .find(|p| p.kind == ProblemKind::MissingLayerLink && p.digest == Some(d.to_string()))
            .unwrap_or_else(|| panic!("{d} not named: {:?}", r.problems));
        assert!(p.message.contains("team/app:v1"), "{}", p.message);
    }
    assert!(
        r.problems
            .iter()
            .all(|p| p.message != "link file is missing"),
        "{:?}",
        r.problems
    );
    let (repaired, _, stderr) = check_json(root, &["--repair"]);
    assert!(repaired.repaired.len() >= 2, "{stderr}");
    assert_eq!(
        std::fs::read_to_string(left_dir.join("link")).unwrap(),
        left.to_string()
    );
    let (again, code, stderr) = check_json(root, &[]);
    assert!(
        again
            .problems
            .iter()
            .all(|p| p.kind != ProblemKind::MissingLayerLink),
        "{stderr}"
    );
    let _ = code;
}

// A tagged manifest whose content is gone (a crash, a hand-made `rm`, another collector):
// every run refuses, rightly (the live set is incomplete), and did so forever, naming only the
// missing file. `check` and the refusal now name the one command that clears the dangling
// name, and after it the runs go on.
#[test]
fn a_manifest_whose_content_is_gone_names_the_command_that_lets_runs_go_on() {
    let dir = aged_copy("registry");
    let root = dir.path();
    let tag = v2(root).join("repositories/team/app/_manifests/tags/v1/current/link");
    let gone = Digest::parse_link(&std::fs::read(&tag).unwrap()).unwrap();
    let hex = gone.hex();
    std::fs::remove_dir_all(v2(root).join(format!("blobs/sha256/{}/{hex}", &hex[..2]))).unwrap();
    let command = format!("regsweep delete ROOT team/app@{gone}");

    let refused = run(&["gc", "-m", root.to_str().unwrap()]);
    assert_eq!(refused.code, 1, "{}", refused.stderr);
    assert!(refused.stderr.contains(&command), "{}", refused.stderr);
    let (r, code, stderr) = check_json(root, &[]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        r.problems
            .iter()
            .any(|p| p.kind == ProblemKind::MissingManifest && p.message.contains(&command)),
        "{:?}",
        r.problems
    );

    let at = format!("team/app@{gone}");
    let cleared = run(&["delete", root.to_str().unwrap(), &at]);
    assert_eq!(cleared.code, 0, "{}", cleared.stderr);
    let after = run(&["gc", "-m", root.to_str().unwrap()]);
    assert_eq!(after.code, 0, "{}", after.stderr);
    // What is left is the fixture's own day-old upload.
    let (r, _, stderr) = check_json(root, &[]);
    assert!(
        r.problems
            .iter()
            .all(|p| p.kind == ProblemKind::StaleUpload),
        "{stderr}: {:?}",
        r.problems
    );
}

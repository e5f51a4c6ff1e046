//! `regsweep report` and `regsweep check`, run as a user runs them, on copies of the fixture
//! registry (written by the real server) and on generated registries.

mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use regsweep::check::{CheckReport, ProblemKind};
use regsweep::output::usage::UsageReport;
use regsweep::registry::digest::Digest;
use regsweep::registry::manifest::Manifest;
use regsweep::synth::Preset;
use support::tree::{age_tree, age_uploads, aged_copy, gc_json, run, snapshot, v2, TreeBuilder};

fn report_json(root: &Path) -> UsageReport {
    let out = run(&["report", "--json", "-", root.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    serde_json::from_str(&out.stdout).unwrap()
}

fn check_json(root: &Path, extra: &[&str]) -> (CheckReport, i32) {
    let mut args = vec!["check", "--json", "-"];
    args.extend_from_slice(extra);
    args.push(root.to_str().unwrap());
    let out = run(&args);
    let r: CheckReport = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", out.stdout, out.stderr));
    (r, out.code)
}

#[test]
fn report_totals_equal_what_gc_would_reclaim() {
    // The fixture twice: its upload young (a day old), and old enough that `gc` would remove it,
    // so that "reclaimable" is shown to count upload bytes exactly as `gc` deletes them.
    let old_upload = aged_copy("registry");
    age_uploads(old_upload.path(), Duration::from_secs(30 * 86400));
    let mut roots = vec![aged_copy("registry"), old_upload];
    for seed in 1..=3 {
        let dir = tempfile::tempdir().unwrap();
        let preset = Preset {
            name: "report",
            repositories: 6 + seed as usize,
            tags: 4,
            layers: 3,
        };
        regsweep::synth::generate(dir.path(), preset, seed).unwrap();
        age_tree(dir.path(), Duration::from_secs(86400));
        roots.push(dir);
    }
    let (aged, _) = gc_json(roots[1].path(), &["-d", "--min-age", "0"]);
    assert_eq!(
        aged.summary.deleted_upload_bytes, 500,
        "the old upload is reclaimable"
    );
    let (young, _) = gc_json(roots[0].path(), &["-d", "--min-age", "0"]);
    assert_eq!(
        young.summary.deleted_upload_bytes, 0,
        "the young upload is not"
    );
    for dir in &roots {
        let before = snapshot(dir.path());
        let r = report_json(dir.path());
        assert!(before == snapshot(dir.path()), "report wrote to the tree");
        let (plain, _) = gc_json(dir.path(), &["-d", "--min-age", "0"]);
        let (untagged, _) = gc_json(dir.path(), &["-d", "--min-age", "0", "-m"]);
        // Reclaimable is what gc removes: dead blobs' bytes and abandoned uploads' bytes.
        assert_eq!(
            r.totals.reclaimable_bytes,
            plain.summary.deleted_bytes + plain.summary.deleted_upload_bytes
        );
        assert_eq!(
            r.totals.reclaimable_bytes_untagged,
            untagged.summary.deleted_bytes + untagged.summary.deleted_upload_bytes
        );
        assert!(r.totals.reclaimable_bytes_untagged >= r.totals.reclaimable_bytes);
        assert_eq!(r.totals.blobs, plain.summary.census.blobs);
        assert_eq!(r.totals.repositories, r.repositories.len());
        for repo in &r.repositories {
            assert_eq!(
                repo.bytes,
                repo.unique_bytes + repo.shared_bytes,
                "{}",
                repo.name
            );
            assert!(repo.untagged_manifests <= repo.manifests);
        }
        // Sorted by unique bytes.
        assert!(r
            .repositories
            .windows(2)
            .all(|w| w[0].unique_bytes >= w[1].unique_bytes));
    }
}

#[test]
fn report_renders_table_csv_and_a_self_contained_page() {
    let dir = aged_copy("registry");
    let root = dir.path().to_str().unwrap();
    let out_dir = tempfile::tempdir().unwrap();
    let html = out_dir.path().join("r.html");
    let csv = out_dir.path().join("r.csv");
    let out = run(&[
        "report",
        "--top",
        "3",
        "--html",
        html.to_str().unwrap(),
        "--csv",
        csv.to_str().unwrap(),
        root,
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let r = report_json(dir.path());
    // The table: the top 3 by unique bytes, in order, and a note about the rest.
    let lines: Vec<&str> = out.stdout.lines().collect();
    for (i, repo) in r.repositories.iter().take(3).enumerate() {
        assert!(lines[6 + i].starts_with(&repo.name), "{}", out.stdout);
    }
    assert!(out.stdout.contains("and 2 more"), "{}", out.stdout);

    let csv = std::fs::read_to_string(csv).unwrap();
    assert_eq!(csv.lines().count(), r.repositories.len() + 1);
    assert!(csv.starts_with("repository,tags,manifests,untagged_manifests,bytes,unique_bytes"));

    let page = std::fs::read_to_string(html).unwrap();
    assert!(page.starts_with("<!DOCTYPE html>") && page.trim_end().ends_with("</html>"));
    for needle in [
        "<svg id=\"split\"",
        "<svg id=\"repos\"",
        "<table>",
        "</table>",
    ] {
        assert!(page.contains(needle), "no {needle}");
    }
    // Self-contained: no scripts, nothing fetched.
    for banned in ["<script", "http://", "https://", "src=", "<link"] {
        assert!(!page.contains(banned), "page contains {banned}");
    }
    // One bar group per shown repository, one table row per repository.
    assert_eq!(page.matches("<g class=\"repo\">").count(), 3);
    assert_eq!(page.matches("<tr><td>").count(), r.repositories.len());
    // Tags balance (a cheap well-formedness check on what we write).
    for tag in ["svg", "table", "tr", "g", "text", "rect", "p", "h2"] {
        let open =
            page.matches(&format!("<{tag} ")).count() + page.matches(&format!("<{tag}>")).count();
        let close = page.matches(&format!("</{tag}>")).count();
        assert_eq!(open, close, "<{tag}> unbalanced");
    }
}

fn current(root: &Path, repo: &str, tag: &str) -> Digest {
    let p = v2(root).join(format!(
        "repositories/{repo}/_manifests/tags/{tag}/current/link"
    ));
    Digest::parse_link(&std::fs::read(p).unwrap()).unwrap()
}

#[test]
fn a_clean_registry_reports_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let t = TreeBuilder::new(dir.path());
    let contents: [&[u8]; 3] = [b"config", b"layer one", b"layer two"];
    let descriptors: Vec<serde_json::Value> = contents
        .iter()
        .map(|c| {
            let d = t.blob(c);
            t.layer_link("clean/app", &d);
            serde_json::json!({"mediaType": "application/octet-stream", "digest": d.to_string(), "size": c.len()})
        })
        .collect();
    let m = t.manifest(
        "clean/app",
        &serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": descriptors[0],
            "layers": descriptors[1..],
        }))
        .unwrap(),
    );
    t.tag("clean/app", "v1", &m);
    let (r, code) = check_json(dir.path(), &["--verify"]);
    assert_eq!(code, 0, "{:?}", r.problems);
    assert!(r.problems.is_empty());
    assert_eq!(r.summary.verified_blobs, 4);

    // A generated registry is clean too (its orphan uploads are young).
    let dir = tempfile::tempdir().unwrap();
    regsweep::synth::generate(dir.path(), regsweep::synth::SMALL, 2).unwrap();
    let (r, code) = check_json(dir.path(), &["--verify"]);
    assert_eq!(code, 0, "{:?}", &r.problems[..r.problems.len().min(5)]);
}

/// Every kind of damage, on a damaged copy of the fixture, is found and named by its path.
#[test]
fn every_kind_of_damage_is_found_and_named() {
    let dir = aged_copy("registry");
    let root = dir.path();
    let (clean, _) = check_json(root, &["--verify"]);
    let baseline: BTreeSet<(ProblemKind, String)> = clean
        .problems
        .iter()
        .map(|p| (p.kind, p.path.clone()))
        .collect();
    assert!(
        clean
            .problems
            .iter()
            .all(|p| p.kind == ProblemKind::StaleUpload),
        "the fixture has only its orphan upload: {:?}",
        clean.problems
    );

    let t = TreeBuilder {
        root: root.to_path_buf(),
    };
    let v2 = v2(root);
    let blob_data = |d: &Digest| t.blob_path(d).join("data");
    let mut expect: Vec<(ProblemKind, std::path::PathBuf)> = Vec::new();

    // An image of team/app (v1, or the first child of v1 that has a config and a layer).
    let mut todo = vec![current(root, "team/app", "v1")];
    let m = loop {
        let d = todo.pop().expect("team/app:v1 has an image with layers");
        let m = Manifest::parse(&std::fs::read(blob_data(&d)).unwrap()).unwrap();
        if m.blobs.len() >= 2 {
            break m;
        }
        todo.extend(m.children);
    };
    let (config, layer) = (&m.blobs[0].digest, &m.blobs[1].digest);

    // Empty and invalid links.
    let empty = v2.join("repositories/library/alpine/_manifests/tags/3.19/current/link");
    std::fs::write(&empty, b"").unwrap();
    expect.push((ProblemKind::EmptyLink, empty));
    let alpine = current(root, "library/alpine", "latest");
    let invalid = v2.join("repositories/library/alpine/_manifests/tags/latest/current/link");
    std::fs::write(&invalid, b"sha256:XYZ").unwrap();
    expect.push((ProblemKind::InvalidLink, invalid));
    // A layer link to a blob that is gone.
    let ghost = Digest::of(regsweep::registry::digest::Algorithm::Sha256, b"ghost");
    let ghost_link = t.layer_link("team/app", &ghost);
    expect.push((ProblemKind::LinkToMissingBlob, ghost_link));
    // A missing live manifest; an unparseable one.
    let cache = current(root, "team/app/cache", "buildcache");
    std::fs::remove_file(blob_data(&cache)).unwrap();
    expect.push((ProblemKind::MissingManifest, blob_data(&cache)));
    expect.push((ProblemKind::BlobWithoutData, t.blob_path(&cache)));
    std::fs::write(blob_data(&alpine), b"{ not json").unwrap();
    expect.push((ProblemKind::UnparseableManifest, blob_data(&alpine)));
    expect.push((ProblemKind::DigestMismatch, blob_data(&alpine)));
    // A layer that is gone; a config whose size differs from its descriptor.
    std::fs::remove_dir_all(t.blob_path(layer)).unwrap();
    expect.push((ProblemKind::MissingBlob, blob_data(layer)));
    let mut bytes = std::fs::read(blob_data(config)).unwrap();
    bytes.push(b' ');
    std::fs::write(blob_data(config), bytes).unwrap();
    expect.push((ProblemKind::SizeMismatch, blob_data(config)));
    expect.push((ProblemKind::DigestMismatch, blob_data(config)));
    // The repository no longer links a blob its image needs.
    let config_link_dir = v2.join(format!(
        "repositories/team/app/_layers/sha256/{}",
        config.hex()
    ));
    std::fs::remove_dir_all(&config_link_dir).unwrap();
    expect.push((ProblemKind::MissingLayerLink, config_link_dir.join("link")));

    let before = snapshot(root);
    let (r, code) = check_json(root, &["--verify"]);
    assert!(before == snapshot(root), "check wrote to the tree");
    assert_eq!(code, 1);
    let found: BTreeSet<(ProblemKind, String)> = r
        .problems
        .iter()
        .map(|p| (p.kind, p.path.clone()))
        .collect();
    for (kind, path) in &expect {
        let path = path.display().to_string();
        assert!(
            found.contains(&(*kind, path.clone())),
            "{kind:?} at {path} not reported; got {:#?}",
            found.difference(&baseline).collect::<Vec<_>>()
        );
    }
    // Without --verify, no hashing and so no digest mismatches.
    let (r, _) = check_json(root, &[]);
    assert!(r
        .problems
        .iter()
        .all(|p| p.kind != ProblemKind::DigestMismatch));
    assert_eq!(r.summary.verified_blobs, 0);
}

/// Render the HTML report in a real browser (headless chromium from Debian's packages;
/// scripts/test installs it): the page must load and draw. A screenshot of the report is
/// compared with one of an empty page of the same size: charts and a table make it much
/// larger (a PNG of a blank page compresses to almost nothing).
#[test]
fn the_html_report_renders_in_a_headless_browser() {
    let found = std::process::Command::new("chromium")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        if std::env::var_os("CI").is_some() {
            panic!("chromium is not installed and CI is set: run scripts/test, which installs it");
        }
        eprintln!("skipping: chromium is not installed (scripts/test installs it)");
        return;
    }
    let dir = aged_copy("registry");
    let out = tempfile::tempdir().unwrap();
    let html = out.path().join("report.html");
    let blank = out.path().join("blank.html");
    std::fs::write(&blank, "<!DOCTYPE html><html><body></body></html>").unwrap();
    let r = run(&[
        "report",
        "-q",
        "--html",
        html.to_str().unwrap(),
        dir.path().to_str().unwrap(),
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let shot = |page: &Path, png: &Path| {
        let status = std::process::Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--hide-scrollbars",
                "--window-size=1100,900",
            ])
            .arg(format!(
                "--user-data-dir={}",
                out.path().join("profile").display()
            ))
            .arg(format!("--screenshot={}", png.display()))
            .arg(format!("file://{}", page.display()))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "chromium failed on {}", page.display());
        let bytes = std::fs::read(png).unwrap();
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
        // Width and height from the IHDR chunk.
        let w = u32::from_be_bytes(bytes[16..20].try_into().unwrap());
        let h = u32::from_be_bytes(bytes[20..24].try_into().unwrap());
        (bytes.len(), w, h)
    };
    let (report_size, w, h) = shot(&html, &out.path().join("report.png"));
    let (blank_size, _, _) = shot(&blank, &out.path().join("blank.png"));
    assert_eq!((w, h), (1100, 900));
    assert!(
        report_size > 10 * blank_size && report_size > 20_000,
        "the report renders like an empty page: {report_size} bytes vs {blank_size}"
    );
}

//! End-to-end tests against the real thing: Debian's `docker-registry` (distribution 2.8)
//! started on 127.0.0.1, content pushed through its HTTP API and with skopeo, the regsweep
//! binary run on its storage, the server restarted, and everything a user would do checked:
//! `skopeo copy --all` of every live tag, every referenced blob downloaded with the right
//! digest, dead blobs gone, deleted images' layers 404 through their repository. And a
//! differential check against the reference collector on the same trees.
//!
//! Under `CI`, a missing peer fails these tests; elsewhere they are skipped with a message.

mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use regsweep::digest::{Algorithm, Digest};
use support::images::{self, bytes, push_image, push_index, push_referrer, Format, Pushed};
use support::registry::{server_available, Client, Registry};
use support::scenario;
use support::tree::{age_tree, blobs_on_disk, copy_tree, gc_json, v2};

fn skopeo_available() -> bool {
    let found = Command::new("skopeo")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found && std::env::var_os("CI").is_some() {
        panic!("skopeo is not installed and CI is set: run scripts/test, which installs it");
    }
    found
}

fn peers() -> bool {
    let ok = server_available() && skopeo_available();
    if !ok {
        eprintln!(
            "skipping: docker-registry or skopeo is not installed (scripts/test installs them)"
        );
    }
    ok
}

/// A permissive signature policy of our own, so the tests do not depend on /etc/containers.
fn policy(dir: &Path) -> std::path::PathBuf {
    let p = dir.join("policy.json");
    std::fs::write(&p, r#"{"default":[{"type":"insecureAcceptAnything"}]}"#).unwrap();
    p
}

/// `skopeo copy --all` a tag out of the registry; skopeo verifies every blob's digest. Returns
/// the digest of the top-level manifest it copied.
fn skopeo_pull_all(host: &str, repo: &str, tag: &str) -> Result<Digest, String> {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("image");
    let result = Command::new("skopeo")
        .arg("--policy")
        .arg(policy(dir.path()))
        .args([
            "copy",
            "--all",
            "--retry-times",
            "0",
            "--src-tls-verify=false",
        ])
        .arg(format!("docker://{host}/{repo}:{tag}"))
        .arg(format!("dir:{}", out.display()))
        .output()
        .expect("run skopeo");
    if !result.status.success() {
        return Err(String::from_utf8_lossy(&result.stderr).into_owned());
    }
    let manifest = std::fs::read(out.join("manifest.json")).map_err(|e| e.to_string())?;
    Ok(Digest::of(Algorithm::Sha256, &manifest))
}

/// Push an image to the registry from an OCI layout written here, with skopeo.
fn skopeo_push_layout(host: &str, repo: &str, tag: &str, seed: &str) {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    let blobs = layout.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let write = |content: &[u8]| {
        let d = Digest::of(Algorithm::Sha256, content);
        std::fs::write(blobs.join(d.hex()), content).unwrap();
        (d, content.len())
    };
    let (layer, layer_size) = write(&images::layer(seed));
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [layer.to_string()]},
    }))
    .unwrap();
    let (config, config_size) = write(&config);
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": images::OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config.to_string(), "size": config_size},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer.to_string(), "size": layer_size}],
    }))
    .unwrap();
    let (manifest, manifest_size) = write(&manifest);
    std::fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    std::fs::write(
        layout.join("index.json"),
        serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "manifests": [{"mediaType": images::OCI_MANIFEST, "digest": manifest.to_string(), "size": manifest_size,
                           "annotations": {"org.opencontainers.image.ref.name": tag}}],
        }))
        .unwrap(),
    )
    .unwrap();
    let out = Command::new("skopeo")
        .arg("--policy")
        .arg(policy(dir.path()))
        .args(["copy", "--retry-times", "0", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:{tag}", layout.display()))
        .arg(format!("docker://{host}/{repo}:{tag}"))
        .output()
        .expect("run skopeo");
    assert!(
        out.status.success(),
        "skopeo push: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Walk an image through the API: the manifest (by digest, checked), its children at any
/// depth, and every blob it references, each downloaded and hashed. Returns what it fetched.
fn verify_image(c: &Client, repo: &str, digest: &Digest) -> Result<BTreeSet<Digest>, String> {
    let mut fetched = BTreeSet::new();
    let (status, body) = c.get_manifest(repo, &digest.to_string());
    if status != 200 {
        return Err(format!("{repo}@{digest}: manifest answers {status}"));
    }
    if Digest::of(Algorithm::Sha256, &body) != *digest {
        return Err(format!(
            "{repo}@{digest}: manifest content does not match its digest"
        ));
    }
    fetched.insert(digest.clone());
    let m: serde_json::Value = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
    for child in m["manifests"].as_array().into_iter().flatten() {
        let d: Digest = child["digest"].as_str().unwrap().parse().unwrap();
        fetched.extend(verify_image(c, repo, &d)?);
    }
    let blobs = m["config"]
        .as_object()
        .into_iter()
        .map(|c| &c["digest"])
        .chain(
            m["layers"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|l| &l["digest"]),
        );
    for b in blobs {
        let d: Digest = b.as_str().unwrap().parse().unwrap();
        let (status, body) = c.get_blob(repo, &d);
        if status != 200 {
            return Err(format!("{repo}: blob {d} answers {status}"));
        }
        if Digest::of(Algorithm::Sha256, &body) != d {
            return Err(format!(
                "{repo}: blob {d} content does not match its digest"
            ));
        }
        fetched.insert(d);
    }
    Ok(fetched)
}

/// Everything a user would check after a sweep of the standard scenario.
fn check_scenario_after_gc(server: &Registry, e: &scenario::Expect, untagged: bool) {
    let c = server.client();
    for (repo, tag, image) in &e.live_tags {
        // skopeo 1.9 refuses an index whose child is an index ("Unexpectedly received a
        // manifest list instead of a manifest for a single image"); those are walked through
        // the API only.
        let nested = image.children.iter().any(|c| !c.children.is_empty());
        if !nested {
            let got = skopeo_pull_all(&server.host(), repo, tag)
                .unwrap_or_else(|err| panic!("{repo}:{tag} does not pull after gc: {err}"));
            assert_eq!(got, image.digest, "{repo}:{tag}");
        }
        verify_image(&c, repo, &image.digest).unwrap_or_else(|err| panic!("{err}"));
    }
    for image in &e.live_untagged {
        verify_image(&c, &image.repo, &image.digest).unwrap_or_else(|err| panic!("{err}"));
    }
    for (repo, blob, other) in &e.unlinked {
        assert_eq!(
            c.get_blob(repo, blob).0,
            404,
            "{blob} still served through {repo}"
        );
        assert_eq!(c.get_blob(other, blob).0, 200, "{blob} lost from {other}");
    }
    if untagged {
        for (repo, digest, _) in &e.manifests_untagged {
            assert_eq!(c.get_manifest(repo, &digest.to_string()).0, 404);
        }
    }
}

#[test]
fn gc_keeps_every_live_image_pullable_in_both_modes() {
    if !peers() {
        return;
    }
    for untagged in [false, true] {
        let root = tempfile::tempdir().unwrap();
        let mut server = Registry::start(root.path());
        let mut e = scenario::standard(&server.client());
        skopeo_push_layout(&server.host(), "tools/skopeo-pushed", "v1", "skopeo layer");
        let (status, body) = server.client().get_manifest("tools/skopeo-pushed", "v1");
        assert_eq!(status, 200);
        let pushed = Pushed {
            repo: "tools/skopeo-pushed".into(),
            digest: Digest::of(Algorithm::Sha256, &body),
            media_type: images::OCI_MANIFEST,
            size: body.len(),
            blobs: vec![],
            children: vec![],
        };
        e.live_tags
            .push(("tools/skopeo-pushed".into(), "v1".into(), pushed));
        server.stop();

        age_tree(root.path(), Duration::from_secs(86400));
        let before = blobs_on_disk(root.path());
        let mode: &[&str] = if untagged { &["-m"] } else { &[] };
        let (report, run) = gc_json(root.path(), mode);
        assert_eq!(run.code, 0, "{}", run.stderr);
        let after = blobs_on_disk(root.path());
        let gone: BTreeSet<_> = before.difference(&after).cloned().collect();
        assert_eq!(gone, e.dead_blobs(untagged), "untagged={untagged}");
        assert_eq!(report.summary.deleted_blobs, gone.len());
        let links: BTreeSet<_> = report
            .deleted
            .layer_links
            .iter()
            .map(|l| (l.repository.clone(), l.digest.clone()))
            .collect();
        assert_eq!(links, e.dead_links(untagged));

        server.restart();
        check_scenario_after_gc(&server, &e, untagged);
    }
}

/// Parse the reference collector's dry run: the blobs and the manifests it calls eligible for
/// deletion.
fn reference_dry_run(root: &Path, untagged: bool) -> (BTreeSet<Digest>, BTreeSet<Digest>) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {}\n",
            root.display()
        ),
    )
    .unwrap();
    let mut cmd = Command::new(support::registry::SERVER);
    cmd.args(["garbage-collect", "--dry-run"]);
    if untagged {
        cmd.arg("--delete-untagged");
    }
    let out = cmd
        .arg(&config)
        .output()
        .expect("run the reference collector");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "reference collector failed: {text}");
    let eligible = |what: &str| {
        text.lines()
            .filter_map(|l| l.split(what).nth(1))
            .map(|d| d.trim().parse().unwrap())
            .collect()
    };
    (
        eligible("blob eligible for deletion: "),
        eligible("manifest eligible for deletion: "),
    )
}

fn regsweep_dry_run(root: &Path, untagged: bool) -> BTreeSet<Digest> {
    let mut args = vec!["-d", "--min-age", "0"];
    if untagged {
        args.push("-m");
    }
    let (report, run) = gc_json(root, &args);
    assert_eq!(run.code, 0, "{}", run.stderr);
    report.deleted.blobs.into_iter().map(|b| b.digest).collect()
}

/// Fill a registry through the API from a seeded random sequence of pushes, indexes,
/// referrers, retags, mounts, orphan uploads and deletions.
fn random_registry(c: &Client, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let repos = ["r0", "team/r1", "x/y/r2"];
    let mut pushed: Vec<Vec<Pushed>> = vec![Vec::new(); repos.len()];
    let mut deleted: BTreeSet<Digest> = BTreeSet::new();
    for step in 0..30 {
        let r = rng.gen_range(0..repos.len());
        let repo = repos[r];
        let tag = (rng.gen_bool(0.6)).then(|| format!("t{}", rng.gen_range(0..6)));
        match rng.gen_range(0..12) {
            0..=4 => {
                let n = rng.gen_range(1..4);
                let seeds: Vec<String> = (0..n)
                    .map(|_| format!("s{seed}-l{}", rng.gen_range(0..10)))
                    .collect();
                let seeds: Vec<&str> = seeds.iter().map(String::as_str).collect();
                let format = if rng.gen_bool(0.5) {
                    Format::Oci
                } else {
                    Format::Docker
                };
                let arch = ["amd64", "arm64"][rng.gen_range(0..2)];
                let p = push_image(c, repo, tag.as_deref(), format, arch, &seeds);
                pushed[r].push(p);
            }
            5..=6 => {
                let candidates: Vec<&Pushed> = pushed[r]
                    .iter()
                    .filter(|p| p.children.is_empty() && !deleted.contains(&p.digest))
                    .collect();
                if candidates.is_empty() {
                    continue;
                }
                let children: Vec<&Pushed> = (0..rng.gen_range(1..3))
                    .map(|_| candidates[rng.gen_range(0..candidates.len())])
                    .collect::<Vec<_>>();
                let format = if children
                    .iter()
                    .all(|c| c.media_type == images::DOCKER_MANIFEST)
                    && rng.gen_bool(0.5)
                {
                    Format::Docker
                } else {
                    Format::Oci
                };
                let p = push_index(c, repo, tag.as_deref(), format, &children);
                pushed[r].push(p);
            }
            7 => {
                let live: Vec<&Pushed> = pushed[r]
                    .iter()
                    .filter(|p| !deleted.contains(&p.digest))
                    .collect();
                if let Some(subject) = live.get(rng.gen_range(0..live.len().max(1))) {
                    let p = push_referrer(c, repo, subject, &format!("{seed}-{step}"));
                    pushed[r].push(p);
                }
            }
            8..=9 => {
                let live: Vec<Digest> = pushed[r]
                    .iter()
                    .map(|p| p.digest.clone())
                    .filter(|d| !deleted.contains(d))
                    .collect();
                if !live.is_empty() {
                    let d = live[rng.gen_range(0..live.len())].clone();
                    c.delete_manifest(repo, &d);
                    deleted.insert(d);
                }
            }
            10 => {
                let from = rng.gen_range(0..repos.len());
                if let Some(p) = pushed[from].iter().find(|p| !p.blobs.is_empty()) {
                    c.mount_blob(repo, &p.blobs[p.blobs.len() - 1], repos[from]);
                }
            }
            _ => {
                c.push_blob(repo, &bytes(&format!("orphan {seed} {step}"), 300));
            }
        }
    }
}

#[test]
fn dry_run_matches_the_reference_collector_without_delete_untagged() {
    if !peers() {
        return;
    }
    // The standard scenario, then registries filled from seeded random sequences.
    for seed in [None, Some(1), Some(2), Some(3), Some(4)] {
        let root = tempfile::tempdir().unwrap();
        let server = Registry::start(root.path());
        match seed {
            None => {
                scenario::standard(&server.client());
            }
            Some(s) => random_registry(&server.client(), s),
        }
        drop(server);
        let ours = regsweep_dry_run(root.path(), false);
        let (reference, _) = reference_dry_run(root.path(), false);
        assert_eq!(ours, reference, "seed {seed:?}");
        if seed.is_none() {
            assert!(!ours.is_empty());
        }
    }
}

#[test]
fn with_delete_untagged_regsweep_keeps_what_the_reference_breaks() {
    if !peers() {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let server = Registry::start(root.path());
    let e = scenario::standard(&server.client());
    drop(server);

    // The reference's -m would delete blobs that live images need; regsweep's would not.
    let (reference, reference_manifests) = reference_dry_run(root.path(), true);
    let ours = regsweep_dry_run(root.path(), true);
    assert_eq!(ours, e.dead_blobs(true));
    assert!(
        ours.is_subset(&reference),
        "regsweep deletes something the reference keeps"
    );
    // The reference deletes the children of a live manifest list (their revisions) and their
    // own layers; regsweep keeps both.
    let (_, _, multi) = e.live_tags.iter().find(|t| t.1 == "multi").unwrap();
    for child in &multi.children {
        assert!(reference_manifests.contains(&child.digest));
        let own_layer = child.blobs.last().unwrap();
        assert!(
            reference.contains(own_layer),
            "the reference would delete {own_layer}"
        );
        assert!(!ours.contains(own_layer));
    }
    // And the SBOM of a live image.
    let sbom = &e.live_untagged[0];
    assert!(reference_manifests.contains(&sbom.digest));
    assert!(reference.contains(&sbom.blobs[1]) && !ours.contains(&sbom.blobs[1]));

    // Run the reference for real on a copy: the multi-arch image no longer pulls there.
    let broken = tempfile::tempdir().unwrap();
    copy_tree(root.path(), broken.path());
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {}\n",
            broken.path().display()
        ),
    )
    .unwrap();
    let out = Command::new(support::registry::SERVER)
        .args(["garbage-collect", "--delete-untagged"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(out.status.success());
    let server = Registry::start(broken.path());
    assert!(skopeo_pull_all(&server.host(), "a/b/c/d", "multi").is_err());
    assert_eq!(
        server
            .client()
            .get_manifest("team/app", &sbom.digest.to_string())
            .0,
        404
    );
    drop(server);

    // regsweep for real on the original: it pulls.
    age_tree(root.path(), Duration::from_secs(86400));
    let (_, run) = gc_json(root.path(), &["-m"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let server = Registry::start(root.path());
    skopeo_pull_all(&server.host(), "a/b/c/d", "multi").expect("multi pulls after regsweep -m");
    verify_image(&server.client(), "team/app", &sbom.digest).unwrap();
    assert!(!v2(root.path())
        .join("repositories/library/alpine/_manifests/revisions/sha256")
        .join(
            e.manifests_untagged
                .iter()
                .find(|m| m.0 == "library/alpine")
                .unwrap()
                .1
                .hex()
        )
        .exists());
}

#[test]
fn synthetic_registries_are_read_alike_by_the_reference() {
    // The benchmark generator writes the registry's layout by hand; the reference collector
    // must find exactly the garbage regsweep finds in it, so the benchmarks measure the same
    // job, and every optimisation keeps the same answer.
    if !peers() {
        return;
    }
    for seed in [1, 2] {
        let root = tempfile::tempdir().unwrap();
        regsweep::synth::generate(root.path(), regsweep::synth::SMALL, seed).unwrap();
        let ours = regsweep_dry_run(root.path(), false);
        let (reference, _) = reference_dry_run(root.path(), false);
        assert!(!ours.is_empty());
        assert_eq!(ours, reference, "seed {seed}");
    }
}

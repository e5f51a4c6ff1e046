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
use regsweep::registry::digest::{Algorithm, Digest};
use support::images::{self, bytes, push_image, push_index, push_referrer, Format, Pushed};
use support::pull::{
    check_scenario_after_gc, fs_config, peers, reference_dry_run, skopeo_pull_all,
    skopeo_push_layout, verify_image,
};
use support::registry::{Client, Registry};
use support::scenario;
use support::tree::{age_tree, blobs_on_disk, copy_tree, gc_json, v2};

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

fn regsweep_dry_run(root: &Path, untagged: bool) -> BTreeSet<Digest> {
    regsweep_dry_run_with_unlinked(root, untagged).0
}

/// The dry run's blobs, and the blobs it keeps only because a live index or tag still names a
/// manifest whose revision link was deleted through the API (what the reference collector
/// sweeps, though writing the link back would make the image pull again).
fn regsweep_dry_run_with_unlinked(
    root: &Path,
    untagged: bool,
) -> (BTreeSet<Digest>, BTreeSet<Digest>) {
    // Written a moment ago: what was written within the slack before a run began is young to
    // it whatever --min-age says, so make it old (the reference reads no times).
    age_tree(root, Duration::from_secs(86400));
    let mut args = vec!["-d", "--min-age", "0"];
    if untagged {
        args.push("-m");
    }
    let (report, run) = gc_json(root, &args);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let mut unlinked = BTreeSet::new();
    for w in report
        .warnings
        .iter()
        .filter(|w| w.message.contains("no revision link"))
    {
        let hex = w.path.rsplit('/').nth(1).unwrap();
        let d: Digest = format!("sha256:{hex}").parse().unwrap();
        let data = root.join(format!(
            "docker/registry/v2/blobs/sha256/{}/{hex}/data",
            &hex[..2]
        ));
        let m =
            regsweep::registry::manifest::Manifest::parse(&std::fs::read(data).unwrap()).unwrap();
        unlinked.insert(d);
        unlinked.extend(m.blobs.iter().map(|b| b.digest.clone()));
    }
    (
        report.deleted.blobs.into_iter().map(|b| b.digest).collect(),
        unlinked,
    )
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
        let (ours, unlinked) = regsweep_dry_run_with_unlinked(root.path(), false);
        let (reference, _) = reference_dry_run(root.path(), false);
        // The same, but for what a manifest named without its revision link references:
        // the reference sweeps it, regsweep keeps it while the manifest's content exists.
        let reference: BTreeSet<Digest> = reference.difference(&unlinked).cloned().collect();
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
    let config = fs_config(dir.path(), broken.path());
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

//! Pulling as a user would, for the end-to-end suites: skopeo copies of every tag, images
//! walked through the API with every blob hashed, and the reference collector's dry run.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use regsweep::registry::digest::{Algorithm, Digest};

use super::images;
use super::registry::{server_available, Client, Registry};
use super::scenario;

pub fn skopeo_available() -> bool {
    let found = Command::new("skopeo")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found && std::env::var_os("CI").is_some() {
        panic!("skopeo is not installed and CI is set: run scripts/test, which installs it");
    }
    found
}

pub fn peers() -> bool {
    let ok = server_available() && skopeo_available();
    if !ok {
        eprintln!(
            "skipping: docker-registry or skopeo is not installed (scripts/test installs them)"
        );
    }
    ok
}

/// A permissive signature policy of our own, so the tests do not depend on /etc/containers.
pub fn policy(dir: &Path) -> std::path::PathBuf {
    let p = dir.join("policy.json");
    std::fs::write(&p, r#"{"default":[{"type":"insecureAcceptAnything"}]}"#).unwrap();
    p
}

/// `skopeo copy --all` a tag out of the registry; skopeo verifies every blob's digest. Returns
/// the digest of the top-level manifest it copied.
pub fn skopeo_pull_all(host: &str, repo: &str, tag: &str) -> Result<Digest, String> {
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
pub fn skopeo_push_layout(host: &str, repo: &str, tag: &str, seed: &str) {
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
pub fn verify_image(c: &Client, repo: &str, digest: &Digest) -> Result<BTreeSet<Digest>, String> {
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
pub fn check_scenario_after_gc(server: &Registry, e: &scenario::Expect, untagged: bool) {
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

/// Parse the reference collector's dry run on a registry config: the blobs and the manifests
/// it calls eligible for deletion.
pub fn reference_dry_run_config(
    config: &Path,
    untagged: bool,
) -> (BTreeSet<Digest>, BTreeSet<Digest>) {
    let mut cmd = Command::new(super::registry::SERVER);
    cmd.args(["garbage-collect", "--dry-run"]);
    if untagged {
        cmd.arg("--delete-untagged");
    }
    let out = cmd
        .arg(config)
        .env_remove("AWS_CA_BUNDLE")
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

/// A registry config for the filesystem storage at `root`, written into `dir`.
pub fn fs_config(dir: &Path, root: &Path) -> std::path::PathBuf {
    let config = dir.join("config.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {}\n",
            root.display()
        ),
    )
    .unwrap();
    config
}

/// The reference collector's dry run on a filesystem storage root.
pub fn reference_dry_run(root: &Path, untagged: bool) -> (BTreeSet<Digest>, BTreeSet<Digest>) {
    let dir = tempfile::tempdir().unwrap();
    reference_dry_run_config(&fs_config(dir.path(), root), untagged)
}

/// Every tag of every repository pulls: manifest by tag, then everything it references.
pub fn every_tag_pulls(c: &Client, cell: &str) -> BTreeSet<Digest> {
    let mut fetched = BTreeSet::new();
    for repo in c.catalog() {
        for tag in c.tags(&repo) {
            let (status, body) = c.get_manifest(&repo, &tag);
            assert_eq!(status, 200, "{cell}: {repo}:{tag} does not pull");
            let d = Digest::of(Algorithm::Sha256, &body);
            fetched.extend(
                verify_image(c, &repo, &d).unwrap_or_else(|e| panic!("{cell}: {repo}:{tag}: {e}")),
            );
        }
    }
    fetched
}

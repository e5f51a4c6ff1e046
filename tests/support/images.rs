//! Build images, indexes and referrers from deterministic bytes and push them through a real
//! registry's HTTP API.
#![allow(dead_code)]

use regsweep::registry::digest::{Algorithm, Digest};
use serde_json::{json, Value};

use super::registry::Client;
use std::time::Duration;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const EMPTY_CONFIG: &str = "application/vnd.oci.empty.v1+json";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Oci,
    Docker,
}

/// A manifest pushed to a repository, with everything it references.
#[derive(Debug, Clone)]
pub struct Pushed {
    pub repo: String,
    pub digest: Digest,
    pub media_type: &'static str,
    pub size: usize,
    /// Config and layers (empty for indexes).
    pub blobs: Vec<Digest>,
    pub children: Vec<Pushed>,
}

impl Pushed {
    /// Every manifest digest of this image: itself and its children at any depth.
    pub fn manifests(&self) -> Vec<Digest> {
        let mut out = vec![self.digest.clone()];
        for c in &self.children {
            out.extend(c.manifests());
        }
        out
    }

    /// Every blob of this image at any depth (not the manifests).
    pub fn all_blobs(&self) -> Vec<Digest> {
        let mut out = self.blobs.clone();
        for c in &self.children {
            out.extend(c.all_blobs());
        }
        out
    }
}

/// Deterministic pseudo-random bytes for a seed: layers that are distinct unless their seeds
/// are equal, so sharing is explicit.
pub fn bytes(seed: &str, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 32);
    let mut block = Digest::of(Algorithm::Sha256, seed.as_bytes());
    while out.len() < len {
        out.extend_from_slice(block.bytes());
        block = Digest::of(Algorithm::Sha256, block.bytes());
    }
    out.truncate(len);
    out
}

pub fn layer(seed: &str) -> Vec<u8> {
    let len = 200 + (Digest::of(Algorithm::Sha256, seed.as_bytes()).bytes()[0] as usize) * 4;
    bytes(&format!("layer:{seed}"), len)
}

fn descriptor(media_type: &str, digest: &Digest, size: usize) -> Value {
    json!({"mediaType": media_type, "digest": digest.to_string(), "size": size})
}

fn platform(arch: &str) -> Value {
    json!({"architecture": arch, "os": "linux"})
}

/// Push an image (config + layers) and its manifest, tagged when `tag` is given.
pub fn push_image(
    c: &Client,
    repo: &str,
    tag: Option<&str>,
    format: Format,
    arch: &str,
    layer_seeds: &[&str],
) -> Pushed {
    let (config_type, layer_type, manifest_type) = match format {
        Format::Oci => (
            "application/vnd.oci.image.config.v1+json",
            "application/vnd.oci.image.layer.v1.tar+gzip",
            OCI_MANIFEST,
        ),
        Format::Docker => (
            "application/vnd.docker.container.image.v1+json",
            "application/vnd.docker.image.rootfs.diff.tar.gzip",
            DOCKER_MANIFEST,
        ),
    };
    let mut layers = Vec::new();
    let mut blobs = Vec::new();
    for seed in layer_seeds {
        let content = layer(seed);
        let d = c.push_blob(repo, &content);
        layers.push(descriptor(layer_type, &d, content.len()));
        blobs.push(d);
    }
    let config = serde_json::to_vec(&json!({
        "architecture": arch,
        "os": "linux",
        "config": {"Labels": {"regsweep.seed": layer_seeds.join(",")}},
        "rootfs": {"type": "layers", "diff_ids": []},
    }))
    .unwrap();
    let config_digest = c.push_blob(repo, &config);
    blobs.insert(0, config_digest.clone());
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": manifest_type,
        "config": descriptor(config_type, &config_digest, config.len()),
        "layers": layers,
    }))
    .unwrap();
    let digest = c.put_manifest(repo, tag.unwrap_or(""), manifest_type, &manifest);
    Pushed {
        repo: repo.to_string(),
        digest,
        media_type: manifest_type,
        size: manifest.len(),
        blobs,
        children: vec![],
    }
}

/// Push an index (OCI) or manifest list (Docker) over already-pushed children.
pub fn push_index(
    c: &Client,
    repo: &str,
    tag: Option<&str>,
    format: Format,
    children: &[&Pushed],
) -> Pushed {
    let media_type = match format {
        Format::Oci => OCI_INDEX,
        Format::Docker => DOCKER_LIST,
    };
    let archs = ["amd64", "arm64", "ppc64le", "s390x", "riscv64"];
    let manifests: Vec<Value> = children
        .iter()
        .enumerate()
        .map(|(i, child)| {
            let mut d = descriptor(child.media_type, &child.digest, child.size);
            d["platform"] = platform(archs[i % archs.len()]);
            d
        })
        .collect();
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": media_type,
        "manifests": manifests,
    }))
    .unwrap();
    let digest = c.put_manifest(repo, tag.unwrap_or(""), media_type, &manifest);
    Pushed {
        repo: repo.to_string(),
        digest,
        media_type,
        size: manifest.len(),
        blobs: vec![],
        children: children.iter().map(|c| (*c).clone()).collect(),
    }
}

/// Push an untagged referrer (an SBOM or signature: an OCI manifest with `subject`).
pub fn push_referrer(c: &Client, repo: &str, subject: &Pushed, seed: &str) -> Pushed {
    let empty = b"{}";
    let config_digest = c.push_blob(repo, empty);
    let payload = bytes(&format!("referrer:{seed}"), 300);
    let payload_digest = c.push_blob(repo, &payload);
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": "application/vnd.example.sbom.v1+json",
        "config": descriptor(EMPTY_CONFIG, &config_digest, empty.len()),
        "layers": [descriptor("application/vnd.example.sbom.v1+json", &payload_digest, payload.len())],
        "subject": descriptor(subject.media_type, &subject.digest, subject.size),
        "annotations": {"org.example.seed": seed},
    }))
    .unwrap();
    let digest = c.put_manifest(repo, "", OCI_MANIFEST, &manifest);
    Pushed {
        repo: repo.to_string(),
        digest,
        media_type: OCI_MANIFEST,
        size: manifest.len(),
        blobs: vec![config_digest, payload_digest],
        children: vec![],
    }
}

/// Push an image like `push_image` does, but retry when the registry refuses the manifest
/// (a blob it needs was moved to the trash between upload and manifest): what a client does.
pub fn push_with_retry(c: &Client, repo: &str, seeds: &[&str]) -> (Digest, Vec<Digest>) {
    push_as_a_client(c, repo, None, seeds)
}

/// Push as docker or skopeo do: each blob the registry says it has (HEAD, or a mount from
/// `from`) is not uploaded; a refused manifest is pushed again with every blob uploaded.
pub fn push_as_a_client(
    c: &Client,
    repo: &str,
    from: Option<&str>,
    seeds: &[&str],
) -> (Digest, Vec<Digest>) {
    let mut trust = true;
    let put = |content: &[u8], trust: bool| -> Digest {
        let d = Digest::of(Algorithm::Sha256, content);
        let there = trust
            && (from.is_some_and(|f| c.mount_blob(repo, &d, f)) || c.head_blob(repo, &d) == 200);
        if there {
            d
        } else {
            c.push_blob(repo, content)
        }
    };
    for _ in 0..20 {
        let mut blobs = Vec::new();
        let mut layers = Vec::new();
        for seed in seeds {
            let content = layer(seed);
            let d = put(&content, trust);
            layers.push(serde_json::json!({
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": d.to_string(), "size": content.len()}));
            blobs.push(d);
        }
        let config = serde_json::to_vec(&serde_json::json!({
            "architecture": "amd64", "os": "linux",
            "config": {"Labels": {"regsweep.seed": seeds.join(",")}},
            "rootfs": {"type": "layers", "diff_ids": []},
        }))
        .unwrap();
        let config_digest = put(&config, trust);
        blobs.insert(0, config_digest.clone());
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": config_digest.to_string(), "size": config.len()},
            "layers": layers,
        }))
        .unwrap();
        let (status, body) = c.try_put_manifest(repo, "latest", OCI_MANIFEST, &manifest);
        match status {
            201 => return (Digest::of(Algorithm::Sha256, &manifest), blobs),
            400 => {
                eprintln!(
                    "push to {repo} refused, retrying: {}",
                    String::from_utf8_lossy(&body)
                );
                trust = false;
                std::thread::sleep(Duration::from_millis(20));
            }
            other => panic!(
                "PUT manifest {repo}: {other} {}",
                String::from_utf8_lossy(&body)
            ),
        }
    }
    panic!("push to {repo} kept failing");
}

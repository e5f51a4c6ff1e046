//! Property tests on random registries: nothing reachable is ever deleted, everything
//! unreachable and old enough is, and a second run deletes nothing.
//!
//! Each case writes a random registry to disk (images over a shared blob pool, indexes over
//! earlier manifests, referrers, tags, deleted revisions, orphan layer links, young blobs),
//! computes the live set with a deliberately naive model written from GC-SEMANTICS.md, and
//! runs the real binary.

mod support;

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, SystemTime};

use proptest::prelude::*;
use regsweep::registry::digest::Digest;
use serde_json::json;
use support::tree::{age_tree, blobs_on_disk, gc_json, v2, TreeBuilder};

#[derive(Debug, Clone)]
enum Kind {
    /// Blob pool indexes (the first is the config), and maybe the subject (an earlier manifest).
    Image { blobs: Vec<u8>, subject: Option<u8> },
    /// Children: earlier manifests of the same repository.
    Index { children: Vec<u8> },
}

#[derive(Debug, Clone)]
struct ManifestSpec {
    kind: Kind,
    tagged: bool,
    deleted: bool,
}

#[derive(Debug, Clone)]
struct RepoSpec {
    manifests: Vec<ManifestSpec>,
    orphan_links: Vec<u8>,
}

#[derive(Debug, Clone)]
struct Spec {
    pool: u8,
    young: Vec<bool>,
    repos: Vec<RepoSpec>,
    delete_untagged: bool,
}

fn manifest_spec() -> impl Strategy<Value = ManifestSpec> {
    let image = (
        prop::collection::vec(any::<u8>(), 1..4),
        prop::option::of(any::<u8>()),
    )
        .prop_map(|(blobs, subject)| Kind::Image { blobs, subject });
    let index =
        prop::collection::vec(any::<u8>(), 1..4).prop_map(|children| Kind::Index { children });
    (prop_oneof![3 => image, 1 => index], any::<bool>(), 0..4u8).prop_map(|(kind, tagged, d)| {
        ManifestSpec {
            kind,
            tagged,
            // The registry untags on delete, so a tagged manifest is never a deleted one.
            deleted: !tagged && d == 0,
        }
    })
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        2..16u8,
        prop::collection::vec(any::<bool>(), 16),
        prop::collection::vec(
            (
                prop::collection::vec(manifest_spec(), 0..7),
                prop::collection::vec(any::<u8>(), 0..3),
            )
                .prop_map(|(manifests, orphan_links)| RepoSpec {
                    manifests,
                    orphan_links,
                }),
            1..4,
        ),
        any::<bool>(),
    )
        .prop_map(|(pool, young, repos, delete_untagged)| Spec {
            pool,
            young,
            repos,
            delete_untagged,
        })
}

/// (digest, blobs, children, subject) of one manifest in the model.
type Node = (Digest, Vec<Digest>, Vec<Digest>, Option<Digest>);

struct Built {
    live: BTreeSet<Digest>,
    young: BTreeSet<Digest>,
    all: BTreeSet<Digest>,
}

/// Write the registry and compute, independently of regsweep, which blobs are live.
fn build(spec: &Spec, root: &std::path::Path) -> Built {
    let t = TreeBuilder::new(root);
    let pool: Vec<Digest> = (0..spec.pool)
        .map(|i| t.blob(format!("pool blob {i}").as_bytes()))
        .collect();
    let pick = |i: u8| pool[i as usize % pool.len()].clone();
    let mut live = BTreeSet::new();

    for (r, repo) in spec.repos.iter().enumerate() {
        let name = format!("repo{r}/x");
        // (digest, blobs, children, subject) of each manifest written to this repository
        let mut graph: Vec<Node> = Vec::new();
        let mut written: Vec<&ManifestSpec> = Vec::new();
        for (n, m) in repo.manifests.iter().enumerate() {
            let (bytes, blobs, children, subject) = match &m.kind {
                Kind::Image { blobs, subject } => {
                    let blobs: Vec<Digest> = blobs.iter().map(|&b| pick(b)).collect();
                    for b in &blobs {
                        t.layer_link(&name, b);
                    }
                    let subject = subject
                        .filter(|_| !graph.is_empty())
                        .map(|s| graph[s as usize % graph.len()].0.clone());
                    let mut j = json!({
                        "schemaVersion": 2,
                        "mediaType": "application/vnd.oci.image.manifest.v1+json",
                        "config": {"digest": blobs[0].to_string(), "size": 1},
                        "layers": blobs[1..].iter().map(|b| json!({"digest": b.to_string(), "size": 1})).collect::<Vec<_>>(),
                        "annotations": {"n": n.to_string()},
                    });
                    if let Some(s) = &subject {
                        j["subject"] = json!({"digest": s.to_string(), "size": 1});
                    }
                    (j, blobs, vec![], subject)
                }
                Kind::Index { children } => {
                    if graph.is_empty() {
                        continue;
                    }
                    let children: Vec<Digest> = children
                        .iter()
                        .map(|&c| graph[c as usize % graph.len()].0.clone())
                        .collect();
                    let j = json!({
                        "schemaVersion": 2,
                        "mediaType": "application/vnd.oci.image.index.v1+json",
                        "manifests": children.iter().map(|c| json!({"digest": c.to_string(), "size": 1})).collect::<Vec<_>>(),
                        "annotations": {"n": n.to_string()},
                    });
                    (j, vec![], children, None)
                }
            };
            let d = t.manifest(&name, &serde_json::to_vec(&bytes).unwrap());
            if m.tagged {
                t.tag(&name, &format!("t{n}"), &d);
            }
            graph.push((d, blobs, children, subject));
            written.push(m);
        }
        for &o in &repo.orphan_links {
            t.layer_link(&name, &pick(o));
        }
        // Deleting a manifest through the API removes its revision link (not the directory).
        let mut revisions = BTreeSet::new();
        let mut roots = Vec::new();
        for (m, (d, ..)) in written.iter().zip(&graph) {
            if m.deleted {
                let link = v2(root).join(format!(
                    "repositories/{name}/_manifests/revisions/sha256/{}/link",
                    d.hex()
                ));
                // The same content may have been pushed twice; only the survivors count.
                let _ = std::fs::remove_file(link);
            }
        }
        for (m, (d, ..)) in written.iter().zip(&graph) {
            let link = v2(root).join(format!(
                "repositories/{name}/_manifests/revisions/sha256/{}/link",
                d.hex()
            ));
            if link.exists() {
                revisions.insert(d.clone());
                if !spec.delete_untagged || m.tagged {
                    roots.push(d.clone());
                }
            }
        }

        // The model: a worklist over manifests of this repository.
        let by_digest: HashMap<&Digest, _> = graph.iter().map(|g| (&g.0, g)).collect();
        let mut seen = BTreeSet::new();
        while let Some(d) = roots.pop() {
            if !seen.insert(d.clone()) {
                continue;
            }
            live.insert(d.clone());
            // A manifest deleted from the repository but still listed by a live index is not
            // served now; writing its revision link back would serve it again, so while its
            // content exists (here it always does) everything it references stays.
            let (_, blobs, children, _) = by_digest[&d];
            live.extend(blobs.iter().cloned());
            roots.extend(children.iter().cloned());
            if spec.delete_untagged {
                for (r, _, _, subject) in &graph {
                    if subject.as_ref() == Some(&d) && revisions.contains(r) {
                        roots.push(r.clone());
                    }
                }
            }
        }
    }

    age_tree(root, Duration::from_secs(86400));
    let all = blobs_on_disk(root);
    let mut young = BTreeSet::new();
    for (i, d) in all.iter().enumerate() {
        if spec.young[i % spec.young.len()] {
            let data = t.blob_path(d).join("data");
            filetime::set_file_mtime(
                &data,
                filetime::FileTime::from_system_time(SystemTime::now()),
            )
            .unwrap();
            young.insert(d.clone());
        }
    }
    Built { live, young, all }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(48), ..ProptestConfig::default() })]

    #[test]
    fn nothing_reachable_is_deleted_and_everything_else_old_is(spec in spec()) {
        let dir = tempfile::tempdir().unwrap();
        let built = build(&spec, dir.path());
        let mode: &[&str] = if spec.delete_untagged { &["-m"] } else { &[] };

        let (report, run) = gc_json(dir.path(), mode);
        let storage = regsweep::storage::FsStorage::new(dir.path());
        let (repositories, _) = regsweep::gc::discover::repository_names(&storage);
        if repositories.is_empty() && !built.all.is_empty() {
            // Blobs and no repository: a storage that is not all there, refused whole.
            prop_assert_eq!(run.code, 1, "{}", run.stderr);
            prop_assert_eq!(blobs_on_disk(dir.path()), built.all.clone());
            return Ok(());
        }
        prop_assert_eq!(run.code, 0, "{}", run.stderr);
        let after = blobs_on_disk(dir.path());
        for d in &built.live {
            prop_assert!(after.contains(d), "live blob {} was deleted", d);
        }
        for d in &built.all {
            if !built.live.contains(d) && !built.young.contains(d) {
                prop_assert!(!after.contains(d), "dead old blob {} survived", d);
            }
            if built.young.contains(d) {
                prop_assert!(after.contains(d), "young blob {} was deleted", d);
            }
        }
        prop_assert_eq!(report.summary.deleted_blobs, built.all.len() - after.len());

        let (again, run) = gc_json(dir.path(), mode);
        prop_assert_eq!(run.code, 0, "{}", run.stderr);
        prop_assert_eq!(again.deleted, Default::default());
    }
}

//! Registry trees on disk for tests: copy a fixture, age it, snapshot it, write one by hand,
//! and run the regsweep binary on it.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, SystemTime};

use regsweep::gc::report::GcReport;
use regsweep::registry::digest::{Algorithm, Digest};

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
}

/// Copy a tree (files, directories and symbolic links as links).
pub fn copy_tree(src: &Path, dst: &Path) {
    for entry in walkdir::WalkDir::new(src) {
        let entry = entry.expect("walk fixture");
        let rel = entry.path().strip_prefix(src).unwrap();
        let to = dst.join(rel);
        let ft = entry.file_type();
        if ft.is_dir() {
            std::fs::create_dir_all(&to).unwrap();
        } else if ft.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(entry.path()).unwrap(), &to).unwrap();
        } else {
            std::fs::copy(entry.path(), &to).unwrap();
        }
    }
}

/// Set every file's and directory's modification time to `age` ago.
pub fn age_tree(root: &Path, age: Duration) {
    let when = filetime::FileTime::from_system_time(SystemTime::now() - age);
    for entry in walkdir::WalkDir::new(root).contents_first(true) {
        let entry = entry.unwrap();
        if !entry.file_type().is_symlink() {
            filetime::set_file_mtime(entry.path(), when).unwrap();
        }
    }
}

/// Make every upload below `root` look as if it began `age` ago: the time its `startedat`
/// holds (the collector dates uploads by it) and every file time in it, so that no test
/// depends on the day a fixture was made or the day the test runs.
pub fn age_uploads(root: &Path, age: Duration) {
    let then = humantime::format_rfc3339_seconds(SystemTime::now() - age).to_string();
    for entry in walkdir::WalkDir::new(root) {
        let entry = entry.unwrap();
        if entry.file_type().is_file() && entry.file_name() == "startedat" {
            std::fs::write(entry.path(), &then).unwrap();
            age_tree(entry.path().parent().unwrap(), age);
        }
    }
}

/// Enough repositories that a real run takes long enough to push (or mount) into the middle
/// of it.
pub const BUSY: regsweep::synth::Preset = regsweep::synth::Preset {
    name: "busy",
    repositories: 150,
    tags: 10,
    layers: 5,
};

/// A temporary copy of a fixture, aged a day so that the default --min-age does not protect it.
pub fn aged_copy(name: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_tree(&fixture(name), dir.path());
    age_tree(dir.path(), Duration::from_secs(86400));
    age_uploads(dir.path(), Duration::from_secs(86400));
    dir
}

/// Everything about a tree that a write could change: kind, size, content digest, mtime.
pub fn snapshot(root: &Path) -> BTreeMap<PathBuf, (String, u64, String, SystemTime)> {
    let mut out = BTreeMap::new();
    for entry in walkdir::WalkDir::new(root) {
        let entry = entry.unwrap();
        let meta = entry.path().symlink_metadata().unwrap();
        let kind = if meta.is_dir() {
            "dir"
        } else if meta.file_type().is_symlink() {
            "link"
        } else {
            "file"
        };
        let content = if meta.is_file() {
            Digest::of(Algorithm::Sha256, &std::fs::read(entry.path()).unwrap()).to_string()
        } else {
            String::new()
        };
        out.insert(
            entry.path().strip_prefix(root).unwrap().to_path_buf(),
            (
                kind.to_string(),
                meta.len(),
                content,
                meta.modified().unwrap(),
            ),
        );
    }
    out
}

pub fn v2(root: &Path) -> PathBuf {
    root.join("docker/registry/v2")
}

/// Blob digests with a `data` file on disk.
pub fn blobs_on_disk(root: &Path) -> BTreeSet<Digest> {
    let mut out = BTreeSet::new();
    for alg in ["sha256", "sha512"] {
        let dir = v2(root).join("blobs").join(alg);
        for entry in walkdir::WalkDir::new(&dir)
            .min_depth(2)
            .max_depth(2)
            .into_iter()
            .flatten()
        {
            if entry.path().join("data").is_file() {
                let hex = entry.file_name().to_str().unwrap();
                out.insert(format!("{alg}:{hex}").parse().unwrap());
            }
        }
    }
    out
}

pub fn regsweep() -> Command {
    Command::new(env!("CARGO_BIN_EXE_regsweep"))
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

pub fn run(args: &[&str]) -> Run {
    let out: Output = regsweep().args(args).output().expect("run regsweep");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Run `regsweep gc --json - ARGS ROOT` and parse the report.
pub fn gc_json(root: &Path, args: &[&str]) -> (GcReport, Run) {
    let root = root.to_str().unwrap().to_string();
    let mut all = vec!["gc", "--json", "-"];
    all.extend_from_slice(args);
    all.push(&root);
    let r = run(&all);
    let report: GcReport = serde_json::from_str(&r.stdout)
        .unwrap_or_else(|e| panic!("bad JSON ({e}): {}\nstderr: {}", r.stdout, r.stderr));
    (report, r)
}

/// Writes a registry tree by hand, the way the registry lays it out. For shapes the real
/// server will not produce (damage, schema 1, aliases) and for random graphs.
pub struct TreeBuilder {
    pub root: PathBuf,
}

impl TreeBuilder {
    pub fn new(root: &Path) -> TreeBuilder {
        std::fs::create_dir_all(v2(root)).unwrap();
        TreeBuilder {
            root: root.to_path_buf(),
        }
    }

    fn write(&self, rel: &str, content: &[u8]) -> PathBuf {
        let path = v2(&self.root).join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, content).unwrap();
        path
    }

    pub fn blob(&self, content: &[u8]) -> Digest {
        let d = Digest::of(Algorithm::Sha256, content);
        let hex = d.hex();
        self.write(&format!("blobs/sha256/{}/{hex}/data", &hex[..2]), content);
        d
    }

    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        let hex = d.hex();
        v2(&self.root).join(format!("blobs/{}/{}/{hex}", d.algorithm(), &hex[..2]))
    }

    pub fn revision(&self, repo: &str, d: &Digest) -> PathBuf {
        self.write(
            &format!(
                "repositories/{repo}/_manifests/revisions/{}/{}/link",
                d.algorithm(),
                d.hex()
            ),
            d.to_string().as_bytes(),
        )
    }

    pub fn tag(&self, repo: &str, tag: &str, d: &Digest) -> PathBuf {
        self.write(
            &format!(
                "repositories/{repo}/_manifests/tags/{tag}/index/{}/{}/link",
                d.algorithm(),
                d.hex()
            ),
            d.to_string().as_bytes(),
        );
        self.write(
            &format!("repositories/{repo}/_manifests/tags/{tag}/current/link"),
            d.to_string().as_bytes(),
        )
    }

    pub fn layer_link(&self, repo: &str, d: &Digest) -> PathBuf {
        self.write(
            &format!(
                "repositories/{repo}/_layers/{}/{}/link",
                d.algorithm(),
                d.hex()
            ),
            d.to_string().as_bytes(),
        )
    }

    /// Push an OCI image: blobs, layer links, manifest blob and revision. Returns its digest.
    pub fn image(&self, repo: &str, blobs: &[Digest], subject: Option<&Digest>) -> Digest {
        for b in blobs {
            self.layer_link(repo, b);
        }
        let (config, layers) = blobs.split_first().expect("an image needs a config");
        let mut m = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config.to_string(), "size": 1},
            "layers": layers.iter().map(|l| serde_json::json!({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": l.to_string(), "size": 1})).collect::<Vec<_>>(),
        });
        if let Some(s) = subject {
            m["subject"] = serde_json::json!({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": s.to_string(), "size": 1});
        }
        self.manifest(repo, &serde_json::to_vec(&m).unwrap())
    }

    pub fn index(&self, repo: &str, children: &[Digest]) -> Digest {
        let m = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": children.iter().map(|c| serde_json::json!({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": c.to_string(), "size": 1})).collect::<Vec<_>>(),
        });
        self.manifest(repo, &serde_json::to_vec(&m).unwrap())
    }

    /// Store manifest bytes as a blob and link them as a revision of `repo`.
    pub fn manifest(&self, repo: &str, bytes: &[u8]) -> Digest {
        let d = self.blob(bytes);
        self.revision(repo, &d);
        d
    }
}

fn tag_names(root: &Path, repo: &str) -> BTreeSet<String> {
    match std::fs::read_dir(v2(root).join(format!("repositories/{repo}/_manifests/tags"))) {
        Ok(rd) => rd
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect(),
        Err(_) => BTreeSet::new(),
    }
}

/// Every repository (a directory holding `_manifests`), by name.
pub fn repository_names(root: &Path) -> BTreeSet<String> {
    let base = v2(root).join("repositories");
    walkdir::WalkDir::new(&base)
        .into_iter()
        .flatten()
        .filter(|e| e.file_name() == "_manifests")
        .map(|e| {
            let p = e.path().parent().unwrap().strip_prefix(&base).unwrap();
            p.to_str().unwrap().to_string()
        })
        .collect()
}

/// Every tag left in the tree must still pull: its manifest, every child at any depth and
/// every blob they reference are on disk.
pub fn assert_every_tag_pulls(root: &Path) {
    let blobs = blobs_on_disk(root);
    for repo in repository_names(root) {
        for tag in tag_names(root, &repo) {
            let link = v2(root).join(format!(
                "repositories/{repo}/_manifests/tags/{tag}/current/link"
            ));
            let Ok(content) = std::fs::read(&link) else {
                continue;
            };
            let mut todo = vec![Digest::parse_link(&content).unwrap()];
            while let Some(d) = todo.pop() {
                assert!(blobs.contains(&d), "{repo}:{tag}: manifest {d} is gone");
                let hex = d.hex();
                let bytes =
                    std::fs::read(v2(root).join(format!("blobs/sha256/{}/{hex}/data", &hex[..2])))
                        .unwrap();
                let m = regsweep::registry::manifest::Manifest::parse(&bytes).unwrap();
                for b in m.blobs.iter().filter(|b| !b.foreign) {
                    assert!(
                        blobs.contains(&b.digest),
                        "{repo}:{tag}: blob {} is gone",
                        b.digest
                    );
                }
                todo.extend(m.children);
            }
        }
    }
}

/// Put a registry tree into a bucket, then wait out the collector's slack: whatever was written
/// within it before a run began is young to that run (`regsweep::gc::mark::SLACK`), and an
/// object's time cannot be set back as a file's can.
pub fn load_settled(
    client: &dyn regsweep::storage::bucket::Bucket,
    prefix: &str,
    root: &Path,
) -> std::io::Result<usize> {
    let n = regsweep::storage::object::load_tree(client, prefix, root)?;
    // Blob times are compared in whole seconds: a blob stamped in the cutoff's second is
    // young, so the wait is the slack plus one second.
    std::thread::sleep(regsweep::gc::mark::SLACK + Duration::from_millis(1200));
    Ok(n)
}

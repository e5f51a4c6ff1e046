//! `check`: find damage without changing anything.
//!
//! Reads what `gc` reads and more: every link file (sha256 layer links too), every manifest
//! revision, and the blob store's sizes; with `--verify`, the content of every blob, hashed in
//! parallel (large files through a memory map) and compared with its digest.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use sha2::Digest as _;

use crate::gc::discover::{self, BlobIndex, BlobState, MAX_LINK_BYTES};
use crate::progress::Ticker;
use crate::registry::digest::{Algorithm, Digest};
use crate::registry::layout;
use crate::registry::manifest::{Manifest, MAX_MANIFEST_BYTES};
use crate::storage::{Kind, Storage};
use crate::units::bytes;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    EmptyLink,
    InvalidLink,
    PaddedLink,
    LinkToMissingBlob,
    MissingManifest,
    UnlinkedChild,
    /// A tag names a manifest that has no revision link in its repository.
    UnlinkedTag,
    UnreadableManifest,
    UnparseableManifest,
    MissingBlob,
    MissingLayerLink,
    SizeMismatch,
    BlobWithoutData,
    StrangeBlob,
    StaleUpload,
    DigestMismatch,
    Unreadable,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct CheckProblem {
    pub kind: ProblemKind,
    pub path: String,
    pub digest: Option<String>,
    pub message: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CheckSummary {
    pub repositories: usize,
    pub manifests: usize,
    pub blobs: usize,
    pub bytes: u64,
    pub links: usize,
    /// With `--verify`: blobs and bytes hashed, and the rate.
    pub verified_blobs: usize,
    pub verified_bytes: u64,
    pub verify_bytes_per_second: f64,
    pub problems: usize,
    pub elapsed_seconds: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckReport {
    pub version: u32,
    pub root: String,
    /// Why this root: named on the command line, or read from the registry's config (which
    /// key, or which environment override). Empty when the library is called directly.
    #[serde(default)]
    pub root_source: String,
    pub verify: bool,
    pub summary: CheckSummary,
    /// Requests sent, by kind (object storage only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests: Option<crate::storage::Requests>,
    pub problems: Vec<CheckProblem>,
    /// Missing links `--repair` can write back (the digest says what each holds, and what it
    /// names is in the store): revision links a tag or an index needs, layer links a manifest
    /// needs. Without `--repair` nothing is written.
    #[serde(default)]
    pub repairable: usize,
    /// With `--repair`: the links written back.
    #[serde(default)]
    pub repaired: Vec<String>,
}

impl CheckReport {
    pub fn exit_code(&self) -> i32 {
        i32::from(!self.problems.is_empty())
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub verify: bool,
    /// Write the missing links back that the digests determine (under the run lock).
    pub repair: bool,
    /// Uploads started longer ago than this are stale.
    pub stale_uploads: Duration,
    pub progress: bool,
}

struct Checker<'a> {
    storage: &'a dyn Storage,
    index: &'a BlobIndex,
    problems: Vec<CheckProblem>,
    links: usize,
    buf: Vec<u8>,
    /// Links `--repair` would write: the key, and the digest it holds.
    repairs: Vec<(String, Digest)>,
}

impl Checker<'_> {
    fn problem(
        &mut self,
        kind: ProblemKind,
        key: &str,
        digest: Option<&Digest>,
        message: impl Into<String>,
    ) {
        self.problems.push(CheckProblem {
            kind,
            path: self.storage.display(key),
            digest: digest.map(Digest::to_string),
            message: message.into(),
        });
    }

    /// The blob's size if the store holds it with data.
    fn blob(&self, d: &Digest) -> Option<u64> {
        let (s, i) = self.index.locate(d)?;
        let shard = &self.index.shards[s];
        (shard.state(i) == BlobState::Present).then(|| shard.size(i))
    }

    /// Read and judge one link file; the digest it names, if valid.
    fn link(&mut self, key: &str, path_digest: Option<&Digest>) -> Option<Digest> {
        self.read_link(key, path_digest, true)
    }

    /// Read and judge one link file; a missing one is damage only when `missing_is_damage`
    /// (a layer directory without its `link` is what the registry leaves when it unlinks a
    /// blob: whether that breaks a pull depends on what needs the link, judged elsewhere).
    fn read_link(
        &mut self,
        key: &str,
        path_digest: Option<&Digest>,
        missing_is_damage: bool,
    ) -> Option<Digest> {
        self.links += 1;
        match self
            .storage
            .read_content(key, MAX_LINK_BYTES, &mut self.buf)
        {
            Err(e) if e.kind() == io::ErrorKind::NotFound && !missing_is_damage => None,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.problem(
                    ProblemKind::InvalidLink,
                    key,
                    path_digest,
                    "link file is missing",
                );
                None
            }
            Err(e) => {
                self.problem(
                    ProblemKind::InvalidLink,
                    key,
                    path_digest,
                    format!("cannot read: {e}"),
                );
                None
            }
            Ok(()) if self.buf.iter().all(u8::is_ascii_whitespace) => {
                self.problem(
                    ProblemKind::EmptyLink,
                    key,
                    path_digest,
                    "link file is empty",
                );
                None
            }
            Ok(()) => match Digest::parse_link(&self.buf) {
                // gc reads such a link (it is lenient, and keeps what it names), but the
                // registry does not: it answers 500 for whatever needs it.
                Ok(d) if self.buf.trim_ascii() != self.buf.as_slice() => {
                    self.problem(
                        ProblemKind::PaddedLink,
                        key,
                        Some(&d),
                        format!(
                            "link file has white space around the digest ({:?}): the registry \
                             answers 500 for pulls that need it",
                            String::from_utf8_lossy(&self.buf)
                        ),
                    );
                    Some(d)
                }
                Err(e) => {
                    self.problem(
                        ProblemKind::InvalidLink,
                        key,
                        path_digest,
                        format!("invalid link: {e}"),
                    );
                    None
                }
                Ok(d) => {
                    if let Some(p) = path_digest {
                        if p.algorithm() == Algorithm::Sha256 && *p != d {
                            self.problem(
                                ProblemKind::InvalidLink,
                                key,
                                Some(p),
                                format!("names {d}, not the digest of its directory"),
                            );
                        }
                    }
                    if self.blob(&d).is_none() {
                        self.problem(
                            ProblemKind::LinkToMissingBlob,
                            key,
                            Some(&d),
                            format!("links {d}, which the blob store does not hold"),
                        );
                    }
                    Some(d)
                }
            },
        }
    }

    fn manifest(&mut self, name: &str, rev: &Digest, content: &Digest) -> Option<Manifest> {
        let data = layout::blob_data(content);
        match self
            .storage
            .read_into(&data, MAX_MANIFEST_BYTES, &mut self.buf)
        {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.problem(
                    ProblemKind::MissingManifest,
                    &data,
                    Some(content),
                    // The one way on (GC-SEMANTICS: a run refuses while a live manifest is
                    // missing): the name goes, with its tags, as `delete` removes it.
                    format!(
                        "manifest {name}@{rev} is missing; if its content is gone for good, \
                         `regsweep delete ROOT {name}@{rev}` removes the name and its tags"
                    ),
                );
                None
            }
            Err(e) => {
                self.problem(
                    ProblemKind::UnreadableManifest,
                    &data,
                    Some(content),
                    format!("cannot read: {e}"),
                );
                None
            }
            Ok(_) => match Manifest::parse(&self.buf) {
                Ok(m) => Some(m),
                Err(e) => {
                    self.problem(
                        ProblemKind::UnparseableManifest,
                        &data,
                        Some(content),
                        e.to_string(),
                    );
                    None
                }
            },
        }
    }

    fn repository(&mut self, name: &str, stale_before: SystemTime) -> usize {
        let (repo, diags) = discover::discover_repository(
            self.storage,
            name.to_string(),
            discover::Options {
                tag_history: false,
                link_times: false,
                // Uploads are judged below, by their own rule (`--stale-uploads`).
                uploads: false,
            },
        );
        for p in diags.errors {
            self.problems.push(CheckProblem {
                kind: ProblemKind::Unreadable,
                path: p.path,
                digest: None,
                message: p.message,
            });
        }
        for tag in &repo.tags {
            self.link(&layout::tag_current_link(name, &tag.name), None);
        }
        // Only layer links whose file is there: a directory without its `link` serves nothing.
        let mut layer_links: HashSet<Digest> = HashSet::new();
        for l in &repo.layers {
            let key = layout::layer_link(name, &l.digest);
            if self.read_link(&key, Some(&l.digest), false).is_some() {
                layer_links.insert(l.digest.clone());
            }
        }
        // Layer links a manifest needs and the repository lacks, by manifest: named with the
        // tags they break once every manifest is read.
        let mut unlinked_blobs: BTreeMap<Digest, BTreeSet<Digest>> = BTreeMap::new();
        let mut manifests = 0;
        let revisions: HashSet<&Digest> = repo.revisions.iter().map(|r| &r.digest).collect();
        // Index -> children, to find which tags an unlinked child breaks.
        let mut indexes: HashMap<Digest, Vec<Digest>> = HashMap::new();
        for rev in &repo.revisions {
            let key = layout::revision_link(name, &rev.digest);
            let Some(content) = self.link(&key, Some(&rev.digest)) else {
                continue;
            };
            let Some(m) = self.manifest(name, &rev.digest, &content) else {
                continue;
            };
            manifests += 1;
            for b in &m.blobs {
                let data = layout::blob_data(&b.digest);
                match self.blob(&b.digest) {
                    None if b.foreign => {}
                    None => self.problem(
                        ProblemKind::MissingBlob,
                        &data,
                        Some(&b.digest),
                        format!("referenced by manifest {content} of {name}, missing"),
                    ),
                    Some(size) => {
                        if let Some(declared) = b.size {
                            if declared != size {
                                self.problem(
                                    ProblemKind::SizeMismatch,
                                    &data,
                                    Some(&b.digest),
                                    format!("manifest {content} of {name} declares {declared} bytes, the blob has {size}"),
                                );
                            }
                        }
                        if !layer_links.contains(&b.digest) {
                            unlinked_blobs
                                .entry(b.digest.clone())
                                .or_default()
                                .insert(rev.digest.clone());
                        }
                    }
                }
            }
            for child in &m.children {
                if self.blob(child).is_none() {
                    self.problem(
                        ProblemKind::MissingManifest,
                        &layout::blob_data(child),
                        Some(child),
                        format!("child of index {content} of {name}, missing"),
                    );
                }
            }
            if !m.children.is_empty() {
                indexes.insert(rev.digest.clone(), m.children.clone());
            }
        }
        self.unlinked_blobs(name, &repo.tags, &indexes, unlinked_blobs);
        self.unlinked_children(name, &repo.tags, &revisions, &indexes);
        self.unlinked_tags(name, &repo.tags, &revisions);
        // Uploads nobody finished.
        let dir = layout::uploads_dir(name);
        if let Ok(entries) = self.storage.list_dir(&dir) {
            for e in entries.into_iter().filter(|e| e.kind == Kind::Dir) {
                let key = format!("{dir}/{}", e.name);
                let started = self
                    .storage
                    .stat(&format!("{key}/startedat"))
                    .or_else(|_| self.storage.stat(&key))
                    .map(|m| m.modified);
                if let Ok(t) = started {
                    if t < stale_before {
                        let size = self
                            .storage
                            .stat(&format!("{key}/data"))
                            .map_or(0, |m| m.len);
                        self.problem(
                            ProblemKind::StaleUpload,
                            &key,
                            None,
                            format!(
                                "upload started {} ago and never finished ({})",
                                humantime::format_duration(Duration::from_secs(
                                    SystemTime::now()
                                        .duration_since(t)
                                        .unwrap_or_default()
                                        .as_secs()
                                )),
                                bytes(size)
                            ),
                        );
                    }
                }
            }
        }
        manifests
    }
}

impl Checker<'_> {
    /// A link `--repair` can write: only sha256 links, whose content is their own digest (an
    /// alias link's content is not determined by its path).
    fn repairable(&mut self, key: &str, digest: &Digest) {
        if digest.algorithm() == Algorithm::Sha256 {
            self.repairs.push((key.to_string(), digest.clone()));
        }
    }

    /// A tag whose manifest has no revision link (deleted through the API, or removed by a
    /// collector): the tag does not pull. While the manifest's content exists, writing the
    /// link back makes it pull again.
    fn unlinked_tags(&mut self, name: &str, tags: &[discover::Tag], revisions: &HashSet<&Digest>) {
        for tag in tags {
            let Ok(d) = &tag.current else { continue };
            if revisions.contains(d) {
                continue;
            }
            let key = layout::revision_link(name, d);
            let content = if self.blob(d).is_some() {
                self.repairable(&key, d);
                "its content is there: `regsweep check --repair` writes the link back"
            } else {
                "its content is gone too"
            };
            self.problem(
                ProblemKind::UnlinkedTag,
                &key,
                Some(d),
                format!(
                    "tag {name}:{} names manifest {d}, which has no revision link in {name}: the \
                     tag does not pull; {content}",
                    tag.name
                ),
            );
        }
    }

    /// Blobs that manifests of the repository need and it does not link (a layer link removed
    /// by a crash, a collector, or by hand, its directory left or not): the registry answers
    /// 404 for them through this repository. Each is named with the manifests that need it and
    /// the tags that reach those, and is written back by `--repair`.
    fn unlinked_blobs(
        &mut self,
        name: &str,
        tags: &[discover::Tag],
        indexes: &HashMap<Digest, Vec<Digest>>,
        unlinked: BTreeMap<Digest, BTreeSet<Digest>>,
    ) {
        if unlinked.is_empty() {
            return;
        }
        let reach = tags_reaching(tags, indexes);
        for (blob, manifests) in unlinked {
            let key = layout::layer_link(name, &blob);
            let mut broken: BTreeSet<&str> = BTreeSet::new();
            for m in &manifests {
                broken.extend(reach.get(m).into_iter().flatten().map(String::as_str));
            }
            let who = if broken.is_empty() {
                "pulls of those manifests by digest fail".to_string()
            } else {
                format!(
                    "pulls of {} fail",
                    broken
                        .iter()
                        .map(|t| format!("{name}:{t}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            };
            let needed_by = manifests
                .iter()
                .map(Digest::to_string)
                .collect::<Vec<_>>()
                .join(", ");
            self.repairable(&key, &blob);
            self.problem(
                ProblemKind::MissingLayerLink,
                &key,
                Some(&blob),
                format!(
                    "needed by manifest {needed_by} of {name}, but {name} does not link it: {who}; \
                     `regsweep check --repair` writes the link back"
                ),
            );
        }
    }

    /// An index whose child has no revision link in the repository (what the reference
    /// collector's `-m` leaves behind): the registry answers 404 for the child, so the image
    /// does not pull on that platform. Names the child's missing link and every tag that
    /// reaches the index, at any depth.
    fn unlinked_children(
        &mut self,
        name: &str,
        tags: &[discover::Tag],
        revisions: &HashSet<&Digest>,
        indexes: &HashMap<Digest, Vec<Digest>>,
    ) {
        let reach = tags_reaching(tags, indexes);
        let mut broken: BTreeMap<(Digest, Digest), Vec<String>> = BTreeMap::new();
        for (index, children) in indexes {
            for child in children.iter().filter(|c| !revisions.contains(c)) {
                let tags = reach.get(index).into_iter().flatten().cloned().collect();
                broken.insert((index.clone(), child.clone()), tags);
            }
        }
        for ((index, child), tags) in broken {
            let who = if tags.is_empty() {
                format!("pulls of index {index} fail on that platform")
            } else {
                format!(
                    "pulls of tag{} {} fail on that platform",
                    if tags.len() == 1 { "" } else { "s" },
                    tags.iter()
                        .map(|t| format!("{name}:{t}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            };
            if self.blob(&child).is_some() {
                self.repairable(&layout::revision_link(name, &child), &child);
            }
            self.problem(
                ProblemKind::UnlinkedChild,
                &layout::revision_link(name, &child),
                Some(&child),
                format!("child manifest of index {index} has no revision link in {name}: {who}"),
            );
        }
    }
}

/// Every manifest a tag reaches (itself, and the children of indexes at any depth), with the
/// names of the tags that reach it.
fn tags_reaching(
    tags: &[discover::Tag],
    indexes: &HashMap<Digest, Vec<Digest>>,
) -> HashMap<Digest, BTreeSet<String>> {
    let mut reach: HashMap<Digest, BTreeSet<String>> = HashMap::new();
    for tag in tags {
        let Ok(current) = &tag.current else { continue };
        let mut stack = vec![current.clone()];
        while let Some(d) = stack.pop() {
            let names = reach.entry(d.clone()).or_default();
            if !names.insert(tag.name.clone()) {
                continue;
            }
            stack.extend(indexes.get(&d).into_iter().flatten().cloned());
        }
    }
    reach
}

/// Hash one blob with its digest's algorithm: the digest its content really has.
fn hash_blob(storage: &dyn Storage, d: &Digest, counted: &AtomicU64) -> io::Result<Digest> {
    let key = layout::blob_data(d);
    let mut h256 = sha2::Sha256::new();
    let mut h512 = sha2::Sha512::new();
    let alg = d.algorithm();
    storage.read_chunks(&key, &mut |chunk| {
        match alg {
            Algorithm::Sha256 => h256.update(chunk),
            Algorithm::Sha512 => h512.update(chunk),
        }
        counted.fetch_add(chunk.len() as u64, Ordering::Relaxed);
    })?;
    Ok(match alg {
        Algorithm::Sha256 => Digest::Sha256(h256.finalize().into()),
        Algorithm::Sha512 => Digest::Sha512(Box::new(h512.finalize().into())),
    })
}

/// Check; with `--repair`, write back the links the digests determine, under the run lock,
/// and check again until nothing more can be repaired (each round may reveal what the links
/// it wrote need: a manifest's layer links, an index's children).
pub fn check(storage: &dyn Storage, options: Options) -> CheckReport {
    let started = Instant::now();
    let (mut report, mut repairs) = check_once(storage, options);
    if !options.repair || repairs.is_empty() {
        return report;
    }
    let _lock = match storage.lock(false) {
        Ok(lock) => lock,
        Err(e) => {
            report.problems.push(CheckProblem {
                kind: ProblemKind::Unreadable,
                path: storage.display(""),
                digest: None,
                message: format!("--repair needs the run lock: {e}; nothing was repaired"),
            });
            return report;
        }
    };
    let mut repaired = Vec::new();
    let mut failed = Vec::new();
    // Each round writes at least one link that was missing, so this ends; the bound is a
    // guard against a storage that does not keep what is written.
    for _ in 0..16 {
        for (key, digest) in repairs.drain(..) {
            match storage.write_atomic(&key, digest.to_string().as_bytes()) {
                Ok(()) => repaired.push(storage.display(&key)),
                Err(e) => failed.push(CheckProblem {
                    kind: ProblemKind::Unreadable,
                    path: storage.display(&key),
                    digest: Some(digest.to_string()),
                    message: format!("cannot write the link back: {e}"),
                }),
            }
        }
        if !failed.is_empty() {
            break;
        }
        (report, repairs) = check_once(storage, options);
        if repairs.is_empty() {
            break;
        }
    }
    repaired.sort();
    repaired.dedup();
    report.repaired = repaired;
    report.problems.extend(failed);
    report.summary.problems = report.problems.len();
    report.summary.elapsed_seconds = started.elapsed().as_secs_f64();
    report
}

/// One repository checked: its problems, manifests, links, and what `--repair` could write.
type RepoChecked = (Vec<CheckProblem>, usize, usize, Vec<(String, Digest)>);

/// One pass: the report, and the links `--repair` could write.
fn check_once(storage: &dyn Storage, options: Options) -> (CheckReport, Vec<(String, Digest)>) {
    let started = Instant::now();
    let counters = discover::Counters::default();
    let (mut index, diags) = discover::discover_blobs(storage, &counters);
    let mut problems: Vec<CheckProblem> = Vec::new();
    let mut unreadable = |p: crate::error::Problem| CheckProblem {
        kind: ProblemKind::Unreadable,
        path: p.path,
        digest: None,
        message: p.message,
    };
    problems.extend(diags.errors.into_iter().map(&mut unreadable));
    let stat_diags = discover::stat_blobs(storage, &mut index, |_, _| true);
    problems.extend(stat_diags.errors.into_iter().map(&mut unreadable));
    let mut summary = CheckSummary::default();
    for shard in &index.shards {
        for i in 0..shard.len() {
            let d = shard.digest(i);
            match shard.state(i) {
                BlobState::Present => {
                    summary.blobs += 1;
                    summary.bytes += shard.size(i);
                }
                BlobState::NoData => problems.push(CheckProblem {
                    kind: ProblemKind::BlobWithoutData,
                    path: storage.display(&layout::blob_dir(&d)),
                    digest: Some(d.to_string()),
                    message: "blob directory without data".into(),
                }),
                BlobState::Strange => problems.push(CheckProblem {
                    kind: ProblemKind::StrangeBlob,
                    path: storage.display(&layout::blob_data(&d)),
                    digest: Some(d.to_string()),
                    message: "blob data is not a regular file".into(),
                }),
                BlobState::Gone => {}
            }
        }
    }

    let (names, diags) = discover::repository_names(storage);
    problems.extend(diags.errors.into_iter().map(&mut unreadable));
    summary.repositories = names.len();
    let stale_before = SystemTime::now()
        .checked_sub(options.stale_uploads)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let per_repo: Vec<RepoChecked> = names
        .par_iter()
        .map(|name| {
            let mut c = Checker {
                storage,
                index: &index,
                problems: Vec::new(),
                links: 0,
                buf: Vec::with_capacity(16 * 1024),
                repairs: Vec::new(),
            };
            let manifests = c.repository(name, stale_before);
            (c.problems, manifests, c.links, c.repairs)
        })
        .collect();
    let mut repairs = Vec::new();
    for (p, m, l, r) in per_repo {
        problems.extend(p);
        summary.manifests += m;
        summary.links += l;
        repairs.extend(r);
    }
    repairs.sort();
    repairs.dedup();

    if options.verify {
        let blobs: Vec<(Digest, u64)> = index
            .shards
            .iter()
            .flat_map(|s| {
                (0..s.len())
                    .filter(|&i| s.state(i) == BlobState::Present)
                    .map(move |i| (s.digest(i), s.size(i)))
            })
            .collect();
        let total: u64 = blobs.iter().map(|b| b.1).sum();
        let counted = std::sync::Arc::new(AtomicU64::new(0));
        let c = counted.clone();
        let ticker = Ticker::bytes(options.progress, total, move |bar| {
            bar.set_position(c.load(Ordering::Relaxed));
        });
        let verify_started = Instant::now();
        let found = Mutex::new(Vec::new());
        blobs.par_iter().for_each(|(d, _)| {
            let path = storage.display(&layout::blob_data(d));
            let problem = match hash_blob(storage, d, &counted) {
                Ok(h) if h == *d => None,
                Ok(h) => Some((
                    ProblemKind::DigestMismatch,
                    format!("content hashes to {h}"),
                )),
                Err(e) => Some((
                    ProblemKind::Unreadable,
                    format!("cannot read to verify: {e}"),
                )),
            };
            if let Some((kind, message)) = problem {
                found
                    .lock()
                    .expect("no panics while holding it")
                    .push(CheckProblem {
                        kind,
                        path,
                        digest: Some(d.to_string()),
                        message,
                    });
            }
        });
        drop(ticker);
        let secs = verify_started.elapsed().as_secs_f64();
        summary.verified_blobs = blobs.len();
        summary.verified_bytes = counted.load(Ordering::Relaxed);
        summary.verify_bytes_per_second = if secs > 0.0 {
            summary.verified_bytes as f64 / secs
        } else {
            0.0
        };
        problems.extend(found.into_inner().expect("no panics while holding it"));
    }

    problems.sort();
    problems.dedup();
    summary.problems = problems.len();
    summary.elapsed_seconds = started.elapsed().as_secs_f64();
    let report = CheckReport {
        version: crate::gc::report::REPORT_VERSION,
        root: storage.display(""),
        root_source: String::new(),
        verify: options.verify,
        summary,
        requests: storage.requests(),
        problems,
        repairable: repairs.len(),
        repaired: Vec::new(),
    };
    (report, repairs)
}

//! `report`: where the storage goes, per repository and in total.
//!
//! Built from the same phases as `gc`: the blob store is listed and every blob stat'ed (a
//! report needs every size), each repository is discovered, its manifests parsed and marked
//! with every revision live, and the reclaimable totals come from two dry runs of the
//! collector itself (`--min-age 0`, without and with `--delete-untagged`), so they are by
//! construction what `gc --dry-run --min-age 0` reports.

use std::collections::{HashMap, HashSet};
use std::io::{self, Write};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::error::{Diagnostics, Problem};
use crate::gc::discover::{self, BlobState};
use crate::gc::driver::{self, GcOptions};
use crate::gc::mark;
use crate::registry::digest::Digest;
use crate::storage::Storage;
use crate::units::bytes;

/// One repository's share of the storage.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepoUsage {
    pub name: String,
    pub tags: usize,
    pub manifests: usize,
    /// Revisions no tag points at.
    pub untagged_manifests: usize,
    /// Bytes of the distinct blobs (manifests included) its manifests reference.
    pub bytes: u64,
    /// Of those, bytes no other repository references.
    pub unique_bytes: u64,
    /// Of those, bytes other repositories reference too.
    pub shared_bytes: u64,
    /// Bytes of blobs `gc` would delete that this repository links (revisions, layer links).
    pub reclaimable_bytes: u64,
    /// The same for `gc --delete-untagged`.
    pub reclaimable_bytes_untagged: u64,
    /// When a tag of it was last pushed (RFC 3339), if it has tags.
    pub newest_push: Option<String>,
    pub uploads: usize,
    pub upload_bytes: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    pub repositories: usize,
    pub blobs: usize,
    /// Bytes of every blob on disk.
    pub bytes: u64,
    /// Bytes of blobs some manifest revision references (every revision counted live).
    pub live_bytes: u64,
    /// What `gc --dry-run --min-age 0` would delete.
    pub reclaimable_bytes: u64,
    /// What `gc --dry-run --min-age 0 --delete-untagged` would delete.
    pub reclaimable_bytes_untagged: u64,
    /// Bytes of blobs referenced by more than one repository.
    pub shared_bytes: u64,
    pub uploads: usize,
    pub upload_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UsageReport {
    pub version: u32,
    pub root: String,
    /// Why this root: named on the command line, or read from the registry's config (which
    /// key, or which environment override). Empty when the library is called directly.
    #[serde(default)]
    pub root_source: String,
    pub generated: String,
    pub totals: Totals,
    /// Requests sent, by kind (object storage only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests: Option<crate::storage::Requests>,
    /// Sorted by unique bytes, largest first.
    pub repositories: Vec<RepoUsage>,
    pub warnings: Vec<Problem>,
    pub errors: Vec<Problem>,
}

impl UsageReport {
    pub fn exit_code(&self) -> i32 {
        i32::from(!self.errors.is_empty())
    }
}

/// Per-repository facts gathered in one pass.
struct Gathered {
    usage: RepoUsage,
    /// Blob digests its manifests reference (distinct).
    referenced: Vec<Digest>,
    /// Digests it links (revisions and layer links): what `gc` would reclaim through it.
    linked: HashSet<Digest>,
}

/// Where the storage goes. `uploads_older_than` is the age after which `gc` would remove an
/// upload (their bytes count as reclaimable); `None` counts none.
pub fn usage(storage: &dyn Storage, uploads_older_than: Option<Duration>) -> UsageReport {
    let counters = discover::Counters::default();
    let mut diagnostics = Diagnostics::default();
    let (mut index, d) = discover::discover_blobs(storage, &counters);
    diagnostics.merge(d);
    diagnostics.merge(discover::stat_blobs(storage, &mut index, |_, _| true));
    let refs: Vec<AtomicU32> = (0..index.len()).map(|_| AtomicU32::new(0)).collect();
    let base: Vec<usize> = index
        .shards
        .iter()
        .scan(0, |acc, s| {
            let start = *acc;
            *acc += s.len();
            Some(start)
        })
        .collect();
    let position = |d: &Digest| index.locate(d).map(|(s, i)| base[s] + i);
    let size_at = |p: usize| {
        let s = base.partition_point(|&b| b <= p) - 1;
        let shard = &index.shards[s];
        let i = p - base[s];
        if shard.state(i) == BlobState::Present {
            shard.size(i)
        } else {
            0
        }
    };

    let (names, d) = discover::repository_names(storage);
    diagnostics.merge(d);
    let mark_options = mark::Options {
        delete_untagged: false,
        cutoff: crate::gc::mark::cutoff(SystemTime::now(), Duration::ZERO),
    };
    let counter = std::sync::atomic::AtomicU64::new(0);
    let discover_options = discover::Options {
        tag_history: false,
        link_times: true,
        uploads: true,
    };
    let gathered: Vec<(Gathered, Diagnostics)> = crate::gc::read::read_and_mark_all(
        storage,
        names,
        discover_options,
        mark_options,
        &counter,
        |r| {
            let (repo, blobs, diags) = (r.repo, r.blobs, r.diagnostics);
            let mut referenced: Vec<Digest> = blobs.into_iter().map(|(d, _)| d).collect();
            referenced.sort_unstable();
            referenced.dedup();
            for d in &referenced {
                if let Some(p) = position(d) {
                    refs[p].fetch_add(1, Ordering::Relaxed);
                }
            }
            let tagged: HashSet<&Digest> = repo
                .tags
                .iter()
                .filter_map(|t| t.current.as_ref().ok())
                .collect();
            let mut linked: HashSet<Digest> = HashSet::new();
            for l in repo.revisions.iter().chain(&repo.layers) {
                linked.insert(l.digest.clone());
                if let Ok(t) = &l.target {
                    linked.insert(t.clone());
                }
            }
            let uploads = repo.uploads.len();
            let upload_bytes = repo.uploads.iter().map(|u| u.size).sum();
            let usage = RepoUsage {
                tags: repo.tags.len(),
                manifests: repo.revisions.len(),
                untagged_manifests: repo
                    .revisions
                    .iter()
                    .filter(|r| !tagged.contains(&r.digest))
                    .count(),
                newest_push: repo
                    .tags
                    .iter()
                    .filter_map(|t| t.pushed)
                    .max()
                    .map(|t| humantime::format_rfc3339_seconds(t).to_string()),
                uploads,
                upload_bytes,
                name: repo.name,
                ..RepoUsage::default()
            };
            (
                Gathered {
                    usage,
                    referenced,
                    linked,
                },
                diags,
            )
        },
    );

    // The collector's own answer for what each mode would delete.
    let dry = |delete_untagged| {
        driver::collect(
            storage,
            &GcOptions {
                dry_run: true,
                delete_untagged,
                min_age: Duration::ZERO,
                ignore_errors: false,
                wait_for_lock: false,
                progress: false,
                uploads_older_than,
                empty_repositories: false,
                unreferenced: None,
                max_delete: None,
                cache: Default::default(),
            },
        )
    };
    let plain = dry(false);
    let untagged = dry(true);
    let dead = |r: &crate::gc::report::GcReport| -> HashMap<Digest, u64> {
        r.deleted
            .blobs
            .iter()
            .map(|b| (b.digest.clone(), b.size))
            .collect()
    };
    let (dead_plain, dead_untagged) = (dead(&plain), dead(&untagged));

    let mut totals = Totals {
        blobs: 0,
        reclaimable_bytes: plain.summary.deleted_bytes + plain.summary.deleted_upload_bytes,
        reclaimable_bytes_untagged: untagged.summary.deleted_bytes
            + untagged.summary.deleted_upload_bytes,
        ..Totals::default()
    };
    for (p, r) in refs.iter().enumerate() {
        let size = size_at(p);
        totals.bytes += size;
        match r.load(Ordering::Relaxed) {
            0 => {}
            1 => totals.live_bytes += size,
            _ => {
                totals.live_bytes += size;
                totals.shared_bytes += size;
            }
        }
    }
    totals.blobs = index
        .shards
        .iter()
        .map(|s| {
            (0..s.len())
                .filter(|&i| s.state(i) != BlobState::Gone)
                .count()
        })
        .sum();

    let mut repositories = Vec::with_capacity(gathered.len());
    for (g, d) in gathered {
        diagnostics.merge(d);
        let mut u = g.usage;
        for digest in &g.referenced {
            if let Some(p) = position(digest) {
                let size = size_at(p);
                u.bytes += size;
                if refs[p].load(Ordering::Relaxed) == 1 {
                    u.unique_bytes += size;
                }
            }
        }
        u.shared_bytes = u.bytes - u.unique_bytes;
        // Abandoned uploads are reclaimed through their repository in both modes.
        let stale: u64 = plain
            .deleted
            .uploads
            .iter()
            .filter(|x| x.repository == u.name)
            .map(|x| x.size)
            .sum();
        u.reclaimable_bytes = g
            .linked
            .iter()
            .filter_map(|d| dead_plain.get(d))
            .sum::<u64>()
            + stale;
        u.reclaimable_bytes_untagged = g
            .linked
            .iter()
            .filter_map(|d| dead_untagged.get(d))
            .sum::<u64>()
            + stale;
        totals.uploads += u.uploads;
        totals.upload_bytes += u.upload_bytes;
        repositories.push(u);
    }
    totals.repositories = repositories.len();
    repositories.sort_by(|a, b| {
        b.unique_bytes
            .cmp(&a.unique_bytes)
            .then_with(|| b.bytes.cmp(&a.bytes))
            .then_with(|| a.name.cmp(&b.name))
    });
    diagnostics.sort();
    UsageReport {
        version: crate::gc::report::REPORT_VERSION,
        root: storage.display(""),
        root_source: String::new(),
        generated: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        totals,
        repositories,
        requests: storage.requests(),
        warnings: diagnostics.warnings,
        errors: diagnostics.errors,
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A CSV field: quoted when it holds a separator, a quote or a line break.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

impl UsageReport {
    pub fn write_human(&self, mut out: impl Write, top: usize) -> io::Result<()> {
        let t = &self.totals;
        writeln!(out, "regsweep report on {}", self.root)?;
        crate::output::report::write_root_source(&mut out, &self.root_source)?;
        writeln!(
            out,
            "{} repositories, {} blobs, {} on disk; live {}, shared by several repositories {}",
            t.repositories,
            t.blobs,
            bytes(t.bytes),
            bytes(t.live_bytes),
            bytes(t.shared_bytes)
        )?;
        writeln!(
            out,
            "gc would reclaim {} ({} with --delete-untagged); {} orphan uploads hold {}",
            bytes(t.reclaimable_bytes),
            bytes(t.reclaimable_bytes_untagged),
            t.uploads,
            bytes(t.upload_bytes)
        )?;
        writeln!(out)?;
        let shown: Vec<&RepoUsage> = self.repositories.iter().take(top).collect();
        let width = shown
            .iter()
            .map(|r| r.name.len())
            .max()
            .unwrap_or(10)
            .max(10);
        writeln!(
            out,
            "{:<width$}  {:>5}  {:>9}  {:>10}  {:>10}  {:>10}  {:>11}  {:>11}  newest push",
            "repository", "tags", "manifests", "bytes", "unique", "shared", "reclaim", "reclaim -m"
        )?;
        for r in &shown {
            writeln!(
                out,
                "{:<width$}  {:>5}  {:>9}  {:>10}  {:>10}  {:>10}  {:>11}  {:>11}  {}",
                r.name,
                r.tags,
                format!(
                    "{}/{}",
                    r.manifests - r.untagged_manifests,
                    r.untagged_manifests
                ),
                bytes(r.bytes),
                bytes(r.unique_bytes),
                bytes(r.shared_bytes),
                bytes(r.reclaimable_bytes),
                bytes(r.reclaimable_bytes_untagged),
                r.newest_push.as_deref().unwrap_or("-")
            )?;
        }
        if self.repositories.len() > shown.len() {
            writeln!(
                out,
                "... and {} more (--top N, or --csv / --json for all)",
                self.repositories.len() - shown.len()
            )?;
        }
        writeln!(out, "(manifests: tagged/untagged; sorted by unique bytes)")?;
        crate::output::report::write_requests(&mut out, self.requests.as_ref())
    }

    pub fn write_csv(&self, mut out: impl Write) -> io::Result<()> {
        writeln!(
            out,
            "repository,tags,manifests,untagged_manifests,bytes,unique_bytes,shared_bytes,\
             reclaimable_bytes,reclaimable_bytes_untagged,newest_push,uploads,upload_bytes"
        )?;
        for r in &self.repositories {
            writeln!(
                out,
                "{},{},{},{},{},{},{},{},{},{},{},{}",
                csv_field(&r.name),
                r.tags,
                r.manifests,
                r.untagged_manifests,
                r.bytes,
                r.unique_bytes,
                r.shared_bytes,
                r.reclaimable_bytes,
                r.reclaimable_bytes_untagged,
                r.newest_push.as_deref().unwrap_or(""),
                r.uploads,
                r.upload_bytes
            )?;
        }
        Ok(())
    }

    /// One self-contained page: inline CSS and SVG, no scripts, nothing fetched.
    pub fn write_html(&self, mut out: impl Write, top: usize) -> io::Result<()> {
        let t = &self.totals;
        writeln!(
            out,
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
             <title>regsweep report: {root}</title>\n<style>\n\
             body {{ font: 14px/1.4 system-ui, sans-serif; margin: 2em; color: #222; }}\n\
             h1 {{ font-size: 1.4em; }} .muted {{ color: #666; }}\n\
             table {{ border-collapse: collapse; margin-top: 1em; }}\n\
             th, td {{ padding: 3px 10px; border-bottom: 1px solid #ddd; text-align: right; white-space: nowrap; }}\n\
             th:first-child, td:first-child {{ text-align: left; }}\n\
             .legend span {{ display: inline-block; width: 12px; height: 12px; margin: 0 4px 0 14px; vertical-align: middle; }}\n\
             </style>\n</head>\n<body>",
            root = esc(&self.root)
        )?;
        writeln!(
            out,
            "<h1>Where the storage of <code>{}</code> goes</h1>\n<p class=\"muted\">Generated {} by regsweep. \
             {} repositories, {} blobs, {} on disk.</p>",
            esc(&self.root),
            esc(&self.generated),
            t.repositories,
            t.blobs,
            bytes(t.bytes)
        )?;

        // The live / reclaimable split of the bytes on disk.
        let total = t.bytes.max(1) as f64;
        let reclaim_m = t.reclaimable_bytes_untagged.min(t.bytes);
        let reclaim = t.reclaimable_bytes.min(reclaim_m);
        let kept = t.bytes - reclaim_m;
        let w = |b: u64| b as f64 / total * 800.0;
        writeln!(out, "<h2>Live and reclaimable</h2>")?;
        writeln!(
            out,
            "<svg id=\"split\" width=\"820\" height=\"40\" role=\"img\" aria-label=\"live and reclaimable bytes\">\n\
             <rect x=\"0\" y=\"5\" width=\"{:.1}\" height=\"30\" fill=\"#4c78a8\"><title>kept even by gc -m: {}</title></rect>\n\
             <rect x=\"{:.1}\" y=\"5\" width=\"{:.1}\" height=\"30\" fill=\"#f58518\"><title>reclaimable only with -m: {}</title></rect>\n\
             <rect x=\"{:.1}\" y=\"5\" width=\"{:.1}\" height=\"30\" fill=\"#e45756\"><title>reclaimable by gc: {}</title></rect>\n</svg>",
            w(kept),
            bytes(kept),
            w(kept),
            w(reclaim_m - reclaim),
            bytes(reclaim_m - reclaim),
            w(kept) + w(reclaim_m - reclaim),
            w(reclaim),
            bytes(reclaim)
        )?;
        writeln!(
            out,
            "<p class=\"legend\"><span style=\"background:#4c78a8\"></span>kept {} \
             <span style=\"background:#f58518\"></span>reclaimable with <code>gc -m</code> only {} \
             <span style=\"background:#e45756\"></span>reclaimable by <code>gc</code> {} \
             &middot; orphan uploads: {} ({})</p>",
            bytes(kept),
            bytes(reclaim_m - reclaim),
            bytes(reclaim),
            t.uploads,
            bytes(t.upload_bytes)
        )?;

        // The largest repositories by unique and shared bytes.
        let shown: Vec<&RepoUsage> = self.repositories.iter().take(top).collect();
        let max = shown.iter().map(|r| r.bytes).max().unwrap_or(1).max(1) as f64;
        let row = 22;
        let label = 260.0;
        let bar = 520.0;
        writeln!(out, "<h2>Largest repositories</h2>")?;
        writeln!(
            out,
            "<svg id=\"repos\" width=\"{}\" height=\"{}\" role=\"img\" aria-label=\"largest repositories\">",
            label + bar + 120.0,
            shown.len() * row + 10
        )?;
        for (i, r) in shown.iter().enumerate() {
            let y = i * row + 5;
            let uw = r.unique_bytes as f64 / max * bar;
            let sw = r.shared_bytes as f64 / max * bar;
            writeln!(
                out,
                "<g class=\"repo\"><text x=\"{:.0}\" y=\"{}\" text-anchor=\"end\" font-size=\"12\">{}</text>\
                 <rect class=\"unique\" x=\"{label:.0}\" y=\"{y}\" width=\"{uw:.1}\" height=\"16\" fill=\"#4c78a8\"><title>unique {}</title></rect>\
                 <rect class=\"shared\" x=\"{:.1}\" y=\"{y}\" width=\"{sw:.1}\" height=\"16\" fill=\"#9ecae9\"><title>shared {}</title></rect>\
                 <text x=\"{:.1}\" y=\"{}\" font-size=\"11\">{}</text></g>",
                label - 6.0,
                y + 12,
                esc(&r.name),
                bytes(r.unique_bytes),
                label + uw,
                bytes(r.shared_bytes),
                label + uw + sw + 4.0,
                y + 12,
                bytes(r.bytes)
            )?;
        }
        writeln!(out, "</svg>")?;
        writeln!(
            out,
            "<p class=\"legend\"><span style=\"background:#4c78a8\"></span>unique to the repository \
             <span style=\"background:#9ecae9\"></span>shared with others</p>"
        )?;

        writeln!(out, "<h2>All repositories</h2>\n<table>\n<thead><tr><th>repository</th><th>tags</th>\
            <th>manifests</th><th>untagged</th><th>bytes</th><th>unique</th><th>shared</th>\
            <th>reclaimable</th><th>reclaimable with -m</th><th>newest push</th></tr></thead>\n<tbody>")?;
        for r in &self.repositories {
            writeln!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&r.name),
                r.tags,
                r.manifests,
                r.untagged_manifests,
                bytes(r.bytes),
                bytes(r.unique_bytes),
                bytes(r.shared_bytes),
                bytes(r.reclaimable_bytes),
                bytes(r.reclaimable_bytes_untagged),
                esc(r.newest_push.as_deref().unwrap_or("-"))
            )?;
        }
        writeln!(out, "</tbody>\n</table>\n</body>\n</html>")
    }
}

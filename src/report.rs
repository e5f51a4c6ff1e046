//! Report: what a run found and did, as a versioned JSON document or a human summary.
//!
//! Renderers write to any `impl Write`, so tests capture them. The human summary carries no
//! color and no progress; problems go to stderr in the binary, not here.

use std::io::{self, Write};

use serde::{Deserialize, Serialize};

use crate::edit::RepoEdits;
use crate::error::Problem;
use crate::plan::{
    BlobDeletion, Census, LayerLinkDeletion, ManifestDeletion, RepositoryDeletion, ShardDeletion,
    UploadDeletion,
};
use crate::registry_cache::{CacheKind, CacheReport};

/// Any report as pretty JSON, one document followed by a newline.
pub fn write_json(report: &impl Serialize, mut out: impl Write) -> io::Result<()> {
    serde_json::to_writer_pretty(&mut out, report)?;
    writeln!(out)
}

/// On object storage, the requests a run sent, by kind.
pub fn write_requests(
    mut out: impl Write,
    requests: Option<&crate::storage::Requests>,
) -> io::Result<()> {
    let Some(r) = requests else { return Ok(()) };
    writeln!(
        out,
        "Requests: {} ({} list, {} get, {} head, {} delete, {} put; {} retried); {} manifests from the cache",
        r.total(),
        r.list,
        r.get,
        r.head,
        r.delete,
        r.put,
        r.retries,
        r.cached
    )
}

/// The line under a report's title that says why this root was chosen.
pub fn write_root_source(mut out: impl Write, source: &str) -> io::Result<()> {
    if source.is_empty() {
        Ok(())
    } else {
        writeln!(out, "root from {source}")
    }
}

/// Bumped on any incompatible change of the JSON report.
pub const REPORT_VERSION: u32 = 1;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    #[serde(flatten)]
    pub census: Census,
    pub deleted_blobs: usize,
    pub deleted_bytes: u64,
    pub deleted_manifests: usize,
    pub deleted_tag_index_entries: usize,
    pub deleted_layer_links: usize,
    pub deleted_shards: usize,
    /// Abandoned uploads removed, and the bytes they held.
    #[serde(default)]
    pub deleted_uploads: usize,
    #[serde(default)]
    pub deleted_upload_bytes: u64,
    /// Repositories removed because nothing was left in them.
    #[serde(default)]
    pub deleted_repositories: usize,
    pub failed_deletions: usize,
    /// Dropped from the plan (or put back from the trash) because a look after the mark found
    /// them live: pushes made during the run. Always 0 in a dry run.
    #[serde(default)]
    pub rescued_manifests: usize,
    #[serde(default)]
    pub rescued_layer_links: usize,
    #[serde(default)]
    pub rescued_blobs: usize,
    /// Blobs an interrupted earlier run had left in the trash, put back before this run.
    #[serde(default)]
    pub restored_from_trash: usize,
    pub elapsed_seconds: f64,
}

/// Where a run's time went, phase by phase, in seconds (`-v` prints them). A phase a run did
/// not reach (a dry run sweeps nothing) is 0.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Timings {
    /// Putting back what an interrupted run left in the trash.
    pub recover: f64,
    /// Listing the blob store and the repositories, reading and marking every repository.
    pub mark: f64,
    /// Sizing and dating the candidates, and assembling the plan.
    pub plan: f64,
    /// The look after the mark: every repository read again (real runs).
    pub second_look: f64,
    /// Removing tag-history entries, manifest revisions and layer links.
    pub references: f64,
    /// Moving dead blobs out of the registry's reach.
    pub trash: f64,
    /// The look after the move, on a view in which trashed blobs are still readable.
    pub last_look: f64,
    /// Removing the trashed blobs (and putting back what the last look found live).
    pub delete: f64,
    /// Empty shard directories, abandoned uploads, empty repositories, the trash itself.
    pub tidy: f64,
    /// Reconciling the registry's cache.
    pub cache: f64,
}

impl Timings {
    fn phases(&self) -> [(&'static str, f64); 10] {
        [
            ("recover", self.recover),
            ("mark", self.mark),
            ("plan", self.plan),
            ("second look", self.second_look),
            ("references", self.references),
            ("trash", self.trash),
            ("last look", self.last_look),
            ("delete", self.delete),
            ("tidy", self.tidy),
            ("cache", self.cache),
        ]
    }
}

/// Seconds since `start`, and restart the clock: for timing phases one after another.
pub fn lap(start: &mut std::time::Instant) -> f64 {
    let now = std::time::Instant::now();
    let seconds = now.duration_since(*start).as_secs_f64();
    *start = now;
    seconds
}

/// In a dry run: what would be deleted. After a real sweep: what was deleted.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Deleted {
    pub blobs: Vec<BlobDeletion>,
    pub manifests: Vec<ManifestDeletion>,
    pub layer_links: Vec<LayerLinkDeletion>,
    pub shards: Vec<ShardDeletion>,
    #[serde(default)]
    pub uploads: Vec<UploadDeletion>,
    #[serde(default)]
    pub repositories: Vec<RepositoryDeletion>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GcReport {
    pub version: u32,
    pub dry_run: bool,
    pub root: String,
    /// Why this root: named on the command line, or read from the registry's config (which
    /// key, or which environment override). Empty when the library is called directly.
    #[serde(default)]
    pub root_source: String,
    pub delete_untagged: bool,
    pub min_age_seconds: u64,
    /// True when the run refused to delete anything because the live set may be incomplete.
    pub refused: bool,
    pub summary: Summary,
    pub deleted: Deleted,
    pub warnings: Vec<Problem>,
    pub errors: Vec<Problem>,
    /// Requests sent, by kind (object storage only; absent on a filesystem).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests: Option<crate::storage::Requests>,
    /// `--unreferenced-for`, when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unreferenced_for_seconds: Option<u64>,
    /// What `--unreferenced-for` kept: unreferenced, but not yet for long enough.
    #[serde(default)]
    pub waiting: Vec<crate::unreferenced::Waiting>,
    /// The registry's blob-descriptor cache after the run (set by the command line tool).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<CacheReport>,
    /// Where the time went, by phase.
    #[serde(default)]
    pub timings: Timings,
}

impl GcReport {
    /// The process exit code this report calls for (see the README).
    pub fn exit_code(&self) -> i32 {
        if self.refused || !self.errors.is_empty() || self.summary.failed_deletions > 0 {
            1
        } else {
            0
        }
    }

    pub fn write_human(&self, mut out: impl Write, verbose: bool) -> io::Result<()> {
        let s = &self.summary;
        let c = &s.census;
        let verb = if self.dry_run {
            "Would delete"
        } else {
            "Deleted"
        };
        writeln!(
            out,
            "regsweep gc{} on {}",
            if self.dry_run { " (dry run)" } else { "" },
            self.root
        )?;
        write_root_source(&mut out, &self.root_source)?;
        writeln!(
            out,
            "mode: {}; min age {}",
            if self.delete_untagged {
                "delete untagged manifests (-m)"
            } else {
                "keep every manifest revision"
            },
            age(self.min_age_seconds)
        )?;
        writeln!(out)?;
        writeln!(
            out,
            "Found      {} repositories, {} tags, {} manifests ({} live)",
            c.repositories, c.tags, c.manifests, c.live_manifests
        )?;
        writeln!(out, "Blobs      {} ({})", c.blobs, bytes(c.bytes))?;
        writeln!(out, "  live     {} ({})", c.live_blobs, bytes(c.live_bytes))?;
        writeln!(out, "  dead     {} ({})", c.dead_blobs, bytes(c.dead_bytes))?;
        writeln!(out)?;
        if self.refused {
            writeln!(
                out,
                "REFUSED: the live set may be incomplete ({} error{}, listed on stderr); nothing was deleted.",
                self.errors.len(),
                if self.errors.len() == 1 { "" } else { "s" }
            )?;
        } else {
            writeln!(out, "{verb}:")?;
            writeln!(
                out,
                "  manifests     {} ({} tag history entries)",
                s.deleted_manifests, s.deleted_tag_index_entries
            )?;
            writeln!(out, "  layer links   {}", s.deleted_layer_links)?;
            writeln!(
                out,
                "  blobs         {} ({})",
                s.deleted_blobs,
                bytes(s.deleted_bytes)
            )?;
            writeln!(out, "  empty shards  {}", s.deleted_shards)?;
            writeln!(
                out,
                "  uploads       {} ({})",
                s.deleted_uploads,
                bytes(s.deleted_upload_bytes)
            )?;
            writeln!(out, "  repositories  {}", s.deleted_repositories)?;
        }
        if c.too_young_blobs + c.too_young_manifests + c.too_young_layer_links > 0 {
            writeln!(
                out,
                "Kept as too young (modified within {}): {} blobs ({}), {} manifests, {} layer links",
                age(self.min_age_seconds),
                c.too_young_blobs,
                bytes(c.too_young_bytes),
                c.too_young_manifests,
                c.too_young_layer_links
            )?;
        }
        if let Some(window) = self.unreferenced_for_seconds {
            if !self.waiting.is_empty() {
                let count = |k: &str| self.waiting.iter().filter(|w| w.kind == k).count();
                let first = self.waiting.iter().map(|w| w.eligible_at.as_str()).min();
                writeln!(
                    out,
                    "Waiting (unreferenced for less than {}): {} blobs, {} manifests, {} layer links, {} repositories; the first may go at {}",
                    age(window),
                    count("blob"),
                    count("manifest"),
                    count("layer_link"),
                    count("repository"),
                    first.unwrap_or("-")
                )?;
            }
        }
        let rescued = s.rescued_manifests + s.rescued_layer_links + s.rescued_blobs;
        if rescued > 0 {
            writeln!(
                out,
                "Kept because they became live during the run: {} manifests, {} layer links, {} blobs",
                s.rescued_manifests, s.rescued_layer_links, s.rescued_blobs
            )?;
        }
        if s.restored_from_trash > 0 {
            writeln!(
                out,
                "Put back {} blobs an interrupted run had left in the trash",
                s.restored_from_trash
            )?;
        }
        if s.failed_deletions > 0 {
            writeln!(
                out,
                "FAILED: {} deletions (listed on stderr)",
                s.failed_deletions
            )?;
        }
        if !self.warnings.is_empty() {
            writeln!(out, "Warnings: {} (listed on stderr)", self.warnings.len())?;
        }
        if verbose {
            self.write_items(&mut out, verb)?;
        }
        writeln!(out)?;
        writeln!(out, "Took {:.2}s.", s.elapsed_seconds)?;
        if verbose {
            let phases: Vec<String> = self
                .timings
                .phases()
                .iter()
                .filter(|(_, t)| *t > 0.0)
                .map(|(name, t)| format!("{name} {t:.2}s"))
                .collect();
            writeln!(out, "Phases: {}", phases.join(", "))?;
        }
        write_requests(&mut out, self.requests.as_ref())?;
        if let Some(cache) = &self.cache {
            write_cache(&mut out, cache, self.dry_run, verbose)?;
        }
        Ok(())
    }

    fn write_items(&self, out: &mut impl Write, verb: &str) -> io::Result<()> {
        let d = &self.deleted;
        if d.manifests.is_empty()
            && d.layer_links.is_empty()
            && d.blobs.is_empty()
            && d.uploads.is_empty()
            && d.repositories.is_empty()
        {
            return Ok(());
        }
        writeln!(out)?;
        writeln!(out, "{verb}, item by item:")?;
        for m in &d.manifests {
            write!(out, "  manifest    {}@{}", m.repository, m.digest)?;
            if !m.tags.is_empty() {
                write!(out, " (history of tags: {})", m.tags.join(", "))?;
            }
            writeln!(out)?;
        }
        for l in &d.layer_links {
            writeln!(out, "  layer link  {}: {}", l.repository, l.digest)?;
        }
        for b in &d.blobs {
            writeln!(out, "  blob        {} ({})", b.digest, bytes(b.size))?;
        }
        for s in &d.shards {
            writeln!(out, "  shard dir   {}/{}", s.algorithm.name(), s.prefix)?;
        }
        for u in &d.uploads {
            writeln!(
                out,
                "  upload      {}: {} ({}, started {})",
                u.repository,
                u.uuid,
                bytes(u.size),
                u.started
            )?;
        }
        for r in &d.repositories {
            writeln!(out, "  repository  {}", r.name)?;
        }
        Ok(())
    }
}

/// Totals of an edit run (`delete` or `prune`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EditSummary {
    pub repositories_deleted: usize,
    pub tags_deleted: usize,
    pub manifests_deleted: usize,
    /// Tags a policy considered and kept (prune only).
    pub tags_kept: usize,
    pub failed_deletions: usize,
    pub elapsed_seconds: f64,
}

/// The report of `delete` and `prune`: what was (or, in a dry run, would be) removed per
/// repository and why, and the collector's report when `--gc` ran it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EditReport {
    pub version: u32,
    /// `delete` or `prune`.
    pub command: String,
    pub dry_run: bool,
    pub root: String,
    /// Why this root: named on the command line, or read from the registry's config (which
    /// key, or which environment override). Empty when the library is called directly.
    #[serde(default)]
    pub root_source: String,
    /// True when problems (listed in `errors`) stopped the run before it changed anything.
    pub refused: bool,
    pub summary: EditSummary,
    /// Only repositories with something removed.
    pub repositories: Vec<RepoEdits>,
    pub warnings: Vec<Problem>,
    pub errors: Vec<Problem>,
    /// The collector's report (`--gc`); in a dry run, what it would do after these edits.
    pub gc: Option<GcReport>,
    /// The registry's blob-descriptor cache after the edits and the collector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<CacheReport>,
}

impl EditReport {
    pub fn exit_code(&self) -> i32 {
        let own = if self.refused || !self.errors.is_empty() || self.summary.failed_deletions > 0 {
            1
        } else {
            0
        };
        own.max(self.gc.as_ref().map_or(0, GcReport::exit_code))
    }

    pub fn write_human(&self, mut out: impl Write, verbose: bool) -> io::Result<()> {
        let s = &self.summary;
        writeln!(
            out,
            "regsweep {}{} on {}",
            self.command,
            if self.dry_run { " (dry run)" } else { "" },
            self.root
        )?;
        write_root_source(&mut out, &self.root_source)?;
        let verb = if self.dry_run {
            "would delete"
        } else {
            "deleted"
        };
        for r in &self.repositories {
            if r.repository {
                writeln!(out, "  {}: {verb} the whole repository", r.name)?;
            }
            for m in &r.manifests {
                write!(out, "  {}@{}: {verb} the manifest", r.name, m.digest)?;
                if !m.tags.is_empty() {
                    write!(out, " and its tags {}", m.tags.join(", "))?;
                }
                writeln!(out)?;
            }
            for t in &r.tags {
                write!(out, "  {}:{}: {verb}", r.name, t.tag)?;
                if let Some(d) = &t.digest {
                    write!(out, " (was {d}")?;
                    if let Some(p) = &t.pushed {
                        write!(out, ", pushed {p}")?;
                    }
                    write!(out, ")")?;
                }
                writeln!(out, "; {}", t.reason)?;
            }
        }
        if self.refused {
            writeln!(
                out,
                "REFUSED: {} error{} (listed on stderr); nothing was deleted.",
                self.errors.len(),
                if self.errors.len() == 1 { "" } else { "s" }
            )?;
        } else {
            let mut line = format!(
                "{} {} repositories, {} manifests, {} tags",
                if self.dry_run {
                    "Would delete"
                } else {
                    "Deleted"
                },
                s.repositories_deleted,
                s.manifests_deleted,
                s.tags_deleted
            );
            if self.command == "prune" {
                line.push_str(&format!("; kept {} tags", s.tags_kept));
            }
            writeln!(out, "{line}.")?;
        }
        if s.failed_deletions > 0 {
            writeln!(
                out,
                "FAILED: {} deletions (listed on stderr)",
                s.failed_deletions
            )?;
        }
        if !self.warnings.is_empty() {
            writeln!(out, "Warnings: {} (listed on stderr)", self.warnings.len())?;
        }
        match &self.gc {
            Some(gc) => {
                writeln!(out)?;
                gc.write_human(&mut out, verbose)?;
            }
            None if !self.dry_run && !self.refused => writeln!(
                out,
                "No blob was deleted: run `regsweep gc -m` (or pass --gc) to reclaim the space."
            )?,
            None => {}
        }
        if let Some(cache) = &self.cache {
            write_cache(&mut out, cache, self.dry_run, verbose)?;
        }
        Ok(())
    }
}

/// The registry cache's lines of a summary.
fn write_cache(
    out: &mut impl Write,
    cache: &CacheReport,
    dry_run: bool,
    verbose: bool,
) -> io::Result<()> {
    if cache.kind == CacheKind::Redis && cache.errors.is_empty() {
        let e = &cache.evicted;
        writeln!(
            out,
            "Registry cache ({}): {} {} entries ({} blob descriptors, {} repository memberships, {} repository descriptors); kept {}",
            cache.address.as_deref().unwrap_or("redis"),
            if dry_run { "would evict" } else { "evicted" },
            e.total(),
            e.blob_descriptors,
            e.repository_memberships,
            e.repository_descriptors,
            cache.kept.total()
        )?;
        if verbose {
            for entry in &cache.evicted_entries {
                match &entry.member {
                    Some(m) => writeln!(out, "  cache entry {} member {m}", entry.key)?,
                    None => writeln!(out, "  cache entry {}", entry.key)?,
                }
            }
        }
    }
    if !cache.errors.is_empty() {
        writeln!(
            out,
            "Registry cache: NOT reconciled (listed on stderr); the next run finishes it"
        )?;
    }
    if !cache.note.is_empty() {
        let mut note = cache.note.clone();
        if let Some(first) = note.get(..1) {
            note.replace_range(..1, &first.to_uppercase());
        }
        writeln!(out, "{note}.")?;
    }
    Ok(())
}

/// Sizes in binary units, as `du -h` and registries' UIs show them.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

fn age(seconds: u64) -> String {
    if seconds == 0 {
        "0 (disabled)".to_string()
    } else {
        humantime::format_duration(std::time::Duration::from_secs(seconds)).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_sizes() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(5 << 30), "5.0 GiB");
    }

    #[test]
    fn exit_codes() {
        let mut r = GcReport {
            version: REPORT_VERSION,
            dry_run: true,
            root: "/r".into(),
            root_source: String::new(),
            delete_untagged: false,
            min_age_seconds: 3600,
            refused: false,
            summary: Summary::default(),
            deleted: Deleted::default(),
            warnings: vec![],
            errors: vec![],
            requests: None,
            unreferenced_for_seconds: None,
            waiting: vec![],
            cache: None,
            timings: Timings::default(),
        };
        assert_eq!(r.exit_code(), 0);
        r.warnings.push(Problem::new("/x", "odd"));
        assert_eq!(r.exit_code(), 0, "warnings alone do not fail a run");
        r.summary.failed_deletions = 1;
        assert_eq!(r.exit_code(), 1);
        r.summary.failed_deletions = 0;
        r.refused = true;
        assert_eq!(r.exit_code(), 1);
        let mut human = Vec::new();
        r.write_human(&mut human, true).unwrap();
        assert!(String::from_utf8(human).unwrap().contains("REFUSED"));
    }
}

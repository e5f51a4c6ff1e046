//! Report: what a run found and did, as a versioned JSON document or a human summary.
//!
//! Renderers write to any `impl Write`, so tests capture them. The human summary carries no
//! color and no progress; problems go to stderr in the binary, not here.

use std::io::{self, Write};

use serde::Serialize;

use crate::cache::registry::{CacheKind, CacheReport};
use crate::edit::report::EditReport;
use crate::gc::report::{GcReport, Timings};
use crate::units::{age, bytes};

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

impl GcReport {
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
                "REFUSED: {} error{} (listed on stderr); nothing was deleted.",
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
        write_failures(&mut out, s.failed_deletions, self.warnings.len())?;
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
            for m in &u.multipart {
                writeln!(
                    out,
                    "              multipart upload {} of {}",
                    m.upload_id, m.key
                )?;
            }
        }
        for r in &d.repositories {
            writeln!(out, "  repository  {}", r.name)?;
        }
        Ok(())
    }
}

impl EditReport {
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
        write_failures(&mut out, s.failed_deletions, self.warnings.len())?;
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

/// Deletions that failed and warnings, counted: each is listed on stderr.
fn write_failures(out: &mut impl Write, failed: usize, warnings: usize) -> io::Result<()> {
    if failed > 0 {
        writeln!(out, "FAILED: {failed} deletions (listed on stderr)")?;
    }
    if warnings > 0 {
        writeln!(out, "Warnings: {warnings} (listed on stderr)")?;
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Problem;
    use crate::gc::plan::Deleted;
    use crate::gc::report::{Summary, REPORT_VERSION};

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

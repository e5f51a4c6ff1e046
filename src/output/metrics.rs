//! `--metrics-file`: what a run did, for Prometheus, in the node_exporter textfile collector's
//! format (the exposition text format, one file the collector reads whole).
//!
//! Names follow Prometheus' naming guide: the `regsweep_` prefix, base units (seconds, bytes),
//! `_seconds`/`_bytes` for units and `_total` for counters, one `command` label (`gc`,
//! `delete`, `prune`, `report`, `check`). Two kinds:
//! - gauges of the last run (`regsweep_last_run_*`): when it ended, whether it succeeded or
//!   refused, how long it took, what it found and deleted;
//! - counters across runs (`regsweep_*_total`): the previous file's values plus this run's, so
//!   a dashboard can `rate()` them; a missing or unreadable previous file starts them over,
//!   which Prometheus takes as a counter reset.
//!
//! The file is written atomically (a temporary file in the same directory, then a rename), so
//! the collector never reads half of it.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io;
use std::path::Path;
use std::time::SystemTime;

use crate::check::CheckReport;
use crate::edit::report::EditReport;
use crate::gc::report::GcReport;
use crate::output::usage::UsageReport;

/// One run's numbers, built by the command that ran.
pub struct Metrics {
    command: String,
    /// (name, help, value) of the last run's gauges, in order.
    gauges: Vec<(&'static str, &'static str, f64)>,
    /// (name, help, value) this run adds to each counter.
    counters: Vec<(&'static str, &'static str, f64)>,
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// Nothing was deleted because the live set may be incomplete (exit 1).
    Refused,
    /// Errors, failed deletions, or damage found (exit 1).
    Failed,
}

impl Outcome {
    /// A refusal first (it also exits 1), then the exit code.
    fn of(refused: bool, exit_code: i32) -> Outcome {
        match (refused, exit_code) {
            (true, _) => Outcome::Refused,
            (false, 0) => Outcome::Success,
            _ => Outcome::Failed,
        }
    }
}

impl Metrics {
    pub fn new(command: &str, outcome: Outcome, duration_seconds: f64, dry_run: bool) -> Metrics {
        let ended = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let flag = |b: bool| f64::from(u8::from(b));
        let mut m = Metrics {
            command: command.to_string(),
            gauges: Vec::new(),
            counters: Vec::new(),
        };
        m.gauge(
            "regsweep_last_run_timestamp_seconds",
            "When the last run ended (Unix time).",
            ended,
        );
        m.gauge(
            "regsweep_last_run_success",
            "1 if the last run succeeded (exit 0), else 0.",
            flag(outcome == Outcome::Success),
        );
        m.gauge(
            "regsweep_last_run_refused",
            "1 if the last run refused to delete because the live set may be incomplete.",
            flag(outcome == Outcome::Refused),
        );
        m.gauge(
            "regsweep_last_run_dry_run",
            "1 if the last run was a dry run (nothing was written).",
            flag(dry_run),
        );
        m.gauge(
            "regsweep_last_run_duration_seconds",
            "How long the last run took.",
            duration_seconds,
        );
        m.counter(
            match outcome {
                Outcome::Success => "regsweep_runs_succeeded_total",
                Outcome::Refused => "regsweep_runs_refused_total",
                Outcome::Failed => "regsweep_runs_failed_total",
            },
            match outcome {
                Outcome::Success => "Runs that succeeded.",
                Outcome::Refused => "Runs that refused to delete.",
                Outcome::Failed => "Runs that failed.",
            },
            1.0,
        );
        m
    }

    pub fn gauge(&mut self, name: &'static str, help: &'static str, value: f64) {
        self.gauges.push((name, help, value));
    }

    pub fn counter(&mut self, name: &'static str, help: &'static str, value: f64) {
        self.counters.push((name, help, value));
    }

    /// Both a gauge of the last run and a counter across runs (`NAME` and `NAME_total`
    /// without the `last_run_` part), for what a run deletes.
    pub fn deleted(
        &mut self,
        gauge: &'static str,
        counter: &'static str,
        help: &'static str,
        value: f64,
        real: bool,
    ) {
        self.gauge(gauge, help, value);
        // A dry run deletes nothing: it adds nothing to the counters.
        self.counter(counter, help, if real { value } else { 0.0 });
    }

    /// The file's text, counters continued from `previous` (the file as it was).
    pub fn render(&self, previous: &str) -> String {
        let before = parse(previous);
        let label = format!("{{command=\"{}\"}}", escape(&self.command));
        let mut out = String::new();
        for (name, help, value) in &self.gauges {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} gauge");
            let _ = writeln!(out, "{name}{label} {}", number(*value));
        }
        // Every counter regsweep knows, so that a counter this run did not touch keeps its
        // value (a failed run, then a successful one).
        let mut counters: BTreeMap<&str, (&str, f64)> = BTreeMap::new();
        for (name, help, value) in &self.counters {
            counters.entry(name).or_insert((help, 0.0)).1 += value;
        }
        for (name, help) in KNOWN_COUNTERS {
            counters.entry(name).or_insert((help, 0.0));
        }
        for (name, (help, value)) in counters {
            let total = before
                .get(&format!("{name}{label}"))
                .copied()
                .unwrap_or(0.0)
                + value;
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} counter");
            let _ = writeln!(out, "{name}{label} {}", number(total));
        }
        out
    }

    /// Write the file atomically: a temporary file beside it, then a rename.
    pub fn write(&self, path: &Path) -> io::Result<()> {
        let previous = std::fs::read_to_string(path).unwrap_or_default();
        crate::storage::fs::write_file_atomically(path, self.render(&previous).as_bytes())
    }
}

/// `gc`'s numbers (also the collector's part of `delete --gc` and `prune --gc`).
fn add_gc(m: &mut Metrics, r: &GcReport) {
    let s = &r.summary;
    let c = &s.census;
    let real = !r.dry_run;
    m.gauge(
        "regsweep_found_blobs",
        "Blobs found in storage.",
        c.blobs as f64,
    );
    m.gauge(
        "regsweep_found_bytes",
        "Bytes of the blobs found.",
        c.bytes as f64,
    );
    m.gauge(
        "regsweep_live_bytes",
        "Bytes of live blobs.",
        c.live_bytes as f64,
    );
    m.gauge(
        "regsweep_dead_bytes",
        "Bytes of unreachable blobs, old enough or not.",
        c.dead_bytes as f64,
    );
    m.gauge(
        "regsweep_last_run_too_young_blobs",
        "Unreachable blobs kept as younger than --min-age.",
        c.too_young_blobs as f64,
    );
    m.gauge(
        "regsweep_last_run_too_young_bytes",
        "Bytes of unreachable blobs kept as younger than --min-age.",
        c.too_young_bytes as f64,
    );
    m.gauge(
        "regsweep_last_run_failed_deletions",
        "Deletions that failed in the last run.",
        s.failed_deletions as f64,
    );
    for (gauge, counter, help, value) in [
        (
            "regsweep_last_run_deleted_blobs",
            "regsweep_deleted_blobs_total",
            "Blobs deleted (in a dry run: that would be).",
            s.deleted_blobs as f64,
        ),
        (
            "regsweep_last_run_deleted_bytes",
            "regsweep_deleted_bytes_total",
            "Bytes of the blobs deleted (in a dry run: that would be).",
            s.deleted_bytes as f64,
        ),
        (
            "regsweep_last_run_deleted_manifests",
            "regsweep_deleted_manifests_total",
            "Manifests deleted (in a dry run: that would be).",
            s.deleted_manifests as f64,
        ),
        (
            "regsweep_last_run_deleted_layer_links",
            "regsweep_deleted_layer_links_total",
            "Layer links deleted (in a dry run: that would be).",
            s.deleted_layer_links as f64,
        ),
        (
            "regsweep_last_run_deleted_uploads",
            "regsweep_deleted_uploads_total",
            "Abandoned uploads deleted (in a dry run: that would be).",
            s.deleted_uploads as f64,
        ),
        (
            "regsweep_last_run_deleted_repositories",
            "regsweep_deleted_repositories_total",
            "Empty repositories deleted (in a dry run: that would be).",
            s.deleted_repositories as f64,
        ),
    ] {
        m.deleted(gauge, counter, help, value, real);
    }
}

/// The metrics of `gc`.
pub fn of_gc(r: &GcReport) -> Metrics {
    let outcome = Outcome::of(r.refused, r.exit_code());
    let mut m = Metrics::new("gc", outcome, r.summary.elapsed_seconds, r.dry_run);
    add_gc(&mut m, r);
    add_restart(&mut m, r.cache.as_ref());
    m
}

/// Whether the registry must be restarted to forget what the run deleted (its blob
/// descriptors are cached in its memory): an alert to act on, not a line to read.
fn add_restart(m: &mut Metrics, cache: Option<&crate::cache::registry::CacheReport>) {
    m.gauge(
        "regsweep_registry_restart_required",
        "1 if the registry caches blob descriptors in memory and must be restarted after the last run.",
        f64::from(u8::from(cache.is_some_and(|c| c.restart_required))),
    );
}

/// The metrics of `delete` and `prune` (and of their collector, with `--gc`).
pub fn of_edit(r: &EditReport) -> Metrics {
    let refused = r.refused || r.gc.as_ref().is_some_and(|g| g.refused);
    let outcome = Outcome::of(refused, r.exit_code());
    // The edit's clock runs until its collector is done.
    let seconds = r.summary.elapsed_seconds;
    let mut m = Metrics::new(&r.command, outcome, seconds, r.dry_run);
    let real = !r.dry_run;
    m.deleted(
        "regsweep_last_run_deleted_tags",
        "regsweep_deleted_tags_total",
        "Tags deleted (in a dry run: that would be).",
        r.summary.tags_deleted as f64,
        real,
    );
    m.gauge(
        "regsweep_last_run_failed_deletions",
        "Deletions that failed in the last run.",
        r.summary.failed_deletions as f64,
    );
    if let Some(gc) = &r.gc {
        add_gc(&mut m, gc);
    }
    add_restart(&mut m, r.cache.as_ref());
    m
}

/// The metrics of `report`.
pub fn of_usage(r: &UsageReport, seconds: f64) -> Metrics {
    let outcome = Outcome::of(false, r.exit_code());
    let t = &r.totals;
    let mut m = Metrics::new("report", outcome, seconds, true);
    m.gauge(
        "regsweep_found_blobs",
        "Blobs found in storage.",
        t.blobs as f64,
    );
    m.gauge(
        "regsweep_found_bytes",
        "Bytes of the blobs found.",
        t.bytes as f64,
    );
    m.gauge(
        "regsweep_live_bytes",
        "Bytes of live blobs.",
        t.live_bytes as f64,
    );
    m.gauge(
        "regsweep_reclaimable_bytes",
        "What gc --min-age 0 would delete.",
        t.reclaimable_bytes as f64,
    );
    m.gauge(
        "regsweep_reclaimable_untagged_bytes",
        "What gc -m --min-age 0 would delete.",
        t.reclaimable_bytes_untagged as f64,
    );
    m.gauge(
        "regsweep_repositories",
        "Repositories.",
        t.repositories as f64,
    );
    m
}

/// The metrics of `check`.
pub fn of_check(r: &CheckReport) -> Metrics {
    let outcome = Outcome::of(false, r.exit_code());
    let mut m = Metrics::new("check", outcome, r.summary.elapsed_seconds, true);
    m.gauge(
        "regsweep_last_run_problems",
        "Problems (damage) the last check found.",
        r.summary.problems as f64,
    );
    m.gauge(
        "regsweep_found_blobs",
        "Blobs found in storage.",
        r.summary.blobs as f64,
    );
    m.gauge(
        "regsweep_found_bytes",
        "Bytes of the blobs found.",
        r.summary.bytes as f64,
    );
    m.gauge(
        "regsweep_last_run_verified_bytes",
        "Bytes hashed by --verify.",
        r.summary.verified_bytes as f64,
    );
    m
}

/// Counters every file carries, whatever the command did.
const KNOWN_COUNTERS: [(&str, &str); 3] = [
    ("regsweep_runs_succeeded_total", "Runs that succeeded."),
    (
        "regsweep_runs_refused_total",
        "Runs that refused to delete.",
    ),
    ("regsweep_runs_failed_total", "Runs that failed."),
];

/// Whether `--metrics-file PATH` can be written: its directory exists and takes a new file.
/// Checked before the run, so a typo stops the command before it touches anything.
pub fn check_writable(path: &Path) -> io::Result<()> {
    // The file is replaced by a rename: whatever is at the path goes. Only a regular file (or
    // nothing) may be there; a symbolic link, a device such as /dev/stdout or a directory
    // would be replaced by a regular file.
    match std::fs::symlink_metadata(path) {
        Ok(m) if !m.file_type().is_file() => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "exists and is not a regular file (a symbolic link, a device or a directory), \
                 which writing the metrics would replace",
            ))
        }
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let probe = dir.join(format!(".regsweep-metrics-probe.{}", std::process::id()));
    std::fs::write(&probe, b"")?;
    std::fs::remove_file(&probe)
}

fn number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// `name{labels} value` lines of a previous file (comments and anything unparseable skipped).
fn parse(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (key, value) = l.rsplit_once(' ')?;
            Some((key.to_string(), value.parse().ok()?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_continue_from_the_previous_file_and_gauges_do_not() {
        let mut m = Metrics::new("gc", Outcome::Success, 1.5, false);
        m.deleted(
            "regsweep_last_run_deleted_blobs",
            "regsweep_deleted_blobs_total",
            "Blobs deleted.",
            3.0,
            true,
        );
        let first = m.render("");
        assert!(first.contains("regsweep_last_run_deleted_blobs{command=\"gc\"} 3\n"));
        assert!(first.contains("regsweep_deleted_blobs_total{command=\"gc\"} 3\n"));
        assert!(first.contains("regsweep_runs_failed_total{command=\"gc\"} 0\n"));
        let second = m.render(&first);
        assert!(second.contains("regsweep_last_run_deleted_blobs{command=\"gc\"} 3\n"));
        assert!(second.contains("regsweep_deleted_blobs_total{command=\"gc\"} 6\n"));
        assert!(second.contains("regsweep_runs_succeeded_total{command=\"gc\"} 2\n"));
        let refused = Metrics::new("gc", Outcome::Refused, 0.1, false).render(&second);
        assert!(refused.contains("regsweep_last_run_success{command=\"gc\"} 0\n"));
        assert!(refused.contains("regsweep_last_run_refused{command=\"gc\"} 1\n"));
        assert!(refused.contains("regsweep_runs_refused_total{command=\"gc\"} 1\n"));
        assert!(refused.contains("regsweep_runs_succeeded_total{command=\"gc\"} 2\n"));
    }
}

//! How a command ends: the registry's cache reconciled (for the commands that delete),
//! problems on stderr (one line each, path first, so they can be grepped), the JSON report
//! where asked, the human summary on stdout unless quiet or stdout carries the JSON, and the
//! metrics. A report that cannot be written is an error (exit 1), but never hides the summary
//! of what was done.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::open::Opened;
use super::{fail, CacheChoice, Common};
use crate::cache::registry::{self, CacheReport, Gone};
use crate::config::redis::RegistryCache;
use crate::edit::edits;
use crate::edit::report::EditReport;
use crate::error::{Error, Problem};
use crate::gc::report::GcReport;
use crate::output::metrics::{self, Metrics};
use crate::output::report::write_json;

/// What the reports of gc, delete and prune offer the end of a command.
pub(super) trait Output: serde::Serialize {
    /// Say where the root came from, and what the registry's config warns of.
    fn annotate(&mut self, target: &Opened);
    /// What the command removed (in a dry run: would remove), for the registry's cache.
    fn gone(&self) -> Gone;
    /// The registry cache's report, and how long it took; its errors are the command's too.
    fn set_cache(&mut self, cache: CacheReport, seconds: f64);
    /// What `--metrics-file` gets.
    fn metrics(&self) -> Metrics;
    /// One more warning, said with the others.
    fn warn(&mut self, problem: Problem);
    fn problems(&self) -> Vec<(&'static str, &Problem)>;
    fn write_human(&self, out: &mut dyn Write, verbose: bool) -> io::Result<()>;
    fn exit_code(&self) -> i32;
}

/// Warnings, then errors, each with its severity.
pub(super) fn tagged<'a>(
    warnings: &'a [Problem],
    errors: &'a [Problem],
) -> impl Iterator<Item = (&'static str, &'a Problem)> {
    let w = warnings.iter().map(|p| ("warning", p));
    w.chain(errors.iter().map(|p| ("error", p)))
}

/// Problems on stderr, `regsweep: SEVERITY: PATH: MESSAGE`.
pub(super) fn print_problems<'a>(problems: impl IntoIterator<Item = (&'static str, &'a Problem)>) {
    let mut err = io::stderr().lock();
    for (severity, p) in problems {
        let _ = writeln!(err, "regsweep: {severity}: {}: {}", p.path, p.message);
    }
}

impl Output for GcReport {
    fn annotate(&mut self, target: &Opened) {
        self.root_source = target.resolved.source.clone();
        self.warnings.extend(target.config_warnings());
    }
    fn gone(&self) -> Gone {
        let mut gone = Gone::default();
        self.deleted.add_to(&mut gone);
        gone
    }
    fn metrics(&self) -> Metrics {
        metrics::of_gc(self)
    }
    fn warn(&mut self, problem: Problem) {
        self.warnings.push(problem);
    }
    fn set_cache(&mut self, mut cache: CacheReport, seconds: f64) {
        self.errors.extend(cache.errors.iter().cloned());
        cache.merge_ahead(self.cache.as_ref());
        self.cache = Some(cache);
        self.timings.cache = seconds;
    }
    fn problems(&self) -> Vec<(&'static str, &Problem)> {
        tagged(&self.warnings, &self.errors).collect()
    }
    fn write_human(&self, out: &mut dyn Write, verbose: bool) -> io::Result<()> {
        GcReport::write_human(self, out, verbose)
    }
    fn exit_code(&self) -> i32 {
        GcReport::exit_code(self)
    }
}

impl Output for EditReport {
    fn annotate(&mut self, target: &Opened) {
        self.root_source = target.resolved.source.clone();
        if let Some(gc) = &mut self.gc {
            gc.root_source = target.resolved.source.clone();
        }
        self.warnings.extend(target.config_warnings());
    }
    fn metrics(&self) -> Metrics {
        metrics::of_edit(self)
    }
    fn warn(&mut self, problem: Problem) {
        self.warnings.push(problem);
    }
    fn gone(&self) -> Gone {
        let mut gone = Gone::default();
        edits::add_to(&self.repositories, &mut gone);
        if let Some(gc) = &self.gc {
            gc.deleted.add_to(&mut gone);
        }
        gone
    }
    fn set_cache(&mut self, mut cache: CacheReport, seconds: f64) {
        self.errors.extend(cache.errors.iter().cloned());
        if let Some(gc) = &mut self.gc {
            cache.merge_ahead(gc.cache.take().as_ref());
            gc.timings.cache = seconds;
        }
        self.cache = Some(cache);
    }
    fn problems(&self) -> Vec<(&'static str, &Problem)> {
        let mut all: Vec<_> = tagged(&self.warnings, &self.errors).collect();
        if let Some(gc) = &self.gc {
            all.extend(tagged(&gc.warnings, &gc.errors));
        }
        // The edit and its collector read the same storage: say each problem once.
        let mut seen = std::collections::HashSet::new();
        all.retain(|(severity, p)| seen.insert((*severity, &p.path, &p.message)));
        all
    }
    fn write_human(&self, out: &mut dyn Write, verbose: bool) -> io::Result<()> {
        EditReport::write_human(self, out, verbose)
    }
    fn exit_code(&self) -> i32 {
        EditReport::exit_code(self)
    }
}

/// How a command that deletes (gc, delete, prune) ends: what it was asked for.
pub(super) struct Finish<'a> {
    command: &'a str,
    cache: &'a CacheChoice,
    common: &'a Common,
    dry_run: bool,
    started: Instant,
}

impl<'a> Finish<'a> {
    /// Started now.
    pub fn new(
        command: &'a str,
        cache: &'a CacheChoice,
        common: &'a Common,
        dry_run: bool,
    ) -> Self {
        Finish {
            command,
            cache,
            common,
            dry_run,
            started: Instant::now(),
        }
    }
}

pub(super) fn finish(
    mut report: impl Output,
    target: &Opened,
    json: Option<Sink>,
    how: &Finish,
) -> u8 {
    let (cache, dry_run, quiet, verbose) =
        (how.cache, how.dry_run, how.common.quiet, how.common.verbose);
    report.annotate(target);
    // After the run, whatever it did: entries for what is not in storage are stale whoever
    // removed it, and evicting one is always safe.
    let settings = match &cache.redis {
        Some(redis) => RegistryCache::Redis(redis.clone()),
        None => target.resolved.cache.clone(),
    };
    let started = Instant::now();
    let reconciled = registry::reconcile(
        target.storage.as_ref(),
        &settings,
        cache.no_cache_evict,
        &report.gone(),
        dry_run,
    );
    if reconciled.restart_required && !dry_run {
        // Said on stderr even under --quiet: until the registry restarts it answers for
        // deleted blobs, and accepts pushes that reuse them (their images then do not pull).
        let path = target
            .config_path()
            .unwrap_or_else(|| target.storage.display(""));
        report.warn(Problem::new(
            path,
            format!("RESTART THE REGISTRY: {}", reconciled.note),
        ));
    }
    report.set_cache(reconciled, started.elapsed().as_secs_f64());
    print_problems(report.problems());
    let json_to_stdout = json.as_ref().is_some_and(Sink::is_stdout);
    let mut failed = false;
    if let Some(sink) = json {
        failed |= !sink.write("JSON report", |w| write_json(&report, w));
    }
    if !quiet && !json_to_stdout {
        failed |= !Sink::Stdout.write("summary", |w| report.write_human(w, verbose));
    }
    failed |= !write_metrics(how.common.metrics_file.as_deref(), || report.metrics());
    report.exit_code().max(i32::from(failed)) as u8
}

/// A run that stopped before it had a report (another run holds the lock, ...): said, and
/// counted as failed in the metrics.
pub(super) fn failed_run(e: &Error, how: &Finish) -> u8 {
    let code = fail(e);
    write_metrics(how.common.metrics_file.as_deref(), || {
        Metrics::new(
            how.command,
            metrics::Outcome::Failed,
            how.started.elapsed().as_secs_f64(),
            how.dry_run,
        )
    });
    code
}

/// Write the run's metrics where `--metrics-file` says; false (said on stderr) if it failed.
pub(super) fn write_metrics(path: Option<&Path>, metrics: impl FnOnce() -> Metrics) -> bool {
    let Some(path) = path else {
        return true;
    };
    match metrics().write(path) {
        Ok(()) => true,
        Err(e) => {
            eprintln!(
                "regsweep: error: {}: cannot write the metrics: {e}",
                path.display()
            );
            false
        }
    }
}

/// Where a report goes: stdout, or a file opened before the command touches anything.
pub(super) enum Sink {
    Stdout,
    File {
        path: PathBuf,
        file: std::fs::File,
        /// Created by this run (nothing was there): removed again if the run stops first.
        created: bool,
    },
}

impl Sink {
    /// Open PATH (`-` is stdout) for writing now, without truncating it yet: an unwritable
    /// path stops the command before it starts (exit 2), and an existing file keeps its
    /// content until there is a report to put in it.
    pub fn open(path: &Path) -> Result<Sink, u8> {
        if path == Path::new("-") {
            return Ok(Sink::Stdout);
        }
        let created = std::fs::symlink_metadata(path).is_err();
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map(|file| Sink::File {
                path: path.to_path_buf(),
                file,
                created,
            })
            .map_err(|e| {
                fail(&Error::target(
                    path,
                    format!("cannot write there: {e}; nothing was done"),
                ))
            })
    }

    /// The command stopped before it had a report: remove the file if this run created it
    /// (an existing one keeps its content: it was never truncated).
    pub fn discard(self) {
        if let Sink::File {
            path,
            created: true,
            ..
        } = self
        {
            let _ = std::fs::remove_file(path);
        }
    }

    pub fn is_stdout(&self) -> bool {
        matches!(self, Sink::Stdout)
    }

    /// Write `what`; a failure is said on stderr, naming the path, and returns false.
    pub fn write(self, what: &str, write: impl FnOnce(&mut dyn Write) -> io::Result<()>) -> bool {
        let (name, result) = match self {
            Sink::Stdout => {
                let mut out = io::stdout().lock();
                (
                    "stdout".to_string(),
                    write(&mut out).and_then(|()| out.flush()),
                )
            }
            Sink::File { path, file, .. } => {
                // Truncated only now; a device such as /dev/null cannot be, and needs not.
                let truncated = match file.metadata() {
                    Ok(m) if m.is_file() => file.set_len(0),
                    _ => Ok(()),
                };
                let mut w = io::BufWriter::new(file);
                let result = truncated
                    .and_then(|()| write(&mut w))
                    .and_then(|()| w.flush());
                (path.display().to_string(), result)
            }
        };
        match result {
            Ok(()) => true,
            Err(e) => {
                eprintln!("regsweep: error: {name}: cannot write the {what}: {e}");
                false
            }
        }
    }
}

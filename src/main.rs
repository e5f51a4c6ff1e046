//! The thin binary: parse arguments, call the library, print, map the result to an exit code.

mod cli;

use std::io::{self, IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;
use std::time::SystemTime;

use clap::Parser;
use regsweep::delete::Reference;
use regsweep::error::{Error, Problem};
use regsweep::manifest_cache::ManifestCache;
use regsweep::metrics::{self, Metrics};
use regsweep::prune::{self, Rule, RuleSpec};
use regsweep::registry_cache::{self, CacheReport, Gone, RegistryCache};
use regsweep::report::{write_json, EditReport, GcReport};
use regsweep::storage::s3::S3Storage;
use regsweep::storage::s3_client::Client as S3Client;
use regsweep::storage::{FsStorage, Storage};
use regsweep::{gc, target, EditOptions, GcOptions};

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match cli.command {
        cli::Command::Gc(args) => run_gc(args),
        cli::Command::Delete(args) => run_delete(args),
        cli::Command::Prune(args) => run_prune(args),
        cli::Command::Report(args) => run_report(args),
        cli::Command::Check(args) => run_check(args),
        cli::Command::Completions(args) => run_completions(args),
        cli::Command::Man(args) => run_man(args),
    }
}

fn run_completions(args: cli::CompletionsArgs) -> ExitCode {
    use clap::CommandFactory;
    let mut cmd = cli::Cli::command();
    clap_complete::generate(args.shell, &mut cmd, "regsweep", &mut io::stdout());
    ExitCode::SUCCESS
}

fn run_man(args: cli::ManArgs) -> ExitCode {
    use clap::CommandFactory;
    let written = std::fs::create_dir_all(&args.dir)
        .and_then(|()| clap_mangen::generate_to(cli::Cli::command(), &args.dir));
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&Error::target(
            &args.dir,
            format!("cannot write the man pages: {e}"),
        )),
    }
}

/// Write the run's metrics where `--metrics-file` says; false (said on stderr) if it failed.
fn write_metrics(path: Option<&Path>, metrics: impl FnOnce() -> Metrics) -> bool {
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

fn fail(err: &Error) -> ExitCode {
    eprintln!("regsweep: error: {err}");
    match err {
        Error::Locked { .. } => ExitCode::from(1),
        // Nothing was touched.
        Error::Io { .. } | Error::Target { .. } | Error::Usage(_) => ExitCode::from(2),
    }
}

fn usage(messages: &[String]) -> ExitCode {
    fail(&Error::Usage(messages.to_vec()))
}

fn set_jobs(jobs: Option<u64>, object_storage: bool) -> Result<(), ExitCode> {
    // clap has checked the range.
    let jobs = match jobs {
        Some(j) => j as usize,
        None if object_storage => regsweep::DEFAULT_S3_JOBS,
        None => regsweep::default_jobs(),
    };
    rayon::ThreadPoolBuilder::new()
        .num_threads(jobs)
        .build_global()
        .map_err(|e| usage(&[format!("cannot start {jobs} worker threads: {e}")]))
}

/// What the reports of gc, delete and prune offer the binary.
trait Output: serde::Serialize {
    /// Say where the root came from, and what the registry's config warns of.
    fn annotate(&mut self, target: &Opened);
    /// What the command removed (in a dry run: would remove), for the registry's cache.
    fn gone(&self) -> Gone;
    /// The registry cache's report, and how long it took; its errors are the command's too.
    fn set_cache(&mut self, cache: CacheReport, seconds: f64);
    /// What `--metrics-file` gets.
    fn metrics(&self) -> Metrics;
    fn problems(&self) -> Vec<(&'static str, &Problem)>;
    fn write_human(&self, out: &mut dyn Write, verbose: bool) -> io::Result<()>;
    fn exit_code(&self) -> i32;
}

/// Warnings, then errors, each with its severity.
fn tagged<'a>(
    warnings: &'a [Problem],
    errors: &'a [Problem],
) -> impl Iterator<Item = (&'static str, &'a Problem)> {
    let w = warnings.iter().map(|p| ("warning", p));
    w.chain(errors.iter().map(|p| ("error", p)))
}

impl Output for GcReport {
    fn annotate(&mut self, target: &Opened) {
        self.root_source = target.resolved.source.clone();
        self.warnings.extend(target.config_warnings());
    }
    fn gone(&self) -> Gone {
        let mut gone = Gone::default();
        gone.add_deleted(&self.deleted);
        gone
    }
    fn metrics(&self) -> Metrics {
        metrics::of_gc(self)
    }
    fn set_cache(&mut self, cache: CacheReport, seconds: f64) {
        self.errors.extend(cache.errors.iter().cloned());
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
    fn gone(&self) -> Gone {
        let mut gone = Gone::default();
        gone.add_edits(&self.repositories);
        if let Some(gc) = &self.gc {
            gone.add_deleted(&gc.deleted);
        }
        gone
    }
    fn set_cache(&mut self, cache: CacheReport, seconds: f64) {
        self.errors.extend(cache.errors.iter().cloned());
        self.cache = Some(cache);
        if let Some(gc) = &mut self.gc {
            gc.timings.cache = seconds;
        }
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

/// Problems to stderr (one line each, path first, so they can be grepped), the JSON report
/// where asked, the human summary on stdout unless quiet or stdout carries the JSON. A report
/// that cannot be written is an error (exit 1), but never hides the summary of what was done.
/// How a command that deletes (gc, delete, prune) ends: what it was asked for.
struct Finish<'a> {
    command: &'a str,
    cache: &'a cli::CacheArgs,
    common: &'a cli::CommonArgs,
    dry_run: bool,
    quiet: bool,
    verbose: bool,
    started: std::time::Instant,
}

fn finish(mut report: impl Output, target: &Opened, json: Option<Sink>, how: &Finish) -> ExitCode {
    let (cache, dry_run, quiet, verbose) = (how.cache, how.dry_run, how.quiet, how.verbose);
    report.annotate(target);
    // After the run, whatever it did: entries for what is not in storage are stale whoever
    // removed it, and evicting one is always safe.
    let settings = match &cache.redis {
        Some(redis) => RegistryCache::Redis(redis.clone()),
        None => target.resolved.cache.clone(),
    };
    let started = std::time::Instant::now();
    let reconciled = registry_cache::reconcile(
        target.storage.as_ref(),
        &settings,
        cache.no_cache_evict,
        &report.gone(),
        dry_run,
    );
    report.set_cache(reconciled, started.elapsed().as_secs_f64());
    {
        let mut err = io::stderr().lock();
        for (severity, p) in report.problems() {
            let _ = writeln!(err, "regsweep: {severity}: {}: {}", p.path, p.message);
        }
    }
    let json_to_stdout = json.as_ref().is_some_and(Sink::is_stdout);
    let mut failed = false;
    if let Some(sink) = json {
        failed |= !sink.write("JSON report", |w| write_json(&report, w));
    }
    if !quiet && !json_to_stdout {
        failed |= !Sink::Stdout.write("summary", |w| report.write_human(w, verbose));
    }
    failed |= !write_metrics(how.common.metrics_file.as_deref(), || report.metrics());
    ExitCode::from(report.exit_code().max(i32::from(failed)) as u8)
}

fn run_gc(args: cli::GcArgs) -> ExitCode {
    let (opened, [json]) = match open(&args.common, &args.target, [args.common.json.as_deref()]) {
        Ok(opened) => opened,
        Err(code) => return code,
    };
    let options = GcOptions {
        dry_run: args.dry_run,
        delete_untagged: args.delete_untagged,
        min_age: args.min_age,
        ignore_errors: args.unsafe_ignore_errors,
        wait_for_lock: args.wait,
        progress: !args.quiet && io::stderr().is_terminal(),
        uploads_older_than: args.housekeeping.uploads_older_than.0,
        empty_repositories: args.housekeeping.empty_repositories,
        unreferenced: args.housekeeping.unreferenced(),
    };
    let started = std::time::Instant::now();
    let result = gc(opened.storage.as_ref(), &options);
    let how = Finish {
        command: "gc",
        cache: &args.cache,
        common: &args.common,
        dry_run: args.dry_run,
        quiet: args.quiet,
        verbose: args.verbose,
        started,
    };
    match result {
        Ok(report) => finish(report, &opened, json, &how),
        Err(e) => failed_run(&e, &how),
    }
}

/// A run that stopped before it had a report (another run holds the lock, ...): said, and
/// counted as failed in the metrics.
fn failed_run(e: &Error, how: &Finish) -> ExitCode {
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

fn edit_options(args: &cli::EditArgs) -> EditOptions {
    EditOptions {
        dry_run: args.dry_run,
        wait_for_lock: args.wait,
        gc: args.gc.then(|| GcOptions {
            dry_run: args.dry_run,
            // Removing tags frees space only once their untagged manifests go.
            delete_untagged: true,
            min_age: args.min_age,
            ignore_errors: false,
            wait_for_lock: args.wait,
            progress: !args.quiet && io::stderr().is_terminal(),
            uploads_older_than: args.housekeeping.uploads_older_than.0,
            empty_repositories: args.housekeeping.empty_repositories,
            unreferenced: args.housekeeping.unreferenced(),
        }),
    }
}

fn run_edit(
    args: &cli::EditArgs,
    target: &Path,
    command: &str,
    select: Box<regsweep::Selector<'_>>,
) -> ExitCode {
    let (opened, [json]) = match open(&args.common, target, [args.common.json.as_deref()]) {
        Ok(opened) => opened,
        Err(code) => return code,
    };
    let started = std::time::Instant::now();
    let result = regsweep::edit(
        opened.storage.as_ref(),
        command,
        &edit_options(args),
        select,
    );
    let how = Finish {
        command,
        cache: &args.cache,
        common: &args.common,
        dry_run: args.dry_run,
        quiet: args.quiet,
        verbose: args.verbose,
        started,
    };
    match result {
        Ok(report) => finish(report, &opened, json, &how),
        Err(e) => failed_run(&e, &how),
    }
}

fn run_delete(args: cli::DeleteArgs) -> ExitCode {
    let (refs, errors): (Vec<_>, Vec<_>) = args
        .refs
        .iter()
        .map(|r| Reference::parse(r, args.repository))
        .partition(Result::is_ok);
    if !errors.is_empty() {
        let errors: Vec<String> = errors.into_iter().filter_map(Result::err).collect();
        return usage(&errors);
    }
    let refs: Vec<Reference> = refs.into_iter().filter_map(Result::ok).collect();
    let select = Box::new(
        move |storage: &dyn regsweep::storage::Storage, names: &[String]| {
            regsweep::delete::resolve(storage, names, &refs)
        },
    );
    run_edit(&args.edit, &args.target, "delete", select)
}

fn run_prune(args: cli::PruneArgs) -> ExitCode {
    let from_flags = args.policy.is_none();
    let rules: Result<Vec<Rule>, String> = match &args.policy {
        Some(path) => prune::load_policy(path),
        None => {
            let spec = RuleSpec {
                repository: None,
                repositories: args.repositories.clone(),
                keep_n: args.keep_n,
                older_than: args.older_than.clone(),
                name_regex_delete: args.name_regex_delete.clone(),
                name_regex_keep: args.name_regex_keep.clone(),
                keep_latest: args.keep_latest,
            };
            Rule::compile(&spec, "command line".into()).map(|r| vec![r])
        }
    };
    let rules = match rules {
        Ok(rules) => rules,
        Err(e) => return usage(&[e]),
    };
    let now = SystemTime::now();
    let select = Box::new(
        move |storage: &dyn regsweep::storage::Storage, names: &[String]| {
            prune::select(storage, names, &rules, from_flags, now)
        },
    );
    run_edit(&args.edit, &args.target, "prune", select)
}

/// A target opened for a command: its storage root and why, checked to be a registry.
struct Opened {
    resolved: target::Resolved,
    storage: Box<dyn Storage>,
    /// The config file named on the command line, if any (for its warnings' path).
    config: Option<std::path::PathBuf>,
}

impl Opened {
    /// The registry config's warnings, as problems naming the config file.
    fn config_warnings(&self) -> Vec<Problem> {
        let path = self
            .config
            .as_ref()
            .map_or_else(String::new, |p| p.display().to_string());
        self.resolved
            .warnings
            .iter()
            .map(|w| Problem::new(path.clone(), w.clone()))
            .collect()
    }
}

/// Start the workers, open a target (its storage root, checked to be a registry), then every
/// output the command was asked to write, all before anything is read or deleted: a bad
/// target or an unwritable output stops the command here with exit 2.
fn open<const N: usize>(
    common: &cli::CommonArgs,
    target: &Path,
    outputs: [Option<&Path>; N],
) -> Result<(Opened, [Option<Sink>; N]), ExitCode> {
    let resolved = target::resolve(target, common.s3_endpoint.as_deref()).map_err(|e| fail(&e))?;
    let object_storage = resolved.fs_root().is_none();
    set_jobs(common.jobs, object_storage)?;
    let to_stdout = outputs
        .iter()
        .flatten()
        .filter(|p| **p == Path::new("-"))
        .count();
    if to_stdout > 1 {
        return Err(usage(&[
            "only one output can go to stdout (`-`); write the others to files".into(),
        ]));
    }
    if let Some(path) = &common.metrics_file {
        regsweep::metrics::check_writable(path).map_err(|e| {
            fail(&Error::target(
                path,
                format!("cannot write metrics there: {e}; nothing was done"),
            ))
        })?;
    }
    let mut sinks: [Option<Sink>; N] = std::array::from_fn(|_| None);
    for (sink, path) in sinks.iter_mut().zip(outputs) {
        if let Some(path) = path {
            *sink = Some(Sink::open(path)?);
        }
    }
    let storage = open_storage(&resolved, common)?;
    regsweep::discover::check_root(storage.as_ref()).map_err(|e| fail(&e))?;
    // A config target is a file (a storage root is a directory, an s3:// URL no path at all).
    let config = std::fs::metadata(target)
        .is_ok_and(|m| m.is_file())
        .then(|| target.into());
    Ok((
        Opened {
            resolved,
            storage,
            config,
        },
        sinks,
    ))
}

/// The storage behind a resolved target. Object storage is listed here, once.
fn open_storage(
    resolved: &target::Resolved,
    common: &cli::CommonArgs,
) -> Result<Box<dyn Storage>, ExitCode> {
    match &resolved.backend {
        target::Backend::Fs(root) => Ok(Box::new(FsStorage::new(root))),
        target::Backend::S3 { settings, prefix } => {
            let name = format!("s3://{}/{prefix}", settings.bucket);
            let client = S3Client::new((**settings).clone(), common.max_requests_per_second)
                .map_err(|e| fail(&Error::target(&name, e.to_string())))?;
            let cache_dir = match &common.cache_dir {
                Some(dir) if dir == Path::new("off") => None,
                Some(dir) => Some(dir.clone()),
                None => regsweep::manifest_cache::default_dir(),
            };
            let cache = cache_dir
                .map(|d| ManifestCache::new(d, regsweep::manifest_cache::DEFAULT_MAX_BYTES));
            let storage = S3Storage::open(client, prefix, cache).map_err(|e| {
                // A listing that failed after its retries: nothing can be planned.
                eprintln!("regsweep: error: {name}: cannot list the bucket: {e}");
                ExitCode::from(1)
            })?;
            Ok(Box::new(storage))
        }
    }
}

/// Where a report goes: stdout, or a file opened before the command touches anything.
enum Sink {
    Stdout,
    File {
        path: std::path::PathBuf,
        file: std::fs::File,
    },
}

impl Sink {
    /// Open PATH (`-` is stdout) for writing now, without truncating it yet: an unwritable
    /// path stops the command before it starts (exit 2), and an existing file keeps its
    /// content until there is a report to put in it.
    fn open(path: &Path) -> Result<Sink, ExitCode> {
        if path == Path::new("-") {
            return Ok(Sink::Stdout);
        }
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map(|file| Sink::File {
                path: path.to_path_buf(),
                file,
            })
            .map_err(|e| {
                fail(&regsweep::error::Error::target(
                    path,
                    format!("cannot write there: {e}; nothing was done"),
                ))
            })
    }

    fn is_stdout(&self) -> bool {
        matches!(self, Sink::Stdout)
    }

    /// Write `what`; a failure is said on stderr, naming the path, and returns false.
    fn write(self, what: &str, write: impl FnOnce(&mut dyn Write) -> io::Result<()>) -> bool {
        let (name, result) = match self {
            Sink::Stdout => {
                let mut out = io::stdout().lock();
                (
                    "stdout".to_string(),
                    write(&mut out).and_then(|()| out.flush()),
                )
            }
            Sink::File { path, file } => {
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

fn run_report(args: cli::ReportArgs) -> ExitCode {
    let outputs = [
        args.common.json.as_deref(),
        args.csv.as_deref(),
        args.html.as_deref(),
    ];
    let (opened, [json, csv, html]) = match open(&args.common, &args.target, outputs) {
        Ok(opened) => opened,
        Err(code) => return code,
    };
    let started = std::time::Instant::now();
    let mut report = regsweep::usage::usage(opened.storage.as_ref(), args.uploads_older_than.0);
    report.root_source = opened.resolved.source.clone();
    for (severity, p) in tagged(&report.warnings, &report.errors) {
        eprintln!("regsweep: {severity}: {}: {}", p.path, p.message);
    }
    let stdout_taken = [&json, &csv]
        .iter()
        .any(|s| s.as_ref().is_some_and(Sink::is_stdout));
    let mut failed = false;
    if let Some(sink) = json {
        failed |= !sink.write("JSON report", |w| write_json(&report, w));
    }
    if let Some(sink) = csv {
        failed |= !sink.write("CSV report", |w| report.write_csv(w));
    }
    if let Some(sink) = html {
        failed |= !sink.write("HTML report", |w| report.write_html(w, args.top));
    }
    if !args.quiet && !stdout_taken {
        failed |= !Sink::Stdout.write("table", |w| report.write_human(w, args.top));
    }
    failed |= !write_metrics(args.common.metrics_file.as_deref(), || {
        metrics::of_usage(&report, started.elapsed().as_secs_f64())
    });
    ExitCode::from(report.exit_code().max(i32::from(failed)) as u8)
}

fn run_check(args: cli::CheckArgs) -> ExitCode {
    let (opened, [json]) = match open(&args.common, &args.target, [args.common.json.as_deref()]) {
        Ok(opened) => opened,
        Err(code) => return code,
    };
    let options = regsweep::check::Options {
        verify: args.verify,
        stale_uploads: args.stale_uploads,
        progress: !args.quiet && io::stderr().is_terminal(),
    };
    let mut report = regsweep::check::check(opened.storage.as_ref(), options);
    report.root_source = opened.resolved.source.clone();
    {
        let mut err = io::stderr().lock();
        for p in &report.problems {
            let _ = writeln!(err, "regsweep: damage: {}: {}", p.path, p.message);
        }
    }
    let json_to_stdout = json.as_ref().is_some_and(Sink::is_stdout);
    let mut failed = false;
    if let Some(sink) = json {
        failed |= !sink.write("JSON report", |w| write_json(&report, w));
    }
    if !args.quiet && !json_to_stdout {
        failed |= !Sink::Stdout.write("summary", |w| report.write_human(w));
    }
    failed |= !write_metrics(args.common.metrics_file.as_deref(), || {
        metrics::of_check(&report)
    });
    ExitCode::from(report.exit_code().max(i32::from(failed)) as u8)
}

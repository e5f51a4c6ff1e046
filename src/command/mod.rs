//! The commands as a user runs them: open a target, run one command, finish it (the report
//! on stdout or in a file, problems on stderr, the registry's cache, the metrics), and say
//! which exit code that calls for. The binary only parses its arguments into these plain
//! structs and calls one function here.
//!
//! The top of the library: it may import every layer; nothing imports it but the binary.

mod finish;
mod open;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::check;
use crate::config::redis::{RedisSettings, RegistryCache};
use crate::edit::delete::{self, Reference};
use crate::edit::driver::{self as edit_driver, EditOptions, Selector};
use crate::edit::prune::{self, Rule, RuleSpec};
use crate::error::Error;
use crate::gc::driver::{self as gc_driver, GcOptions};
use crate::output::{metrics, usage};
use crate::storage::Storage;

use finish::{failed_run, finish, print_problems, write_metrics, Finish, Sink};
use open::open;

/// Exit codes (the README's table): done; refused, failed deletions or the lock held; usage
/// or target errors, nothing touched.
pub const EXIT_OK: u8 = 0;
pub const EXIT_FAILED: u8 = 1;
pub const EXIT_USAGE: u8 = 2;

/// Worker threads when `--jobs` is not given: 32 per core, between 16 and 128. Nearly all
/// the work is waiting for the filesystem (a directory listing, a stat, a 71-byte read), so
/// on a cold cache the disk, not the CPU, is the limit, and it answers faster the more
/// requests it has in flight: on the 2-core machine of BENCHMARKS.md a cold run takes 11.7 s
/// with 2 threads and 3.8 s with 64. On a warm cache the extra threads cost almost nothing.
pub fn default_jobs() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    (cores * 32).clamp(16, 128)
}

/// Requests in flight on object storage when `--jobs` is not given: each waits tens of
/// milliseconds on the network, and S3 serves thousands a second per prefix.
pub const DEFAULT_S3_JOBS: usize = 64;

/// The most worker threads `--jobs` accepts. Past a few hundred the disk answers no faster,
/// and each thread costs a stack and start-up time: 15,000 of them took minutes to start.
pub const MAX_JOBS: usize = 1024;

/// What every command is told besides its own options.
#[derive(Debug, Clone, Default)]
pub struct Common {
    /// The storage root, the registry's config.yml, or a bucket URL.
    pub target: PathBuf,
    pub jobs: Option<usize>,
    /// Where the JSON report goes (`-` is stdout).
    pub json: Option<PathBuf>,
    pub endpoint: Option<String>,
    pub max_requests_per_second: Option<f64>,
    /// Where manifests read from object storage are cached (`off` for nowhere).
    pub cache_dir: Option<PathBuf>,
    pub metrics_file: Option<PathBuf>,
    /// No summary on stdout (errors still go to stderr).
    pub quiet: bool,
    /// Every item in the summary, and the phases' times.
    pub verbose: bool,
}

/// The registry's blob-descriptor cache, for the commands that delete.
#[derive(Debug, Clone, Default)]
pub struct CacheChoice {
    /// Reach this Redis rather than the one the registry's config names.
    pub redis: Option<RedisSettings>,
    /// Leave the cache alone.
    pub no_cache_evict: bool,
}

/// `gc`.
pub fn gc(common: &Common, cache: &CacheChoice, options: &GcOptions) -> u8 {
    let (opened, [json]) = match open(common, "gc", options.dry_run, [common.json.as_deref()]) {
        Ok(opened) => opened,
        Err(code) => return code,
    };
    let how = Finish::new("gc", cache, common, options.dry_run);
    let options = GcOptions {
        cache: evicted_ahead(cache, &opened),
        ..options.clone()
    };
    match gc_driver::gc(opened.storage.as_ref(), &options) {
        Ok(report) => finish(report, &opened, json, &how),
        Err(e) => failed_run(&e, &how),
    }
}

/// `delete`: REFS are `REPO:TAG`, `REPO@DIGEST`, or with `repository` a bare `REPO`.
pub fn delete(
    common: &Common,
    cache: &CacheChoice,
    refs: &[String],
    repository: bool,
    options: &EditOptions,
) -> u8 {
    let (refs, errors): (Vec<_>, Vec<_>) = refs
        .iter()
        .map(|r| Reference::parse(r, repository))
        .partition(Result::is_ok);
    if !errors.is_empty() {
        return usage_error(errors.into_iter().filter_map(Result::err).collect());
    }
    let refs: Vec<Reference> = refs.into_iter().filter_map(Result::ok).collect();
    let select = Box::new(move |storage: &dyn Storage, names: &[String]| {
        delete::resolve(storage, names, &refs)
    });
    edit(common, cache, "delete", options, select)
}

/// Where `prune` takes its rules from.
#[derive(Debug, Clone)]
pub enum Policy {
    /// A JSON policy file.
    File(PathBuf),
    /// One rule from the command line.
    Flags(RuleSpec),
}

/// `prune`.
pub fn prune(common: &Common, cache: &CacheChoice, policy: &Policy, options: &EditOptions) -> u8 {
    let rules: Result<Vec<Rule>, String> = match policy {
        Policy::File(path) => prune::load_policy(path),
        Policy::Flags(spec) => Rule::compile(spec, "command line".into()).map(|r| vec![r]),
    };
    let rules = match rules {
        Ok(rules) => rules,
        Err(e) => return usage_error(vec![e]),
    };
    let from_flags = matches!(policy, Policy::Flags(_));
    let now = SystemTime::now();
    let select = Box::new(move |storage: &dyn Storage, names: &[String]| {
        prune::select(storage, names, &rules, from_flags, now)
    });
    edit(common, cache, "prune", options, select)
}

fn edit(
    common: &Common,
    cache: &CacheChoice,
    command: &str,
    options: &EditOptions,
    select: Box<Selector<'_>>,
) -> u8 {
    let (opened, [json]) = match open(common, command, options.dry_run, [common.json.as_deref()]) {
        Ok(opened) => opened,
        Err(code) => return code,
    };
    let how = Finish::new(command, cache, common, options.dry_run);
    let mut options = options.clone();
    if let Some(gc) = &mut options.gc {
        gc.cache = evicted_ahead(cache, &opened);
    }
    match edit_driver::edit(opened.storage.as_ref(), command, &options, select) {
        Ok(report) => finish(report, &opened, json, &how),
        Err(e) => failed_run(&e, &how),
    }
}

/// The cache a real run evicts entries from before it removes what they describe: the one
/// `--redis` names, else the registry config's; none with `--no-cache-evict`.
fn evicted_ahead(cache: &CacheChoice, opened: &open::Opened) -> RegistryCache {
    if cache.no_cache_evict {
        return RegistryCache::Unknown;
    }
    match &cache.redis {
        Some(redis) => RegistryCache::Redis(redis.clone()),
        None => opened.resolved.cache.clone(),
    }
}

/// What `report` writes besides the JSON.
#[derive(Debug, Clone, Default)]
pub struct ReportOutputs {
    pub csv: Option<PathBuf>,
    pub html: Option<PathBuf>,
    /// Repositories in the table and the chart.
    pub top: usize,
}

/// `report`: where the storage goes.
pub fn report(
    common: &Common,
    outputs: &ReportOutputs,
    uploads_older_than: Option<std::time::Duration>,
) -> u8 {
    let paths = [
        common.json.as_deref(),
        outputs.csv.as_deref(),
        outputs.html.as_deref(),
    ];
    let (opened, [json, csv, html]) = match open(common, "report", true, paths) {
        Ok(opened) => opened,
        Err(code) => return code,
    };
    let started = std::time::Instant::now();
    let mut report = usage::usage(opened.storage.as_ref(), uploads_older_than);
    report.root_source = opened.resolved.source.clone();
    print_problems(finish::tagged(&report.warnings, &report.errors));
    let stdout_taken = [&json, &csv]
        .iter()
        .any(|s| s.as_ref().is_some_and(Sink::is_stdout));
    let mut failed = false;
    if let Some(sink) = json {
        failed |= !sink.write("JSON report", |w| {
            crate::output::report::write_json(&report, w)
        });
    }
    if let Some(sink) = csv {
        failed |= !sink.write("CSV report", |w| report.write_csv(w));
    }
    if let Some(sink) = html {
        failed |= !sink.write("HTML report", |w| report.write_html(w, outputs.top));
    }
    if !common.quiet && !stdout_taken {
        failed |= !Sink::Stdout.write("table", |w| report.write_human(w, outputs.top));
    }
    failed |= !write_metrics(common.metrics_file.as_deref(), || {
        metrics::of_usage(&report, started.elapsed().as_secs_f64())
    });
    report.exit_code().max(i32::from(failed)) as u8
}

/// `check`: find damage without changing anything.
pub fn check(common: &Common, options: check::Options) -> u8 {
    let (opened, [json]) = match open(common, "check", true, [common.json.as_deref()]) {
        Ok(opened) => opened,
        Err(code) => return code,
    };
    let mut report = check::check(opened.storage.as_ref(), options);
    report.root_source = opened.resolved.source.clone();
    {
        let mut err = std::io::stderr().lock();
        for p in &report.problems {
            let _ = writeln!(err, "regsweep: damage: {}: {}", p.path, p.message);
        }
    }
    let json_to_stdout = json.as_ref().is_some_and(Sink::is_stdout);
    let mut failed = false;
    if let Some(sink) = json {
        failed |= !sink.write("JSON report", |w| {
            crate::output::report::write_json(&report, w)
        });
    }
    if !common.quiet && !json_to_stdout {
        failed |= !Sink::Stdout.write("summary", |w| report.write_human(w));
    }
    failed |= !write_metrics(common.metrics_file.as_deref(), || {
        metrics::of_check(&report)
    });
    report.exit_code().max(i32::from(failed)) as u8
}

/// Say an error on stderr, as `regsweep: error: ...`, and the exit code it calls for.
pub fn fail(err: &Error) -> u8 {
    eprintln!("regsweep: error: {err}");
    match err {
        Error::Locked { .. } => EXIT_FAILED,
        // Nothing was touched.
        Error::Io { .. } | Error::Target { .. } | Error::Usage(_) => EXIT_USAGE,
    }
}

/// A usage error: said, exit 2.
pub fn usage_error(messages: Vec<String>) -> u8 {
    fail(&Error::Usage(messages))
}

/// A target that cannot be used (a directory the man pages cannot go to, ...): said, exit 2.
pub fn target_error(path: &Path, message: String) -> u8 {
    fail(&Error::target(path, message))
}

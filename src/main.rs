//! The thin binary: parse arguments, call the library, print, map the result to an exit code.

mod cli;

use std::io::{self, IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;
use std::time::SystemTime;

use clap::Parser;
use regsweep::delete::Reference;
use regsweep::error::{Error, Problem};
use regsweep::prune::{self, Rule, RuleSpec};
use regsweep::report::{write_json, EditReport, GcReport};
use regsweep::storage::FsStorage;
use regsweep::{gc, target, EditOptions, GcOptions};

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match cli.command {
        cli::Command::Gc(args) => run_gc(args),
        cli::Command::Delete(args) => run_delete(args),
        cli::Command::Prune(args) => run_prune(args),
        cli::Command::Report(args) => run_report(args),
        cli::Command::Check(args) => run_check(args),
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

fn set_jobs(jobs: Option<usize>) -> Result<(), ExitCode> {
    let jobs = jobs.unwrap_or_else(regsweep::default_jobs);
    if jobs == 0 {
        return Err(usage(&["--jobs must be at least 1".into()]));
    }
    rayon::ThreadPoolBuilder::new()
        .num_threads(jobs)
        .build_global()
        .map_err(|e| usage(&[format!("cannot start {jobs} worker threads: {e}")]))
}

/// What the reports of gc, delete and prune offer the binary.
trait Output: serde::Serialize {
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
    fn problems(&self) -> Vec<(&'static str, &Problem)> {
        let mut all: Vec<_> = tagged(&self.warnings, &self.errors).collect();
        if let Some(gc) = &self.gc {
            all.extend(tagged(&gc.warnings, &gc.errors));
        }
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
/// where asked, the human summary on stdout unless quiet or stdout carries the JSON.
fn finish(report: &impl Output, json: Option<&Path>, quiet: bool, verbose: bool) -> ExitCode {
    {
        let mut err = io::stderr().lock();
        for (severity, p) in report.problems() {
            let _ = writeln!(err, "regsweep: {severity}: {}: {}", p.path, p.message);
        }
    }
    let json_to_stdout = json == Some(Path::new("-"));
    if let Some(path) = json {
        if let Err(code) = write_to(path, |w| write_json(report, w)) {
            return code;
        }
    }
    if !quiet && !json_to_stdout {
        let mut out = io::stdout().lock();
        if report
            .write_human(&mut out, verbose)
            .and_then(|()| out.flush())
            .is_err()
        {
            return ExitCode::from(1);
        }
    }
    ExitCode::from(report.exit_code() as u8)
}

fn run_gc(args: cli::GcArgs) -> ExitCode {
    let (_, storage) = match open_registry(args.common.jobs, &args.target) {
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
    };
    match gc(&storage, &options) {
        Ok(report) => finish(
            &report,
            args.common.json.as_deref(),
            args.quiet,
            args.verbose,
        ),
        Err(e) => fail(&e),
    }
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
        }),
    }
}

fn run_edit(
    args: &cli::EditArgs,
    target: &Path,
    command: &str,
    select: Box<regsweep::Selector<'_>>,
) -> ExitCode {
    let (_, storage) = match open_registry(args.common.jobs, target) {
        Ok(opened) => opened,
        Err(code) => return code,
    };
    match regsweep::edit(&storage, command, &edit_options(args), select) {
        Ok(report) => finish(
            &report,
            args.common.json.as_deref(),
            args.quiet,
            args.verbose,
        ),
        Err(e) => fail(&e),
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

/// Start the workers and open a target: its storage root, checked to be a registry.
fn open_registry(
    jobs: Option<usize>,
    target: &Path,
) -> Result<(std::path::PathBuf, FsStorage), ExitCode> {
    set_jobs(jobs)?;
    let root = target::resolve(target).map_err(|e| fail(&e))?;
    let storage = FsStorage::new(&root);
    regsweep::discover::check_root(&storage).map_err(|e| fail(&e))?;
    Ok((root, storage))
}

/// Write to PATH, or to stdout for `-`.
fn write_to(
    path: &Path,
    write: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> Result<(), ExitCode> {
    let result = if path == Path::new("-") {
        let mut out = io::stdout().lock();
        write(&mut out).and_then(|()| out.flush())
    } else {
        std::fs::File::create(path).and_then(|f| {
            let mut w = io::BufWriter::new(f);
            write(&mut w).and_then(|()| w.flush())
        })
    };
    result.map_err(|e| {
        eprintln!("regsweep: error: {}: cannot write: {e}", path.display());
        ExitCode::from(1)
    })
}

fn run_report(args: cli::ReportArgs) -> ExitCode {
    let (root, storage) = match open_registry(args.common.jobs, &args.target) {
        Ok(opened) => opened,
        Err(code) => return code,
    };
    let report = regsweep::usage::usage(&storage, &root);
    for (severity, p) in tagged(&report.warnings, &report.errors) {
        eprintln!("regsweep: {severity}: {}: {}", p.path, p.message);
    }
    let mut stdout_taken = false;
    if let Some(path) = &args.common.json {
        stdout_taken |= path == Path::new("-");
        if let Err(code) = write_to(path, |w| write_json(&report, w)) {
            return code;
        }
    }
    if let Some(path) = &args.csv {
        stdout_taken |= path == Path::new("-");
        if let Err(code) = write_to(path, |w| report.write_csv(w)) {
            return code;
        }
    }
    if let Some(path) = &args.html {
        if let Err(code) = write_to(path, |w| report.write_html(w, args.top)) {
            return code;
        }
    }
    if !args.quiet && !stdout_taken {
        if let Err(code) = write_to(Path::new("-"), |w| report.write_human(w, args.top)) {
            return code;
        }
    }
    ExitCode::from(report.exit_code() as u8)
}

fn run_check(args: cli::CheckArgs) -> ExitCode {
    let (root, storage) = match open_registry(args.common.jobs, &args.target) {
        Ok(opened) => opened,
        Err(code) => return code,
    };
    let options = regsweep::check::Options {
        verify: args.verify,
        stale_uploads: args.stale_uploads,
        progress: !args.quiet && io::stderr().is_terminal(),
    };
    let report = regsweep::check::check(&storage, &root, options);
    {
        let mut err = io::stderr().lock();
        for p in &report.problems {
            let _ = writeln!(err, "regsweep: damage: {}: {}", p.path, p.message);
        }
    }
    let json_to_stdout = args.common.json.as_deref() == Some(Path::new("-"));
    if let Some(path) = &args.common.json {
        if let Err(code) = write_to(path, |w| write_json(&report, w)) {
            return code;
        }
    }
    if !args.quiet && !json_to_stdout {
        if let Err(code) = write_to(Path::new("-"), |w| report.write_human(w)) {
            return code;
        }
    }
    ExitCode::from(report.exit_code() as u8)
}

//! The thin binary: parse arguments, call the library, print, map the result to an exit code.

mod cli;

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use clap::Parser;
use regsweep::error::Error;
use regsweep::report::GcReport;
use regsweep::storage::FsStorage;
use regsweep::{gc, target, GcOptions};

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match cli.command {
        cli::Command::Gc(args) => run_gc(args),
    }
}

fn fail(err: &Error) -> ExitCode {
    eprintln!("regsweep: error: {err}");
    match err {
        Error::Locked { .. } => ExitCode::from(1),
        // The sweep never started: nothing was touched.
        Error::Io { .. } | Error::Target { .. } => ExitCode::from(2),
    }
}

fn run_gc(args: cli::GcArgs) -> ExitCode {
    if let Some(jobs) = args.jobs {
        if jobs == 0 {
            eprintln!("regsweep: error: --jobs must be at least 1");
            return ExitCode::from(2);
        }
        if let Err(e) = rayon::ThreadPoolBuilder::new()
            .num_threads(jobs)
            .build_global()
        {
            eprintln!("regsweep: error: cannot start {jobs} worker threads: {e}");
            return ExitCode::from(2);
        }
    }
    let root = match target::resolve(&args.target) {
        Ok(root) => root,
        Err(e) => return fail(&e),
    };
    let options = GcOptions {
        dry_run: args.dry_run,
        delete_untagged: args.delete_untagged,
        min_age: args.min_age,
        ignore_errors: args.unsafe_ignore_errors,
        wait_for_lock: args.wait,
        progress: !args.quiet && std::io::stderr().is_terminal(),
    };
    let report = match gc(&FsStorage::new(root), &options) {
        Ok(report) => report,
        Err(e) => return fail(&e),
    };
    print_problems(&report);
    let json_to_stdout = args.json.as_deref() == Some(std::path::Path::new("-"));
    if let Some(path) = &args.json {
        let written = if json_to_stdout {
            report.write_json(std::io::stdout().lock())
        } else {
            std::fs::File::create(path).and_then(|f| report.write_json(std::io::BufWriter::new(f)))
        };
        if let Err(e) = written {
            eprintln!(
                "regsweep: error: {}: cannot write JSON report: {e}",
                path.display()
            );
            return ExitCode::from(1);
        }
    }
    if !args.quiet && !json_to_stdout {
        let mut out = std::io::stdout().lock();
        if report
            .write_human(&mut out, args.verbose)
            .and_then(|()| out.flush())
            .is_err()
        {
            return ExitCode::from(1);
        }
    }
    ExitCode::from(report.exit_code() as u8)
}

/// Problems go to stderr, one line each with the path first, so they can be grepped.
fn print_problems(report: &GcReport) {
    let mut err = std::io::stderr().lock();
    for p in &report.warnings {
        let _ = writeln!(err, "regsweep: warning: {}: {}", p.path, p.message);
    }
    for p in &report.errors {
        let _ = writeln!(err, "regsweep: error: {}: {}", p.path, p.message);
    }
}

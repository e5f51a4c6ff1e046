//! The thin binary: parse the arguments, call one command of the library, exit with its code.

mod cli;

use std::io;
use std::process::ExitCode;

use clap::{CommandFactory, Parser};
use regsweep::command;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let code = match cli.command {
        cli::Command::Gc(args) => match args.cache.choice() {
            Ok(cache) => command::gc(&args.common(), &cache, &args.options()),
            Err(e) => command::usage_error(vec![e]),
        },
        cli::Command::Delete(args) => match args.edit.cache.choice() {
            Ok(cache) => command::delete(
                &args.edit.common(&args.target),
                &cache,
                &args.refs,
                args.repository,
                &args.edit.options(),
            ),
            Err(e) => command::usage_error(vec![e]),
        },
        cli::Command::Prune(args) => match args.edit.cache.choice() {
            Ok(cache) => command::prune(
                &args.edit.common(&args.target),
                &cache,
                &args.policy(),
                &args.edit.options(),
            ),
            Err(e) => command::usage_error(vec![e]),
        },
        cli::Command::Report(args) => command::report(
            &args.common.common(&args.target, args.quiet, false),
            &args.outputs(),
            args.uploads_older_than.0,
        ),
        cli::Command::Check(args) => command::check(
            &args.common.common(&args.target, args.quiet, false),
            args.options(),
        ),
        cli::Command::Completions(args) => {
            let mut cmd = cli::Cli::command();
            clap_complete::generate(args.shell, &mut cmd, "regsweep", &mut io::stdout());
            command::EXIT_OK
        }
        cli::Command::Man(args) => {
            let written = std::fs::create_dir_all(&args.dir)
                .and_then(|()| clap_mangen::generate_to(cli::Cli::command(), &args.dir));
            match written {
                Ok(()) => command::EXIT_OK,
                Err(e) => {
                    command::target_error(&args.dir, format!("cannot write the man pages: {e}"))
                }
            }
        }
    };
    ExitCode::from(code)
}

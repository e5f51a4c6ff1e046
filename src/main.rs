//! The thin binary: parse the arguments, call one command of the library, exit with its code.

mod cli;

use std::io;
use std::process::ExitCode;

use clap::{CommandFactory, Parser};
use regsweep::command;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let code = match cli.command {
        cli::Command::Gc(args) => {
            command::gc(&args.common(), &args.cache.choice(), &args.options())
        }
        cli::Command::Delete(args) => command::delete(
            &args.edit.common(&args.target),
            &args.edit.cache.choice(),
            &args.refs,
            args.repository,
            &args.edit.options(),
        ),
        cli::Command::Prune(args) => command::prune(
            &args.edit.common(&args.target),
            &args.edit.cache.choice(),
            &args.policy(),
            &args.edit.options(),
        ),
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

//! Command-line interface: the only module that knows clap.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "regsweep",
    version,
    about = "Fast, safe, offline garbage collection for filesystem-backed container registries",
    after_help = "Exit codes: 0 done (also when there was nothing to collect); 1 refused to sweep \
(the live set may be incomplete, or another run holds the lock) or some deletions failed; \
2 usage or target errors."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Mark every blob reachable from live manifests and sweep the rest.
    Gc(GcArgs),
}

#[derive(Debug, Args)]
pub struct GcArgs {
    /// The storage root (the directory holding docker/registry/v2), or the registry's config.yml.
    pub target: PathBuf,

    /// Build the plan and print it; write nothing at all.
    #[arg(short = 'd', long)]
    pub dry_run: bool,

    /// Tags are the roots: delete untagged manifests that no live index lists and whose
    /// subject is not live.
    #[arg(short = 'm', long)]
    pub delete_untagged: bool,

    /// Keep anything modified more recently than this (blob data, revision and layer links).
    /// `0` disables the check.
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = parse_duration)]
    pub min_age: Duration,

    /// Worker threads (default: all cores).
    #[arg(short = 'j', long, value_name = "N")]
    pub jobs: Option<usize>,

    /// No progress and no summary; errors still go to stderr (for cron).
    #[arg(short = 'q', long)]
    pub quiet: bool,

    /// List every deleted (or, in a dry run, deletable) item in the summary.
    #[arg(short = 'v', long)]
    pub verbose: bool,

    /// Write the JSON report to PATH (`-` for stdout, which then carries only the JSON).
    #[arg(long, value_name = "PATH")]
    pub json: Option<PathBuf>,

    /// Wait for another run's lock instead of exiting.
    #[arg(long)]
    pub wait: bool,

    /// DANGEROUS: sweep even when the live set may be incomplete (unreadable tag links,
    /// missing or unparseable live manifests). Blobs that only the named files reference will
    /// be deleted. The run still exits 1.
    #[arg(long)]
    pub unsafe_ignore_errors: bool,
}

pub fn parse_duration(s: &str) -> Result<Duration, String> {
    if s.trim() == "0" {
        return Ok(Duration::ZERO);
    }
    humantime::parse_duration(s).map_err(|e| format!("{e} (examples: 30m, 1h, 7d, 0)"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(
            parse_duration("2d").unwrap(),
            Duration::from_secs(2 * 86400)
        );
        assert!(parse_duration("soon").is_err());
    }
}

//! Command-line interface: the only module that knows clap.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use regsweep::command::{CacheChoice, Common, Policy, ReportOutputs};
use regsweep::config::redis::RedisSettings;
use regsweep::edit::driver::EditOptions;
use regsweep::edit::prune::RuleSpec;
use regsweep::gc::driver::{GcOptions, StateAt, Unreferenced};
use regsweep::gc::plan::MaxDelete;
use regsweep::units::parse_duration;

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
    /// Delete tags (REPO:TAG), manifests (REPO@DIGEST) or, with --repository, whole
    /// repositories (REPO), offline. Repository names may be globs (`team/*`, `**/cache`).
    Delete(DeleteArgs),
    /// Delete tags by cleanup policy (keep the newest N, older than, name regexes), offline.
    Prune(PruneArgs),
    /// Where the storage goes: per repository and in total, as a table, JSON, CSV or HTML.
    Report(ReportArgs),
    /// Find damage without changing anything; --verify also hashes every blob.
    Check(CheckArgs),
    /// Print the shell completion script for SHELL (bash, zsh, fish, elvish, powershell).
    Completions(CompletionsArgs),
    /// Write the man pages (regsweep.1 and one per subcommand, regsweep-gc.1, ...) into DIR.
    Man(ManArgs),
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// The directory to write the pages into (created if missing).
    pub dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The storage root (the directory holding docker/registry/v2), or the registry's config.yml.
    pub target: PathBuf,

    /// Show the N repositories with the most unique bytes (table and chart).
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub top: usize,

    /// Write every repository as CSV to PATH (`-` for stdout).
    #[arg(long, value_name = "PATH")]
    pub csv: Option<PathBuf>,

    /// Write a self-contained HTML page (chart and table) to PATH.
    #[arg(long, value_name = "PATH")]
    pub html: Option<PathBuf>,

    /// Count uploads that began longer ago than this as reclaimable (as `gc` would remove
    /// them); `off` counts none.
    #[arg(long, value_name = "DURATION|off", default_value = "7d", value_parser = parse_age_or_off)]
    pub uploads_older_than: AgeOrOff,

    /// No table on stdout.
    #[arg(short = 'q', long)]
    pub quiet: bool,

    #[command(flatten)]
    pub common: CommonArgs,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The storage root (the directory holding docker/registry/v2), or the registry's config.yml.
    pub target: PathBuf,

    /// Also hash every blob and compare it with its digest.
    #[arg(long)]
    pub verify: bool,

    /// Write back the missing links the digests determine: the revision link of a manifest
    /// a tag or an index names, the layer link of a blob a manifest needs, where the content
    /// is in the store. Takes the run lock. Run `check` without it first to see the list.
    #[arg(long)]
    pub repair: bool,

    /// Uploads started longer ago than this are reported as stale.
    #[arg(long, value_name = "DURATION", default_value = "24h", value_parser = parse_duration)]
    pub stale_uploads: Duration,

    /// No summary on stdout and no progress.
    #[arg(short = 'q', long)]
    pub quiet: bool,

    #[command(flatten)]
    pub common: CommonArgs,
}

/// Options shared by the commands that edit tags and repositories.
#[derive(Debug, Args)]
pub struct EditArgs {
    /// List what would be deleted (and, with --gc, what the collector would then remove);
    /// write nothing at all.
    #[arg(short = 'd', long)]
    pub dry_run: bool,

    /// Collect garbage right after, under the same lock, as `gc --delete-untagged` does: the
    /// manifests the removed tags leave untagged go, with the blobs only they used.
    #[arg(long)]
    pub gc: bool,

    /// With --gc: keep anything modified more recently than this.
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = parse_duration, requires = "gc")]
    pub min_age: Duration,

    /// No summary; errors still go to stderr (for cron).
    #[arg(short = 'q', long)]
    pub quiet: bool,

    /// With --gc: list every item the collector deleted.
    #[arg(short = 'v', long)]
    pub verbose: bool,

    /// Wait for another run's lock instead of exiting.
    #[arg(long)]
    pub wait: bool,

    #[command(flatten)]
    pub housekeeping: HousekeepingArgs,

    #[command(flatten)]
    pub cache: CacheArgs,

    #[command(flatten)]
    pub common: CommonArgs,
}

#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// The storage root (the directory holding docker/registry/v2), or the registry's config.yml.
    pub target: PathBuf,

    /// What to delete: REPO:TAG (the tag; its manifest stays, untagged), REPO@DIGEST (the
    /// manifest and every tag pointing at it), or REPO with --repository.
    #[arg(required = true, value_name = "REF")]
    pub refs: Vec<String>,

    /// Allow bare REPO references, each deleting a whole repository (repositories nested
    /// below it stay).
    #[arg(long)]
    pub repository: bool,

    #[command(flatten)]
    pub edit: EditArgs,
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// The storage root (the directory holding docker/registry/v2), or the registry's config.yml.
    pub target: PathBuf,

    /// Keep the N most recently pushed candidate tags of each repository.
    #[arg(long, value_name = "N")]
    pub keep_n: Option<usize>,

    /// Delete only candidate tags last pushed longer ago than this (e.g. 30d).
    #[arg(long, value_name = "DURATION")]
    pub older_than: Option<String>,

    /// Candidate tags: those whose whole name matches RE (default: all).
    #[arg(long, value_name = "RE")]
    pub name_regex_delete: Option<String>,

    /// Never delete tags whose whole name matches RE (wins over --name-regex-delete).
    #[arg(long, value_name = "RE")]
    pub name_regex_keep: Option<String>,

    /// Keep the tag `latest` whatever the other rules say (`--keep-latest=false` to let it go).
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true",
          action = clap::ArgAction::Set)]
    pub keep_latest: Option<bool>,

    /// Only repositories matching GLOB (repeatable; default: all).
    #[arg(long = "repository", value_name = "GLOB")]
    pub repositories: Vec<String>,

    /// Rules from a JSON file: {"rules": [{"repository": GLOB, "keep_n": N, "older_than":
    /// "30d", "name_regex_delete": RE, "name_regex_keep": RE, "keep_latest": BOOL}, ...]}; the
    /// first rule whose glob matches a repository applies to it.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["keep_n", "older_than",
          "name_regex_delete", "name_regex_keep", "keep_latest", "repositories"])]
    pub policy: Option<PathBuf>,

    #[command(flatten)]
    pub edit: EditArgs,
}

/// Flags every command has.
#[derive(Debug, Args)]
pub struct CommonArgs {
    /// Worker threads, i.e. requests in flight on object storage (default: 32 per core, 16 to
    /// 128, on a disk; 64 on object storage; at most 1024).
    #[arg(short = 'j', long, value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..=regsweep::command::MAX_JOBS as u64))]
    pub jobs: Option<u64>,

    /// Write the JSON report to PATH (`-` for stdout, which then carries only the JSON).
    #[arg(long, value_name = "PATH")]
    pub json: Option<PathBuf>,

    /// With an s3://, gs:// or azblob:// target, or a gcs or azure config: the service's
    /// endpoint (default for S3: AWS_ENDPOINT_URL, else AWS's for the region; GCS:
    /// STORAGE_EMULATOR_HOST, else Google's; Azure: the connection string's BlobEndpoint, else
    /// the account's in its realm).
    #[arg(long, visible_alias = "s3-endpoint", value_name = "URL")]
    pub endpoint: Option<String>,

    /// On object storage: send at most N requests a second (default: no limit).
    #[arg(long, value_name = "N")]
    pub max_requests_per_second: Option<f64>,

    /// On object storage: where manifests are cached across runs (default:
    /// $XDG_CACHE_HOME/regsweep/manifests or ~/.cache/regsweep/manifests; `off` for none).
    #[arg(long, value_name = "DIR|off")]
    pub cache_dir: Option<PathBuf>,

    /// Write Prometheus metrics of the run to PATH, in the node_exporter textfile collector's
    /// format (e.g. /var/lib/prometheus/node-exporter/regsweep-gc.prom), atomically.
    #[arg(long, value_name = "PATH")]
    pub metrics_file: Option<PathBuf>,
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

    /// No progress and no summary; errors still go to stderr (for cron).
    #[arg(short = 'q', long)]
    pub quiet: bool,

    /// List every deleted (or, in a dry run, deletable) item in the summary.
    #[arg(short = 'v', long)]
    pub verbose: bool,

    /// Wait for another run's lock instead of exiting.
    #[arg(long)]
    pub wait: bool,

    /// DANGEROUS: sweep even when the live set may be incomplete (unreadable tag links,
    /// missing or unparseable live manifests). Blobs that only the named files reference will
    /// be deleted. The run still exits 1.
    #[arg(long)]
    pub unsafe_ignore_errors: bool,

    #[command(flatten)]
    pub housekeeping: HousekeepingArgs,

    #[command(flatten)]
    pub cache: CacheArgs,

    #[command(flatten)]
    pub common: CommonArgs,
}

/// A duration that may be `off`.
#[derive(Debug, Clone, Copy)]
pub struct AgeOrOff(pub Option<Duration>);

fn parse_age_or_off(s: &str) -> Result<AgeOrOff, String> {
    regsweep::units::parse_age_or_off(s).map(AgeOrOff)
}

/// The registry's blob-descriptor cache, brought in line with storage after the run.
#[derive(Debug, Args)]
pub struct CacheArgs {
    /// The registry's Redis blob-descriptor cache, for a target that is a storage root or a
    /// bucket rather than the registry's config: redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]
    /// (rediss:// for TLS). After the run, its entries for blobs and links no longer in
    /// storage are evicted.
    // Parsed after clap, not by it: clap's own error would echo the URL, password and all.
    #[arg(long, value_name = "URL")]
    pub redis: Option<String>,

    /// Leave the registry's cache alone: its entries for what this run deletes stay until a
    /// later run evicts them.
    #[arg(long, conflicts_with = "redis")]
    pub no_cache_evict: bool,
}

/// Housekeeping the reference collector never does.
#[derive(Debug, Args)]
pub struct HousekeepingArgs {
    /// Remove uploads (`_uploads/<uuid>`) that began longer ago than this (their `startedat`),
    /// unless touched within --min-age; `off` keeps every upload. The registry's own purge
    /// age is 7 days.
    #[arg(long, value_name = "DURATION|off", default_value = "7d", value_parser = parse_age_or_off)]
    pub uploads_older_than: AgeOrOff,

    /// Remove repositories left with no tag, revision, layer link or upload (their
    /// `_manifests`, `_layers`, `_uploads`), and the directories above them left empty, so
    /// they leave the registry's catalog.
    #[arg(long)]
    pub empty_repositories: bool,

    /// Delete a blob, manifest, layer link or empty repository only once every real run has
    /// seen it unreferenced for this long (e.g. 24h): a window to undo a mistake.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub unreferenced_for: Option<Duration>,

    /// With --unreferenced-for: where its state lives (default: beside the registry's data,
    /// docker/registry/v2/.regsweep-unreferenced, in the bucket on object storage).
    #[arg(long, value_name = "PATH", requires = "unreferenced_for")]
    pub state: Option<PathBuf>,

    /// Refuse the whole run (delete nothing, exit 1) when it would delete more than N blobs,
    /// or more than N% of the blobs in the store: a guard against a half-mounted or
    /// misconfigured storage, for unattended runs.
    #[arg(long, value_name = "N|N%")]
    pub max_delete: Option<MaxDelete>,

    /// With --unreferenced-for: start the state over (after a damaged state file).
    #[arg(long, requires = "unreferenced_for")]
    pub reset_state: bool,
}

impl HousekeepingArgs {
    /// The `--unreferenced-for` rule, if asked for.
    pub fn unreferenced(&self) -> Option<Unreferenced> {
        let window = self.unreferenced_for?;
        let now = regsweep::hooks::now();
        Some(Unreferenced {
            window,
            state: match &self.state {
                Some(path) => StateAt::File(path.clone()),
                None => StateAt::Storage(regsweep::registry::layout::UNREFERENCED_STATE.into()),
            },
            reset: self.reset_state,
            now,
        })
    }
}

/// Progress bars only on a terminal, and never under --quiet.
fn progress(quiet: bool) -> bool {
    !quiet && std::io::stderr().is_terminal()
}

impl CommonArgs {
    pub fn common(&self, target: &Path, quiet: bool, verbose: bool) -> Common {
        Common {
            target: target.to_path_buf(),
            jobs: self.jobs.map(|j| j as usize),
            json: self.json.clone(),
            endpoint: self.endpoint.clone(),
            max_requests_per_second: self.max_requests_per_second,
            cache_dir: self.cache_dir.clone(),
            metrics_file: self.metrics_file.clone(),
            quiet,
            verbose,
        }
    }
}

impl CacheArgs {
    /// The cache to reconcile; a `--redis` URL that does not parse is a usage error whose
    /// message never shows the URL.
    pub fn choice(&self) -> Result<CacheChoice, String> {
        Ok(CacheChoice {
            redis: self
                .redis
                .as_deref()
                .map(RedisSettings::from_url)
                .transpose()
                .map_err(|e| format!("--redis: {e}"))?,
            no_cache_evict: self.no_cache_evict,
        })
    }
}

impl HousekeepingArgs {
    /// The collector's options: what the command decides, and the housekeeping flags every
    /// command that collects shares.
    fn gc_options(
        &self,
        dry_run: bool,
        delete_untagged: bool,
        min_age: Duration,
        ignore_errors: bool,
        wait: bool,
        quiet: bool,
    ) -> GcOptions {
        GcOptions {
            dry_run,
            delete_untagged,
            min_age,
            ignore_errors,
            wait_for_lock: wait,
            progress: progress(quiet),
            uploads_older_than: self.uploads_older_than.0,
            empty_repositories: self.empty_repositories,
            unreferenced: self.unreferenced(),
            max_delete: self.max_delete,
            cache: Default::default(),
        }
    }
}

impl GcArgs {
    pub fn common(&self) -> Common {
        self.common.common(&self.target, self.quiet, self.verbose)
    }

    pub fn options(&self) -> GcOptions {
        self.housekeeping.gc_options(
            self.dry_run,
            self.delete_untagged,
            self.min_age,
            self.unsafe_ignore_errors,
            self.wait,
            self.quiet,
        )
    }
}

impl EditArgs {
    pub fn common(&self, target: &Path) -> Common {
        self.common.common(target, self.quiet, self.verbose)
    }

    pub fn options(&self) -> EditOptions {
        EditOptions {
            dry_run: self.dry_run,
            wait_for_lock: self.wait,
            // Removing tags frees space only once their untagged manifests go: `-m`.
            gc: self.gc.then(|| {
                self.housekeeping.gc_options(
                    self.dry_run,
                    true,
                    self.min_age,
                    false,
                    self.wait,
                    self.quiet,
                )
            }),
        }
    }
}

impl PruneArgs {
    pub fn policy(&self) -> Policy {
        match &self.policy {
            Some(path) => Policy::File(path.clone()),
            None => Policy::Flags(RuleSpec {
                repository: None,
                repositories: self.repositories.clone(),
                keep_n: self.keep_n,
                older_than: self.older_than.clone(),
                name_regex_delete: self.name_regex_delete.clone(),
                name_regex_keep: self.name_regex_keep.clone(),
                keep_latest: self.keep_latest,
            }),
        }
    }
}

impl ReportArgs {
    pub fn outputs(&self) -> ReportOutputs {
        ReportOutputs {
            csv: self.csv.clone(),
            html: self.html.clone(),
            top: self.top,
        }
    }
}

impl CheckArgs {
    pub fn options(&self) -> regsweep::check::Options {
        regsweep::check::Options {
            verify: self.verify,
            repair: self.repair,
            stale_uploads: self.stale_uploads,
            progress: progress(self.quiet),
        }
    }
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

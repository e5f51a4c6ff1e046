//! Opening a target for a command: the workers started, the storage root resolved and checked
//! to be a registry, and every output opened, all before anything is read or deleted, so a bad
//! target or an unwritable output stops the command with exit 2 and nothing touched.

use std::path::Path;

use super::finish::Sink;
use super::{fail, usage_error, Common, DEFAULT_S3_JOBS, EXIT_FAILED, EXIT_USAGE};
use crate::config::{self, Backend, Resolved};
use crate::error::{Error, Problem};
use crate::gc::discover;
use crate::output::metrics;
use crate::storage::manifest_cache::{self, ManifestCache};
use crate::storage::object::ObjectStorage;
use crate::storage::{self, FsStorage, Storage};

/// A target opened for a command: its storage root and why, checked to be a registry.
pub(super) struct Opened {
    pub resolved: Resolved,
    pub storage: Box<dyn Storage>,
    /// The config file named on the command line, if any (for its warnings' path).
    config: Option<std::path::PathBuf>,
}

impl Opened {
    /// The config file named on the command line, for messages about the registry.
    pub fn config_path(&self) -> Option<String> {
        self.config.as_ref().map(|p| p.display().to_string())
    }

    /// The registry config's warnings, as problems naming the config file.
    pub fn config_warnings(&self) -> Vec<Problem> {
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

/// Start the workers, open the target, then every output the command was asked to write.
/// A target or an output that cannot be used ends the command here (exit 2): the metrics
/// record it as a failed run, so that the last night's success does not stand.
pub(super) fn open<const N: usize>(
    common: &Common,
    command: &str,
    dry_run: bool,
    outputs: [Option<&Path>; N],
) -> Result<(Opened, [Option<Sink>; N]), u8> {
    let started = std::time::Instant::now();
    open_inner(common, outputs).inspect_err(|_| {
        if let Some(path) = &common.metrics_file {
            if metrics::check_writable(path).is_ok() {
                super::finish::write_metrics(Some(path), || {
                    metrics::Metrics::new(
                        command,
                        metrics::Outcome::Failed,
                        started.elapsed().as_secs_f64(),
                        dry_run,
                    )
                });
            }
        }
    })
}

fn open_inner<const N: usize>(
    common: &Common,
    outputs: [Option<&Path>; N],
) -> Result<(Opened, [Option<Sink>; N]), u8> {
    let target = common.target.as_path();
    let resolved = config::resolve(target, common.endpoint.as_deref()).map_err(|e| fail(&e))?;
    let object_storage = resolved.fs_root().is_none();
    set_jobs(common.jobs, object_storage)?;
    let to_stdout = outputs
        .iter()
        .flatten()
        .filter(|p| **p == Path::new("-"))
        .count();
    if to_stdout > 1 {
        return Err(usage_error(vec![
            "only one output can go to stdout (`-`); write the others to files".into(),
        ]));
    }
    if let Some(path) = &common.metrics_file {
        metrics::check_writable(path).map_err(|e| {
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
    let storage = open_storage(&resolved, common)
        .and_then(|storage| {
            discover::check_root(storage.as_ref())
                .map(|()| storage)
                .map_err(|e| fail(&e))
        })
        .inspect_err(|_| {
            // Stopped before it read anything: no report, and no empty one left behind.
            for sink in sinks.iter_mut().filter_map(Option::take) {
                sink.discard();
            }
        })?;
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

fn set_jobs(jobs: Option<usize>, object_storage: bool) -> Result<(), u8> {
    // The command line has checked the range.
    let jobs = match jobs {
        Some(j) => j,
        None if object_storage => DEFAULT_S3_JOBS,
        None => super::default_jobs(),
    };
    rayon::ThreadPoolBuilder::new()
        .num_threads(jobs)
        .build_global()
        .map_err(|e| usage_error(vec![format!("cannot start {jobs} worker threads: {e}")]))
}

/// The storage behind a resolved target. Object storage is listed here, once.
fn open_storage(resolved: &Resolved, common: &Common) -> Result<Box<dyn Storage>, u8> {
    match &resolved.backend {
        Backend::Fs(root) => {
            let (storage, notes) = FsStorage::open(root);
            if !common.quiet {
                for note in notes {
                    eprintln!("regsweep: note: {note}");
                }
            }
            Ok(Box::new(storage))
        }
        Backend::S3 { prefix, .. }
        | Backend::Gcs { prefix, .. }
        | Backend::Azure { prefix, .. } => {
            let client =
                storage::bucket::connect(&resolved.backend, common.max_requests_per_second)
                    .expect("an object store");
            let name = resolved.display_name();
            let client = client.map_err(|e| fail(&Error::target(&name, e.to_string())))?;
            let cache_dir = match &common.cache_dir {
                Some(dir) if dir == Path::new("off") => None,
                Some(dir) => Some(dir.clone()),
                None => manifest_cache::default_dir(),
            };
            let cache = cache_dir.map(|d| ManifestCache::new(d, manifest_cache::DEFAULT_MAX_BYTES));
            let storage = ObjectStorage::open(client, prefix, cache).map_err(|e| {
                // A bucket that is not there (or not ours) is a wrong target; any other
                // listing that failed after its retries leaves nothing to plan with.
                eprintln!("regsweep: error: {name}: cannot list the bucket: {e}");
                match e.kind() {
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied => {
                        EXIT_USAGE
                    }
                    _ => EXIT_FAILED,
                }
            })?;
            Ok(Box::new(storage))
        }
    }
}

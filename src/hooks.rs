//! Test hooks, compiled only with the `test-hooks` cargo feature (the test script turns it on;
//! release builds and the Debian package never have it): a production binary lets no
//! environment variable pause it, move its clock or kill it.
//!
//! - [`pause`]: with `REGSWEEP_TEST_PAUSE_AT=POINT[,POINT...]` and `REGSWEEP_TEST_PAUSE_DIR=DIR`,
//!   a run that reaches a named point creates `DIR/POINT.reached` and waits until
//!   `DIR/POINT.go` exists, so that a test can push, tag or delete through the real registry
//!   exactly there (the race harness of `tests/race.rs`). Points are named where they are
//!   called: each phase boundary of `gc` and each step of the sweep, and `link-unlinked`
//!   inside the filesystem backend, between removing a `link` file and its directory.
//! - [`now`]: `REGSWEEP_TEST_NOW` (RFC 3339) is the clock of `--unreferenced-for`.
//! - [`copy_limit`]: `REGSWEEP_TEST_COPY_LIMIT` lowers the size above which S3 copies part
//!   by part.
//! - [`page_size`], [`list_ranges`]: `REGSWEEP_TEST_PAGE_SIZE` and `REGSWEEP_TEST_LIST_RANGES`
//!   make object storage list a small bucket in many pages and parallel ranges.
//! - [`die_before_state_rename`]: `REGSWEEP_TEST_DIE_BEFORE_STATE_RENAME` aborts between
//!   writing the `--unreferenced-for` state and renaming it into place.

use std::time::SystemTime;

/// Wait at `point` if the test asked for it. A no-op without the feature.
#[inline]
pub fn pause(point: &str) {
    #[cfg(feature = "test-hooks")]
    enabled::pause(point);
    #[cfg(not(feature = "test-hooks"))]
    let _ = point;
}

/// The clock of `--unreferenced-for`.
pub fn now() -> SystemTime {
    #[cfg(feature = "test-hooks")]
    if let Some(t) = std::env::var("REGSWEEP_TEST_NOW")
        .ok()
        .and_then(|t| humantime::parse_rfc3339_weak(&t).ok())
    {
        return t;
    }
    SystemTime::now()
}

/// Keys a listing page asks for: the store's page, or `REGSWEEP_TEST_PAGE_SIZE` in the test
/// build, so that a small bucket is listed in many pages.
pub fn page_size(default: usize) -> usize {
    number("REGSWEEP_TEST_PAGE_SIZE", default)
}

/// How many ranges a listing is split into after its first page: as judged from that page,
/// or `REGSWEEP_TEST_LIST_RANGES` in the test build, so that a small bucket is listed in
/// parallel ranges.
pub fn list_ranges(judged: usize) -> usize {
    number("REGSWEEP_TEST_LIST_RANGES", judged)
}

/// The size above which S3 copies an object part by part: S3's own limit, or
/// `REGSWEEP_TEST_COPY_LIMIT` in the test build, so that a test need not move 5 GiB.
pub fn copy_limit(default: u64) -> u64 {
    number("REGSWEEP_TEST_COPY_LIMIT", default)
}

/// The number in the test build's variable `name`, else `default`; always `default` without the
/// feature.
fn number<T: std::str::FromStr>(name: &str, default: T) -> T {
    #[cfg(feature = "test-hooks")]
    if let Some(n) = std::env::var(name).ok().and_then(|n| n.parse().ok()) {
        return n;
    }
    #[cfg(not(feature = "test-hooks"))]
    let _ = name;
    default
}

/// Abort here when the test asked for a kill at the worst moment of a state write.
pub fn die_before_state_rename() {
    #[cfg(feature = "test-hooks")]
    if std::env::var_os("REGSWEEP_TEST_DIE_BEFORE_STATE_RENAME").is_some() {
        std::process::abort();
    }
}

#[cfg(feature = "test-hooks")]
mod enabled {
    use std::path::PathBuf;
    use std::time::{Duration, Instant};

    /// A test that never lets the run go on must not hang the suite.
    const GIVE_UP: Duration = Duration::from_secs(300);

    pub fn pause(point: &str) {
        let Ok(at) = std::env::var("REGSWEEP_TEST_PAUSE_AT") else {
            return;
        };
        if !at.split(',').any(|p| p.trim() == point) {
            return;
        }
        let Some(dir) = std::env::var_os("REGSWEEP_TEST_PAUSE_DIR").map(PathBuf::from) else {
            return;
        };
        let _ = std::fs::write(dir.join(format!("{point}.reached")), b"");
        let go = dir.join(format!("{point}.go"));
        let started = Instant::now();
        while !go.exists() && started.elapsed() < GIVE_UP {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

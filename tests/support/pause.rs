//! The tests' side of the pause points (src/hooks.rs, `test-hooks` feature): start regsweep
//! stopped at a named point, wait until it is there, do something, let it go on.

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A regsweep run stopped at `point`.
pub struct Paused {
    child: std::process::Child,
    dir: tempfile::TempDir,
    point: String,
}

impl Paused {
    /// Spawn `cmd` (stdout and stderr captured) to stop at `point`, and wait until it has.
    /// A run that ends first, or never gets there, fails the test with what it said.
    pub fn start(mut cmd: Command, point: &str) -> Paused {
        let dir = tempfile::tempdir().unwrap();
        let mut child = cmd
            .env("REGSWEEP_TEST_PAUSE_AT", point)
            .env("REGSWEEP_TEST_PAUSE_DIR", dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let reached = dir.path().join(format!("{point}.reached"));
        let started = Instant::now();
        while !reached.exists() {
            if let Ok(Some(_)) = child.try_wait() {
                let out = child.wait_with_output().unwrap();
                panic!(
                    "the run ended before {point}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "the run never reached {point}"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        Paused {
            child,
            dir,
            point: point.to_string(),
        }
    }

    /// Let the run go on, and wait for it to end.
    pub fn go(self) -> Output {
        std::fs::write(self.dir.path().join(format!("{}.go", self.point)), b"").unwrap();
        self.child.wait_with_output().unwrap()
    }
}

//! The soak (#29): a real registry on disk, three clients pushing new images and re-tagging old
//! manifests at random for a minute while `gc -m --min-age 0` runs back to back. No run may
//! exit non-zero, and afterwards every tag the registry lists pulls (every manifest and blob
//! through the API, digests checked). This is the check that the pause-point matrix of
//! tests/race.rs and tests/pushes.rs is complete, not a substitute for it.
//!
//! `REGSWEEP_SOAK_SECONDS` sets its length (default 60); the seed of each client is printed,
//! so a failure can be replayed.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use support::images::{push_with_retry, OCI_MANIFEST};
use support::pull::{every_tag_pulls, peers};
use support::registry::Registry;
use support::tree::regsweep;

const REPOSITORIES: usize = 4;

#[test]
fn a_minute_of_random_pushes_beside_back_to_back_runs() {
    if !peers() {
        eprintln!(
            "skipping: docker-registry or skopeo is not installed (scripts/test installs them)"
        );
        return;
    }
    let seconds: u64 = std::env::var("REGSWEEP_SOAK_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let root = tempfile::tempdir().unwrap();
    let mut registry = Registry::start(root.path());
    let done = AtomicBool::new(false);
    let base: u64 = rand::random();
    eprintln!("soak: {seconds} s, seeds {base}..{}", base + 2);

    let (runs, failed) = std::thread::scope(|scope| {
        for client in 0..3u64 {
            let c = registry.client();
            let done = &done;
            scope.spawn(move || {
                let mut rng = rand::rngs::StdRng::seed_from_u64(base + client);
                let mut n = 0;
                while !done.load(Ordering::Relaxed) {
                    let repo = format!("r{}", rng.gen_range(0..REPOSITORIES));
                    if rng.gen_bool(0.6) {
                        // A new image: a layer of its own and one from a small shared pool
                        // (so that layers die and come back), tagged `latest`.
                        let own = format!("c{client}-{n}");
                        let shared = format!("pool-{}", rng.gen_range(0..6));
                        push_with_retry(&c, &repo, &[&own, &shared]);
                        n += 1;
                    } else {
                        // Re-tag: an old manifest (what `latest` names now) under another tag,
                        // which moves that tag off whatever it named.
                        let (status, body) = c.get_manifest(&repo, "latest");
                        if status == 200 {
                            let tag = format!("t{}", rng.gen_range(0..3));
                            c.try_put_manifest(&repo, &tag, OCI_MANIFEST, &body);
                        }
                    }
                }
            });
        }
        let deadline = Instant::now() + Duration::from_secs(seconds);
        let mut runs = 0;
        let mut failed = Vec::new();
        while Instant::now() < deadline {
            let out = regsweep()
                .args(["gc", "-m", "--min-age", "0", "-q"])
                .arg(root.path())
                .output()
                .unwrap();
            runs += 1;
            if !out.status.success() {
                failed.push(format!(
                    "run {runs} exited {:?}: {}",
                    out.status.code(),
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
        }
        done.store(true, Ordering::Relaxed);
        (runs, failed)
    });
    assert!(runs >= 3, "only {runs} runs in {seconds} s");
    assert!(
        failed.is_empty(),
        "{} of {runs} runs failed:\n{}",
        failed.len(),
        failed.join("\n")
    );
    let c = registry.client();
    let fetched = every_tag_pulls(&c, "after the soak");
    assert!(!fetched.is_empty());
    // And a last idle run still collects, and refuses nothing.
    let out = regsweep()
        .args(["gc", "-m", "--min-age", "0", "-q"])
        .arg(root.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    every_tag_pulls(&c, "after the idle run");
    registry.stop();
}

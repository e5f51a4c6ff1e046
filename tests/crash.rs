//! Crash safety: kill a real sweep with SIGKILL at many points. After every kill each live
//! image must still pull, and running again must end in exactly the state an uninterrupted
//! run reaches.

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Instant;

use regsweep::synth::Preset;
use support::tree::{age_tree, assert_every_tag_pulls, copy_tree, regsweep};

const DAY: std::time::Duration = std::time::Duration::from_secs(86400);

/// Big enough that a sweep takes a while with one worker (thousands of deletions).
const PRESET: Preset = Preset {
    name: "crash",
    repositories: 20,
    tags: 10,
    layers: 5,
};

/// Every path in the tree, directories included.
fn files(root: &Path) -> BTreeSet<PathBuf> {
    walkdir::WalkDir::new(root)
        .into_iter()
        .flatten()
        .map(|e| e.path().strip_prefix(root).unwrap().to_path_buf())
        .filter(|p| !p.ends_with(".regsweep.lock"))
        .collect()
}

const ARGS: [&str; 6] = ["gc", "-m", "--min-age", "0", "-q", "-j2"];

fn gc(root: &Path) {
    let status = regsweep().args(ARGS).arg(root).status().unwrap();
    assert!(status.success(), "gc on {} failed", root.display());
}

#[test]
fn sigkill_at_many_points_during_a_real_sweep() {
    let template = tempfile::tempdir().unwrap();
    regsweep::synth::generate(template.path(), PRESET, 7).unwrap();
    let initial = files(template.path());

    // The uninterrupted run: its end state, and how long it takes.
    let reference = tempfile::tempdir().unwrap();
    copy_tree(template.path(), reference.path());
    // Copies are as young as the copy: age them, or the run's later looks (anything modified
    // since the run started is young) would keep what a run on an old tree deletes.
    age_tree(reference.path(), DAY);
    let started = Instant::now();
    gc(reference.path());
    let took = started.elapsed();
    let done = files(reference.path());
    assert!(done.len() < initial.len(), "nothing to sweep");
    assert_every_tag_pulls(reference.path());

    let trials = 12;
    let mut interrupted_mid_sweep = 0;
    for k in 0..trials {
        let dir = tempfile::tempdir().unwrap();
        copy_tree(template.path(), dir.path());
        age_tree(dir.path(), DAY);
        // Spread the kills over the whole run, from the mark to the last deletions.
        let delay = took.mul_f64(0.1 + 1.0 * k as f64 / trials as f64);
        let mut child = regsweep()
            .args(ARGS)
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        // SAFETY: kill(2) on our own child's pid; no memory is involved.
        unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
        let _ = child.wait();

        let after_kill = files(dir.path());
        if after_kill != initial && after_kill != done {
            interrupted_mid_sweep += 1;
        }
        assert!(
            after_kill.is_superset(&done),
            "trial {k}: the killed run deleted something the full run keeps"
        );
        assert_every_tag_pulls(dir.path());

        gc(dir.path());
        let end = files(dir.path());
        assert!(
            end == done,
            "trial {k} (killed after {delay:?}): the second run did not end where an \
             uninterrupted one does; extra: {:?}; missing: {:?}",
            end.difference(&done).collect::<Vec<_>>(),
            done.difference(&end).collect::<Vec<_>>()
        );
    }
    assert!(
        interrupted_mid_sweep >= 3,
        "only {interrupted_mid_sweep} of {trials} kills landed mid-sweep (run took {took:?}); \
         the test proves nothing"
    );
}

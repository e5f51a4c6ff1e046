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

const ARGS: [&str; 7] = [
    "gc",
    "-m",
    "--min-age",
    "0",
    "-q",
    "-j2",
    "--empty-repositories",
];

/// Housekeeping in the tree: an abandoned upload and one in progress (each with a `data` and a
/// `startedat`), and a repository whose tags are all gone, so that a run removes it. Returns
/// the key of the upload in progress, which no run may remove.
fn add_housekeeping(root: &Path) -> PathBuf {
    let repos = root.join("docker/registry/v2/repositories");
    let mut names: Vec<PathBuf> = walkdir::WalkDir::new(&repos)
        .into_iter()
        .flatten()
        .filter(|e| e.file_name() == "_manifests")
        .map(|e| e.path().parent().unwrap().to_path_buf())
        .collect();
    names.sort();
    std::fs::remove_dir_all(names[0].join("_manifests/tags")).unwrap();
    let upload = |repo: &Path, uuid: &str, started: std::time::SystemTime| {
        let dir = repo.join("_uploads").join(uuid);
        std::fs::create_dir_all(dir.join("hashstates/sha256")).unwrap();
        std::fs::write(dir.join("data"), vec![7u8; 4096]).unwrap();
        std::fs::write(dir.join("hashstates/sha256/0"), b"state").unwrap();
        std::fs::write(
            dir.join("startedat"),
            humantime::format_rfc3339_seconds(started).to_string(),
        )
        .unwrap();
        dir.strip_prefix(root).unwrap().to_path_buf()
    };
    let now = std::time::SystemTime::now();
    upload(&names[1], "abandoned-1", now - 30 * DAY);
    upload(&names[2], "abandoned-2", now - 30 * DAY);
    upload(&names[1], "in-progress", now)
}

fn gc(root: &Path) {
    let status = regsweep().args(ARGS).arg(root).status().unwrap();
    assert!(status.success(), "gc on {} failed", root.display());
}

#[test]
fn sigkill_at_many_points_during_a_real_sweep() {
    let template = tempfile::tempdir().unwrap();
    regsweep::synth::generate(template.path(), PRESET, 7).unwrap();
    let in_progress = add_housekeeping(template.path());
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
    assert!(
        done.contains(&in_progress),
        "the full run removed an upload in progress"
    );
    assert!(
        !done.iter().any(|p| p.ends_with("abandoned-1")),
        "the full run kept an abandoned upload"
    );
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
            "trial {k}: the killed run deleted something the full run keeps: {:?}",
            done.difference(&after_kill).collect::<Vec<_>>()
        );
        assert_every_tag_pulls(dir.path());
        assert!(
            after_kill.contains(&in_progress),
            "trial {k}: upload in progress lost"
        );

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

//! Regressions from a hostile week on real hosts (issue 12): each test is named after the promise
//! it protects, runs the binary as an administrator would on a copy of the tree the real
//! registry wrote (fixtures/registry), and failed before the fix.
//!
//! The mount cases (a read-only `repositories/`, a `blobs/` of its own) need root; without it
//! they print why they are skipped. As root under CI, a mount that fails is a failure.

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use regsweep::check::{CheckReport, ProblemKind};
use regsweep::gc::report::GcReport;
use regsweep::registry::digest::Digest;
use support::tree::{aged_copy, blobs_on_disk, gc_json, regsweep, run, snapshot, v2};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn deleted(r: &GcReport) -> BTreeSet<Digest> {
    r.deleted.blobs.iter().map(|b| b.digest.clone()).collect()
}

/// A mount made by a test, undone when it goes out of scope (before its temporary directory).
struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// `mount ARGS TARGET`, or why it cannot be done here (the test then prints it and skips).
fn mount(args: &[&str], target: &Path) -> Result<Mount, String> {
    let uid = Command::new("id")
        .arg("-u")
        .output()
        .map_err(|e| e.to_string())?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return Err("not running as root".into());
    }
    let out = Command::new("mount")
        .args(args)
        .arg(target)
        .output()
        .map_err(|e| format!("cannot run mount: {e}"))?;
    if out.status.success() {
        Ok(Mount(target.to_path_buf()))
    } else {
        let why = format!("mount failed: {}", String::from_utf8_lossy(&out.stderr));
        assert!(std::env::var_os("CI").is_none(), "as root under CI, {why}");
        Err(why)
    }
}

/// A read-only bind mount of `dir` onto itself.
fn read_only(dir: &Path) -> Result<Mount, String> {
    let m = mount(&["--bind", s(dir)], dir)?;
    // One unmount undoes both: the remount's guard must not unmount too.
    mount(&["-o", "remount,ro,bind"], dir).map(|remount| {
        std::mem::forget(remount);
        m
    })
}

/// Put the tree's `blobs/` on a tmpfs of its own, with the same content and times.
fn blobs_on_tmpfs(root: &Path) -> Result<Mount, String> {
    let blobs = v2(root).join("blobs");
    let aside = v2(root).join("blobs.aside");
    std::fs::rename(&blobs, &aside).unwrap();
    std::fs::create_dir(&blobs).unwrap();
    let m = match mount(&["-t", "tmpfs", "regsweep-test"], &blobs) {
        Ok(m) => m,
        Err(e) => {
            std::fs::remove_dir(&blobs).unwrap();
            std::fs::rename(&aside, &blobs).unwrap();
            return Err(e);
        }
    };
    let cp = Command::new("cp")
        .args(["-a", &format!("{}/.", s(&aside)), s(&blobs)])
        .status()
        .unwrap();
    assert!(cp.success());
    std::fs::remove_dir_all(&aside).unwrap();
    Ok(m)
}

macro_rules! skip_unless {
    ($result:expr) => {
        match $result {
            Ok(m) => m,
            Err(why) => {
                eprintln!("skipped: {why}");
                return;
            }
        }
    };
}

// Finding 1: the tree must never be left with revisions and links naming missing blobs.
#[test]
fn failed_reference_deletions_keep_the_blobs_they_reference() {
    let dir = aged_copy("registry");
    let root = dir.path();
    let (plan, _) = gc_json(root, &["-d", "-m", "--min-age", "0"]);
    assert!(!plan.deleted.blobs.is_empty() && !plan.deleted.manifests.is_empty());
    let before = blobs_on_disk(root);
    let repos = v2(root).join("repositories");
    {
        let _ro = skip_unless!(read_only(&repos));
        let (r, out) = gc_json(root, &["-m", "--min-age", "0"]);
        assert_eq!(out.code, 1, "{}", out.stderr);
        assert!(r.deleted.blobs.is_empty(), "{:?}", r.deleted.blobs);
        assert_eq!(
            blobs_on_disk(root),
            before,
            "a blob went while its references stayed"
        );
        let wanted = plan.deleted.manifests.len() + plan.deleted.layer_links.len();
        assert_eq!(r.summary.failed_deletions, wanted, "{:?}", r.errors);
        for m in &plan.deleted.manifests {
            assert!(
                out.stderr.contains(&format!("{}/_manifests", m.repository)),
                "{} not named",
                m.repository
            );
        }
        assert!(out.stderr.contains("no blob was deleted"), "{}", out.stderr);
    }
    // Writable again: the next run finishes the job, and the one after finds nothing.
    let (r, out) = gc_json(root, &["-m", "--min-age", "0"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(deleted(&r), deleted(&plan));
    assert_eq!(r.deleted.manifests, plan.deleted.manifests);
    let (again, _) = gc_json(root, &["-m", "--min-age", "0"]);
    assert!(deleted(&again).is_empty() && again.deleted.manifests.is_empty());
}

// Finding 2: a plausible layout (a big volume for blobs) must not make every blob undeletable.
#[test]
fn blobs_on_a_filesystem_of_their_own_are_deleted_as_the_dry_run_said() {
    let dir = aged_copy("registry");
    let root = dir.path();
    let _tmpfs = skip_unless!(blobs_on_tmpfs(root));
    let before = blobs_on_disk(root);
    let (plan, _) = gc_json(root, &["-d", "-m", "--min-age", "0"]);
    assert!(!plan.deleted.blobs.is_empty());
    let (r, out) = gc_json(root, &["-m", "--min-age", "0"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(r.summary.failed_deletions, 0, "{:?}", r.errors);
    assert_eq!(deleted(&r), deleted(&plan));
    let after = blobs_on_disk(root);
    assert_eq!(
        before.difference(&after).cloned().collect::<BTreeSet<_>>(),
        deleted(&plan)
    );
    assert!(!v2(root).join("blobs/.regsweep-trash").exists());
    assert!(!v2(root).join(".regsweep-trash").exists());
    let (again, out) = gc_json(root, &["-m", "--min-age", "0"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(deleted(&again).is_empty());
}

// Finding 2: a move that fails says why (a read-only blobs/ showed as "cross-device").
#[test]
fn a_read_only_blob_store_is_reported_as_read_only() {
    let dir = aged_copy("registry");
    let root = dir.path();
    let _tmpfs = skip_unless!(blobs_on_tmpfs(root));
    let blobs = v2(root).join("blobs");
    let _ro = skip_unless!(mount(&["-o", "remount,ro"], &blobs));
    let before = blobs_on_disk(root);
    let (r, out) = gc_json(root, &["--min-age", "0"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(r.summary.failed_deletions > 0);
    assert!(
        out.stderr.contains("Read-only file system"),
        "{}",
        out.stderr
    );
    assert!(
        !out.stderr.to_lowercase().contains("cross-device"),
        "{}",
        out.stderr
    );
    assert_eq!(blobs_on_disk(root), before);
}

// Finding 3: `-j` has a documented maximum instead of starting 15,000 threads.
#[test]
fn jobs_above_the_maximum_are_refused_before_any_thread_starts() {
    let dir = aged_copy("registry");
    let started = std::time::Instant::now();
    let r = run(&["gc", "--dry-run", "-j", "100000", s(dir.path())]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("1024"), "{}", r.stderr);
    assert!(started.elapsed().as_secs() < 10);
    let r = run(&["gc", "--dry-run", "-j", "0", s(dir.path())]);
    assert_eq!(r.code, 2);
    let r = run(&["gc", "--dry-run", "-q", "-j", "1024", s(dir.path())]);
    assert_eq!(r.code, 0, "{}", r.stderr);
}

// Finding 4: an output that cannot be written stops the run before anything is deleted.
#[test]
fn an_unwritable_output_path_stops_every_command_before_it_touches_anything() {
    let dir = aged_copy("registry");
    let root = s(dir.path()).to_string();
    let before = snapshot(dir.path());
    let nowhere = "/nonexistent-regsweep-dir/report.json";
    for args in [
        vec!["gc", "-m", "--min-age", "0", "--json", nowhere, &root],
        vec![
            "delete",
            "--gc",
            "--min-age",
            "0",
            "--json",
            nowhere,
            &root,
            "team/app:v1",
        ],
        vec!["prune", "--keep-n", "0", "--json", nowhere, &root],
        vec!["report", "--csv", nowhere, &root],
        vec!["report", "--html", nowhere, &root],
        vec!["check", "--json", nowhere, &root],
    ] {
        let r = run(&args);
        assert_eq!(r.code, 2, "{args:?}: {}", r.stderr);
        assert!(r.stderr.contains(nowhere), "{args:?}: {}", r.stderr);
        assert!(r.stdout.is_empty(), "{args:?}: {}", r.stdout);
    }
    assert!(
        snapshot(dir.path()) == before,
        "an refused command changed the tree"
    );
}

// Finding 4: a report that fails to write never hides what the run deleted.
#[test]
fn a_report_that_cannot_be_written_still_leaves_the_summary_of_what_was_deleted() {
    let dir = aged_copy("registry");
    let before = blobs_on_disk(dir.path());
    let r = run(&[
        "gc",
        "-m",
        "--min-age",
        "0",
        "--json",
        "/dev/full",
        s(dir.path()),
    ]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("/dev/full: cannot write the JSON report"),
        "{}",
        r.stderr
    );
    assert!(blobs_on_disk(dir.path()).len() < before.len());
    assert!(r.stdout.contains("Deleted"), "no summary: {}", r.stdout);
}

/// The children of the index a tag points at.
fn index_children(root: &Path, repo: &str, tag: &str) -> Vec<Digest> {
    let link = v2(root).join(format!(
        "repositories/{repo}/_manifests/tags/{tag}/current/link"
    ));
    let d: Digest = std::fs::read_to_string(link).unwrap().parse().unwrap();
    let hex = d.hex();
    let data = v2(root).join(format!("blobs/sha256/{}/{hex}/data", &hex[..2]));
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(data).unwrap()).unwrap();
    m["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["digest"].as_str().unwrap().parse().unwrap())
        .collect()
}

fn check_json(root: &Path) -> (CheckReport, support::tree::Run) {
    // The fixture keeps an abandoned upload on purpose; it is not what these tests are about.
    let r = run(&["check", "--stale-uploads", "3650d", "--json", "-", s(root)]);
    let report = serde_json::from_str(&r.stdout)
        .unwrap_or_else(|e| panic!("bad JSON ({e}): {}\n{}", r.stdout, r.stderr));
    (report, r)
}

// Finding 5: what the reference collector's -m leaves behind does not pass as healthy.
#[test]
fn check_names_the_tag_an_unlinked_index_child_breaks() {
    let dir = aged_copy("registry");
    let root = dir.path();
    let (clean, out) = check_json(root);
    assert_eq!(out.code, 0, "{:?}", clean.problems);
    let child = index_children(root, "a/b/c/d", "multi").remove(0);
    let rev = v2(root).join(format!(
        "repositories/a/b/c/d/_manifests/revisions/sha256/{}",
        child.hex()
    ));
    std::fs::remove_dir_all(&rev).unwrap();
    let (r, out) = check_json(root);
    assert_eq!(out.code, 1);
    let p: Vec<_> = r
        .problems
        .iter()
        .filter(|p| p.kind == ProblemKind::UnlinkedChild)
        .collect();
    assert_eq!(p.len(), 1, "{:?}", r.problems);
    assert_eq!(p[0].digest.as_deref(), Some(child.to_string().as_str()));
    assert_eq!(p[0].path, s(&rev.join("link")));
    assert!(p[0].message.contains("a/b/c/d:multi"), "{}", p[0].message);
    let human = run(&["check", "--stale-uploads", "3650d", s(root)]);
    assert!(
        !human.stdout.contains("No damage found"),
        "{}",
        human.stdout
    );
}

// Finding 5: a padded link file makes the registry answer 500; gc keeps it, check reports it.
#[test]
fn check_reports_link_files_with_white_space_that_gc_tolerates() {
    let dir = aged_copy("registry");
    let root = dir.path();
    let link = v2(root).join("repositories/library/alpine/_manifests/tags/latest/current/link");
    let mut content = std::fs::read(&link).unwrap();
    content.push(b'\n');
    std::fs::write(&link, content).unwrap();
    let (r, out) = check_json(root);
    assert_eq!(out.code, 1);
    assert!(
        r.problems
            .iter()
            .any(|p| p.kind == ProblemKind::PaddedLink && p.path == s(&link)),
        "{:?}",
        r.problems
    );
    let (gc, out) = gc_json(root, &["-d", "-m", "--min-age", "0"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(!gc.refused);
}

fn config(dir: &Path, body: &str) -> PathBuf {
    let path = dir.join("config.yml");
    std::fs::write(&path, format!("version: 0.1\n{body}")).unwrap();
    path
}

// Finding 6: with the registry's environment overrides set, regsweep collects the tree the
// registry (and its collector) uses, and says why.
#[test]
fn a_config_target_honours_the_registrys_environment_overrides() {
    let dir = aged_copy("registry");
    let etc = tempfile::tempdir().unwrap();
    let cfg = config(
        etc.path(),
        "storage:\n  filesystem:\n    rootdirectory: /nonexistent-registry-root\n",
    );
    let var = "REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY";
    let out = regsweep()
        .args(["gc", "-d", "--min-age", "0", "--json", "-", s(&cfg)])
        .env(var, dir.path())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: GcReport = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r.root, s(dir.path()));
    assert!(r.root_source.starts_with(var), "{}", r.root_source);
    let human = regsweep()
        .args(["gc", "-d", s(&cfg)])
        .env(var, dir.path())
        .output()
        .unwrap();
    let human = String::from_utf8_lossy(&human.stdout);
    assert!(
        human.contains(&format!("root from {var} in the environment")),
        "{human}"
    );
    // The reference collector, given the same config and environment, collects the same tree.
    if Command::new("docker-registry")
        .arg("--version")
        .output()
        .is_ok()
    {
        let reference = Command::new("docker-registry")
            .args(["garbage-collect", "--dry-run", s(&cfg)])
            .env(var, dir.path())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&reference.stdout);
        let eligible: BTreeSet<Digest> = text
            .lines()
            .filter_map(|l| l.strip_prefix("blob eligible for deletion: "))
            .map(|d| d.trim().parse().unwrap())
            .collect();
        assert_eq!(eligible, deleted(&r), "{text}");
    }
    // A whole section replaced from the environment, the scalar form, and a root left to the
    // registry's default are said as such.
    let cfg = config(etc.path(), "storage: filesystem\n");
    let out = regsweep()
        .args(["gc", "-d", "-q", s(&cfg)])
        .env(var, dir.path())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = regsweep()
        .args(["gc", "-d", s(&cfg)])
        .env_remove(var)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/var/lib/registry"));
}

// Finding 7: configs the registry refuses are refused, with its reason.
#[test]
fn configs_the_registry_refuses_are_refused_with_its_reason() {
    let dir = aged_copy("registry");
    let etc = tempfile::tempdir().unwrap();
    let cfg = config(
        etc.path(),
        &format!(
            "storage:\n  filesystem:\n    rootdirectory: {}\n  s3:\n    bucket: b\n",
            s(dir.path())
        ),
    );
    let r = run(&["gc", "-d", s(&cfg)]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("must provide exactly one storage type"),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("(none)"));
    // A Redis blob-descriptor cache without read-only mode earns a warning (stderr and JSON).
    let cfg = config(
        etc.path(),
        &format!(
            "storage:\n  filesystem:\n    rootdirectory: {}\n  cache:\n    blobdescriptor: redis\n",
            s(dir.path())
        ),
    );
    let (r, out) = gc_json(&cfg, &["-d"]);
    assert_eq!(out.code, 0);
    assert!(
        r.warnings
            .iter()
            .any(|w| w.path == s(&cfg) && w.message.contains("read-only mode")),
        "{:?}",
        r.warnings
    );
    assert!(out.stderr.contains("read-only mode"));
}

// Finding 9: messages that say what is wrong, once.
#[test]
fn an_empty_reference_is_called_empty() {
    let dir = aged_copy("registry");
    let r = run(&["delete", "--dry-run", s(dir.path()), ""]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("the reference is empty"), "{}", r.stderr);
}

#[test]
fn a_file_where_a_repository_directory_should_be_is_named_once() {
    for (rel, name) in [
        ("repositories/library/alpine/_layers", "_layers"),
        (
            "repositories/library/alpine/_manifests/revisions/sha256",
            "revisions/sha256",
        ),
    ] {
        let dir = aged_copy("registry");
        let path = v2(dir.path()).join(rel);
        std::fs::remove_dir_all(&path).unwrap();
        std::fs::write(&path, b"").unwrap();
        for args in [vec!["-d"], vec!["-d", "-m"]] {
            let (r, out) = gc_json(dir.path(), &args);
            assert_eq!(out.code, 1, "{name}");
            assert_eq!(r.errors.len(), 1, "{name}: {:?}", r.errors);
            assert_eq!(r.errors[0].path, s(&path), "{name}");
            assert!(r.errors[0].message.contains("not a directory"));
            assert!(
                !out.stderr.contains("already broken"),
                "{name}: {}",
                out.stderr
            );
            assert_eq!(out.stderr.matches(s(&path)).count(), 1, "{}", out.stderr);
        }
        let r = run(&["delete", "--gc", "-d", s(dir.path()), "team/app:v1"]);
        assert_eq!(r.stderr.matches(s(&path)).count(), 1, "{}", r.stderr);
    }
}

#[test]
fn two_outputs_on_stdout_are_refused() {
    let dir = aged_copy("registry");
    let r = run(&["report", "--json", "-", "--csv", "-", s(dir.path())]);
    assert_eq!(r.code, 2);
    assert!(r.stdout.is_empty());
    assert!(
        r.stderr.contains("only one output can go to stdout"),
        "{}",
        r.stderr
    );
}

// Keep the helpers honest: the tmpfs copy preserves the tree exactly.
#[test]
fn blobs_on_tmpfs_keeps_every_blob() {
    let dir = aged_copy("registry");
    let before = snapshot(dir.path());
    let _m = skip_unless!(blobs_on_tmpfs(dir.path()));
    let after = snapshot(dir.path());
    let strip =
        |m: &std::collections::BTreeMap<PathBuf, (String, u64, String, std::time::SystemTime)>| {
            m.iter()
                .filter(|(_, v)| v.0 == "file")
                .map(|(k, v)| (k.clone(), v.2.clone(), v.3))
                .collect::<Vec<_>>()
        };
    assert_eq!(strip(&before), strip(&after));
}

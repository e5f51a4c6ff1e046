//! Unattended on a real host (#25): what a nightly timer, a monitoring system and a journal see
//! when things go wrong. Each test is one finding of a hostile week, and failed before its fix.

mod support;

use std::path::Path;

use support::tree::{aged_copy, run, snapshot};

fn metric(file: &Path, name: &str) -> Option<f64> {
    let text = std::fs::read_to_string(file).ok()?;
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

// Item 3: `--metrics-file` replaced whatever was at the path: a symbolic link (or, as root,
// /dev/stdout) became a regular file.
#[test]
fn a_metrics_path_that_is_not_a_regular_file_is_refused_before_anything_is_read() {
    let dir = aged_copy("registry");
    let out = tempfile::tempdir().unwrap();
    let target = out.path().join("real.prom");
    std::fs::write(&target, b"# someone else's\n").unwrap();
    let link = out.path().join("link.prom");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let fifo = out.path().join("fifo.prom");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status();
    let mut paths = vec![link.clone(), out.path().to_path_buf()];
    if made.is_ok_and(|s| s.success()) {
        paths.push(fifo.clone());
    }
    let before = snapshot(dir.path());
    for path in &paths {
        let r = run(&[
            "gc",
            "--min-age",
            "0",
            "--metrics-file",
            path.to_str().unwrap(),
            dir.path().to_str().unwrap(),
        ]);
        assert_eq!(r.code, 2, "{}: {}", path.display(), r.stderr);
        assert!(r.stderr.contains("not a regular file"), "{}", r.stderr);
        assert_eq!(snapshot(dir.path()), before);
    }
    assert!(std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(std::fs::read(&target).unwrap(), b"# someone else's\n");
}

// Item 6: a run that ended with exit 2 (the config moved, the root missing) wrote no metrics,
// so `regsweep_last_run_success` stayed 1 from the night before, and a new `--json` path was
// left as an empty file.
#[test]
fn a_run_that_cannot_start_is_recorded_as_failed_and_leaves_no_empty_report() {
    let dir = aged_copy("registry");
    let out = tempfile::tempdir().unwrap();
    let prom = out.path().join("gc.prom");
    let json = out.path().join("gc.json");
    let ok = run(&[
        "gc",
        "-q",
        "--metrics-file",
        prom.to_str().unwrap(),
        dir.path().to_str().unwrap(),
    ]);
    assert_eq!(ok.code, 0, "{}", ok.stderr);
    assert_eq!(metric(&prom, "regsweep_last_run_success"), Some(1.0));
    let gone = out.path().join("moved-config.yml");
    let r = run(&[
        "gc",
        "-q",
        "--metrics-file",
        prom.to_str().unwrap(),
        "--json",
        json.to_str().unwrap(),
        gone.to_str().unwrap(),
    ]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert_eq!(metric(&prom, "regsweep_last_run_success"), Some(0.0));
    assert_eq!(metric(&prom, "regsweep_runs_failed_total"), Some(1.0));
    assert_eq!(metric(&prom, "regsweep_runs_succeeded_total"), Some(1.0));
    assert!(!json.exists(), "an empty report was left behind");
    // A report file that was already there keeps its content.
    std::fs::write(&json, b"{\"last\": true}").unwrap();
    let r = run(&[
        "gc",
        "--json",
        json.to_str().unwrap(),
        gone.to_str().unwrap(),
    ]);
    assert_eq!(r.code, 2);
    assert_eq!(std::fs::read(&json).unwrap(), b"{\"last\": true}");
}

// Item 13: a `--redis` URL that failed to parse was echoed whole, password included (an
// unencoded `/` in a generated password is enough); under systemd it lands in the journal.
#[test]
fn a_redis_url_that_does_not_parse_never_shows_its_password() {
    let dir = aged_copy("registry");
    for url in [
        "redis://:pa/ss-w0rd-s3cret@127.0.0.1:6379/0",
        "redis://user:s3cret-pw@[::1/0",
        "rediss://user:s3cret-pw@:99999999/0",
    ] {
        let r = run(&["gc", "-d", "--redis", url, dir.path().to_str().unwrap()]);
        assert_ne!(r.code, 0, "{url}");
        for secret in ["s3cret", "pa/ss"] {
            assert!(!r.stderr.contains(secret), "{url}: {}", r.stderr);
            assert!(!r.stdout.contains(secret), "{url}: {}", r.stdout);
        }
    }
}

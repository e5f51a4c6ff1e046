//! `--metrics-file` read by the real node_exporter (issue 16): Debian's
//! `prometheus-node-exporter`, started here on 127.0.0.1 with a free port and its textfile
//! collector pointed where regsweep writes, is scraped after each run. Its `/metrics` shows the
//! values of the JSON report of the same run, and a run that refused shows as failed.

mod support;

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::tree::{aged_copy, gc_json, v2};

const EXPORTER: &str = "prometheus-node-exporter";

fn available() -> bool {
    let found = Command::new(EXPORTER)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found && std::env::var_os("CI").is_some() {
        panic!("{EXPORTER} is not installed and CI is set: run scripts/test, which installs it");
    }
    if !found {
        eprintln!("skipping: {EXPORTER} is not installed (scripts/test installs it)");
    }
    found
}

struct Exporter {
    child: Child,
    port: u16,
}

impl Exporter {
    fn start(textfiles: &Path) -> Exporter {
        for _ in 0..5 {
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map(|a| a.port())
                .unwrap();
            let child = Command::new(EXPORTER)
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .arg("--collector.disable-defaults")
                .arg("--collector.textfile")
                .arg(format!(
                    "--collector.textfile.directory={}",
                    textfiles.display()
                ))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start node_exporter");
            let mut exporter = Exporter { child, port };
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = exporter.child.try_wait() {
                    break;
                }
                if exporter.scrape().is_ok() {
                    return exporter;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        panic!("node_exporter did not come up");
    }

    /// Every sample of `/metrics`, by `name{labels}`.
    fn scrape(&self) -> Result<BTreeMap<String, f64>, String> {
        let body = ureq::get(&format!("http://127.0.0.1:{}/metrics", self.port))
            .timeout(Duration::from_secs(5))
            .call()
            .map_err(|e| e.to_string())?
            .into_string()
            .map_err(|e| e.to_string())?;
        Ok(body
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let (k, v) = l.rsplit_once(' ')?;
                Some((k.to_string(), v.parse().ok()?))
            })
            .collect())
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn gc_metric(m: &BTreeMap<String, f64>, name: &str) -> f64 {
    *m.get(&format!("{name}{{command=\"gc\"}}"))
        .unwrap_or_else(|| panic!("{name} is not scraped: {m:?}"))
}

#[test]
fn node_exporter_serves_what_the_run_reported_and_a_refused_run_as_failed() {
    if !available() {
        return;
    }
    let textfiles = tempfile::tempdir().unwrap();
    let exporter = Exporter::start(textfiles.path());
    let prom = textfiles.path().join("regsweep-gc.prom");
    let tree = aged_copy("registry");
    let prom_arg = prom.to_str().unwrap();
    let (report, run) = gc_json(
        tree.path(),
        &["-m", "--min-age", "0", "--metrics-file", prom_arg],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let m = exporter.scrape().unwrap();
    assert_eq!(m.get("node_textfile_scrape_error"), Some(&0.0), "{m:?}");
    let s = &report.summary;
    assert!(s.deleted_blobs > 0);
    for (name, value) in [
        ("regsweep_last_run_success", 1.0),
        ("regsweep_last_run_refused", 0.0),
        ("regsweep_last_run_deleted_blobs", s.deleted_blobs as f64),
        ("regsweep_last_run_deleted_bytes", s.deleted_bytes as f64),
        (
            "regsweep_last_run_deleted_manifests",
            s.deleted_manifests as f64,
        ),
        (
            "regsweep_last_run_deleted_layer_links",
            s.deleted_layer_links as f64,
        ),
        (
            "regsweep_last_run_deleted_uploads",
            s.deleted_uploads as f64,
        ),
        ("regsweep_last_run_failed_deletions", 0.0),
        ("regsweep_found_blobs", s.census.blobs as f64),
        ("regsweep_found_bytes", s.census.bytes as f64),
        ("regsweep_deleted_blobs_total", s.deleted_blobs as f64),
        ("regsweep_runs_succeeded_total", 1.0),
        ("regsweep_runs_refused_total", 0.0),
    ] {
        assert_eq!(gc_metric(&m, name), value, "{name}");
    }
    assert!(gc_metric(&m, "regsweep_last_run_duration_seconds") > 0.0);
    let ended = gc_metric(&m, "regsweep_last_run_timestamp_seconds");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!((now - ended).abs() < 120.0, "ended {ended}, now {now}");

    // Damage a tag: the live set may be incomplete, so the run refuses (exit 1).
    let tag_link = walkdir::WalkDir::new(v2(tree.path()).join("repositories"))
        .into_iter()
        .flatten()
        .find(|e| e.path().ends_with("current/link"))
        .expect("a tag")
        .into_path();
    let tag_was = std::fs::read(&tag_link).unwrap();
    std::fs::write(&tag_link, b"not a digest").unwrap();
    let (refused, run) = gc_json(
        tree.path(),
        &["-m", "--min-age", "0", "--metrics-file", prom_arg],
    );
    assert_eq!(run.code, 1);
    assert!(refused.refused);
    let m = exporter.scrape().unwrap();
    assert_eq!(m.get("node_textfile_scrape_error"), Some(&0.0));
    assert_eq!(gc_metric(&m, "regsweep_last_run_success"), 0.0);
    assert_eq!(gc_metric(&m, "regsweep_last_run_refused"), 1.0);
    assert_eq!(gc_metric(&m, "regsweep_last_run_deleted_blobs"), 0.0);
    assert_eq!(gc_metric(&m, "regsweep_runs_refused_total"), 1.0);
    assert_eq!(gc_metric(&m, "regsweep_runs_succeeded_total"), 1.0);
    assert_eq!(
        gc_metric(&m, "regsweep_deleted_blobs_total"),
        s.deleted_blobs as f64,
        "the counter keeps what the first run deleted"
    );
    // No temporary file is left for the collector to trip on.
    let names: Vec<String> = std::fs::read_dir(textfiles.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec!["regsweep-gc.prom".to_string()]);

    // #25 item 6: a run that cannot even start (its config moved: exit 2) is a failed run to
    // node_exporter too; the success of the night before must not stand.
    std::fs::write(&tag_link, tag_was).unwrap();
    let good = gc_json(tree.path(), &["--min-age", "0", "--metrics-file", prom_arg]).1;
    assert_eq!(good.code, 0, "{}", good.stderr);
    assert_eq!(
        gc_metric(&exporter.scrape().unwrap(), "regsweep_last_run_success"),
        1.0
    );
    let moved = tree.path().join("moved-config.yml");
    let r = support::tree::run(&[
        "gc",
        "-q",
        "--metrics-file",
        prom_arg,
        moved.to_str().unwrap(),
    ]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    let m = exporter.scrape().unwrap();
    assert_eq!(m.get("node_textfile_scrape_error"), Some(&0.0));
    assert_eq!(gc_metric(&m, "regsweep_last_run_success"), 0.0);
    assert_eq!(gc_metric(&m, "regsweep_runs_failed_total"), 1.0);

    // A metrics file that cannot be written stops the command before it starts.
    let r = support::tree::run(&[
        "gc",
        "--metrics-file",
        "/nonexistent/dir/x.prom",
        tree.path().to_str().unwrap(),
    ]);
    assert_eq!(r.code, 2, "{}", r.stderr);
}

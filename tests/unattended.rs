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

// Item 5: with a tag's revision link gone, `check` said "No damage found" and `gc -m` deleted
// the image's blobs ("already broken"): an image one re-created link would have brought back
// was beyond repair. Now `check` names it, `gc -m` keeps what it references, and
// `check --repair` writes the link back.
#[test]
fn a_tag_without_its_revision_link_is_reported_kept_and_repaired() {
    let dir = aged_copy("registry");
    let root = dir.path();
    let v2 = support::tree::v2(root);
    let tag_link = v2.join("repositories/team/app/_manifests/tags/v1/current/link");
    let digest = std::fs::read_to_string(&tag_link).unwrap();
    let hex = digest.trim().strip_prefix("sha256:").unwrap().to_string();
    let revision = v2.join(format!(
        "repositories/team/app/_manifests/revisions/sha256/{hex}"
    ));
    std::fs::remove_dir_all(&revision).unwrap();
    let before = support::tree::blobs_on_disk(root);

    let check = |args: &[&str]| {
        let mut all = vec!["check", "--json", "-"];
        all.extend_from_slice(args);
        all.push(root.to_str().unwrap());
        let r = run(&all);
        let report: regsweep::check::CheckReport = serde_json::from_str(&r.stdout)
            .unwrap_or_else(|e| panic!("{e}: {} {}", r.stdout, r.stderr));
        (report, r)
    };
    let (report, r) = check(&[]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let unlinked: Vec<_> = report
        .problems
        .iter()
        .filter(|p| p.kind == regsweep::check::ProblemKind::UnlinkedTag)
        .collect();
    assert_eq!(unlinked.len(), 1, "{:?}", report.problems);
    assert!(unlinked[0].message.contains("team/app:v1"));
    assert!(report.repairable >= 1 && report.repaired.is_empty());
    assert!(!revision.exists(), "check without --repair wrote");

    // gc -m keeps everything the tag's manifest references (a warning says why).
    let (gc, out) = support::tree::gc_json(root, &["-m", "--min-age", "0"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.contains("check --repair"), "{}", out.stderr);
    let after = support::tree::blobs_on_disk(root);
    let manifest =
        std::fs::read(v2.join(format!("blobs/sha256/{}/{hex}/data", &hex[..2]))).unwrap();
    let m = regsweep::registry::manifest::Manifest::parse(&manifest).unwrap();
    for b in &m.blobs {
        assert!(
            after.contains(&b.digest),
            "gc -m deleted {} of team/app:v1",
            b.digest
        );
    }
    assert!(after.len() < before.len() && !gc.deleted.blobs.is_empty());

    // --repair writes it back; then nothing is left to find about it.
    let (repaired, r) = check(&["--repair"]);
    assert!(!repaired.repaired.is_empty(), "{}", r.stderr);
    assert_eq!(
        std::fs::read_to_string(revision.join("link")).unwrap(),
        digest.trim()
    );
    let (again, r) = check(&[]);
    assert!(
        again
            .problems
            .iter()
            .all(|p| p.kind != regsweep::check::ProblemKind::UnlinkedTag),
        "{}",
        r.stderr
    );
    assert_eq!(again.repairable, 0);
    support::tree::assert_every_tag_pulls(root);
}

// Item 16: `blobs/` as a symbolic link to a data disk (a common layout; the reference
// collector follows it) was refused on every run. The root, `blobs/` and `repositories/` are
// resolved once and said; links deeper in the tree stay refused.
#[test]
fn a_symlinked_root_blobs_and_repositories_are_followed_and_said() {
    let dir = aged_copy("registry");
    let (plan, out) = support::tree::gc_json(dir.path(), &["-d", "-m", "--min-age", "0"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let expected: std::collections::BTreeSet<_> = plan
        .deleted
        .blobs
        .iter()
        .map(|b| b.digest.clone())
        .collect();
    assert!(!expected.is_empty());

    let disks = tempfile::tempdir().unwrap();
    let v2 = support::tree::v2(dir.path());
    for name in ["blobs", "repositories"] {
        let elsewhere = disks.path().join(name);
        std::fs::rename(v2.join(name), &elsewhere).unwrap();
        std::os::unix::fs::symlink(&elsewhere, v2.join(name)).unwrap();
    }
    let root_link = disks.path().join("root-link");
    std::os::unix::fs::symlink(dir.path(), &root_link).unwrap();

    let r = run(&[
        "gc",
        "-m",
        "--min-age",
        "0",
        "--json",
        "-",
        root_link.to_str().unwrap(),
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    for said in [
        "root-link is a symbolic link",
        "blobs is a symbolic link",
        "repositories is a symbolic link",
    ] {
        assert!(r.stderr.contains(said), "{said}: {}", r.stderr);
    }
    let report: regsweep::gc::report::GcReport = serde_json::from_str(&r.stdout).unwrap();
    let deleted: std::collections::BTreeSet<_> = report
        .deleted
        .blobs
        .iter()
        .map(|b| b.digest.clone())
        .collect();
    assert_eq!(deleted, expected);
    assert!(std::fs::symlink_metadata(v2.join("blobs"))
        .unwrap()
        .file_type()
        .is_symlink());
    support::tree::assert_every_tag_pulls(dir.path());
    // Deeper, a link is still not followed: a shard that leads elsewhere is left alone.
    let shard = std::fs::read_dir(disks.path().join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.is_dir())
        .unwrap();
    let moved = disks.path().join("moved-shard");
    std::fs::rename(&shard, &moved).unwrap();
    std::os::unix::fs::symlink(&moved, &shard).unwrap();
    let in_shard: Vec<_> = std::fs::read_dir(&moved).unwrap().collect();
    let r = run(&["gc", "-m", "--min-age", "0", dir.path().to_str().unwrap()]);
    assert!(
        r.stderr.contains("not a blob shard directory; left alone"),
        "{}",
        r.stderr
    );
    assert_eq!(std::fs::read_dir(&moved).unwrap().count(), in_shard.len());
}

// Item 10: S3 behind a private CA. "tls connection init failed" with no cause, retried for
// 13 s; neither AWS_CA_BUNDLE (which the registry's own driver honours) nor SSL_CERT_FILE was.
#[test]
fn s3_behind_a_private_ca_is_reached_through_the_bundle_the_registry_reads() {
    if !support::s3::available() || !has("openssl") {
        eprintln!("skipping: moto_server or openssl is not installed (scripts/test installs them)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name);
    let openssl = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=regsweep test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    ]);
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    ]);
    std::fs::write(p("san.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "san.ext",
        "-out",
        "server.pem",
    ]);
    let moto = support::s3::Moto::start_tls(&p("server.pem"), &p("server.key"), &p("ca.pem"));
    let client = moto.create_bucket("private");
    let fixture = aged_copy("registry");
    support::tree::load_settled(&client, "reg", fixture.path()).unwrap();

    let gc = |env: &[(&str, &std::path::Path)]| {
        let mut cmd = support::tree::regsweep();
        cmd.args([
            "gc",
            "-d",
            "--cache-dir",
            "off",
            "--s3-endpoint",
            &moto.endpoint(),
            "s3://private/reg",
        ])
        .env("AWS_ACCESS_KEY_ID", support::s3::KEY)
        .env("AWS_SECRET_ACCESS_KEY", support::s3::SECRET)
        .env_remove("AWS_CA_BUNDLE")
        .env_remove("SSL_CERT_FILE")
        .env_remove("AWS_ENDPOINT_URL");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let started = std::time::Instant::now();
        let out = cmd.output().unwrap();
        (out, started.elapsed())
    };
    // Without the bundle: refused at once (a certificate is not worth retrying), and said why.
    let (out, took) = gc(&[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0));
    assert!(stderr.contains("certificate"), "{stderr}");
    assert!(
        took < std::time::Duration::from_secs(5),
        "retried for {took:?}: {stderr}"
    );
    // With it, either way the administrator's tools set it.
    for var in ["AWS_CA_BUNDLE", "SSL_CERT_FILE"] {
        let (out, _) = gc(&[(var, &p("ca.pem"))]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{var}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // A bundle that is not one is a clear error naming it.
    std::fs::write(p("junk.pem"), b"not a certificate").unwrap();
    let (out, _) = gc(&[("AWS_CA_BUNDLE", &p("junk.pem"))]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("junk.pem") && stderr.contains("CA bundle"),
        "{stderr}"
    );
}

fn has(tool: &str) -> bool {
    std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .is_ok_and(|o| o.status.success())
}

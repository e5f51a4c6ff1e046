//! Object storage, against real peers started here: an S3 server (moto) on 127.0.0.1, the real
//! registry writing its bucket through its own s3 driver, skopeo pulling, and the reference
//! collector on the same bucket. What holds on disk must hold in the bucket: the same deletion
//! sets, every live tag pulling after a real `gc -m`, dry runs that send no write request (as
//! counted by the server), one real run at a time, and refusals that name keys.

mod support;

use regsweep::storage::bucket::Bucket as _;
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use regsweep::gc::report::GcReport;
use regsweep::registry::digest::Digest;
use regsweep::synth::Preset;
use support::emulators::blobs_in;
use support::pull::{check_scenario_after_gc, peers, reference_dry_run_config, skopeo_push_layout};
use support::registry::Registry;
use support::s3::{self, Moto};
use support::scenario;
use support::tree::{aged_copy, regsweep};

/// regsweep against the moto server, with its own manifest cache.
fn s3_cmd(moto: &Moto, cache: &Path, args: &[&str]) -> std::process::Command {
    let mut cmd = regsweep();
    cmd.args(args)
        .arg("--s3-endpoint")
        .arg(moto.endpoint())
        .arg("--cache-dir")
        .arg(cache)
        .env("AWS_ACCESS_KEY_ID", s3::KEY)
        .env("AWS_SECRET_ACCESS_KEY", s3::SECRET)
        .env_remove("AWS_ENDPOINT_URL")
        .env_remove("AWS_PROFILE");
    cmd
}

struct Ran {
    code: i32,
    stdout: String,
    stderr: String,
}

fn run_cmd(mut cmd: std::process::Command) -> Ran {
    let out = cmd.output().expect("run regsweep");
    Ran {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn gc_report(r: &Ran) -> GcReport {
    serde_json::from_str(&r.stdout)
        .unwrap_or_else(|e| panic!("bad JSON ({e}): {}\n{}", r.stdout, r.stderr))
}

fn deleted(r: &GcReport) -> BTreeSet<Digest> {
    r.deleted.blobs.iter().map(|b| b.digest.clone()).collect()
}

/// A registry config for the registry's s3 driver on `moto`.
fn s3_config(dir: &Path, moto: &Moto, bucket: &str, root: &str) -> std::path::PathBuf {
    let path = dir.join("config.yml");
    std::fs::write(
        &path,
        format!(
            "version: 0.1\nstorage:\n  s3:\n    accesskey: {}\n    secretkey: {}\n    region: us-east-1\n    \
             regionendpoint: {}\n    bucket: {bucket}\n    rootdirectory: {root}\n    secure: false\n  \
             redirect:\n    disable: true\n",
            s3::KEY,
            s3::SECRET,
            moto.endpoint()
        ),
    )
    .unwrap();
    path
}

#[test]
fn the_real_registry_on_s3_end_to_end() {
    if !s3::available() || !peers() {
        return;
    }
    let moto = Moto::start();
    let bucket = moto.create_bucket("registry");
    let mut server = Registry::start_s3(&moto.endpoint(), "registry", "/reg");
    let mut e = scenario::standard(&server.client());
    skopeo_push_layout(&server.host(), "tools/skopeo-pushed", "v1", "skopeo layer");
    let (status, body) = server.client().get_manifest("tools/skopeo-pushed", "v1");
    assert_eq!(status, 200);
    e.live_tags.push((
        "tools/skopeo-pushed".into(),
        "v1".into(),
        support::images::Pushed {
            repo: "tools/skopeo-pushed".into(),
            digest: Digest::of(regsweep::registry::digest::Algorithm::Sha256, &body),
            media_type: support::images::OCI_MANIFEST,
            size: body.len(),
            blobs: vec![],
            children: vec![],
        },
    ));
    server.stop();
    let etc = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let config = s3_config(etc.path(), &moto, "registry", "/reg");
    let cfg = config.to_str().unwrap();

    // Without -m, regsweep lists exactly what the reference lists, on the same bucket.
    let (reference, _) = reference_dry_run_config(&config, false);
    let dry = run_cmd(s3_cmd(
        &moto,
        cache.path(),
        &["gc", "-d", "--min-age", "0", "--json", "-", cfg],
    ));
    assert_eq!(dry.code, 0, "{}", dry.stderr);
    let dry = gc_report(&dry);
    assert_eq!(deleted(&dry), reference);
    assert_eq!(deleted(&dry), e.dead_blobs(false));
    assert!(dry.root.starts_with("s3://registry/reg"), "{}", dry.root);
    assert!(
        dry.root_source.contains("storage.s3"),
        "{}",
        dry.root_source
    );

    // Dry runs of every command send no write request, as the server counts them; a second
    // dry run reads every manifest from the cache.
    let before = moto.requests();
    let commands: [Vec<&str>; 6] = [
        vec!["gc", "-d", "-m", "--min-age", "0", "--json", "-", cfg],
        vec![
            "gc",
            "-d",
            "--empty-repositories",
            "--min-age",
            "0",
            "--json",
            "-",
            cfg,
        ],
        vec!["delete", "-d", "--gc", "--min-age", "0", cfg, "team/app:v1"],
        vec![
            "prune",
            "-d",
            "--keep-n",
            "0",
            "--gc",
            "--min-age",
            "0",
            cfg,
        ],
        vec!["report", cfg],
        vec!["check", "--stale-uploads", "3650d", cfg],
    ];
    for args in &commands {
        let r = run_cmd(s3_cmd(&moto, cache.path(), args));
        assert!(r.code == 0 || args[0] == "check", "{args:?}: {}", r.stderr);
        if args.contains(&"--json") {
            let report = gc_report(&r);
            let requests = report.requests.expect("request counts on object storage");
            // The only GETs left: each upload's `startedat` (its age is its content).
            assert_eq!(
                requests.get as usize, report.summary.census.uploads,
                "{args:?}: manifests not from the cache"
            );
            assert_eq!(requests.put + requests.delete, 0);
        }
    }
    assert_eq!(
        moto.writes_since(&before),
        0,
        "a dry run wrote: {:?}",
        moto.requests()
    );

    // The real run with -m: dead blobs gone, every live tag (every platform) pulls, referrers
    // of live images survive, and a second run finds nothing.
    std::thread::sleep(Duration::from_secs(3));
    let blobs_before = blobs_in(&bucket, "reg");
    let real = run_cmd(s3_cmd(
        &moto,
        cache.path(),
        &["gc", "-m", "--min-age", "0", "--json", "-", cfg],
    ));
    assert_eq!(real.code, 0, "{}", real.stderr);
    let real = gc_report(&real);
    let gone: BTreeSet<Digest> = blobs_before
        .difference(&blobs_in(&bucket, "reg"))
        .cloned()
        .collect();
    assert_eq!(gone, e.dead_blobs(true));
    assert_eq!(deleted(&real), gone);
    let requests = real.requests.unwrap();
    // Deletes in batches (tag history, revisions, layer links, originals after their copy to
    // the trash, the trash); one copy (a PUT) per dead blob, the lock object, and the refused
    // second create that shows the server honours the lock's condition.
    assert!(requests.delete >= 1 && requests.delete <= 6, "{requests:?}");
    assert_eq!(requests.put as usize, gone.len() + 2, "{requests:?}");
    server.restart();
    check_scenario_after_gc(&server, &e, true);
    server.stop();
    let again = run_cmd(s3_cmd(
        &moto,
        cache.path(),
        &["gc", "-m", "--min-age", "0", "--json", "-", cfg],
    ));
    assert_eq!(again.code, 0, "{}", again.stderr);
    let again = gc_report(&again);
    assert!(deleted(&again).is_empty() && again.deleted.manifests.is_empty());
    assert!(again.deleted.layer_links.is_empty());
}

const SMALL: Preset = Preset {
    name: "s3-small",
    repositories: 6,
    tags: 4,
    layers: 3,
};

#[test]
fn the_same_registry_on_disk_and_in_a_bucket_gives_the_same_deletion_sets() {
    if !s3::available() {
        return;
    }
    let moto = Moto::start();
    let client = moto.create_bucket("same");
    let generated = tempfile::tempdir().unwrap();
    regsweep::synth::generate(generated.path(), SMALL, 3).unwrap();
    let fixture = aged_copy("registry");
    let cache = tempfile::tempdir().unwrap();
    for (prefix, tree) in [("fixture", fixture.path()), ("synth", generated.path())] {
        support::tree::load_settled(&client, prefix, tree).unwrap();
        let url = format!("s3://same/{prefix}");
        for mode in [
            &["--min-age", "0"][..],
            &[
                "--min-age",
                "0",
                "-m",
                "--empty-repositories",
                "--uploads-older-than",
                "1s",
            ],
        ] {
            let mut args = vec!["gc", "-d", "--json", "-"];
            args.extend_from_slice(mode);
            let mut disk_args = args.clone();
            disk_args.push(tree.to_str().unwrap());
            let disk = support::tree::run(&disk_args);
            assert_eq!(disk.code, 0, "{}", disk.stderr);
            let disk: GcReport = serde_json::from_str(&disk.stdout).unwrap();
            args.push(&url);
            let bucket = run_cmd(s3_cmd(&moto, cache.path(), &args));
            assert_eq!(bucket.code, 0, "{prefix} {mode:?}: {}", bucket.stderr);
            let bucket = gc_report(&bucket);
            assert!(
                !disk.deleted.blobs.is_empty(),
                "{prefix}: nothing to compare"
            );
            assert_eq!(
                bucket.deleted.blobs, disk.deleted.blobs,
                "{prefix} {mode:?}"
            );
            assert_eq!(bucket.deleted.manifests, disk.deleted.manifests);
            assert_eq!(bucket.deleted.layer_links, disk.deleted.layer_links);
            assert_eq!(bucket.deleted.shards, disk.deleted.shards);
            assert_eq!(bucket.deleted.repositories, disk.deleted.repositories);
            let uuids = |r: &GcReport| {
                r.deleted
                    .uploads
                    .iter()
                    .map(|u| u.uuid.clone())
                    .collect::<Vec<_>>()
            };
            assert_eq!(uuids(&bucket), uuids(&disk));
            assert_eq!(
                bucket.summary.census.live_blobs,
                disk.summary.census.live_blobs
            );
        }
    }
}

#[test]
fn one_real_run_per_bucket_at_a_time() {
    if !s3::available() {
        return;
    }
    let moto = Moto::start();
    let client = moto.create_bucket("locked");
    let fixture = aged_copy("registry");
    support::tree::load_settled(&client, "reg", fixture.path()).unwrap();
    let cache = tempfile::tempdir().unwrap();
    let lock = "reg/docker/registry/v2/.regsweep.lock";
    let far =
        humantime::format_rfc3339_seconds(std::time::SystemTime::now() + Duration::from_secs(3600));
    let body = format!(r#"{{"holder":"another run","since":"{far}","expires":"{far}"}}"#);
    assert!(client.put(lock, body.as_bytes(), true).unwrap());
    // Taken: the second writer of the lock object is refused by the server itself.
    assert!(!client.put(lock, b"x", true).unwrap());

    let args = ["gc", "--min-age", "0", "s3://locked/reg"];
    let r = run_cmd(s3_cmd(&moto, cache.path(), &args));
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("s3://locked/reg/docker/registry/v2/.regsweep.lock"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("another run"), "{}", r.stderr);
    // Dry runs take no lock.
    let r = run_cmd(s3_cmd(
        &moto,
        cache.path(),
        &["gc", "-d", "s3://locked/reg"],
    ));
    assert_eq!(r.code, 0, "{}", r.stderr);

    // --wait: the run goes once the holder lets go.
    let mut waiting = s3_cmd(
        &moto,
        cache.path(),
        &[
            "gc",
            "--wait",
            "--min-age",
            "0",
            "--json",
            "-",
            "s3://locked/reg",
        ],
    );
    let child = waiting
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    client.delete(lock).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: GcReport = serde_json::from_slice(&out.stdout).unwrap();
    assert!(!report.deleted.blobs.is_empty());
    // Released after the run.
    assert!(client.put(lock, b"x", true).unwrap());
    client.delete(lock).unwrap();

    // An expired lock (its holder was killed) is taken over.
    let past =
        humantime::format_rfc3339_seconds(std::time::SystemTime::now() - Duration::from_secs(60));
    let body = format!(r#"{{"holder":"a dead run","since":"{past}","expires":"{past}"}}"#);
    assert!(client.put(lock, body.as_bytes(), true).unwrap());
    let r = run_cmd(s3_cmd(&moto, cache.path(), &args));
    assert_eq!(r.code, 0, "{}", r.stderr);
}

#[test]
fn a_missing_live_manifest_in_the_bucket_refuses_and_names_its_key() {
    if !s3::available() {
        return;
    }
    let moto = Moto::start();
    let client = moto.create_bucket("damaged");
    let fixture = aged_copy("registry");
    support::tree::load_settled(&client, "reg", fixture.path()).unwrap();
    // The manifest library/alpine:latest points at, gone from the blob store.
    let link = fixture
        .path()
        .join("docker/registry/v2/repositories/library/alpine/_manifests/tags/latest/current/link");
    let d: Digest = std::fs::read_to_string(link).unwrap().parse().unwrap();
    let hex = d.hex();
    let key = format!(
        "reg/docker/registry/v2/blobs/sha256/{}/{hex}/data",
        &hex[..2]
    );
    client.delete(&key).unwrap();
    let cache = tempfile::tempdir().unwrap();
    let before = blobs_in(&client, "reg");
    let r = run_cmd(s3_cmd(
        &moto,
        cache.path(),
        &[
            "gc",
            "-m",
            "--min-age",
            "0",
            "--json",
            "-",
            "s3://damaged/reg",
        ],
    ));
    assert_eq!(r.code, 1, "{}", r.stderr);
    let report = gc_report(&r);
    assert!(report.refused);
    assert!(
        r.stderr.contains(&format!("s3://damaged/{key}")),
        "{}",
        r.stderr
    );
    assert_eq!(blobs_in(&client, "reg"), before, "a refused run deleted");

    // #25 item 11: a bucket that does not exist is a wrong target (exit 2), as documented.
    let r = run_cmd(s3_cmd(
        &moto,
        cache.path(),
        &["gc", "-d", "s3://no-such-bucket/reg"],
    ));
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("no-such-bucket"), "{}", r.stderr);
}

/// Enough repositories that a run on the test server takes a few seconds.
const BUSY: Preset = Preset {
    name: "s3-busy",
    repositories: 12,
    tags: 6,
    layers: 3,
};

// Pushes during a run, on object storage: the real registry keeps serving from the bucket while
// `gc` runs on it, and images that reuse "dead" blobs are pushed at every point of the run. No
// pushed image may end up broken (the later looks, the copy-based trash and its last look).
#[test]
fn pushes_reusing_dead_blobs_during_a_run_on_s3_are_never_broken() {
    if !s3::available() || !peers() {
        return;
    }
    let moto = Moto::start();
    let client = moto.create_bucket("busy");
    let generated = tempfile::tempdir().unwrap();
    regsweep::synth::generate(generated.path(), BUSY, 9).unwrap();
    support::tree::load_settled(&client, "reg", generated.path()).unwrap();
    let server = Registry::start_s3(&moto.endpoint(), "busy", "/reg");
    let c = server.client();
    let etc = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let config = s3_config(etc.path(), &moto, "busy", "/reg");
    let cfg = config.to_str().unwrap();

    let t0 = std::time::Instant::now();
    let dry = run_cmd(s3_cmd(
        &moto,
        cache.path(),
        &["gc", "-d", "-q", "--min-age", "0", cfg],
    ));
    assert_eq!(dry.code, 0, "{}", dry.stderr);
    let took = t0.elapsed().max(Duration::from_millis(300));

    let trials = 6;
    for t in 0..trials {
        let seeds = [format!("s3-reuse-{t}-a"), format!("s3-reuse-{t}-b")];
        let seed_refs: Vec<&str> = seeds.iter().map(String::as_str).collect();
        let victim = support::images::push_image(
            &c,
            "victim",
            Some("v"),
            support::images::Format::Oci,
            "amd64",
            &seed_refs,
        );
        c.delete_manifest("victim", &victim.digest);
        // Older than the run's start, so only the later looks can keep what is pushed.
        std::thread::sleep(Duration::from_secs(3));
        let mut args = vec!["gc", "--min-age", "0", "--json", "-"];
        if t % 2 == 1 {
            args.push("-m");
        }
        args.push(cfg);
        let child = s3_cmd(&moto, cache.path(), &args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(took.mul_f64(1.3 * t as f64 / trials as f64));
        let repo = format!("pushed/{t}");
        let (digest, blobs) = support::images::push_with_retry(&c, &repo, &seed_refs);
        let out = child.wait_with_output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "trial {t}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let (status, body) = c.get_manifest(&repo, "latest");
        assert_eq!(status, 200, "trial {t}: manifest of {repo}");
        assert_eq!(
            Digest::of(regsweep::registry::digest::Algorithm::Sha256, &body),
            digest
        );
        for b in &blobs {
            let (status, content) = c.get_blob(&repo, b);
            assert_eq!(status, 200, "trial {t}: blob {b} of {repo}");
            assert_eq!(
                &Digest::of(regsweep::registry::digest::Algorithm::Sha256, &content),
                b
            );
        }
    }
}

#[test]
fn blobs_above_the_copy_limit_and_abandoned_multipart_uploads_are_collected() {
    if !s3::available() {
        return;
    }
    let moto = Moto::start();
    let client = moto.create_bucket("big");
    let fixture = aged_copy("registry");
    support::tree::load_settled(&client, "reg", fixture.path()).unwrap();
    // A dead layer larger than one copy may move. The test build lowers S3's 5 GiB limit to
    // 8 MiB (REGSWEEP_TEST_COPY_LIMIT) so that 12 MiB goes part by part: 5 + 5 + 2 MiB.
    let big: Vec<u8> = (0..12u32 << 20).map(|i| (i % 251) as u8).collect();
    let digest = Digest::of(regsweep::registry::digest::Algorithm::Sha256, &big);
    let hex = digest.hex().to_string();
    let data = format!(
        "reg/docker/registry/v2/blobs/sha256/{}/{hex}/data",
        &hex[..2]
    );
    assert!(client.put(&data, &big, false).unwrap());
    // The copy in parts is byte for byte the original (a blob put back from the trash is it).
    std::env::set_var("REGSWEEP_TEST_COPY_LIMIT", (8u64 << 20).to_string());
    client.copy(&data, "probe/copy", big.len() as u64).unwrap();
    std::env::remove_var("REGSWEEP_TEST_COPY_LIMIT");
    let mut copied = Vec::new();
    client.get("probe/copy", 1 << 30, &mut copied).unwrap();
    assert!(copied == big, "the copy in parts differs");
    client.delete("probe/copy").unwrap();
    // Two uploads whose data the registry's s3 driver left as multipart uploads: one whose
    // directory the registry already purged, begun long enough ago, and one begun just
    // before the run (which must survive and complete).
    let uploads = "reg/docker/registry/v2/repositories/team/app/_uploads";
    let old_key = format!("{uploads}/0b1d6e0e-0000-4000-8000-000000000001/data");
    let (old_id, _) = s3::begin_multipart(&moto, "big", &old_key, b"abandoned bytes");
    std::thread::sleep(Duration::from_secs(8));
    let young_key = format!("{uploads}/0b1d6e0e-0000-4000-8000-000000000002/data");
    let (young_id, young_etag) = s3::begin_multipart(&moto, "big", &young_key, b"in flight");

    let cache = tempfile::tempdir().unwrap();
    let args = [
        "gc",
        "--min-age",
        "0",
        "--uploads-older-than",
        "6s",
        "--json",
        "-",
        "s3://big/reg",
    ];
    let mut dry_args = args.to_vec();
    dry_args.insert(1, "-d");
    let before = moto.requests();
    let dry = run_cmd(s3_cmd(&moto, cache.path(), &dry_args));
    assert_eq!(dry.code, 0, "{}", dry.stderr);
    assert_eq!(moto.writes_since(&before), 0, "the dry run wrote");
    let dry_json: serde_json::Value = serde_json::from_str(&dry.stdout).unwrap();
    // The fixture's own abandoned upload directory, and the old multipart upload.
    let planned = dry_json["deleted"]["uploads"].as_array().unwrap();
    assert_eq!(planned.len(), 2, "{planned:?}");
    let old = planned
        .iter()
        .find(|u| u["uuid"] == "0b1d6e0e-0000-4000-8000-000000000001")
        .unwrap_or_else(|| panic!("the old upload is not planned: {planned:?}"));
    assert_eq!(old["multipart"][0]["upload_id"], old_id.as_str());
    assert_eq!(
        old["multipart"][0]["key"],
        old_key.strip_prefix("reg/").unwrap()
    );
    assert!(deleted(&gc_report(&dry)).contains(&digest));

    let lines_before = s3::request_lines(&moto).len();
    let mut real = s3_cmd(&moto, cache.path(), &args);
    real.env("REGSWEEP_TEST_COPY_LIMIT", (8u64 << 20).to_string());
    let real = run_cmd(real);
    assert_eq!(real.code, 0, "{}", real.stderr);
    let report = gc_report(&real);
    assert!(deleted(&report).contains(&digest));
    assert!(!blobs_in(&client, "reg").contains(&digest));
    let seen = s3::request_lines(&moto).split_off(lines_before);
    let part_copies = seen
        .iter()
        .filter(|l| l.starts_with("PUT ") && l.contains("partNumber="))
        .count();
    assert_eq!(part_copies, 3, "UploadPartCopy requests: {seen:#?}");
    assert_eq!(report.deleted.uploads.len(), 2);
    let aborted: Vec<&str> = report
        .deleted
        .uploads
        .iter()
        .flat_map(|u| u.multipart.iter().map(|m| m.upload_id.as_str()))
        .collect();
    assert_eq!(aborted, [old_id.as_str()]);
    assert!(
        seen.iter()
            .any(|l| l.starts_with("DELETE ") && l.contains(&format!("uploadId={old_id}"))),
        "no abort: {seen:#?}"
    );
    // The young one was left alone: it completes, and its data is there.
    s3::complete_multipart(&moto, "big", &young_key, &young_id, &young_etag);
    let mut got = Vec::new();
    client.get(&young_key, 1 << 20, &mut got).unwrap();
    assert_eq!(got, b"in flight");
    // A copy in parts into the trash that a killed run left: the next real run aborts it.
    let leaked = "reg/docker/registry/v2/.regsweep-trash/ab/sha256-leaked/data";
    let (leaked_id, _) = s3::begin_multipart(&moto, "big", leaked, b"half a copy");
    let before = moto.requests();
    let dry = run_cmd(s3_cmd(&moto, cache.path(), &dry_args));
    assert_eq!(dry.code, 0, "{}", dry.stderr);
    assert_eq!(
        moto.writes_since(&before),
        0,
        "the dry run aborted something"
    );
    let lines_before = s3::request_lines(&moto).len();
    let again = run_cmd(s3_cmd(&moto, cache.path(), &args));
    assert_eq!(again.code, 0, "{}", again.stderr);
    let seen = s3::request_lines(&moto).split_off(lines_before);
    assert!(
        seen.iter()
            .any(|l| l.starts_with("DELETE ") && l.contains(&format!("uploadId={leaked_id}"))),
        "the leaked copy was not aborted: {seen:#?}"
    );
}

//! Google Cloud Storage and Azure Blob, against their emulators started here (fake-gcs-server
//! and Azurite). Debian's registry has neither driver, so the real registry writes its tree on
//! disk, the test uploads it key by key, regsweep collects the bucket, and the bucket is
//! downloaded back and served by the real registry: every live tag pulls. What holds on disk
//! must hold in each store: the same deletion sets, dry runs that send no write (as the
//! server's own access log counts them), request counts near the floor, one run at a time.

mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use regsweep::gc::report::GcReport;
use regsweep::registry::digest::Digest;
use regsweep::synth::Preset;
use support::emulators::{available, blobs_in, download_tree, Emulator, Store};
use support::pull::{check_scenario_after_gc, peers};
use support::registry::Registry;
use support::scenario;
use support::tree::{aged_copy, regsweep};

const STORES: [Store; 2] = [Store::Gcs, Store::Azure];

const SMALL: Preset = Preset {
    name: "object-small",
    repositories: 6,
    tags: 4,
    layers: 3,
};

struct Ran {
    code: i32,
    stdout: String,
    stderr: String,
}

/// regsweep against the emulator, with its own manifest cache.
fn run(emulator: &Emulator, cache: &Path, args: &[&str]) -> Ran {
    run_with(emulator, cache, args, &[])
}

fn run_with(emulator: &Emulator, cache: &Path, args: &[&str], env: &[(&str, &str)]) -> Ran {
    let mut cmd = regsweep();
    cmd.args(args).arg("--cache-dir").arg(cache);
    for var in [
        "STORAGE_EMULATOR_HOST",
        "AZURE_STORAGE_CONNECTION_STRING",
        "GOOGLE_APPLICATION_CREDENTIALS",
    ] {
        cmd.env_remove(var);
    }
    for (k, v) in emulator.env() {
        cmd.env(k, v);
    }
    // The caller's own last: they may point the run elsewhere.
    cmd.envs(env.iter().copied());
    let out = cmd.output().expect("run regsweep");
    Ran {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn report(r: &Ran) -> GcReport {
    serde_json::from_str(&r.stdout)
        .unwrap_or_else(|e| panic!("bad JSON ({e}): {}\n{}", r.stdout, r.stderr))
}

fn deleted(r: &GcReport) -> BTreeSet<Digest> {
    r.deleted.blobs.iter().map(|b| b.digest.clone()).collect()
}

#[test]
fn the_same_registry_on_disk_and_in_each_store_gives_the_same_deletion_sets() {
    for store in STORES {
        if !available(store) {
            continue;
        }
        let emulator = Emulator::start(store);
        let client = emulator.create_bucket("same");
        let generated = tempfile::tempdir().unwrap();
        regsweep::synth::generate(generated.path(), SMALL, 3).unwrap();
        let fixture = aged_copy("registry");
        let cache = tempfile::tempdir().unwrap();
        for (prefix, tree) in [("fixture", fixture.path()), ("synth", generated.path())] {
            support::tree::load_settled(client.as_ref(), prefix, tree).unwrap();
            let url = format!("{}://same/{prefix}", emulator.scheme());
            let before = emulator.requests();
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
                let bucket = run(&emulator, cache.path(), &args);
                assert_eq!(
                    bucket.code, 0,
                    "{store:?} {prefix} {mode:?}: {}",
                    bucket.stderr
                );
                let bucket = report(&bucket);
                assert!(
                    !disk.deleted.blobs.is_empty(),
                    "{prefix}: nothing to compare"
                );
                let what = format!("{store:?} {prefix} {mode:?}");
                assert_eq!(bucket.deleted.blobs, disk.deleted.blobs, "{what}");
                assert_eq!(bucket.deleted.manifests, disk.deleted.manifests, "{what}");
                assert_eq!(
                    bucket.deleted.layer_links, disk.deleted.layer_links,
                    "{what}"
                );
                assert_eq!(bucket.deleted.shards, disk.deleted.shards, "{what}");
                assert_eq!(
                    bucket.deleted.repositories, disk.deleted.repositories,
                    "{what}"
                );
                let uuids = |r: &GcReport| {
                    r.deleted
                        .uploads
                        .iter()
                        .map(|u| u.uuid.clone())
                        .collect::<Vec<_>>()
                };
                assert_eq!(uuids(&bucket), uuids(&disk), "{what}");
                assert_eq!(
                    bucket.summary.census.live_blobs,
                    disk.summary.census.live_blobs
                );
                assert!(bucket
                    .root
                    .starts_with(&format!("{}://same/", emulator.scheme())));
            }
            assert_eq!(
                emulator.writes_since(&before),
                0,
                "{store:?}: a dry run wrote: {:?}",
                emulator.requests()
            );
        }

        // The floor of a dry run: the listing's pages and one GET per manifest (and per
        // upload's `startedat`). A second run reads the manifests from the cache.
        let fresh = tempfile::tempdir().unwrap();
        let before = emulator.requests();
        let url = format!("{}://same/synth", emulator.scheme());
        let args = [
            "gc",
            "-d",
            "-m",
            "--min-age",
            "0",
            "--json",
            "-",
            url.as_str(),
        ];
        let first = report(&run(&emulator, fresh.path(), &args));
        let second = report(&run(&emulator, fresh.path(), &args));
        let (r1, r2) = (first.requests.unwrap(), second.requests.unwrap());
        let keys = generated_keys(generated.path());
        // Both list 5,000 keys a page.
        let pages = keys.div_ceil(5000) as u64;
        let manifests = first.summary.census.manifests as u64;
        let uploads = first.summary.census.uploads as u64;
        let floor = pages + manifests + uploads;
        eprintln!("{store:?}: {keys} keys, dry run {r1:?}, floor {floor}; with the cache {r2:?}");
        assert!(
            (r1.total() as f64) <= 1.2 * floor as f64,
            "{store:?}: {r1:?} against a floor of {floor}"
        );
        assert_eq!(
            r2.get, uploads,
            "{store:?}: manifests not from the cache: {r2:?}"
        );
        assert_eq!(r2.list, r1.list);

        // Many small pages, listed in parallel ranges where the store can start a listing
        // after a key (GCS) and in sequence where it cannot (Azure): the same plan.
        let paged = run_with(
            &emulator,
            fresh.path(),
            &args,
            &[
                ("REGSWEEP_TEST_PAGE_SIZE", "29"),
                ("REGSWEEP_TEST_LIST_RANGES", "5"),
            ],
        );
        assert_eq!(paged.code, 0, "{store:?}: {}", paged.stderr);
        let paged = report(&paged);
        assert_eq!(paged.deleted.blobs, first.deleted.blobs, "{store:?}");
        assert_eq!(
            paged.deleted.manifests, first.deleted.manifests,
            "{store:?}"
        );
        assert_eq!(
            paged.deleted.layer_links, first.deleted.layer_links,
            "{store:?}"
        );
        assert_eq!(paged.summary.census.blobs, first.summary.census.blobs);
        let listed = paged.requests.unwrap().list as usize;
        assert!(
            listed >= keys / 29,
            "{store:?}: {listed} pages for {keys} keys"
        );
        assert_eq!(
            emulator.writes_since(&before),
            0,
            "{store:?}: a dry run wrote"
        );
    }
}

/// How many files a registry tree holds (each is one key in a bucket).
fn generated_keys(root: &Path) -> usize {
    walkdir::WalkDir::new(root.join("docker/registry/v2"))
        .into_iter()
        .filter(|e| e.as_ref().is_ok_and(|e| e.file_type().is_file()))
        .count()
}

#[test]
fn a_tree_the_real_registry_wrote_is_collected_in_each_store_and_still_pulls() {
    if !peers() {
        return;
    }
    for store in STORES {
        if !available(store) {
            continue;
        }
        let emulator = Emulator::start(store);
        let root = tempfile::tempdir().unwrap();
        let mut server = Registry::start(root.path());
        let e = scenario::standard(&server.client());
        server.stop();
        let client = emulator.create_bucket("registry");
        support::tree::load_settled(client.as_ref(), "reg", root.path()).unwrap();
        let url = format!("{}://registry/reg", emulator.scheme());
        let cache = tempfile::tempdir().unwrap();

        let dry = run(
            &emulator,
            cache.path(),
            &["gc", "-d", "-m", "--min-age", "0", "--json", "-", &url],
        );
        assert_eq!(dry.code, 0, "{store:?}: {}", dry.stderr);
        assert_eq!(deleted(&report(&dry)), e.dead_blobs(true), "{store:?}");

        // Dry runs of every command send no write, as the server logs them.
        let before = emulator.requests();
        for args in [
            vec!["gc", "-d", "--empty-repositories", "--min-age", "0", &url],
            vec![
                "delete",
                "-d",
                "--gc",
                "--min-age",
                "0",
                &url,
                "team/app:v1",
            ],
            vec![
                "prune",
                "-d",
                "--keep-n",
                "0",
                "--gc",
                "--min-age",
                "0",
                &url,
            ],
            vec!["report", &url],
            vec!["check", &url],
        ] {
            let r = run(&emulator, cache.path(), &args);
            assert!(
                r.code == 0 || args[0] == "check",
                "{store:?} {args:?}: {}",
                r.stderr
            );
        }
        assert_eq!(
            emulator.writes_since(&before),
            0,
            "{store:?}: a dry run wrote: {:?}",
            emulator.log()
        );

        // One real run at a time: a held lock refuses a second real run.
        let lock = "reg/docker/registry/v2/.regsweep.lock";
        let far = humantime::format_rfc3339_seconds(
            std::time::SystemTime::now() + Duration::from_secs(3600),
        );
        let body = format!(r#"{{"holder":"another run","since":"{far}","expires":"{far}"}}"#);
        assert!(client.put(lock, body.as_bytes(), true).unwrap());
        assert!(
            !client.put(lock, b"x", true).unwrap(),
            "{store:?} ignores the condition"
        );
        let refused = run(&emulator, cache.path(), &["gc", "--min-age", "0", &url]);
        assert_eq!(refused.code, 1, "{store:?}: {}", refused.stderr);
        assert!(refused.stderr.contains("another run"), "{}", refused.stderr);
        client.delete(lock).unwrap();

        let blobs_before = blobs_in(client.as_ref(), "reg");
        // Older than the run's own start, so that no later look takes them for a push; and
        // the server's log has written the lines of the requests before (Azurite writes
        // them a moment after answering).
        std::thread::sleep(Duration::from_secs(3));
        let before = emulator.log().len();
        let real = run(
            &emulator,
            cache.path(),
            &["gc", "-m", "--min-age", "0", "--json", "-", &url],
        );
        assert_eq!(real.code, 0, "{store:?}: {}", real.stderr);
        let real = report(&real);
        // The server logs each call of a batch as well as the batch: the calls that came as
        // requests of their own are checked against the report, and the batches bound the
        // deletes.
        std::thread::sleep(Duration::from_secs(1));
        let seen = emulator.log().split_off(before);
        let batches = seen
            .iter()
            .filter(|(m, p)| m == "POST" && p.contains("batch"))
            .count();
        let deletes = seen.iter().filter(|(m, _)| m == "DELETE").count();
        let others = seen.len() - batches - deletes;
        let gone: BTreeSet<Digest> = blobs_before
            .difference(&blobs_in(client.as_ref(), "reg"))
            .cloned()
            .collect();
        assert_eq!(
            gone,
            e.dead_blobs(true),
            "{store:?}: {:?} {:?}",
            real.summary,
            real.requests
        );
        assert_eq!(deleted(&real), gone);
        let requests = real.requests.unwrap();
        eprintln!(
            "{store:?}: real gc -m: {requests:?}; the server saw {others} requests besides \
             deletes, {batches} batches, {deletes} deletes; {} bytes copied into the trash",
            real.summary.deleted_bytes
        );
        assert_eq!(
            (requests.list + requests.get + requests.head + requests.put) as usize,
            others,
            "{store:?}: the report's count"
        );
        assert!(
            requests.delete as usize >= batches && requests.delete as usize <= batches + deletes
        );
        assert!(batches >= 1, "{store:?}: deletes were not batched");

        // Served back from disk by the real registry: every live tag pulls, every platform.
        let back = tempfile::tempdir().unwrap();
        download_tree(client.as_ref(), "reg", back.path());
        let server = Registry::start(back.path());
        check_scenario_after_gc(&server, &e, true);
        drop(server);

        let again = run(
            &emulator,
            cache.path(),
            &["gc", "-m", "--min-age", "0", "--json", "-", &url],
        );
        assert_eq!(again.code, 0, "{store:?}: {}", again.stderr);
        let again = report(&again);
        assert!(deleted(&again).is_empty() && again.deleted.manifests.is_empty());
        assert!(again.deleted.layer_links.is_empty());
    }
}

/// A token endpoint for the test: checks each service-account assertion it is sent (RS256
/// with the key's public half, the claims Google's token endpoint checks) and answers a
/// token. Returns its URL and how many assertions it accepted.
fn token_server(
    public_der: Vec<u8>,
    email: &'static str,
) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use base64::Engine as _;
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/token", listener.local_addr().unwrap());
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = accepted.clone();
    let aud = url.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let mut stream = stream.unwrap();
            let mut buf = vec![0u8; 16384];
            let mut got = Vec::new();
            loop {
                let n = stream.read(&mut buf).unwrap();
                got.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&got);
                if let Some(head_end) = text.find("\r\n\r\n") {
                    let length: usize = text[..head_end]
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse().unwrap())
                        })
                        .unwrap_or(0);
                    if got.len() >= head_end + 4 + length || n == 0 {
                        break;
                    }
                }
            }
            let text = String::from_utf8_lossy(&got).into_owned();
            let body = text.split("\r\n\r\n").nth(1).unwrap_or("");
            let form: std::collections::HashMap<String, String> =
                url::form_urlencoded::parse(body.as_bytes())
                    .into_owned()
                    .collect();
            let jwt = form.get("assertion").cloned().unwrap_or_default();
            let parts: Vec<&str> = jwt.split('.').collect();
            let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
            let ok = parts.len() == 3
                && form.get("grant_type").map(String::as_str)
                    == Some("urn:ietf:params:oauth:grant-type:jwt-bearer")
                && ring::signature::UnparsedPublicKey::new(
                    &ring::signature::RSA_PKCS1_2048_8192_SHA256,
                    &public_der,
                )
                .verify(
                    format!("{}.{}", parts[0], parts[1]).as_bytes(),
                    &b64.decode(parts[2]).unwrap_or_default(),
                )
                .is_ok()
                && {
                    let claims: serde_json::Value =
                        serde_json::from_slice(&b64.decode(parts[1]).unwrap()).unwrap();
                    claims["iss"] == email
                        && claims["aud"] == aud.as_str()
                        && claims["scope"]
                            .as_str()
                            .unwrap()
                            .contains("devstorage.read_write")
                };
            let answer = if ok {
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                (
                    "200 OK",
                    r#"{"access_token":"test-token","expires_in":3600}"#,
                )
            } else {
                ("400 Bad Request", r#"{"error":"invalid_grant"}"#)
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
                answer.0,
                answer.1.len(),
                answer.1
            );
        }
    });
    (url, accepted)
}

#[test]
fn the_registrys_gcs_and_azure_configs_with_their_keys() {
    for store in STORES {
        if !available(store) {
            continue;
        }
        let emulator = Emulator::start(store);
        let client = emulator.create_bucket("cfg");
        let fixture = aged_copy("registry");
        support::tree::load_settled(client.as_ref(), "reg", fixture.path()).unwrap();
        let etc = tempfile::tempdir().unwrap();
        let config = etc.path().join("config.yml");
        let mut accepted = None;
        let driver = match store {
            Store::Gcs => {
                // A service account's key, as the Cloud console writes it; the token comes
                // from the key's own token_uri, here a server that checks the assertion.
                let key = etc.path().join("key.pem");
                let der = etc.path().join("public.der");
                let openssl = |args: &[&str]| {
                    let s = std::process::Command::new("openssl").args(args).status();
                    assert!(s.is_ok_and(|s| s.success()), "openssl {args:?}");
                };
                openssl(&["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", key.to_str().unwrap()]);
                openssl(&["rsa", "-in", key.to_str().unwrap(), "-RSAPublicKey_out", "-outform", "DER", "-out", der.to_str().unwrap()]);
                let email = "regsweep@test-project.iam.gserviceaccount.com";
                let (token_uri, count) = token_server(std::fs::read(&der).unwrap(), email);
                accepted = Some(count);
                let keyfile = etc.path().join("sa.json");
                std::fs::write(
                    &keyfile,
                    serde_json::json!({
                        "type": "service_account",
                        "project_id": "test-project",
                        "private_key_id": "k1",
                        "private_key": std::fs::read_to_string(&key).unwrap(),
                        "client_email": email,
                        "token_uri": token_uri,
                    })
                    .to_string(),
                )
                .unwrap();
                format!(
                    "gcs:\n    bucket: not-this-one\n    keyfile: {}\n    rootdirectory: /reg\n",
                    keyfile.display()
                )
            }
            Store::Azure => format!(
                "azure:\n    accountname: {}\n    accountkey: {}\n    container: not-this-one\n    rootdirectory: /reg\n",
                support::emulators::AZURITE_ACCOUNT,
                support::emulators::AZURITE_KEY
            ),
        };
        std::fs::write(&config, format!("version: 0.1\nstorage:\n  {driver}")).unwrap();
        // The registry's own override names the bucket or container, as it would for the
        // registry; the endpoint is the emulator's (the configs name none).
        let (var, name) = match store {
            Store::Gcs => ("REGISTRY_STORAGE_GCS_BUCKET", "cfg"),
            Store::Azure => ("REGISTRY_STORAGE_AZURE_CONTAINER", "cfg"),
        };
        let cache = tempfile::tempdir().unwrap();
        let out = regsweep()
            .args(["gc", "-d", "--min-age", "0", "--json", "-", "--cache-dir"])
            .arg(cache.path())
            .arg("--endpoint")
            .arg(emulator.endpoint())
            .arg(&config)
            .env(var, name)
            .env_remove("STORAGE_EMULATOR_HOST")
            .env_remove("AZURE_STORAGE_CONNECTION_STRING")
            .env_remove("GOOGLE_APPLICATION_CREDENTIALS")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{store:?}: {stderr}");
        let r: GcReport = serde_json::from_slice(&out.stdout).unwrap();
        let disk = support::tree::run(&[
            "gc",
            "-d",
            "--min-age",
            "0",
            "--json",
            "-",
            fixture.path().to_str().unwrap(),
        ]);
        let disk: GcReport = serde_json::from_str(&disk.stdout).unwrap();
        assert_eq!(r.deleted.blobs, disk.deleted.blobs, "{store:?}");
        assert!(
            r.root
                .starts_with(&format!("{}://cfg/reg", emulator.scheme())),
            "{}",
            r.root
        );
        assert!(r.root_source.contains(var), "{}", r.root_source);
        // No secret is said.
        assert!(
            !stderr.contains("PRIVATE KEY") && !stderr.contains(support::emulators::AZURITE_KEY)
        );
        if let Some(count) = accepted {
            // One token for the whole run, from a valid assertion.
            assert_eq!(count.load(std::sync::atomic::Ordering::SeqCst), 1);
        }
    }
}

#[test]
#[cfg_attr(
    not(feature = "test-hooks"),
    ignore = "moves the clock: needs --features test-hooks (scripts/test)"
)]
fn unreferenced_for_waits_a_day_in_each_store() {
    for store in STORES {
        if !available(store) {
            continue;
        }
        let emulator = Emulator::start(store);
        let client = emulator.create_bucket("wait");
        let fixture = aged_copy("registry");
        support::tree::load_settled(client.as_ref(), "reg", fixture.path()).unwrap();
        std::thread::sleep(Duration::from_secs(3));
        let url = format!("{}://wait/reg", emulator.scheme());
        let cache = tempfile::tempdir().unwrap();
        let disk = support::tree::run(&[
            "gc",
            "-d",
            "--min-age",
            "0",
            "--json",
            "-",
            fixture.path().to_str().unwrap(),
        ]);
        let dead = deleted(&serde_json::from_str(&disk.stdout).unwrap());
        assert!(!dead.is_empty());
        let now = std::time::SystemTime::now();
        let night = |hours: u64| {
            let at = humantime::format_rfc3339_seconds(now + Duration::from_secs(hours * 3600));
            run_with(
                &emulator,
                cache.path(),
                &[
                    "gc",
                    "--min-age",
                    "0",
                    "--unreferenced-for",
                    "1d",
                    "--json",
                    "-",
                    &url,
                ],
                &[("REGSWEEP_TEST_NOW", &at.to_string())],
            )
        };
        // First sight: everything dead starts to wait; the state is written into the bucket.
        let first = night(0);
        assert_eq!(first.code, 0, "{store:?}: {}", first.stderr);
        assert!(deleted(&report(&first)).is_empty(), "{store:?}");
        let mut state = Vec::new();
        client
            .get(
                "reg/docker/registry/v2/.regsweep-unreferenced",
                1 << 20,
                &mut state,
            )
            .unwrap_or_else(|e| panic!("{store:?}: no state in the bucket: {e}"));
        // A day on, what waited goes: exactly what the disk's plan deletes.
        let second = night(25);
        assert_eq!(second.code, 0, "{store:?}: {}", second.stderr);
        assert_eq!(deleted(&report(&second)), dead, "{store:?}");
    }
}

#[test]
fn throttled_requests_are_retried_and_the_rate_can_be_capped() {
    for store in STORES {
        if !available(store) {
            continue;
        }
        let emulator = Emulator::start(store);
        let client = emulator.create_bucket("busy");
        let fixture = aged_copy("registry");
        support::tree::load_settled(client.as_ref(), "reg", fixture.path()).unwrap();
        let url = format!("{}://busy/reg", emulator.scheme());
        let args = [
            "gc",
            "-d",
            "-m",
            "--min-age",
            "0",
            "--json",
            "-",
            url.as_str(),
        ];
        let cache = tempfile::tempdir().unwrap();
        let plain = report(&run(&emulator, cache.path(), &args));
        assert!(
            !plain.deleted.blobs.is_empty(),
            "{store:?}: nothing to compare"
        );

        // The service says "slow down" to the first connections: the run waits and goes on.
        let proxy = support::emulators::throttling_proxy(store, emulator.port, 3);
        // Reached the way each cloud's tools reach an emulator, here the proxy.
        let (var, value) = match store {
            Store::Gcs => ("STORAGE_EMULATOR_HOST", proxy.clone()),
            Store::Azure => (
                "AZURE_STORAGE_CONNECTION_STRING",
                format!(
                    "AccountName={0};AccountKey={1};BlobEndpoint=http://{proxy}/{0};",
                    support::emulators::AZURITE_ACCOUNT,
                    support::emulators::AZURITE_KEY
                ),
            ),
        };
        let fresh = tempfile::tempdir().unwrap();
        let throttled = run_with(&emulator, fresh.path(), &args, &[(var, value.as_str())]);
        assert_eq!(throttled.code, 0, "{store:?}: {}", throttled.stderr);
        let throttled = report(&throttled);
        assert_eq!(throttled.deleted.blobs, plain.deleted.blobs, "{store:?}");
        assert_eq!(throttled.deleted.manifests, plain.deleted.manifests);
        let r = throttled.requests.unwrap();
        assert!(r.retries >= 3, "{store:?}: {r:?}");

        // --max-requests-per-second spaces every request out.
        let fresh = tempfile::tempdir().unwrap();
        let mut capped = args.to_vec();
        capped.extend(["--max-requests-per-second", "20"]);
        let started = std::time::Instant::now();
        let slow = report(&run(&emulator, fresh.path(), &capped));
        let took = started.elapsed().as_secs_f64();
        let sent = slow.requests.unwrap().total() as f64;
        assert!(
            took >= (sent - 1.0) / 20.0,
            "{store:?}: {sent} requests in {took:.2} s at 20 a second"
        );
        assert_eq!(slow.deleted.blobs, plain.deleted.blobs);
    }
}

//! The GCS and Azure peers of the tests: fake-gcs-server (its PyPI wrapper's binary, installed
//! by scripts/test under target/peers/gcs) and Azurite (npm, under target/peers/azurite), each
//! on 127.0.0.1 with a free port and a temporary root, stopped when dropped. Both write an
//! access log line per request, so a test counts what the server saw (a dry run's writes, a
//! run's requests), not what the code says it sent.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use regsweep::registry::digest::Digest;
use regsweep::storage::bucket::Bucket;

/// Azurite's well-known development account (the same in every copy of Azurite).
pub const AZURITE_ACCOUNT: &str = "devstoreaccount1";
pub const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Store {
    Gcs,
    Azure,
}

/// The peer's executable: its `REGSWEEP_*` variable (scripts/test sets it), else what
/// scripts/test installs under target/peers.
fn executable(store: Store) -> Option<PathBuf> {
    let (var, installed) = match store {
        Store::Gcs => ("REGSWEEP_FAKE_GCS_SERVER", None),
        Store::Azure => (
            "REGSWEEP_AZURITE",
            Some("target/peers/azurite/node_modules/.bin/azurite-blob"),
        ),
    };
    if let Some(p) = std::env::var_os(var) {
        return Some(PathBuf::from(p));
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    match installed {
        Some(rel) => Some(root.join(rel)).filter(|p| p.exists()),
        None => find(&root.join("target/peers/gcs"), "fake-gcs-server-linux-"),
    }
}

fn find(dir: &Path, prefix: &str) -> Option<PathBuf> {
    for e in std::fs::read_dir(dir).ok()?.flatten() {
        let p = e.path();
        if p.is_dir() {
            if let Some(found) = find(&p, prefix) {
                return Some(found);
            }
        } else if e.file_name().to_string_lossy().starts_with(prefix) {
            return Some(p);
        }
    }
    None
}

/// Whether the peer can run. Under CI a missing peer is a failure, never a skip.
pub fn available(store: Store) -> bool {
    let found = executable(store).is_some();
    if !found && std::env::var_os("CI").is_some() {
        panic!("the {store:?} emulator is not installed and CI is set: run scripts/test");
    }
    if !found {
        eprintln!("skipped: the {store:?} emulator is not installed (scripts/test installs it)");
    }
    found
}

pub struct Emulator {
    pub store: Store,
    child: Child,
    pub port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Emulator {
    pub fn start(store: Store) -> Emulator {
        let exe = executable(store).expect("emulator");
        for _ in 0..5 {
            let dir = tempfile::tempdir().unwrap();
            let log = dir.path().join("access.log");
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map(|a| a.port())
                .unwrap();
            let mut command = Command::new(&exe);
            match store {
                Store::Gcs => command.args([
                    "-scheme",
                    "http",
                    "-host",
                    "127.0.0.1",
                    "-port",
                    &port.to_string(),
                    "-backend",
                    "memory",
                    "-log-level",
                    "info",
                ]),
                Store::Azure => command
                    .args([
                        "--blobHost",
                        "127.0.0.1",
                        "--blobPort",
                        &port.to_string(),
                        "--skipApiVersionCheck",
                        "--loose",
                        "--disableTelemetry",
                        "--location",
                    ])
                    .arg(dir.path().join("data")),
            };
            let out = std::fs::File::create(&log).unwrap();
            let child = command
                .stdin(Stdio::null())
                .stdout(out.try_clone().unwrap())
                .stderr(out)
                .spawn()
                .expect("start the emulator");
            let mut emulator = Emulator {
                store,
                child,
                port,
                log,
                _dir: dir,
            };
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = emulator.child.try_wait() {
                    break;
                }
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    std::thread::sleep(Duration::from_millis(200));
                    return emulator;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = emulator.child.kill();
            let _ = emulator.child.wait();
        }
        panic!("the {store:?} emulator did not come up");
    }

    pub fn endpoint(&self) -> String {
        match self.store {
            Store::Gcs => format!("http://127.0.0.1:{}", self.port),
            Store::Azure => format!("http://127.0.0.1:{}/{AZURITE_ACCOUNT}", self.port),
        }
    }

    /// The URL scheme of a target in this store.
    pub fn scheme(&self) -> &'static str {
        match self.store {
            Store::Gcs => "gs",
            Store::Azure => "azblob",
        }
    }

    /// The environment that points regsweep (and Google's and Azure's tools) at the emulator.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        match self.store {
            Store::Gcs => vec![("STORAGE_EMULATOR_HOST", format!("127.0.0.1:{}", self.port))],
            Store::Azure => vec![(
                "AZURE_STORAGE_CONNECTION_STRING",
                format!(
                    "DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};\
                     AccountKey={AZURITE_KEY};BlobEndpoint={};",
                    self.endpoint()
                ),
            )],
        }
    }

    pub fn client(&self, bucket: &str) -> Box<dyn Bucket> {
        match self.store {
            Store::Gcs => Box::new(
                regsweep::storage::gcs::Client::new(
                    regsweep::config::gcs::Settings {
                        endpoint: self.endpoint().parse().unwrap(),
                        bucket: bucket.into(),
                        credentials: regsweep::config::gcs::Credentials::None,
                        ca_bundle: None,
                    },
                    None,
                )
                .unwrap(),
            ),
            Store::Azure => Box::new(
                regsweep::storage::azure::Client::new(
                    regsweep::config::azure::Settings {
                        endpoint: self.endpoint().parse().unwrap(),
                        account: AZURITE_ACCOUNT.into(),
                        key: AZURITE_KEY.into(),
                        container: bucket.into(),
                        ca_bundle: None,
                    },
                    None,
                )
                .unwrap(),
            ),
        }
    }

    pub fn create_bucket(&self, bucket: &str) -> Box<dyn Bucket> {
        let c = self.client(bucket);
        c.create_bucket().expect("create the bucket");
        c
    }

    /// Every request the server has logged so far: method and path.
    pub fn log(&self) -> Vec<(String, String)> {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let mut out = Vec::new();
        for line in text.lines() {
            for method in ["GET", "PUT", "POST", "DELETE", "HEAD", "PATCH"] {
                let Some(at) = line
                    .find(&format!("\"{method} "))
                    .or_else(|| line.find(&format!("\\\"{method} ")).map(|i| i + 1))
                else {
                    continue;
                };
                let rest = &line[at + 1 + method.len() + 1..];
                let path = rest.split(' ').next().unwrap_or("").to_string();
                out.push((method.to_string(), path));
            }
        }
        out
    }

    /// Requests so far, by method.
    pub fn requests(&self) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for (m, _) in self.log() {
            *out.entry(m).or_default() += 1;
        }
        out
    }

    /// Requests that could write (PUT, POST, DELETE, PATCH) since `before`.
    pub fn writes_since(&self, before: &BTreeMap<String, usize>) -> usize {
        let now = self.requests();
        ["PUT", "POST", "DELETE", "PATCH"]
            .iter()
            .map(|m| now.get(*m).unwrap_or(&0) - before.get(*m).unwrap_or(&0))
            .sum()
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every object under `dir` (a prefix ending in `/`) of the bucket, page by page.
pub fn all_objects(client: &dyn Bucket, dir: &str) -> Vec<regsweep::storage::bucket::Listed> {
    let mut out = Vec::new();
    let mut token = None;
    loop {
        let page = client.list_page(dir, None, token.as_deref()).expect("list");
        out.extend(page.objects);
        match page.next {
            Some(t) => token = Some(t),
            None => return out,
        }
    }
}

/// The blob digests with a `data` object under `prefix` in the bucket.
pub fn blobs_in(c: &dyn Bucket, prefix: &str) -> std::collections::BTreeSet<Digest> {
    let dir = format!("{}/docker/registry/v2/blobs/", prefix.trim_matches('/'));
    all_objects(c, &dir)
        .iter()
        .filter_map(|o| {
            let parts: Vec<&str> = o.key[dir.len()..].split('/').collect();
            (parts.len() == 4 && parts[3] == "data")
                .then(|| format!("{}:{}", parts[0], parts[2]).parse().ok())
                .flatten()
        })
        .collect()
}

/// Every object under `prefix` of the bucket, written back as files under `root`: the bucket a
/// run left, for the real registry to serve from disk.
pub fn download_tree(client: &dyn Bucket, prefix: &str, root: &Path) {
    let dir = format!("{}/", prefix.trim_matches('/'));
    for o in all_objects(client, &dir) {
        let path = root.join(&o.key[dir.len()..]);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let mut buf = Vec::new();
        client.get(&o.key, u64::MAX / 2, &mut buf).expect("get");
        std::fs::write(&path, &buf).unwrap();
    }
}

/// A proxy in front of an emulator that answers the first `throttled` connections with the
/// service's throttling answer (GCS 429 rateLimitExceeded, Azure 503 ServerBusy) and closes
/// them, and passes every other connection through. Returns its address (`127.0.0.1:port`).
pub fn throttling_proxy(store: Store, upstream: u16, throttled: usize) -> String {
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for (n, client) in listener.incoming().enumerate() {
            let Ok(mut client) = client else { continue };
            if n < throttled {
                // Read the request's head and body, then refuse it the service's way.
                let mut got = Vec::new();
                let mut buf = [0u8; 8192];
                while let Ok(k) = client.read(&mut buf) {
                    if k == 0 {
                        break;
                    }
                    got.extend_from_slice(&buf[..k]);
                    let text = String::from_utf8_lossy(&got);
                    if let Some(end) = text.find("\r\n\r\n") {
                        let length: usize = text[..end]
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .and_then(|v| v.trim().parse().ok())
                            })
                            .unwrap_or(0);
                        if got.len() >= end + 4 + length {
                            break;
                        }
                    }
                }
                let (status, body) = match store {
                    Store::Gcs => (
                        "429 Too Many Requests",
                        r#"{"error":{"code":429,"message":"rateLimitExceeded"}}"#,
                    ),
                    Store::Azure => (
                        "503 Server Busy",
                        "<?xml version=\"1.0\"?><Error><Code>ServerBusy</Code><Message>Ingress is over the account limit.</Message></Error>",
                    ),
                };
                let _ = write!(
                    client,
                    "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                continue;
            }
            std::thread::spawn(move || {
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    return;
                };
                let (mut c2, mut s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                let up = std::thread::spawn(move || {
                    let _ = std::io::copy(&mut c2, &mut s2);
                    let _ = s2.shutdown(std::net::Shutdown::Write);
                });
                let (mut c3, mut s3) = (client, server);
                let _ = std::io::copy(&mut s3, &mut c3);
                let _ = c3.shutdown(std::net::Shutdown::Write);
                let _ = up.join();
            });
        }
    });
    addr
}

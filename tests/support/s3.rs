//! An S3 server for the tests: `moto_server` (PyPI's `moto[server]`, installed by
//! scripts/test in a virtualenv under target/peers) on 127.0.0.1 with a free port, stopped when
//! dropped. Its request log counts requests by method, so a test can prove a dry run wrote
//! nothing by what the server saw, not by trusting the code path.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use regsweep::config::s3::Settings;
use regsweep::storage::bucket::Bucket as _;
use regsweep::storage::s3::Client;

/// moto accepts any credentials; these are what the tests sign with.
pub use super::registry::{S3_KEY as KEY, S3_SECRET as SECRET};

/// The moto server to run: `REGSWEEP_MOTO_SERVER`, the virtualenv scripts/test makes, or
/// `moto_server` on the PATH.
pub fn moto_server() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("REGSWEEP_MOTO_SERVER") {
        return Some(PathBuf::from(p));
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/peers/moto/bin/moto_server");
    if venv.exists() {
        return Some(venv);
    }
    Command::new("moto_server")
        .arg("--help")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
        .then(|| PathBuf::from("moto_server"))
}

/// Whether the S3 peer can run. Under CI a missing peer is a failure, never a skip.
pub fn available() -> bool {
    let found = moto_server().is_some();
    if !found && std::env::var_os("CI").is_some() {
        panic!("moto_server is not installed and CI is set: run scripts/test, which installs it");
    }
    if !found {
        eprintln!("skipped: moto_server is not installed (scripts/test installs it)");
    }
    found
}

pub struct Moto {
    child: Child,
    pub port: u16,
    log: PathBuf,
    /// With TLS: the CA that signed its certificate.
    ca: Option<PathBuf>,
    _dir: tempfile::TempDir,
}

impl Moto {
    pub fn start() -> Moto {
        Moto::start_with(None)
    }

    /// Serve HTTPS with `cert` and `key` (PEM), signed by the CA in `ca`.
    pub fn start_tls(cert: &Path, key: &Path, ca: &Path) -> Moto {
        let mut m = Moto::start_with(Some((cert, key)));
        m.ca = Some(ca.to_path_buf());
        m
    }

    fn start_with(tls: Option<(&Path, &Path)>) -> Moto {
        let exe = moto_server().expect("moto_server");
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("moto.log");
        for _ in 0..5 {
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map(|a| a.port())
                .unwrap();
            let out = std::fs::File::create(&log).unwrap();
            let mut command = Command::new(&exe);
            command.args(["-H", "127.0.0.1", "-p", &port.to_string()]);
            if let Some((cert, key)) = tls {
                command.arg("-c").arg(cert).arg("-k").arg(key);
            }
            let child = command
                .stdin(Stdio::null())
                .stdout(out.try_clone().unwrap())
                .stderr(out)
                .spawn()
                .expect("start moto_server");
            let mut moto = Moto {
                child,
                port,
                log: log.clone(),
                ca: None,
                _dir: tempfile::tempdir().unwrap(),
            };
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = moto.child.try_wait() {
                    break;
                }
                let up = if tls.is_some() {
                    // Its certificate is not one ureq trusts: that it listens is enough.
                    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
                } else {
                    ureq::get(&format!("{}/", moto.endpoint()))
                        .timeout(Duration::from_secs(2))
                        .call()
                        .is_ok()
                };
                if up {
                    if tls.is_some() {
                        // Werkzeug's TLS listener takes a moment after the socket opens.
                        std::thread::sleep(Duration::from_millis(500));
                    }
                    moto._dir = dir;
                    return moto;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = moto.child.kill();
            let _ = moto.child.wait();
        }
        panic!(
            "moto_server did not come up: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }

    pub fn endpoint(&self) -> String {
        let scheme = if self.ca.is_some() { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    pub fn client(&self, bucket: &str) -> Client {
        Client::new(
            Settings {
                endpoint: self.endpoint().parse().unwrap(),
                region: "us-east-1".into(),
                bucket: bucket.into(),
                path_style: true,
                credentials: Some(rusty_s3::Credentials::new(KEY, SECRET)),
                ca_bundle: self.ca.clone(),
            },
            None,
        )
        .unwrap()
    }

    pub fn create_bucket(&self, bucket: &str) -> Client {
        let c = self.client(bucket);
        c.create_bucket().expect("create bucket");
        c
    }

    /// Requests the server has answered so far, by method (from its access log).
    pub fn requests(&self) -> BTreeMap<String, usize> {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let mut out = BTreeMap::new();
        for line in text.lines() {
            // 127.0.0.1 - - [date] "GET /bucket?list-type=2 HTTP/1.1" 200 -
            let Some(request) = line.split('"').nth(1) else {
                continue;
            };
            let method: String = request
                .split_whitespace()
                .next()
                .unwrap_or("")
                .chars()
                .filter(|c| c.is_ascii_uppercase())
                .collect();
            if !method.is_empty() {
                *out.entry(method).or_default() += 1;
            }
        }
        out
    }

    /// Requests that could write (PUT, POST, DELETE, COPY is a PUT) since `before`.
    pub fn writes_since(&self, before: &BTreeMap<String, usize>) -> usize {
        let now = self.requests();
        ["PUT", "POST", "DELETE", "PATCH"]
            .iter()
            .map(|m| now.get(*m).unwrap_or(&0) - before.get(*m).unwrap_or(&0))
            .sum()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// rusty-s3's signer for `bucket` on `moto`: requests the client has no call for.
fn signer(moto: &Moto, bucket: &str) -> (rusty_s3::Bucket, rusty_s3::Credentials) {
    let b = rusty_s3::Bucket::new(
        moto.endpoint().parse().unwrap(),
        rusty_s3::UrlStyle::Path,
        bucket.to_string(),
        "us-east-1".to_string(),
    )
    .unwrap();
    (b, rusty_s3::Credentials::new(KEY, SECRET))
}

/// Begin a multipart upload of `key` with one part, as the registry's s3 driver does for an
/// upload's data; returns its upload id and the part's ETag.
pub fn begin_multipart(moto: &Moto, bucket: &str, key: &str, part: &[u8]) -> (String, String) {
    use rusty_s3::S3Action as _;
    let (b, creds) = signer(moto, bucket);
    let ttl = Duration::from_secs(600);
    let created = ureq::post(
        b.create_multipart_upload(Some(&creds), key)
            .sign(ttl)
            .as_str(),
    )
    .send_bytes(&[])
    .unwrap()
    .into_string()
    .unwrap();
    let id = rusty_s3::actions::CreateMultipartUpload::parse_response(&created)
        .unwrap()
        .upload_id()
        .to_string();
    let put = ureq::put(b.upload_part(Some(&creds), key, 1, &id).sign(ttl).as_str())
        .send_bytes(part)
        .unwrap();
    let etag = put.header("ETag").unwrap().trim_matches('"').to_string();
    (id, etag)
}

/// Complete a multipart upload begun by [`begin_multipart`].
pub fn complete_multipart(moto: &Moto, bucket: &str, key: &str, id: &str, etag: &str) {
    use rusty_s3::S3Action as _;
    let (b, creds) = signer(moto, bucket);
    let action = b.complete_multipart_upload(Some(&creds), key, id, std::iter::once(etag));
    ureq::post(action.sign(Duration::from_secs(600)).as_str())
        .send_bytes(action.body().as_bytes())
        .unwrap();
}

/// The request lines the server has logged so far (`GET /bucket/key?query`), without the
/// colours moto gives some of them.
pub fn request_lines(moto: &Moto) -> Vec<String> {
    let strip = |l: &str| {
        let mut out = String::new();
        let mut rest = l;
        while let Some(i) = rest.find('\u{1b}') {
            out.push_str(&rest[..i]);
            rest = rest[i..].split_once('m').map_or("", |(_, r)| r);
        }
        out.push_str(rest);
        out
    };
    std::fs::read_to_string(&moto.log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split('"').nth(1).map(strip))
        .collect()
}

//! A real registry server (Debian's `docker-registry`, CNCF distribution 2.8) started on
//! 127.0.0.1 with a free port and a storage root of the caller's choosing, and a minimal client
//! for its HTTP API. Shared by the end-to-end tests and the fixture generator.
#![allow(dead_code)]

use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use regsweep::registry::digest::{Algorithm, Digest};

pub const SERVER: &str = "docker-registry";

/// The credentials a registry on the test S3 server signs with (moto accepts any).
pub const S3_KEY: &str = "regsweep-test-key";
pub const S3_SECRET: &str = "regsweep-test-secret";

/// Whether the peer is installed. Under CI a missing peer is a failure, never a skip.
pub fn server_available() -> bool {
    let found = Command::new(SERVER)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found && std::env::var_os("CI").is_some() {
        panic!("{SERVER} is not installed and CI is set: run scripts/test, which installs it");
    }
    found
}

pub struct Registry {
    child: Option<Child>,
    pub port: u16,
    pub root: PathBuf,
    /// The `storage:` driver section (indented by two spaces), when not the filesystem.
    storage: Option<String>,
    /// More of the config: lines under `storage:` (indented by two spaces), and top-level
    /// sections (`redis:`).
    extra_storage: String,
    extra: String,
    /// Run the server as this user (through setpriv), as a packaged registry runs.
    user: Option<String>,
    pub config: PathBuf,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port on 127.0.0.1")
}

impl Registry {
    /// Start a registry storing under `root` (created if missing) and wait until it answers.
    pub fn start(root: &Path) -> Registry {
        std::fs::create_dir_all(root).expect("create storage root");
        Registry::build(root.to_path_buf(), None, String::new(), String::new())
    }

    /// Start a registry storing under `root` whose blob-descriptor cache is the Redis at
    /// `addr` (`HOST:PORT`), as Harbor configures it.
    pub fn start_with_redis(root: &Path, addr: &str) -> Registry {
        std::fs::create_dir_all(root).expect("create storage root");
        Registry::build(
            root.to_path_buf(),
            None,
            "  cache:\n    blobdescriptor: redis\n".into(),
            format!("redis:\n  addr: {addr}\n  db: 0\n"),
        )
    }

    /// Start a registry storing under `root` that runs as `user` (tests run as root), with more
    /// lines under `storage:` (a cache, say), as Debian's package runs it.
    pub fn start_as(root: &Path, user: &str, extra_storage: &str) -> Registry {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        // The server reads its config as that user.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut registry = Registry {
            child: None,
            port: 0,
            root: root.to_path_buf(),
            storage: None,
            extra_storage: extra_storage.to_string(),
            extra: String::new(),
            user: Some(user.to_string()),
            config: dir.path().join("config.yml"),
            log: dir.path().join("registry.log"),
            _dir: dir,
        };
        registry.launch();
        registry
    }

    /// Start a registry that stores in a bucket through its own s3 driver, at `endpoint`
    /// (the moto server), under `rootdirectory`. Redirects are off, so clients never talk to
    /// the bucket themselves.
    pub fn start_s3(endpoint: &str, bucket: &str, rootdirectory: &str) -> Registry {
        let driver = format!(
            "  s3:\n    accesskey: {key}\n    secretkey: {secret}\n    region: us-east-1\n    \
             regionendpoint: {endpoint}\n    bucket: {bucket}\n    rootdirectory: {rootdirectory}\n    \
             secure: false\n    v4auth: true\n  redirect:\n    disable: true\n",
            key = S3_KEY,
            secret = S3_SECRET,
        );
        Registry::build(PathBuf::new(), Some(driver), String::new(), String::new())
    }

    fn build(
        root: PathBuf,
        storage: Option<String>,
        extra_storage: String,
        extra: String,
    ) -> Registry {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut registry = Registry {
            child: None,
            port: 0,
            root,
            storage,
            extra_storage,
            extra,
            user: None,
            config: dir.path().join("config.yml"),
            log: dir.path().join("registry.log"),
            _dir: dir,
        };
        registry.launch();
        registry
    }

    fn launch(&mut self) {
        // A port can be taken between our probe and the server's bind: try a few.
        for _ in 0..5 {
            self.port = free_port();
            let driver = self.storage.clone().unwrap_or_else(|| {
                format!(
                    "  filesystem:\n    rootdirectory: {}\n",
                    self.root.display()
                )
            });
            std::fs::write(
                &self.config,
                format!(
                    "version: 0.1\n\
                     log:\n  level: warn\n  accesslog:\n    disabled: true\n\
                     storage:\n{driver}{}  delete:\n    enabled: true\n\
                     http:\n  addr: 127.0.0.1:{}\n  secret: regsweep-test\n{}",
                    self.extra_storage, self.port, self.extra
                ),
            )
            .expect("write registry config");
            let log = std::fs::File::create(&self.log).expect("registry log");
            let mut command = match &self.user {
                Some(user) => {
                    // setpriv execs (runuser forks): killing the child kills the server.
                    let mut c = Command::new("setpriv");
                    c.args([
                        "--reuid",
                        user,
                        "--regid",
                        user,
                        "--init-groups",
                        "--",
                        SERVER,
                    ]);
                    c
                }
                None => Command::new(SERVER),
            };
            let child = command
                .arg("serve")
                .arg(&self.config)
                // The S3 driver (Go AWS SDK) aborts at start on a CA bundle it cannot use.
                .env_remove("AWS_CA_BUNDLE")
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("log"))
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {SERVER}: {e}"));
            self.child = Some(child);
            if self.wait_ready() {
                return;
            }
            self.stop();
        }
        panic!(
            "registry did not come up; its log:\n{}",
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
    }

    fn wait_ready(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Some(child) = &mut self.child {
                if let Ok(Some(_)) = child.try_wait() {
                    return false;
                }
            }
            if let Ok(r) = ureq::get(&format!("{}/v2/", self.url()))
                .timeout(Duration::from_secs(2))
                .call()
            {
                if r.status() == 200 {
                    return true;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn client(&self) -> Client {
        Client {
            base: self.url(),
            agent: ureq::AgentBuilder::new()
                .timeout(Duration::from_secs(30))
                .redirects(0)
                .build(),
        }
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Start again on the same storage (a fresh process: no cached blob descriptors).
    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}

pub struct Client {
    pub base: String,
    agent: ureq::Agent,
}

pub const ACCEPT_ALL: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.docker.distribution.manifest.v2+json, \
application/vnd.oci.artifact.manifest.v1+json";

fn body(r: ureq::Response) -> Vec<u8> {
    let mut out = Vec::new();
    r.into_reader()
        .read_to_end(&mut out)
        .expect("read response body");
    out
}

fn status_of(result: Result<ureq::Response, ureq::Error>) -> (u16, Vec<u8>) {
    match result {
        Ok(r) => (r.status(), body(r)),
        Err(ureq::Error::Status(code, r)) => (code, body(r)),
        Err(e) => panic!("registry request failed: {e}"),
    }
}

impl Client {
    fn absolute(&self, location: &str) -> String {
        if location.starts_with("http") {
            location.to_string()
        } else {
            format!("{}{location}", self.base)
        }
    }

    /// Upload a blob (POST then PUT with the digest) and return its sha256 digest.
    pub fn push_blob(&self, repo: &str, content: &[u8]) -> Digest {
        let digest = Digest::of(Algorithm::Sha256, content);
        let start = self
            .agent
            .post(&format!("{}/v2/{repo}/blobs/uploads/", self.base))
            .send_bytes(&[])
            .unwrap_or_else(|e| panic!("start upload to {repo}: {e}"));
        assert_eq!(start.status(), 202, "start upload to {repo}");
        let location = self.absolute(start.header("Location").expect("upload Location"));
        let sep = if location.contains('?') { '&' } else { '?' };
        let put = self
            .agent
            .put(&format!("{location}{sep}digest={digest}"))
            .set("Content-Type", "application/octet-stream")
            .send_bytes(content)
            .unwrap_or_else(|e| panic!("finish upload of {digest} to {repo}: {e}"));
        assert_eq!(put.status(), 201, "finish upload of {digest} to {repo}");
        digest
    }

    /// Start an upload and send its first chunk; returns where to send the rest.
    pub fn start_upload(&self, repo: &str, first: &[u8]) -> String {
        let start = self
            .agent
            .post(&format!("{}/v2/{repo}/blobs/uploads/", self.base))
            .send_bytes(&[])
            .expect("start upload");
        let location = self.absolute(start.header("Location").expect("upload Location"));
        let patch = self
            .agent
            .request("PATCH", &location)
            .set("Content-Type", "application/octet-stream")
            .send_bytes(first)
            .expect("patch upload");
        assert_eq!(patch.status(), 202);
        self.absolute(patch.header("Location").expect("upload Location"))
    }

    /// Finish an upload begun with [`Client::start_upload`]: PUT the rest with the digest of
    /// the whole. Returns the status (201 when the registry took it).
    pub fn finish_upload(&self, location: &str, rest: &[u8], digest: &Digest) -> u16 {
        let sep = if location.contains('?') { '&' } else { '?' };
        status_of(
            self.agent
                .put(&format!("{location}{sep}digest={digest}"))
                .set("Content-Type", "application/octet-stream")
                .send_bytes(rest),
        )
        .0
    }

    /// `GET /v2/_catalog`: every repository the registry lists.
    pub fn catalog(&self) -> Vec<String> {
        let (status, body) = status_of(
            self.agent
                .get(&format!("{}/v2/_catalog?n=1000", self.base))
                .call(),
        );
        assert_eq!(status, 200, "catalog");
        let v: serde_json::Value = serde_json::from_slice(&body).expect("catalog json");
        v["repositories"]
            .as_array()
            .expect("repositories")
            .iter()
            .filter_map(|r| r.as_str().map(String::from))
            .collect()
    }

    /// Start an upload, send part of the data, and walk away: an abandoned `_uploads` entry.
    pub fn abandon_upload(&self, repo: &str, partial: &[u8]) {
        self.start_upload(repo, partial);
    }

    /// Cross-repository mount; true when the registry mounted (201) rather than started an
    /// upload (202).
    pub fn mount_blob(&self, repo: &str, digest: &Digest, from: &str) -> bool {
        let (status, _) = status_of(
            self.agent
                .post(&format!(
                    "{}/v2/{repo}/blobs/uploads/?mount={digest}&from={from}",
                    self.base
                ))
                .send_bytes(&[]),
        );
        status == 201
    }

    /// PUT a manifest under a tag or by its digest; returns its digest.
    pub fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> Digest {
        let digest = Digest::of(Algorithm::Sha256, bytes);
        let reference = if reference.is_empty() {
            digest.to_string()
        } else {
            reference.to_string()
        };
        let (status, body) = status_of(
            self.agent
                .put(&format!("{}/v2/{repo}/manifests/{reference}", self.base))
                .set("Content-Type", media_type)
                .send_bytes(bytes),
        );
        assert_eq!(
            status,
            201,
            "PUT manifest {repo}:{reference}: {}",
            String::from_utf8_lossy(&body)
        );
        digest
    }

    /// PUT a manifest under a tag; the status and body, whatever they are.
    pub fn try_put_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> (u16, Vec<u8>) {
        status_of(
            self.agent
                .put(&format!("{}/v2/{repo}/manifests/{reference}", self.base))
                .set("Content-Type", media_type)
                .send_bytes(bytes),
        )
    }

    pub fn delete_manifest(&self, repo: &str, digest: &Digest) {
        let (status, body) = status_of(
            self.agent
                .delete(&format!("{}/v2/{repo}/manifests/{digest}", self.base))
                .call(),
        );
        assert_eq!(
            status,
            202,
            "DELETE {repo}@{digest}: {}",
            String::from_utf8_lossy(&body)
        );
    }

    /// GET a manifest: (status, body).
    pub fn get_manifest(&self, repo: &str, reference: &str) -> (u16, Vec<u8>) {
        status_of(
            self.agent
                .get(&format!("{}/v2/{repo}/manifests/{reference}", self.base))
                .set("Accept", ACCEPT_ALL)
                .call(),
        )
    }

    /// GET a blob through a repository: (status, body).
    pub fn get_blob(&self, repo: &str, digest: &Digest) -> (u16, Vec<u8>) {
        let result = self
            .agent
            .get(&format!("{}/v2/{repo}/blobs/{digest}", self.base))
            .call();
        status_of(result)
    }

    /// HEAD a blob through a repository, as a client does before uploading it.
    pub fn head_blob(&self, repo: &str, digest: &Digest) -> u16 {
        let result = self
            .agent
            .head(&format!("{}/v2/{repo}/blobs/{digest}", self.base))
            .call();
        status_of(result).0
    }

    pub fn tags(&self, repo: &str) -> Vec<String> {
        let (status, body) = status_of(
            self.agent
                .get(&format!("{}/v2/{repo}/tags/list", self.base))
                .call(),
        );
        if status != 200 {
            return Vec::new();
        }
        let v: serde_json::Value = serde_json::from_slice(&body).expect("tags json");
        v["tags"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|t| t.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    }
}

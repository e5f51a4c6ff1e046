//! A real Redis (Debian's `redis-server`) on 127.0.0.1 with a free port and a temporary
//! directory, nothing persisted, stopped when dropped: the registry's blob-descriptor cache.
#![allow(dead_code)]

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Whether the peer is installed. Under CI a missing peer is a failure, never a skip.
pub fn available() -> bool {
    let found = Command::new("redis-server")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found && std::env::var_os("CI").is_some() {
        panic!("redis-server is not installed and CI is set: run scripts/test, which installs it");
    }
    if !found {
        eprintln!("skipping: redis-server is not installed (scripts/test installs it)");
    }
    found
}

pub struct Redis {
    child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Redis {
    pub fn start() -> Redis {
        for _ in 0..5 {
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map(|a| a.port())
                .expect("no free port");
            let dir = tempfile::tempdir().unwrap();
            let child = Command::new("redis-server")
                .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
                .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
                .arg("--dir")
                .arg(dir.path())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start redis-server");
            let mut redis = Redis {
                child,
                port,
                _dir: dir,
            };
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = redis.child.try_wait() {
                    break;
                }
                if let Ok(mut con) = redis.connection() {
                    if ::redis::cmd("PING").query::<String>(&mut con).is_ok() {
                        return redis;
                    }
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        panic!("redis-server did not come up");
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    pub fn connection(&self) -> ::redis::RedisResult<::redis::Connection> {
        ::redis::Client::open(self.url())?.get_connection_with_timeout(Duration::from_secs(2))
    }

    /// Every entry the registry's cache holds: each key, and each member of a set as
    /// `key member`.
    pub fn entries(&self) -> std::collections::BTreeSet<String> {
        let mut con = self.connection().expect("connect to redis");
        let keys: Vec<String> = ::redis::cmd("KEYS").arg("*").query(&mut con).unwrap();
        let mut out = std::collections::BTreeSet::new();
        for k in keys {
            let kind: String = ::redis::cmd("TYPE").arg(&k).query(&mut con).unwrap();
            if kind == "set" {
                let members: Vec<String> =
                    ::redis::cmd("SMEMBERS").arg(&k).query(&mut con).unwrap();
                out.extend(members.into_iter().map(|m| format!("{k} {m}")));
            } else {
                out.insert(k);
            }
        }
        out
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

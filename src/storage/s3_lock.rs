//! The run lock on object storage: an object created only if absent, holding who took it and
//! until when, so that two runs never sweep one bucket at once and a killed run's lock
//! expires.

use std::io;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::s3_client::Client;
use crate::error::{Error, Result};

/// How long a lock object holds when its holder never removes it (killed): then the next run
/// may take it. Longer than any run should take.
const LOCK_TTL: Duration = Duration::from_secs(24 * 3600);

/// The run lock on object storage: an object created only if absent (`If-None-Match: *`),
/// removed when dropped.
pub(super) struct ObjectLock {
    client: Arc<Client>,
    key: String,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct LockBody {
    holder: String,
    since: String,
    expires: String,
}

impl ObjectLock {
    pub(super) fn acquire(client: Arc<Client>, key: String, wait: bool) -> Result<ObjectLock> {
        let name = format!("s3://{}/{key}", client.bucket_name());
        let now = SystemTime::now();
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "unknown host".into());
        let body = serde_json::to_vec(&LockBody {
            holder: format!("regsweep pid {} on {host}", std::process::id()),
            since: humantime::format_rfc3339_seconds(now).to_string(),
            expires: humantime::format_rfc3339_seconds(now + LOCK_TTL).to_string(),
        })
        .expect("a lock body serializes");
        loop {
            let io_err = |e: io::Error| {
                Error::target(name.clone(), format!("cannot take the run lock: {e}"))
            };
            if client.put(&key, &body, true).map_err(io_err)? {
                return Ok(ObjectLock { client, key });
            }
            let mut held = Vec::new();
            let holder = match client.get(&key, 4096, &mut held) {
                Ok(()) => serde_json::from_slice::<LockBody>(&held).ok(),
                // Released meanwhile: try again.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_err(e)),
            };
            let expired = holder.as_ref().is_some_and(|h| {
                humantime::parse_rfc3339_weak(h.expires.trim_end_matches('Z'))
                    .is_ok_and(|t| t < SystemTime::now())
            });
            if expired {
                client.delete(&key).map_err(io_err)?;
                continue;
            }
            if wait {
                std::thread::sleep(Duration::from_secs(2));
                continue;
            }
            let said = holder.map_or_else(
                || "an unreadable lock".to_string(),
                |h| format!("{} since {} (expires {})", h.holder, h.since, h.expires),
            );
            return Err(Error::Locked {
                path: name.into(),
                message: format!(
                    "another real run holds the lock: {said}; wait with --wait, or delete the \
                     lock object if that run is dead"
                ),
            });
        }
    }
}

impl Drop for ObjectLock {
    fn drop(&mut self) {
        let _ = self.client.delete(&self.key);
    }
}

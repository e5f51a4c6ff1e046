//! The run lock on object storage: an object created only if absent, holding who took it and
//! until when, so that two runs never sweep one bucket at once and a killed run's lock
//! expires.

use std::io;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::bucket::Bucket;
use crate::error::{Error, Result};

/// How long a lock object holds when its holder never removes it (killed): then the next run
/// may take it. Longer than any run should take.
const LOCK_TTL: Duration = Duration::from_secs(24 * 3600);

/// The run lock on object storage: an object created only if absent (S3 and Azure
/// `If-None-Match: *`, GCS `ifGenerationMatch=0`), removed when dropped.
pub(super) struct ObjectLock {
    client: Arc<dyn Bucket>,
    key: String,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct LockBody {
    holder: String,
    since: String,
    expires: String,
}

impl ObjectLock {
    pub(super) fn acquire(client: Arc<dyn Bucket>, key: String, wait: bool) -> Result<ObjectLock> {
        let name = format!("{}/{key}", client.url());
        let now = SystemTime::now();
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "unknown host".into());
        // Unique to this attempt, so that reading the lock back tells whose it is.
        let nanos = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let body = serde_json::to_vec(&LockBody {
            holder: format!("regsweep pid {} on {host} ({nanos})", std::process::id()),
            since: humantime::format_rfc3339_seconds(now).to_string(),
            expires: humantime::format_rfc3339_seconds(now + LOCK_TTL).to_string(),
        })
        .expect("a lock body serializes");
        loop {
            let io_err = |e: io::Error| {
                Error::target(name.clone(), format!("cannot take the run lock: {e}"))
            };
            if client.put(&key, &body, true).map_err(io_err)? {
                return ObjectLock { client, key }.proven(&body, &name);
            }
            let mut held = Vec::new();
            let (holder, etag) = match client.get_versioned(&key, 4096, &mut held) {
                Ok(etag) => (serde_json::from_slice::<LockBody>(&held).ok(), etag),
                // Released meanwhile: try again.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_err(e)),
            };
            // Our own create, whose answer was lost and retried into a 412/409: the body is
            // unique to this attempt, so the lock is ours (refusing would leave it for 24 h).
            if held == body {
                return ObjectLock { client, key }.proven(&body, &name);
            }
            let expired = holder.as_ref().is_some_and(|h| {
                humantime::parse_rfc3339_weak(h.expires.trim_end_matches('Z'))
                    .is_ok_and(|t| t < SystemTime::now())
            });
            if expired {
                // Taken over by replacing exactly the expired lock that was read: a GET, a
                // DELETE and a PUT would let two runs that both saw it expired both hold it.
                if client.put_if_match(&key, &body, &etag).map_err(io_err)? {
                    let mut now_held = Vec::new();
                    if client.get(&key, 4096, &mut now_held).is_ok() && now_held == body {
                        return Ok(ObjectLock { client, key });
                    }
                }
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

impl ObjectLock {
    /// The lock just taken, once the server is known to honour conditional writes.
    fn proven(self, body: &[u8], name: &str) -> Result<ObjectLock> {
        self.check_conditions_hold(body).map_err(|m| {
            Error::target(name.to_string(), format!("cannot take the run lock: {m}"))
        })?;
        Ok(self)
    }

    /// A lock is only a lock where the server refuses a second conditional create: check it
    /// once, on the lock just taken (a second create must be refused, and ours still be there).
    fn check_conditions_hold(&self, body: &[u8]) -> std::result::Result<(), String> {
        let honoured = !self
            .client
            .put(&self.key, b"{}", true)
            .map_err(|e| e.to_string())?;
        let mut now_held = Vec::new();
        self.client
            .get(&self.key, 4096, &mut now_held)
            .map_err(|e| e.to_string())?;
        if honoured && now_held == body {
            return Ok(());
        }
        // It overwrote the lock: put ours back for the moment, and refuse (dropping the lock
        // removes it).
        let _ = self.client.put(&self.key, body, false);
        Err(
            "this server ignores conditional writes (a second create-if-absent succeeded), so \
             two runs could both hold the lock; refusing a real run here"
                .into(),
        )
    }
}

impl Drop for ObjectLock {
    fn drop(&mut self) {
        let _ = self.client.delete(&self.key);
    }
}

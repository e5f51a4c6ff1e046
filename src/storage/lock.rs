//! The run lock: two regsweep runs that change the same storage never overlap.
//!
//! An advisory `flock` on `docker/registry/v2/.regsweep.lock`. The kernel drops it when the
//! process dies, so a killed run never leaves a stale lock behind; the file's content (pid,
//! host, start time) only serves to name the holder. Dry runs take no lock: they write nothing.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::registry::layout;

#[derive(Debug)]
pub struct Lock {
    // Held for its file descriptor: closing it releases the lock.
    _file: File,
}

impl Lock {
    /// Take the lock, failing at once with the holder's identity if another run has it, or
    /// waiting for it when `wait` is set.
    pub fn acquire(root: &Path, wait: bool) -> Result<Lock> {
        let path: PathBuf = root.join(layout::LOCK_FILE);
        let created = std::fs::symlink_metadata(&path).is_err();
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        if created {
            // Owned like the directory it is in: a lock file root made must not stop a later
            // run as the registry's user.
            if let Some(v2) = path.parent().and_then(|d| std::fs::metadata(d).ok()) {
                use std::os::unix::fs::MetadataExt;
                let _ = std::os::unix::fs::fchown(&file, Some(v2.uid()), Some(v2.gid()));
            }
        }
        let flags = if wait {
            libc::LOCK_EX
        } else {
            libc::LOCK_EX | libc::LOCK_NB
        };
        // SAFETY: flock on a file descriptor we own; no memory is involved.
        if unsafe { libc::flock(file.as_raw_fd(), flags) } != 0 {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                return Err(Error::Locked {
                    path,
                    message: format!(
                        "another regsweep run holds the lock ({}); try again later or pass --wait",
                        if holder.trim().is_empty() {
                            "holder unknown"
                        } else {
                            holder.trim()
                        }
                    ),
                });
            }
            return Err(Error::io(&path, err));
        }
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        let since = humantime::format_rfc3339_seconds(std::time::SystemTime::now());
        let info = format!(
            "pid {} on {} since {since}",
            std::process::id(),
            host.trim()
        );
        let write = file
            .set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| file.write_all(info.as_bytes()));
        write.map_err(|e| Error::io(&path, e))?;
        Ok(Lock { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_is_refused_and_names_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join(layout::V2)).unwrap();
        let first = Lock::acquire(dir.path(), false).unwrap();
        let err = Lock::acquire(dir.path(), false).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, Error::Locked { .. }));
        assert!(
            msg.contains(&format!("pid {}", std::process::id())),
            "{msg}"
        );
        drop(first);
        Lock::acquire(dir.path(), false).unwrap();
    }
}

//! A read-only view of another storage with some keys hidden, for dry runs of edits.

use std::collections::BTreeSet;
use std::io;

use super::{Entry, Meta, Storage};

/// A view of another storage with some keys (and everything below them) hidden, as if they
/// had been removed. A dry run of `delete --gc` or `prune --gc` collects on this view, so it
/// shows what the collector would do after the edits without making them. It never writes.
pub struct Hiding<'a> {
    inner: &'a dyn Storage,
    hidden: BTreeSet<String>,
}

impl<'a> Hiding<'a> {
    pub fn new(inner: &'a dyn Storage, hidden: impl IntoIterator<Item = String>) -> Hiding<'a> {
        Hiding {
            inner,
            hidden: hidden.into_iter().collect(),
        }
    }

    /// Whether `key` or one of its ancestors is hidden.
    fn is_hidden(&self, key: &str) -> bool {
        self.hidden.contains(key)
            || key
                .match_indices('/')
                .any(|(i, _)| self.hidden.contains(&key[..i]))
    }

    fn check(&self, key: &str) -> io::Result<()> {
        if self.is_hidden(key) {
            Err(io::Error::new(
                io::ErrorKind::NotFound,
                "removed in this dry run",
            ))
        } else {
            Ok(())
        }
    }
}

impl Storage for Hiding<'_> {
    fn list_dir(&self, key: &str) -> io::Result<Vec<Entry>> {
        self.check(key)?;
        let mut entries = self.inner.list_dir(key)?;
        entries.retain(|e| {
            let child = if key.is_empty() {
                e.name.clone()
            } else {
                format!("{key}/{}", e.name)
            };
            !self.hidden.contains(&child)
        });
        Ok(entries)
    }

    fn stat(&self, key: &str) -> io::Result<Meta> {
        self.check(key)?;
        self.inner.stat(key)
    }

    fn read_into(&self, key: &str, limit: u64, buf: &mut Vec<u8>) -> io::Result<Meta> {
        self.check(key)?;
        self.inner.read_into(key, limit, buf)
    }

    fn read_content(&self, key: &str, limit: u64, buf: &mut Vec<u8>) -> io::Result<()> {
        self.check(key)?;
        self.inner.read_content(key, limit, buf)
    }

    fn remove_all(&self, key: &str) -> io::Result<()> {
        Err(read_only(key))
    }

    fn remove_empty_dir(&self, key: &str) -> io::Result<bool> {
        Err(read_only(key))
    }

    fn read_chunks(&self, key: &str, f: &mut dyn FnMut(&[u8])) -> io::Result<u64> {
        self.check(key)?;
        self.inner.read_chunks(key, f)
    }

    fn rename(&self, from: &str, _to: &str) -> io::Result<()> {
        Err(read_only(from))
    }

    fn same_filesystem(&self, a: &str, b: &str) -> io::Result<bool> {
        self.inner.same_filesystem(a, b)
    }

    fn remove_trees(&self, keys: &[String]) -> Vec<io::Result<()>> {
        keys.iter().map(|k| Err(read_only(k))).collect()
    }

    fn refresh(&self, prefix: &str) -> io::Result<()> {
        self.inner.refresh(prefix)
    }

    fn pending_uploads(&self, dir: &str) -> io::Result<Vec<super::PendingUpload>> {
        self.inner.pending_uploads(dir)
    }

    fn requests(&self) -> Option<super::Requests> {
        self.inner.requests()
    }

    fn identity(&self) -> String {
        self.inner.identity()
    }
    fn display(&self, key: &str) -> String {
        self.inner.display(key)
    }
}

fn read_only(key: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::PermissionDenied,
        format!("{key}: a dry-run view is read-only"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::FsStorage;
    use std::fs;

    #[test]
    fn hiding_hides_keys_and_everything_below() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("a/b/c")).unwrap();
        fs::create_dir_all(dir.path().join("a/bb")).unwrap();
        fs::write(dir.path().join("a/b/c/f"), b"x").unwrap();
        let fs_storage = FsStorage::new(dir.path());
        let view = Hiding::new(&fs_storage, ["a/b".to_string()]);
        let names: Vec<String> = view
            .list_dir("a")
            .unwrap()
            .into_iter()
            .map(|e| e.name)
            .collect();
        assert_eq!(names, ["bb"]);
        assert_eq!(
            view.stat("a/b/c/f").unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
        assert_eq!(
            view.list_dir("a/b").unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
        assert!(view.stat("a/bb").is_ok());
        assert!(view.remove_all("a/bb").is_err());
        assert!(dir.path().join("a/b/c/f").exists());
    }
}

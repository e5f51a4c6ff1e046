//! Resolve what the administrator named on the command line to a storage root.
//!
//! A target is either the storage root itself (the directory holding `docker/registry/v2`) or
//! the registry's own `config.yml`, whose `storage.filesystem.rootdirectory` names the root, so
//! regsweep runs the way `registry garbage-collect <config>` does.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The distribution registry's default when `rootdirectory` is not set.
pub const DEFAULT_ROOT: &str = "/var/lib/registry";

pub fn resolve(target: &Path) -> Result<PathBuf> {
    let meta = std::fs::metadata(target).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Error::target(target, "no such file or directory")
        } else {
            Error::io(target, e)
        }
    })?;
    if meta.is_dir() {
        return Ok(target.to_path_buf());
    }
    root_from_config(target)
}

fn root_from_config(path: &Path) -> Result<PathBuf> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let config: serde_norway::Value = serde_norway::from_str(&text).map_err(|e| {
        Error::target(
            path,
            format!("is neither a directory nor a readable registry config: {e}"),
        )
    })?;
    let storage = config
        .get("storage")
        .ok_or_else(|| Error::target(path, "registry config has no `storage` section"))?;
    let Some(fs) = storage.get("filesystem") else {
        let drivers: Vec<String> = storage
            .as_mapping()
            .map(|m| {
                m.keys()
                    .filter_map(|k| k.as_str().map(str::to_string))
                    .filter(|k| {
                        !["cache", "maintenance", "delete", "redirect", "tag"].contains(&k.as_str())
                    })
                    .collect()
            })
            .unwrap_or_default();
        return Err(Error::target(
            path,
            format!(
                "registry config uses storage driver {}, not filesystem; regsweep only collects filesystem storage",
                if drivers.is_empty() { "(none)".to_string() } else { drivers.join(", ") }
            ),
        ));
    };
    let root = match fs.get("rootdirectory") {
        None => DEFAULT_ROOT.to_string(),
        Some(v) => v
            .as_str()
            .ok_or_else(|| Error::target(path, "storage.filesystem.rootdirectory is not a string"))?
            .to_string(),
    };
    let root = PathBuf::from(root);
    // A relative root is relative to where the registry runs, which we cannot know.
    if !root.is_absolute() {
        return Err(Error::target(
            path,
            format!(
                "storage.filesystem.rootdirectory {:?} is relative; give the storage root directory instead",
                root
            ),
        ));
    }
    Ok(root)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.yml");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    #[test]
    fn reads_rootdirectory_from_a_registry_config() {
        let (_d, p) = config(
            "version: 0.1\nstorage:\n  cache:\n    blobdescriptor: inmemory\n  filesystem:\n    rootdirectory: /srv/registry\nhttp:\n  addr: :5000\n",
        );
        assert_eq!(resolve(&p).unwrap(), PathBuf::from("/srv/registry"));
        let (_d, p) = config("version: 0.1\nstorage:\n  filesystem: {}\n");
        assert_eq!(resolve(&p).unwrap(), PathBuf::from(DEFAULT_ROOT));
    }

    #[test]
    fn other_drivers_and_garbage_are_target_errors() {
        for text in [
            "version: 0.1\nstorage:\n  s3:\n    bucket: b\n",
            "version: 0.1\nhttp: {}\n",
            "\u{0}\u{1}not yaml: [",
            "storage:\n  filesystem:\n    rootdirectory: relative/dir\n",
        ] {
            let (_d, p) = config(text);
            assert!(matches!(resolve(&p), Err(Error::Target { .. })), "{text:?}");
        }
        let err = resolve(Path::new("/definitely/not/here")).unwrap_err();
        assert!(err.to_string().contains("/definitely/not/here"));
    }
}

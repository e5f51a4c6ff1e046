//! Resolve what the administrator named on the command line to a storage root.
//!
//! A target is the storage root itself (the directory holding `docker/registry/v2`), a bucket
//! and prefix (`s3://BUCKET/PREFIX`, endpoint from `--endpoint` or `AWS_ENDPOINT_URL`;
//! `gs://BUCKET/PREFIX`, see [`gcs`]; `azblob://CONTAINER/PREFIX`, see [`azure`]), or
//! the registry's own `config.yml`, read the way the registry reads it, so regsweep runs the way
//! `registry garbage-collect <config>` does and collects the same tree:
//! - `REGISTRY_<SECTION>_<KEY>...` environment variables override the file, applied in sorted
//!   order; each component names a key case-insensitively, the last one is set (lower-cased) to
//!   the variable's value read as YAML, and a variable naming a whole section
//!   (`REGISTRY_STORAGE=filesystem`) replaces it;
//! - `storage` holds exactly one driver besides `cache`, `maintenance`, `delete`, `redirect`
//!   and `tag`; the scalar form `storage: filesystem` is that driver with no parameters;
//! - the filesystem driver's root is `rootdirectory`, `/var/lib/registry` when unset;
//! - the s3 driver's `bucket`, `region`, `regionendpoint` (then path-style requests, as the
//!   registry makes them), `forcepathstyle`, `secure`, `rootdirectory`, and `accesskey` /
//!   `secretkey`, or else the standard AWS environment variables and profile files;
//! - the gcs driver's `bucket`, `keyfile` or `credentials`, `rootdirectory` ([`gcs`]);
//! - the azure driver's `accountname`, `accountkey`, `container`, `realm`, `rootdirectory`
//!   ([`azure`]).
//!
//! Only the `storage` and `redis` sections are overlaid: they are all regsweep reads.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

pub mod azure;
pub mod file;
pub mod gcs;
pub mod redis;
pub mod s3;
use redis::RegistryCache;

/// The distribution registry's default when `rootdirectory` is not set.
pub const DEFAULT_ROOT: &str = "/var/lib/registry";

/// Where the registry's bytes are.
#[derive(Debug, Clone)]
pub enum Backend {
    /// A storage root on a local filesystem.
    Fs(PathBuf),
    /// A bucket, and the registry's `rootdirectory` in it.
    S3 {
        settings: Box<s3::Settings>,
        prefix: String,
    },
    /// A Google Cloud Storage bucket, and the registry's `rootdirectory` in it.
    Gcs {
        settings: Box<gcs::Settings>,
        prefix: String,
    },
    /// An Azure Blob container, and the registry's `rootdirectory` in it.
    Azure {
        settings: Box<azure::Settings>,
        prefix: String,
    },
}

/// What a target resolved to.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub backend: Backend,
    /// Why this root: the directory named on the command line, the config's key, an
    /// environment override, or the registry's default. Printed in every report.
    pub source: String,
    /// Things about the registry's configuration an administrator should know before a real
    /// run (said as warnings by the commands that delete).
    pub warnings: Vec<String>,
    /// The registry's blob-descriptor cache (`storage.cache.blobdescriptor` and `redis:`),
    /// unknown unless the target is its config.
    pub cache: RegistryCache,
}

impl Resolved {
    /// The storage as an administrator names it: the root directory, or the object store's
    /// URL with the registry's prefix.
    pub fn display_name(&self) -> String {
        match &self.backend {
            Backend::Fs(root) => root.display().to_string(),
            Backend::S3 { settings, prefix } => format!("s3://{}/{prefix}", settings.bucket),
            Backend::Gcs { settings, prefix } => format!("gs://{}/{prefix}", settings.bucket),
            Backend::Azure { settings, prefix } => {
                format!("azblob://{}/{prefix}", settings.container)
            }
        }
    }

    /// The storage root, for a filesystem target.
    pub fn fs_root(&self) -> Option<&Path> {
        match &self.backend {
            Backend::Fs(root) => Some(root),
            Backend::S3 { .. } | Backend::Gcs { .. } | Backend::Azure { .. } => None,
        }
    }
}

/// Resolve `target` with the process environment (overrides, AWS credentials).
pub fn resolve(target: &Path, endpoint: Option<&str>) -> Result<Resolved> {
    resolve_with_env(target, endpoint, std::env::vars())
}

/// Resolve `target` with the given environment (tests pass their own).
pub fn resolve_with_env(
    target: &Path,
    endpoint: Option<&str>,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Resolved> {
    let env: Vec<(String, String)> = env.into_iter().collect();
    if let Some(text) = target.to_str() {
        if let Some(rest) = text.strip_prefix("s3://") {
            return s3::from_url(target, rest, endpoint, &env);
        }
        if let Some(rest) = text.strip_prefix("gs://") {
            return gcs::from_url(target, rest, endpoint, &env);
        }
        if let Some(rest) = text.strip_prefix("azblob://") {
            return azure::from_url(target, rest, endpoint, &env);
        }
    }
    let meta = std::fs::metadata(target).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Error::target(target, "no such file or directory")
        } else {
            Error::io(target, e)
        }
    })?;
    if meta.is_dir() {
        return Ok(Resolved {
            backend: Backend::Fs(target.to_path_buf()),
            source: "the storage root named on the command line".into(),
            warnings: Vec::new(),
            cache: RegistryCache::Unknown,
        });
    }
    file::read(target, endpoint, &env)
}

/// `BUCKET/PREFIX` of a URL target (`form` shows the URL's shape in the refusal), the prefix
/// without slashes around it.
pub(crate) fn bucket_and_prefix<'a>(
    target: &Path,
    rest: &'a str,
    form: &str,
) -> Result<(&'a str, String)> {
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        let what = if form.contains("CONTAINER") {
            "container"
        } else {
            "bucket"
        };
        return Err(Error::target(target, format!("names no {what} ({form})")));
    }
    Ok((bucket, prefix.trim_matches('/').to_string()))
}

/// What a URL target resolved to: nothing from a registry config (no warnings, its cache
/// unknown).
pub(crate) fn url_target(backend: Backend, source: &str) -> Resolved {
    Resolved {
        backend,
        source: source.to_string(),
        warnings: Vec::new(),
        cache: RegistryCache::Unknown,
    }
}

/// A CA bundle to trust besides the public roots, as OpenSSL-based tools find it.
pub(crate) fn ssl_cert_file(env: &[(String, String)]) -> Option<PathBuf> {
    var(env, "SSL_CERT_FILE").map(PathBuf::from)
}

pub(crate) fn var<'a>(env: &'a [(String, String)], name: &str) -> Option<&'a str> {
    env.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
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

    fn env(vars: &[(&str, &str)]) -> Vec<(String, String)> {
        vars.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn root(path: &Path, vars: &[(&str, &str)]) -> Result<PathBuf> {
        resolve_with_env(path, None, env(vars)).map(|r| r.fs_root().unwrap().to_path_buf())
    }

    #[test]
    fn reads_rootdirectory_from_a_registry_config() {
        let (_d, p) = config(
            "version: 0.1\nstorage:\n  cache:\n    blobdescriptor: inmemory\n  filesystem:\n    rootdirectory: /srv/registry\nhttp:\n  addr: :5000\n",
        );
        let r = resolve_with_env(&p, None, env(&[])).unwrap();
        assert_eq!(r.fs_root().unwrap(), PathBuf::from("/srv/registry"));
        assert!(r.source.contains("storage.filesystem.rootdirectory in"));
        assert!(r.warnings.is_empty());
        let (_d, p) = config("version: 0.1\nstorage:\n  filesystem: {}\n");
        assert_eq!(root(&p, &[]).unwrap(), PathBuf::from(DEFAULT_ROOT));
        // The registry takes the scalar form as the driver with no parameters.
        let (_d, p) = config("version: 0.1\nstorage: filesystem\n");
        let r = resolve_with_env(&p, None, env(&[])).unwrap();
        assert_eq!(r.fs_root().unwrap(), PathBuf::from(DEFAULT_ROOT));
        assert!(r.source.contains("default"), "{}", r.source);
    }

    #[test]
    fn environment_overrides_apply_as_the_registry_applies_them() {
        let (_d, p) =
            config("version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: /srv/file\n");
        let r = resolve_with_env(
            &p,
            None,
            env(&[("REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY", "/srv/env")]),
        )
        .unwrap();
        assert_eq!(r.fs_root().unwrap(), PathBuf::from("/srv/env"));
        assert!(
            r.source
                .starts_with("REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY in the environment"),
            "{}",
            r.source
        );
        // A whole section replaced, then a key set in it (sorted order).
        let (_d, p) = config("version: 0.1\nstorage:\n  s3:\n    bucket: b\n");
        assert_eq!(
            root(
                &p,
                &[
                    ("REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY", "/srv/env"),
                    ("REGISTRY_STORAGE", "filesystem"),
                ]
            )
            .unwrap(),
            PathBuf::from("/srv/env")
        );
        let r = resolve_with_env(&p, None, env(&[("REGISTRY_STORAGE", "filesystem")])).unwrap();
        assert_eq!(r.fs_root().unwrap(), PathBuf::from(DEFAULT_ROOT));
        assert!(r.source.contains("REGISTRY_STORAGE in the environment"));
        // The scalar form gains parameters from the environment.
        let (_d, p) = config("version: 0.1\nstorage: filesystem\n");
        assert_eq!(
            root(
                &p,
                &[("REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY", "/srv/env")]
            )
            .unwrap(),
            PathBuf::from("/srv/env")
        );
        // Other sections and other prefixes are not ours to read.
        let (_d, p) =
            config("version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: /srv/file\n");
        assert_eq!(
            root(
                &p,
                &[
                    ("REGISTRY_HTTP_ADDR", ":1"),
                    ("XREGISTRY_STORAGE", "s3"),
                    ("REGISTRY_STORAGEX", "s3")
                ]
            )
            .unwrap(),
            PathBuf::from("/srv/file")
        );
        // An override that adds a second driver is refused, as the registry refuses it.
        let err = root(&p, &[("REGISTRY_STORAGE_S3_BUCKET", "b")]).unwrap_err();
        assert!(
            err.to_string().contains("exactly one storage type"),
            "{err}"
        );
    }

    #[test]
    fn credentials_in_an_endpoint_are_never_shown() {
        // #25 item 14: `regionendpoint: http://user:pass@host` showed in the summary and in
        // `root_source`.
        let (_d, p) = config(
            "version: 0.1\nstorage:\n  s3:\n    region: us-east-1\n    bucket: reg\n    \
             regionendpoint: http://minio-user:s3cret-Pass@minio.local:9000\n",
        );
        let r = resolve_with_env(&p, None, env(&[])).unwrap();
        for shown in [r.source.clone(), format!("{r:?}")] {
            assert!(!shown.contains("s3cret-Pass"), "{shown}");
            assert!(!shown.contains("minio-user"), "{shown}");
        }
        assert!(r.source.contains("http://minio.local:9000"), "{}", r.source);
        let (_d, p) = config(
            "version: 0.1\nstorage:\n  s3:\n    bucket: reg\n    regionendpoint: \"http://u:s3cret-Pass@[bad\"\n",
        );
        let e = resolve_with_env(&p, None, env(&[]))
            .unwrap_err()
            .to_string();
        assert!(!e.contains("s3cret-Pass"), "{e}");
    }

    #[test]
    fn s3_configs_read_as_the_registry_reads_them() {
        let (_d, p) = config(
            "version: 0.1\nstorage:\n  s3:\n    accesskey: AK\n    secretkey: SK\n    region: eu-west-1\n    \
             regionendpoint: minio.local:9000\n    secure: false\n    bucket: reg\n    rootdirectory: /prod/\n",
        );
        let r = resolve_with_env(&p, None, env(&[])).unwrap();
        let Backend::S3 { settings, prefix } = &r.backend else {
            panic!("not s3: {:?}", r.backend)
        };
        assert_eq!(settings.endpoint.as_str(), "http://minio.local:9000/");
        assert!(settings.path_style, "regionendpoint means path-style");
        assert_eq!((settings.bucket.as_str(), prefix.as_str()), ("reg", "prod"));
        assert_eq!(settings.region, "eu-west-1");
        assert!(!format!("{r:?}").contains("SK"), "a secret in Debug");
        // The registry's environment overrides apply to the s3 driver too, and the AWS
        // variables stand in for keys the file does not give.
        let (_d, p) =
            config("version: 0.1\nstorage:\n  s3:\n    region: us-east-1\n    bucket: file\n");
        let r = resolve_with_env(
            &p,
            None,
            env(&[
                ("REGISTRY_STORAGE_S3_BUCKET", "from-env"),
                ("AWS_ACCESS_KEY_ID", "AK"),
                ("AWS_SECRET_ACCESS_KEY", "SK"),
            ]),
        )
        .unwrap();
        let Backend::S3 { settings, .. } = &r.backend else {
            panic!()
        };
        assert_eq!(settings.bucket, "from-env");
        assert!(settings.credentials.is_some());
        assert!(!settings.path_style);
        assert_eq!(
            settings.endpoint.as_str(),
            "https://s3.us-east-1.amazonaws.com/"
        );
        assert!(
            r.source.contains("REGISTRY_STORAGE_S3_BUCKET"),
            "{}",
            r.source
        );
        // s3:// targets, with an endpoint.
        let r = resolve_with_env(
            Path::new("s3://bucket/some/prefix/"),
            Some("http://127.0.0.1:9000"),
            env(&[]),
        )
        .unwrap();
        let Backend::S3 { settings, prefix } = &r.backend else {
            panic!()
        };
        assert_eq!(
            (settings.bucket.as_str(), prefix.as_str()),
            ("bucket", "some/prefix")
        );
        assert!(settings.path_style);
        assert!(resolve_with_env(Path::new("s3://"), None, env(&[])).is_err());
    }

    #[test]
    fn configs_the_registry_refuses_are_refused() {
        for (text, says) in [
            (
                "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: /a\n  s3:\n    bucket: b\n",
                "must provide exactly one storage type. Provided: [filesystem s3]",
            ),
            ("version: 0.1\nstorage:\n  cache: {}\n", "no storage configuration"),
            ("version: 0.1\nhttp: {}\n", "no `storage` section"),
            ("version: 0.1\nstorage:\n  swift:\n    container: b\n", "storage driver swift"),
            ("version: 0.1\nstorage:\n  s3:\n    region: eu-west-1\n", "bucket is not set"),
            ("\u{0}\u{1}not yaml: [", "neither a directory"),
            ("just a string", "not a YAML mapping"),
            ("storage:\n  filesystem:\n    rootdirectory: relative/dir\n", "relative"),
        ] {
            let (_d, p) = config(text);
            match resolve_with_env(&p, None, env(&[])) {
                Err(e @ Error::Target { .. }) => {
                    assert!(e.to_string().contains(says), "{text:?}: {e}")
                }
                other => panic!("{text:?}: {other:?}"),
            }
        }
        let err = resolve(Path::new("/definitely/not/here"), None).unwrap_err();
        assert!(err.to_string().contains("/definitely/not/here"));
    }

    #[test]
    fn a_redis_cache_without_read_only_mode_earns_a_warning() {
        let base = "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: /srv/r\n  cache:\n    blobdescriptor: redis\n";
        let redis = "redis:\n  addr: 127.0.0.1:6379\n";
        let (_d, p) = config(&format!("{base}{redis}"));
        let r = resolve_with_env(&p, None, env(&[])).unwrap();
        assert_eq!(r.warnings.len(), 1);
        assert!(r.warnings[0].contains("read-only mode"));
        let (_d, p) = config(&format!(
            "{base}  maintenance:\n    readonly:\n      enabled: true\n{redis}"
        ));
        assert!(resolve_with_env(&p, None, env(&[]))
            .unwrap()
            .warnings
            .is_empty());
        // Read-only mode from the environment counts too.
        let (_d, p) = config(&format!("{base}{redis}"));
        let r = resolve_with_env(
            &p,
            None,
            env(&[("REGISTRY_STORAGE_MAINTENANCE_READONLY_ENABLED", "true")]),
        )
        .unwrap();
        assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    }

    #[test]
    fn the_registry_cache_is_read_from_the_config_and_its_environment() {
        let storage = "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: /srv/r\n";
        let cache = |text: &str, vars: &[(&str, &str)]| {
            let (_d, p) = config(text);
            resolve_with_env(&p, None, env(vars)).unwrap().cache
        };
        assert_eq!(cache(storage, &[]), RegistryCache::None);
        let inmemory = format!("{storage}  cache:\n    blobdescriptor: inmemory\n");
        assert_eq!(cache(&inmemory, &[]), RegistryCache::InMemory);
        let v28 = format!(
            "{storage}  cache:\n    blobdescriptor: redis\nredis:\n  addr: cache:6380\n  password: s3cret\n  db: 2\n"
        );
        let RegistryCache::Redis(r) = cache(&v28, &[]) else {
            panic!("not redis")
        };
        assert_eq!(
            (
                r.addr.as_str(),
                r.password.as_deref(),
                r.db,
                r.tls.is_none()
            ),
            ("cache:6380", Some("s3cret"), 2, true)
        );
        // The registry's environment overrides, as it applies them.
        let RegistryCache::Redis(r) = cache(
            &v28,
            &[
                ("REGISTRY_REDIS_ADDR", "other:1"),
                ("REGISTRY_REDIS_DB", "5"),
            ],
        ) else {
            panic!("not redis")
        };
        assert_eq!((r.addr.as_str(), r.db), ("other:1", 5));
        // 3.x: a list of addresses and TLS.
        let v3 = format!(
            "{storage}  cache:\n    blobdescriptor: redis\nredis:\n  addrs: [a:1, b:2]\n  tls:\n    certificate: /c.pem\n    key: /k.pem\n    clientcas: [/ca.pem]\n"
        );
        let RegistryCache::Redis(r) = cache(&v3, &[]) else {
            panic!("not redis")
        };
        assert_eq!(r.addr, "a:1");
        let tls = r.tls.unwrap();
        assert_eq!(tls.cas, vec![PathBuf::from("/ca.pem")]);
        assert_eq!(tls.key, Some(PathBuf::from("/k.pem")));
        // Redis without an address: said, and not guessed.
        let (_d, p) = config(&format!("{storage}  cache:\n    blobdescriptor: redis\n"));
        let r = resolve_with_env(&p, None, env(&[])).unwrap();
        assert!(matches!(r.cache, RegistryCache::Other(_)));
        assert!(r.warnings.iter().any(|w| w.contains("redis.addr")));
    }
}

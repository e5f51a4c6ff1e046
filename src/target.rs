//! Resolve what the administrator named on the command line to a storage root.
//!
//! A target is the storage root itself (the directory holding `docker/registry/v2`), a bucket
//! and prefix (`s3://BUCKET/PREFIX`, endpoint from `--s3-endpoint` or `AWS_ENDPOINT_URL`), or
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
//!   `secretkey`, or else the standard AWS environment variables and profile files.
//!
//! Only the `storage` and `redis` sections are overlaid: they are all regsweep reads.

use std::path::{Path, PathBuf};

use serde_norway::{Mapping, Value};

use crate::error::{Error, Result};
use crate::registry_cache::{RedisSettings, RegistryCache, Tls};

/// The distribution registry's default when `rootdirectory` is not set.
pub const DEFAULT_ROOT: &str = "/var/lib/registry";

/// The registry's prefix for configuration overrides in the environment.
const ENV_PREFIX: &str = "REGISTRY_";

/// Sections of the configuration regsweep reads, and so overlays from the environment.
const SECTIONS: [&str; 2] = ["STORAGE", "REDIS"];

/// Keys of `storage` that configure the registry around its driver, not a driver.
const NOT_DRIVERS: [&str; 5] = ["cache", "maintenance", "delete", "redirect", "tag"];

/// Where the registry's bytes are.
#[derive(Debug, Clone)]
pub enum Backend {
    /// A storage root on a local filesystem.
    Fs(PathBuf),
    /// A bucket, and the registry's `rootdirectory` in it.
    S3 {
        settings: Box<crate::storage::s3_client::Settings>,
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
    /// The storage root, for a filesystem target.
    pub fn fs_root(&self) -> Option<&Path> {
        match &self.backend {
            Backend::Fs(root) => Some(root),
            Backend::S3 { .. } => None,
        }
    }
}

/// Resolve `target` with the process environment (overrides, AWS credentials).
pub fn resolve(target: &Path, s3_endpoint: Option<&str>) -> Result<Resolved> {
    resolve_with_env(target, s3_endpoint, std::env::vars())
}

/// Resolve `target` with the given environment (tests pass their own).
pub fn resolve_with_env(
    target: &Path,
    s3_endpoint: Option<&str>,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Resolved> {
    let env: Vec<(String, String)> = env.into_iter().collect();
    if let Some(rest) = target.to_str().and_then(|t| t.strip_prefix("s3://")) {
        return s3_url(target, rest, s3_endpoint, &env);
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
    let text = std::fs::read_to_string(target).map_err(|e| Error::io(target, e))?;
    let mut config: Value = serde_norway::from_str(&text).map_err(|e| {
        Error::target(
            target,
            format!("is neither a directory nor a readable registry config: {e}"),
        )
    })?;
    if !config.is_mapping() {
        return Err(Error::target(
            target,
            "is neither a directory nor a registry config (not a YAML mapping)",
        ));
    }
    let mut vars: Vec<(String, String)> = env
        .iter()
        .filter(|(k, _)| {
            k.strip_prefix(ENV_PREFIX)
                .and_then(|rest| rest.split('_').next())
                .is_some_and(|section| SECTIONS.contains(&section))
        })
        .cloned()
        .collect();
    // The registry sorts them, so a whole section is replaced before its keys are set.
    vars.sort();
    let mut applied = Vec::new();
    for (name, value) in &vars {
        let path: Vec<&str> = name[ENV_PREFIX.len()..].split('_').collect();
        let payload: Value = serde_norway::from_str(value).map_err(|e| {
            Error::target(
                target,
                format!("environment variable {name} is not valid YAML: {e}"),
            )
        })?;
        overlay(&mut config, &path, payload);
        applied.push(name.as_str());
    }
    from_config(target, &config, &applied, &env)
}

fn var<'a>(env: &'a [(String, String)], name: &str) -> Option<&'a str> {
    env.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
}

/// Credentials from the standard AWS environment variables, else the shared credentials file
/// (`AWS_SHARED_CREDENTIALS_FILE`, or `~/.aws/credentials`), profile `AWS_PROFILE` or
/// `default`.
fn aws_credentials(env: &[(String, String)]) -> Option<rusty_s3::Credentials> {
    if let (Some(key), Some(secret)) = (
        var(env, "AWS_ACCESS_KEY_ID"),
        var(env, "AWS_SECRET_ACCESS_KEY"),
    ) {
        return Some(match var(env, "AWS_SESSION_TOKEN") {
            Some(token) => rusty_s3::Credentials::new_with_token(key, secret, token),
            None => rusty_s3::Credentials::new(key, secret),
        });
    }
    let file = var(env, "AWS_SHARED_CREDENTIALS_FILE")
        .map(PathBuf::from)
        .or_else(|| var(env, "HOME").map(|h| Path::new(h).join(".aws/credentials")))?;
    let text = std::fs::read_to_string(file).ok()?;
    let profile = var(env, "AWS_PROFILE").unwrap_or("default");
    let mut in_profile = false;
    let (mut key, mut secret, mut token) = (None, None, None);
    for line in text.lines().map(str::trim) {
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            in_profile = name.trim() == profile;
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        if in_profile {
            let v = v.trim().to_string();
            match k.trim() {
                "aws_access_key_id" => key = Some(v),
                "aws_secret_access_key" => secret = Some(v),
                "aws_session_token" => token = Some(v),
                _ => {}
            }
        }
    }
    Some(match token {
        Some(t) => rusty_s3::Credentials::new_with_token(key?, secret?, t),
        None => rusty_s3::Credentials::new(key?, secret?),
    })
}

fn endpoint_url(text: &str, secure: bool) -> std::result::Result<url::Url, String> {
    let with_scheme = if text.contains("://") {
        text.to_string()
    } else {
        format!("{}://{text}", if secure { "https" } else { "http" })
    };
    url::Url::parse(&with_scheme).map_err(|e| format!("endpoint {text:?} is not a URL: {e}"))
}

/// `s3://BUCKET/PREFIX`, with the endpoint from `--s3-endpoint` or `AWS_ENDPOINT_URL`.
fn s3_url(
    target: &Path,
    rest: &str,
    s3_endpoint: Option<&str>,
    env: &[(String, String)],
) -> Result<Resolved> {
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(Error::target(
            target,
            "names no bucket (s3://BUCKET/PREFIX)",
        ));
    }
    let region = var(env, "AWS_REGION")
        .or_else(|| var(env, "AWS_DEFAULT_REGION"))
        .unwrap_or("us-east-1")
        .to_string();
    let custom = s3_endpoint.or_else(|| var(env, "AWS_ENDPOINT_URL"));
    let endpoint = match custom {
        Some(e) => endpoint_url(e, true),
        None => endpoint_url(&format!("s3.{region}.amazonaws.com"), true),
    }
    .map_err(|m| Error::target(target, m))?;
    Ok(Resolved {
        backend: Backend::S3 {
            settings: Box::new(crate::storage::s3_client::Settings {
                endpoint,
                region,
                bucket: bucket.to_string(),
                // S3-compatible servers at an endpoint of their own take path-style requests.
                path_style: custom.is_some(),
                credentials: aws_credentials(env),
            }),
            prefix: prefix.trim_matches('/').to_string(),
        },
        source: "the bucket named on the command line".into(),
        warnings: Vec::new(),
        cache: RegistryCache::Unknown,
    })
}

/// A parameter as the registry reads it: a string, or a YAML scalar of another type.
fn param(params: &Value, key: &str) -> Option<String> {
    match params.get(key)? {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The s3 driver's parameters.
fn s3_from_config(
    path: &Path,
    params: &Value,
    env: &[(String, String)],
) -> Result<(Backend, String)> {
    let file = path.display();
    let bucket = param(params, "bucket")
        .filter(|b| !b.is_empty())
        .ok_or_else(|| Error::target(path, "storage.s3.bucket is not set"))?;
    let region = param(params, "region").unwrap_or_else(|| "us-east-1".into());
    let flag = |k: &str, default: bool| {
        param(params, k).map_or(default, |v| v.eq_ignore_ascii_case("true"))
    };
    let secure = flag("secure", true);
    let regionendpoint = param(params, "regionendpoint").filter(|e| !e.is_empty());
    let endpoint = match &regionendpoint {
        Some(e) => endpoint_url(e, secure),
        None => endpoint_url(&format!("s3.{region}.amazonaws.com"), secure),
    }
    .map_err(|m| Error::target(path, format!("storage.s3.regionendpoint: {m}")))?;
    let credentials = match (param(params, "accesskey"), param(params, "secretkey")) {
        (Some(k), Some(s)) if !k.is_empty() && !s.is_empty() => {
            Some(rusty_s3::Credentials::new(k, s))
        }
        _ => aws_credentials(env),
    };
    let prefix = param(params, "rootdirectory")
        .unwrap_or_default()
        .trim_matches('/')
        .to_string();
    let source = format!(
        "storage.s3 in {file} (bucket {bucket}, rootdirectory /{prefix}, endpoint {})",
        endpoint.as_str().trim_end_matches('/')
    );
    Ok((
        Backend::S3 {
            settings: Box::new(crate::storage::s3_client::Settings {
                endpoint,
                region,
                bucket,
                // The registry makes path-style requests when regionendpoint is set.
                path_style: flag("forcepathstyle", false) || regionendpoint.is_some(),
                credentials,
            }),
            prefix,
        },
        source,
    ))
}

/// Set `path` (upper-case components) in `value` the way the registry's configuration parser
/// does: match existing keys case-insensitively, create what is missing (a key that holds
/// no mapping is recreated), and set the last component, lower-cased.
fn overlay(value: &mut Value, path: &[&str], payload: Value) {
    let Some((first, rest)) = path.split_first() else {
        return;
    };
    if !value.is_mapping() {
        *value = Value::Mapping(Mapping::new());
    }
    let Value::Mapping(map) = value else {
        return;
    };
    let existing = map
        .keys()
        .find(|k| k.as_str().is_some_and(|k| k.eq_ignore_ascii_case(first)))
        .cloned();
    if rest.is_empty() {
        map.insert(Value::String(first.to_ascii_lowercase()), payload);
        return;
    }
    match existing {
        Some(key) if map.get(&key).is_some_and(Value::is_mapping) => {
            if let Some(child) = map.get_mut(&key) {
                overlay(child, rest, payload);
            }
        }
        _ => {
            let mut child = Value::Mapping(Mapping::new());
            overlay(&mut child, rest, payload);
            map.insert(Value::String(first.to_ascii_lowercase()), child);
        }
    }
}

/// The storage driver's name and parameters, refusing what the registry refuses.
fn driver(storage: &Value) -> std::result::Result<(String, Value), String> {
    match storage {
        // `storage: filesystem`: the registry takes it as that driver with no parameters.
        Value::String(name) => Ok((name.clone(), Value::Mapping(Mapping::new()))),
        Value::Mapping(map) => {
            let mut drivers: Vec<(String, Value)> = map
                .iter()
                .filter_map(|(k, v)| Some((k.as_str()?.to_string(), v.clone())))
                .filter(|(k, _)| !NOT_DRIVERS.contains(&k.as_str()))
                .collect();
            drivers.sort_by(|a, b| a.0.cmp(&b.0));
            match drivers.len() {
                0 => Err("no storage configuration provided (the registry refuses it too)".into()),
                1 => Ok(drivers.remove(0)),
                _ => Err(format!(
                    "must provide exactly one storage type. Provided: [{}] (the registry refuses this config too)",
                    drivers
                        .iter()
                        .map(|d| d.0.as_str())
                        .collect::<Vec<_>>()
                        .join(" ")
                )),
            }
        }
        Value::Null => Err("registry config has no `storage` section".into()),
        _ => Err("`storage` is neither a driver name nor a mapping".into()),
    }
}

/// A key of a nested mapping, by exact (lower-case) names, as the registry's code looks it up.
fn get<'a>(value: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(value, |v, k| v.get(*k))
}

/// Whether a YAML value means true the way the registry's parameters do (`true`, `"true"`).
fn truthy(value: Option<&Value>) -> bool {
    match value {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s.eq_ignore_ascii_case("true"),
        _ => false,
    }
}

fn from_config(
    path: &Path,
    config: &Value,
    applied: &[&str],
    env: &[(String, String)],
) -> Result<Resolved> {
    let file = path.display();
    let storage = config.get("storage").unwrap_or(&Value::Null);
    let (name, params) = driver(storage).map_err(|m| Error::target(path, m))?;
    let mut warnings = config_warnings(storage);
    let cache = registry_cache(config, storage, &mut warnings);
    if name == "s3" {
        let (backend, source) = s3_from_config(path, &params, env)?;
        let overridden: Vec<&str> = applied
            .iter()
            .copied()
            .filter(|v| v.starts_with("REGISTRY_STORAGE"))
            .collect();
        let source = if overridden.is_empty() {
            source
        } else {
            format!(
                "{source}, with {} from the environment",
                overridden.join(", ")
            )
        };
        return Ok(Resolved {
            backend,
            source,
            warnings,
            cache,
        });
    }
    if name != "filesystem" {
        return Err(Error::target(
            path,
            format!(
                "registry config uses storage driver {name}; regsweep collects filesystem and s3 storage"
            ),
        ));
    }
    // The last variable that set the root, or a section above it, decides where it came from.
    let overridden_by = applied.iter().rev().find(|v| {
        [
            "REGISTRY_STORAGE",
            "REGISTRY_STORAGE_FILESYSTEM",
            "REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY",
        ]
        .contains(v)
    });
    let (root, source) = match params.get("rootdirectory") {
        None | Some(Value::Null) => (
            DEFAULT_ROOT.to_string(),
            match overridden_by {
                Some(var) => format!(
                    "the registry's default: {var} in the environment overrides {file} and sets no rootdirectory"
                ),
                None => format!("the registry's default: {file} sets no storage.filesystem.rootdirectory"),
            },
        ),
        Some(Value::String(s)) => (
            s.clone(),
            match overridden_by {
                Some(var) => format!("{var} in the environment (overrides {file})"),
                None => format!("storage.filesystem.rootdirectory in {file}"),
            },
        ),
        Some(_) => {
            return Err(Error::target(
                path,
                "storage.filesystem.rootdirectory is not a string",
            ))
        }
    };
    let root = PathBuf::from(root);
    // A relative root is relative to where the registry runs, which we cannot know.
    if !root.is_absolute() {
        return Err(Error::target(
            path,
            format!(
                "storage.filesystem.rootdirectory {root:?} is relative; give the storage root directory instead"
            ),
        ));
    }
    Ok(Resolved {
        backend: Backend::Fs(root),
        source,
        warnings,
        cache,
    })
}

/// What the registry's config warns an administrator of before a real run.
fn config_warnings(storage: &Value) -> Vec<String> {
    let mut warnings = Vec::new();
    let cache = get(storage, &["cache", "blobdescriptor"]).and_then(Value::as_str);
    if cache == Some("redis") && !truthy(get(storage, &["maintenance", "readonly", "enabled"])) {
        warnings.push(
            "storage.cache.blobdescriptor is redis and the registry is not in read-only mode \
             (storage.maintenance.readonly.enabled): while this run deletes, the registry may \
             answer from its cache for blobs that are going and accept manifests that need \
             them. Put the registry in read-only mode (or stop it) for the run; regsweep evicts \
             the cache's entries for what it deleted afterwards."
                .to_string(),
        );
    }
    warnings
}

/// The registry's blob-descriptor cache, read the way the registry reads it: `redis:` holds
/// `addr` (2.8) or `addrs` (3.x, the first is used), `username`, `password`, `db`, and for
/// TLS (3.x) `tls.certificate`/`tls.key` (a client certificate) and `tls.clientcas` (the CAs
/// to trust, else the system's); `tls.enabled: true` asks for TLS with neither.
fn registry_cache(config: &Value, storage: &Value, warnings: &mut Vec<String>) -> RegistryCache {
    let kind = get(storage, &["cache", "blobdescriptor"]).and_then(Value::as_str);
    match kind {
        None | Some("") => RegistryCache::None,
        Some("inmemory") => RegistryCache::InMemory,
        Some("redis") => {
            let redis = config.get("redis").unwrap_or(&Value::Null);
            let addr = param(redis, "addr").filter(|a| !a.is_empty()).or_else(|| {
                redis
                    .get("addrs")
                    .and_then(Value::as_sequence)
                    .and_then(|a| a.first())
                    .and_then(Value::as_str)
                    .map(str::to_string)
            });
            let Some(addr) = addr else {
                warnings.push(
                    "storage.cache.blobdescriptor is redis but redis.addr is not set: the \
                     registry's cache cannot be reconciled"
                        .into(),
                );
                return RegistryCache::Other("redis without redis.addr".into());
            };
            let tls = redis.get("tls").filter(|t| t.is_mapping()).and_then(|t| {
                let path = |k: &str| param(t, k).filter(|p| !p.is_empty()).map(PathBuf::from);
                let cas: Vec<PathBuf> = t
                    .get("clientcas")
                    .and_then(Value::as_sequence)
                    .map(|s| {
                        s.iter()
                            .filter_map(Value::as_str)
                            .map(PathBuf::from)
                            .collect()
                    })
                    .unwrap_or_default();
                let tls = Tls {
                    certificate: path("certificate"),
                    key: path("key"),
                    cas,
                };
                let wanted =
                    tls.certificate.is_some() || !tls.cas.is_empty() || truthy(t.get("enabled"));
                wanted.then_some(tls)
            });
            RegistryCache::Redis(RedisSettings {
                addr,
                username: param(redis, "username").filter(|u| !u.is_empty()),
                password: param(redis, "password").filter(|p| !p.is_empty()),
                db: param(redis, "db").and_then(|d| d.parse().ok()).unwrap_or(0),
                tls,
            })
        }
        Some(other) => RegistryCache::Other(other.to_string()),
    }
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
            ("version: 0.1\nstorage:\n  gcs:\n    bucket: b\n", "storage driver gcs"),
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

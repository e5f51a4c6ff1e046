//! The registry's own `config.yml`, read the way the registry reads it: its `REGISTRY_*`
//! environment overlay, its one storage driver, its blob-descriptor cache, and what it warns
//! an administrator of.

use std::path::{Path, PathBuf};

use serde_norway::{Mapping, Value};

use super::redis::{RedisSettings, RegistryCache, Tls};
use super::{s3, Backend, Resolved, DEFAULT_ROOT};
use crate::error::{Error, Result};

/// The registry's prefix for configuration overrides in the environment.
const ENV_PREFIX: &str = "REGISTRY_";

/// Sections of the configuration regsweep reads, and so overlays from the environment.
const SECTIONS: [&str; 2] = ["STORAGE", "REDIS"];

/// Keys of `storage` that configure the registry around its driver, not a driver.
const NOT_DRIVERS: [&str; 5] = ["cache", "maintenance", "delete", "redirect", "tag"];

/// Read the config file at `target`, the environment's overrides applied.
/// `endpoint` is `--endpoint`: the GCS and Azure drivers' configs name no endpoint of their
/// own (an emulator or a private endpoint is reached through it).
pub(super) fn read(
    target: &Path,
    endpoint: Option<&str>,
    env: &[(String, String)],
) -> Result<Resolved> {
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
    from_config(target, &config, &applied, endpoint, env)
}

/// A parameter as the registry reads it: a string, or a YAML scalar of another type.
pub(crate) fn param(params: &Value, key: &str) -> Option<String> {
    match params.get(key)? {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
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
    endpoint: Option<&str>,
    env: &[(String, String)],
) -> Result<Resolved> {
    let file = path.display();
    let storage = config.get("storage").unwrap_or(&Value::Null);
    let (name, params) = driver(storage).map_err(|m| Error::target(path, m))?;
    let mut warnings = config_warnings(storage);
    let cache = registry_cache(config, storage, &mut warnings);
    let object_store = match name.as_str() {
        "s3" => Some(s3::from_config(path, &params, env)?),
        "gcs" => Some(super::gcs::from_config(path, &params, endpoint, env)?),
        "azure" => Some(super::azure::from_config(path, &params, endpoint, env)?),
        _ => None,
    };
    if let Some((backend, source)) = object_store {
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
                "registry config uses storage driver {name}; regsweep collects filesystem, s3, gcs and azure storage"
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

//! Where a Google Cloud Storage bucket is and who we are: from a `gs://BUCKET/PREFIX` URL or
//! the registry's `storage.gcs` section (`bucket`, `keyfile` or `credentials`,
//! `rootdirectory`), reached the way Google's own tools reach it:
//! - `STORAGE_EMULATOR_HOST` (`host:port`, or a URL) names an emulator, spoken to without
//!   credentials, as the Go and Python clients do;
//! - else credentials come from the config's `keyfile` (a service account's JSON key) or its
//!   inline `credentials` map, else `GOOGLE_APPLICATION_CREDENTIALS`, else the application
//!   default credentials gcloud writes (`~/.config/gcloud/application_default_credentials.json`),
//!   else the metadata server of the machine (GCE, GKE).

use std::path::{Path, PathBuf};

use serde_norway::Value;

use super::file::param;
use super::{var, Backend, Resolved};
use crate::error::{Error, Result};

const PUBLIC_ENDPOINT: &str = "https://storage.googleapis.com";

/// How requests are authorized. Secrets stay in here; `Debug` does not show them.
#[derive(Clone)]
pub enum Credentials {
    /// An emulator: no `Authorization` header.
    None,
    /// A service account's or an authorized user's JSON key (the file's content).
    Key(serde_json::Value),
    /// The metadata server of the machine.
    Metadata,
}

#[derive(Clone)]
pub struct Settings {
    pub endpoint: url::Url,
    pub bucket: String,
    pub credentials: Credentials,
    /// Certificates to trust besides the public roots (`SSL_CERT_FILE`).
    pub ca_bundle: Option<PathBuf>,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let credentials = match &self.credentials {
            Credentials::None => "none (emulator)",
            Credentials::Key(_) => "(a JSON key)",
            Credentials::Metadata => "the metadata server",
        };
        f.debug_struct("Settings")
            .field("endpoint", &super::s3::redacted(&self.endpoint))
            .field("bucket", &self.bucket)
            .field("credentials", &credentials)
            .field("ca_bundle", &self.ca_bundle)
            .finish()
    }
}

fn endpoint_of(text: &str) -> std::result::Result<url::Url, String> {
    let with_scheme = if text.contains("://") {
        text.to_string()
    } else {
        format!("http://{text}")
    };
    url::Url::parse(&with_scheme).map_err(|e| format!("{text:?} is not a URL: {e}"))
}

/// The endpoint and, with an emulator, no credentials; `endpoint` is `--endpoint`.
fn reach(
    endpoint: Option<&str>,
    env: &[(String, String)],
) -> std::result::Result<(url::Url, bool), String> {
    if let Some(e) = endpoint {
        return Ok((endpoint_of(e)?, false));
    }
    if let Some(host) = var(env, "STORAGE_EMULATOR_HOST") {
        return Ok((endpoint_of(host)?, true));
    }
    Ok((endpoint_of(PUBLIC_ENDPOINT)?, false))
}

/// A JSON key file read whole (it is small), said by its path when it is not one.
fn key_file(path: &Path) -> std::result::Result<serde_json::Value, String> {
    let text =
        std::fs::read(path).map_err(|e| format!("the credentials file {}: {e}", path.display()))?;
    serde_json::from_slice(&text).map_err(|e| {
        format!(
            "the credentials file {} is not a JSON key: {e}",
            path.display()
        )
    })
}

/// Credentials from the environment, as Google's client libraries find them.
fn default_credentials(env: &[(String, String)]) -> std::result::Result<Credentials, String> {
    if let Some(path) = var(env, "GOOGLE_APPLICATION_CREDENTIALS") {
        return key_file(Path::new(path)).map(Credentials::Key);
    }
    let adc = var(env, "CLOUDSDK_CONFIG")
        .map(PathBuf::from)
        .or_else(|| var(env, "HOME").map(|h| Path::new(h).join(".config/gcloud")))
        .map(|d| d.join("application_default_credentials.json"));
    if let Some(adc) = adc.filter(|p| p.is_file()) {
        return key_file(&adc).map(Credentials::Key);
    }
    Ok(Credentials::Metadata)
}

/// `gs://BUCKET/PREFIX`; `endpoint` is `--endpoint`.
pub(super) fn from_url(
    target: &Path,
    rest: &str,
    endpoint: Option<&str>,
    env: &[(String, String)],
) -> Result<Resolved> {
    let (bucket, prefix) = super::bucket_and_prefix(target, rest, "gs://BUCKET/PREFIX")?;
    let (endpoint, emulator) = reach(endpoint, env).map_err(|m| Error::target(target, m))?;
    let credentials = if emulator {
        Credentials::None
    } else {
        default_credentials(env).map_err(|m| Error::target(target, m))?
    };
    Ok(super::url_target(
        Backend::Gcs {
            settings: Box::new(Settings {
                endpoint,
                bucket: bucket.to_string(),
                credentials,
                ca_bundle: super::ssl_cert_file(env),
            }),
            prefix,
        },
        "the bucket named on the command line",
    ))
}

/// The gcs driver's parameters.
pub(super) fn from_config(
    path: &Path,
    params: &Value,
    endpoint: Option<&str>,
    env: &[(String, String)],
) -> Result<(Backend, String)> {
    let file = path.display();
    let bucket = param(params, "bucket")
        .filter(|b| !b.is_empty())
        .ok_or_else(|| Error::target(path, "storage.gcs.bucket is not set"))?;
    let (endpoint, emulator) = reach(endpoint, env).map_err(|m| Error::target(path, m))?;
    let credentials = if emulator {
        Credentials::None
    } else if let Some(keyfile) = param(params, "keyfile").filter(|k| !k.is_empty()) {
        Credentials::Key(
            key_file(Path::new(&keyfile))
                .map_err(|m| Error::target(path, format!("storage.gcs.keyfile: {m}")))?,
        )
    } else if let Some(inline) = params.get("credentials").filter(|c| c.is_mapping()) {
        // The registry marshals the map to JSON and reads it as a key file.
        Credentials::Key(serde_json::to_value(inline).map_err(|e| {
            Error::target(path, format!("storage.gcs.credentials is not a key: {e}"))
        })?)
    } else {
        default_credentials(env).map_err(|m| Error::target(path, m))?
    };
    let prefix = param(params, "rootdirectory")
        .unwrap_or_default()
        .trim_matches('/')
        .to_string();
    let source = format!(
        "storage.gcs in {file} (bucket {bucket}, rootdirectory /{prefix}, endpoint {})",
        super::s3::redacted(&endpoint)
    );
    Ok((
        Backend::Gcs {
            settings: Box::new(Settings {
                endpoint,
                bucket,
                credentials,
                ca_bundle: super::ssl_cert_file(env),
            }),
            prefix,
        },
        source,
    ))
}

//! Where an S3 bucket is and who we are: from an `s3://BUCKET/PREFIX` URL or the registry's
//! `storage.s3` section, with credentials from the config, the standard AWS environment
//! variables or the shared credentials file.

use std::path::{Path, PathBuf};

use rusty_s3::Credentials;
use serde_norway::Value;

use super::file::param;
use super::{var, Backend, Resolved};
use crate::error::{Error, Result};

/// Where the bucket is and who we are. Secrets stay in here; `Debug` does not show them.
#[derive(Clone)]
pub struct Settings {
    pub endpoint: url::Url,
    pub region: String,
    pub bucket: String,
    pub path_style: bool,
    pub credentials: Option<Credentials>,
    /// Certificates to trust besides the public roots (a private CA): `AWS_CA_BUNDLE`, as
    /// the registry's own driver reads it, else `SSL_CERT_FILE`.
    pub ca_bundle: Option<PathBuf>,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("endpoint", &redacted(&self.endpoint))
            .field("region", &self.region)
            .field("bucket", &self.bucket)
            .field("path_style", &self.path_style)
            .field("credentials", &self.credentials.as_ref().map(|_| "(set)"))
            .field("ca_bundle", &self.ca_bundle)
            .finish()
    }
}

/// An endpoint for messages and reports: any user and password in it left out.
pub fn redacted(url: &url::Url) -> String {
    let mut shown = url.clone();
    let _ = shown.set_password(None);
    let _ = shown.set_username("");
    shown.as_str().trim_end_matches('/').to_string()
}

/// The CA bundle to trust besides the public roots: `AWS_CA_BUNDLE` (what the AWS tools and
/// the registry's s3 driver read), else `SSL_CERT_FILE` (what OpenSSL-based tools read).
fn ca_bundle(env: &[(String, String)]) -> Option<PathBuf> {
    var(env, "AWS_CA_BUNDLE")
        .map(PathBuf::from)
        .or_else(|| super::ssl_cert_file(env))
}

/// Credentials from the standard AWS environment variables, else the shared credentials file
/// (`AWS_SHARED_CREDENTIALS_FILE`, or `~/.aws/credentials`), profile `AWS_PROFILE` or
/// `default`.
fn aws_credentials(env: &[(String, String)]) -> Option<Credentials> {
    if let (Some(key), Some(secret)) = (
        var(env, "AWS_ACCESS_KEY_ID"),
        var(env, "AWS_SECRET_ACCESS_KEY"),
    ) {
        return Some(match var(env, "AWS_SESSION_TOKEN") {
            Some(token) => Credentials::new_with_token(key, secret, token),
            None => Credentials::new(key, secret),
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
        Some(t) => Credentials::new_with_token(key?, secret?, t),
        None => Credentials::new(key?, secret?),
    })
}

fn endpoint_url(text: &str, secure: bool) -> std::result::Result<url::Url, String> {
    let with_scheme = if text.contains("://") {
        text.to_string()
    } else {
        format!("{}://{text}", if secure { "https" } else { "http" })
    };
    url::Url::parse(&with_scheme).map_err(|e| format!("the endpoint is not a URL: {e}"))
}

/// `s3://BUCKET/PREFIX`, with the endpoint from `--s3-endpoint` or `AWS_ENDPOINT_URL`.
pub(super) fn from_url(
    target: &Path,
    rest: &str,
    s3_endpoint: Option<&str>,
    env: &[(String, String)],
) -> Result<Resolved> {
    let (bucket, prefix) = super::bucket_and_prefix(target, rest, "s3://BUCKET/PREFIX")?;
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
    Ok(super::url_target(
        Backend::S3 {
            settings: Box::new(Settings {
                endpoint,
                region,
                bucket: bucket.to_string(),
                // S3-compatible servers at an endpoint of their own take path-style requests.
                path_style: custom.is_some(),
                credentials: aws_credentials(env),
                ca_bundle: ca_bundle(env),
            }),
            prefix,
        },
        "the bucket named on the command line",
    ))
}

/// The s3 driver's parameters.
pub(super) fn from_config(
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
        (Some(k), Some(s)) if !k.is_empty() && !s.is_empty() => Some(Credentials::new(k, s)),
        _ => aws_credentials(env),
    };
    let prefix = param(params, "rootdirectory")
        .unwrap_or_default()
        .trim_matches('/')
        .to_string();
    let source = format!(
        "storage.s3 in {file} (bucket {bucket}, rootdirectory /{prefix}, endpoint {})",
        redacted(&endpoint)
    );
    Ok((
        Backend::S3 {
            settings: Box::new(Settings {
                endpoint,
                region,
                bucket,
                // The registry makes path-style requests when regionendpoint is set.
                path_style: flag("forcepathstyle", false) || regionendpoint.is_some(),
                credentials,
                ca_bundle: ca_bundle(env),
            }),
            prefix,
        },
        source,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_never_show_secrets() {
        let s = Settings {
            endpoint: "http://127.0.0.1:9000".parse().unwrap(),
            region: "us-east-1".into(),
            bucket: "b".into(),
            path_style: true,
            credentials: Some(Credentials::new("AKIDEXAMPLE", "very-secret")),
            ca_bundle: None,
        };
        let shown = format!("{s:?}");
        assert!(
            !shown.contains("very-secret") && !shown.contains("AKIDEXAMPLE"),
            "{shown}"
        );
    }
}

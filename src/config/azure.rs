//! Where an Azure Blob container is and who we are: from an `azblob://CONTAINER/PREFIX` URL
//! or the registry's `storage.azure` section (`accountname`, `accountkey`, `container`,
//! `realm`, `rootdirectory`), reached the way Azure's own tools reach it:
//! - `AZURE_STORAGE_CONNECTION_STRING` (`AccountName=...;AccountKey=...;BlobEndpoint=...`): its
//!   `BlobEndpoint` is used as given (path-style, with the account in the path, for Azurite);
//!   the config's own account and key stand before it;
//! - else `https://ACCOUNT.blob.REALM` (`realm` defaults to `core.windows.net`; sovereign clouds
//!   set it), with the account and key from the config, else `AZURE_STORAGE_ACCOUNT` and
//!   `AZURE_STORAGE_KEY`;
//! - `--endpoint` overrides the endpoint in every case.
//!
//! Requests are signed with the account's Shared Key.

use std::path::{Path, PathBuf};

use serde_norway::Value;

use super::file::param;
use super::{var, Backend, Resolved};
use crate::error::{Error, Result};

const DEFAULT_REALM: &str = "core.windows.net";

/// Secrets stay in here; `Debug` does not show them.
#[derive(Clone)]
pub struct Settings {
    /// The blob service: `https://ACCOUNT.blob.REALM`, or an emulator's path-style endpoint.
    pub endpoint: url::Url,
    pub account: String,
    /// The account key, base64 as the portal shows it.
    pub key: String,
    pub container: String,
    /// Certificates to trust besides the public roots (`SSL_CERT_FILE`).
    pub ca_bundle: Option<PathBuf>,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("endpoint", &super::s3::redacted(&self.endpoint))
            .field("account", &self.account)
            .field("key", &"(set)")
            .field("container", &self.container)
            .field("ca_bundle", &self.ca_bundle)
            .finish()
    }
}

/// The fields of a connection string (`Name=value;...`; a value may hold `=`).
fn connection_string(text: &str) -> Vec<(String, String)> {
    text.split(';')
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect()
}

fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
}

/// The account, key and endpoint from what the config gives (`given`), the connection string,
/// the environment, and `--endpoint`.
fn reach(
    given: (Option<String>, Option<String>, Option<String>),
    endpoint: Option<&str>,
    env: &[(String, String)],
) -> std::result::Result<(String, String, url::Url), String> {
    let (account, key, realm) = given;
    let fields = var(env, "AZURE_STORAGE_CONNECTION_STRING")
        .map(connection_string)
        .unwrap_or_default();
    let account = account
        .or_else(|| field(&fields, "accountname").map(str::to_string))
        .or_else(|| var(env, "AZURE_STORAGE_ACCOUNT").map(str::to_string))
        .ok_or("no storage account: set accountname, AZURE_STORAGE_CONNECTION_STRING or AZURE_STORAGE_ACCOUNT")?;
    let key = key
        .or_else(|| field(&fields, "accountkey").map(str::to_string))
        .or_else(|| var(env, "AZURE_STORAGE_KEY").map(str::to_string))
        .ok_or(
            "no account key: set accountkey, AZURE_STORAGE_CONNECTION_STRING or AZURE_STORAGE_KEY",
        )?;
    let endpoint = match (endpoint, field(&fields, "blobendpoint"), realm) {
        (Some(e), _, _) => e.to_string(),
        (None, _, Some(realm)) => format!("https://{account}.blob.{realm}"),
        (None, Some(e), None) => e.to_string(),
        (None, None, None) => {
            let suffix = field(&fields, "endpointsuffix").unwrap_or(DEFAULT_REALM);
            let scheme = field(&fields, "defaultendpointsprotocol").unwrap_or("https");
            format!("{scheme}://{account}.blob.{suffix}")
        }
    };
    let endpoint =
        url::Url::parse(&endpoint).map_err(|e| format!("the blob endpoint is not a URL: {e}"))?;
    Ok((account, key, endpoint))
}

/// `azblob://CONTAINER/PREFIX`; `endpoint` is `--endpoint`.
pub(super) fn from_url(
    target: &Path,
    rest: &str,
    endpoint: Option<&str>,
    env: &[(String, String)],
) -> Result<Resolved> {
    let (container, prefix) = super::bucket_and_prefix(target, rest, "azblob://CONTAINER/PREFIX")?;
    let (account, key, endpoint) =
        reach((None, None, None), endpoint, env).map_err(|m| Error::target(target, m))?;
    Ok(super::url_target(
        Backend::Azure {
            settings: Box::new(Settings {
                endpoint,
                account,
                key,
                container: container.to_string(),
                ca_bundle: super::ssl_cert_file(env),
            }),
            prefix,
        },
        "the container named on the command line",
    ))
}

/// The azure driver's parameters.
pub(super) fn from_config(
    path: &Path,
    params: &Value,
    endpoint: Option<&str>,
    env: &[(String, String)],
) -> Result<(Backend, String)> {
    let file = path.display();
    let text = |k: &str| param(params, k).filter(|v| !v.is_empty());
    let container = text("container")
        .ok_or_else(|| Error::target(path, "storage.azure.container is not set"))?;
    let (account, key, endpoint) = reach(
        (text("accountname"), text("accountkey"), text("realm")),
        endpoint,
        env,
    )
    .map_err(|m| Error::target(path, format!("storage.azure: {m}")))?;
    let prefix = text("rootdirectory")
        .unwrap_or_default()
        .trim_matches('/')
        .to_string();
    let source = format!(
        "storage.azure in {file} (account {account}, container {container}, rootdirectory /{prefix}, endpoint {})",
        super::s3::redacted(&endpoint)
    );
    Ok((
        Backend::Azure {
            settings: Box::new(Settings {
                endpoint,
                account,
                key,
                container,
                ca_bundle: super::ssl_cert_file(env),
            }),
            prefix,
        },
        source,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> Vec<(String, String)> {
        vars.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn endpoints_as_azures_tools_find_them() {
        let azurite = "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;\
                       AccountKey=a2V5;BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;";
        let (account, key, url) = reach(
            (None, None, None),
            None,
            &env(&[("AZURE_STORAGE_CONNECTION_STRING", azurite)]),
        )
        .unwrap();
        assert_eq!(
            (account.as_str(), key.as_str()),
            ("devstoreaccount1", "a2V5")
        );
        assert_eq!(url.as_str(), "http://127.0.0.1:10000/devstoreaccount1");
        let (_, _, url) = reach(
            (
                Some("acct".into()),
                Some("a2V5".into()),
                Some("core.chinacloudapi.cn".into()),
            ),
            None,
            &env(&[]),
        )
        .unwrap();
        assert_eq!(url.as_str(), "https://acct.blob.core.chinacloudapi.cn/");
        let (_, _, url) = reach(
            (None, None, None),
            None,
            &env(&[
                ("AZURE_STORAGE_ACCOUNT", "a"),
                ("AZURE_STORAGE_KEY", "a2V5"),
            ]),
        )
        .unwrap();
        assert_eq!(url.as_str(), "https://a.blob.core.windows.net/");
        let e = reach((None, None, None), None, &env(&[])).unwrap_err();
        assert!(e.contains("no storage account"), "{e}");
        let s = Settings {
            endpoint: url,
            account: "a".into(),
            key: "very-secret".into(),
            container: "c".into(),
            ca_bundle: None,
        };
        assert!(!format!("{s:?}").contains("very-secret"));
    }
}

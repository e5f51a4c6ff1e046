//! OAuth access tokens for Google Cloud Storage, from the credentials Google's own tools use:
//! a service account's JSON key (a JWT signed RS256 with its private key, exchanged at its
//! `token_uri`), an authorized user's key (its refresh token exchanged), or the machine's
//! metadata server. A token is kept until five minutes before it expires.

use std::io;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use base64::Engine as _;

use crate::config::gcs::Credentials;

const SCOPE: &str = "https://www.googleapis.com/auth/devstorage.read_write";
const METADATA: &str = "http://metadata.google.internal";

pub struct Tokens {
    credentials: Credentials,
    agent: ureq::Agent,
    held: Mutex<Option<(String, Instant)>>,
}

fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn err(m: impl std::fmt::Display) -> io::Error {
    io::Error::new(
        io::ErrorKind::PermissionDenied,
        format!("cannot get a Google access token: {m}"),
    )
}

/// A service account's signed JWT assertion for `now` (seconds since the epoch).
pub fn assertion(key: &serde_json::Value, now: u64) -> io::Result<String> {
    let field = |name: &str| {
        key.get(name)
            .and_then(|v| v.as_str())
            .ok_or_else(|| err(format!("the key has no {name}")))
    };
    let pem = field("private_key")?;
    let der: String = pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect::<Vec<_>>()
        .concat();
    let der = base64::engine::general_purpose::STANDARD
        .decode(der.trim())
        .map_err(|e| err(format!("the key's private_key is not PEM: {e}")))?;
    let pair = ring::signature::RsaKeyPair::from_pkcs8(&der).map_err(|e| {
        err(format!(
            "the key's private_key is not an RSA PKCS#8 key: {e}"
        ))
    })?;
    let header = serde_json::json!({
        "alg": "RS256",
        "typ": "JWT",
        "kid": key.get("private_key_id").and_then(|v| v.as_str()).unwrap_or(""),
    });
    let claims = serde_json::json!({
        "iss": field("client_email")?,
        "scope": SCOPE,
        "aud": field("token_uri")?,
        "iat": now,
        "exp": now + 3600,
    });
    let signing_input = format!(
        "{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes())
    );
    let mut signature = vec![0u8; pair.public().modulus_len()];
    pair.sign(
        &ring::signature::RSA_PKCS1_SHA256,
        &ring::rand::SystemRandom::new(),
        signing_input.as_bytes(),
        &mut signature,
    )
    .map_err(|_| err("signing the assertion failed"))?;
    Ok(format!("{signing_input}.{}", b64url(&signature)))
}

impl Tokens {
    pub fn new(credentials: Credentials, agent: ureq::Agent) -> Tokens {
        Tokens {
            credentials,
            agent,
            held: Mutex::new(None),
        }
    }

    /// The `Authorization` header's value, or none for an emulator.
    pub fn header(&self) -> io::Result<Option<String>> {
        if matches!(self.credentials, Credentials::None) {
            return Ok(None);
        }
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((token, until)) = held.as_ref() {
            if Instant::now() < *until {
                return Ok(Some(format!("Bearer {token}")));
            }
        }
        let (token, lifetime) = self.fetch()?;
        let keep = Duration::from_secs(lifetime.saturating_sub(300).max(30));
        *held = Some((token.clone(), Instant::now() + keep));
        Ok(Some(format!("Bearer {token}")))
    }

    /// A fresh token and its lifetime in seconds.
    fn fetch(&self) -> io::Result<(String, u64)> {
        let response = match &self.credentials {
            Credentials::None => unreachable!("no token for an emulator"),
            Credentials::Metadata => {
                let host = std::env::var("GCE_METADATA_HOST")
                    .map(|h| format!("http://{h}"))
                    .unwrap_or_else(|_| METADATA.to_string());
                self.agent
                    .get(&format!(
                        "{host}/computeMetadata/v1/instance/service-accounts/default/token"
                    ))
                    .set("Metadata-Flavor", "Google")
                    .call()
            }
            Credentials::Key(key) => {
                let kind = key.get("type").and_then(|t| t.as_str()).unwrap_or("");
                let token_uri = key
                    .get("token_uri")
                    .and_then(|v| v.as_str())
                    .unwrap_or("https://oauth2.googleapis.com/token");
                let form: Vec<(&str, String)> = match kind {
                    "service_account" => {
                        let now = crate::storage::epoch_seconds(SystemTime::now()).max(0) as u64;
                        vec![
                            (
                                "grant_type",
                                "urn:ietf:params:oauth:grant-type:jwt-bearer".into(),
                            ),
                            ("assertion", assertion(key, now)?),
                        ]
                    }
                    "authorized_user" => {
                        let f = |n: &str| {
                            key.get(n)
                                .and_then(|v| v.as_str())
                                .map(str::to_string)
                                .ok_or_else(|| err(format!("the key has no {n}")))
                        };
                        vec![
                            ("grant_type", "refresh_token".into()),
                            ("client_id", f("client_id")?),
                            ("client_secret", f("client_secret")?),
                            ("refresh_token", f("refresh_token")?),
                        ]
                    }
                    other => {
                        return Err(err(format!(
                            "credentials of type {other:?} (service_account and authorized_user are read)"
                        )))
                    }
                };
                let pairs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
                self.agent.post(token_uri).send_form(&pairs)
            }
        };
        let response = response.map_err(|e| match e {
            ureq::Error::Status(status, r) => {
                let body = r.into_string().unwrap_or_default();
                // The answer names the problem (invalid_grant, ...); it holds no secret.
                err(format!(
                    "HTTP {status} {}",
                    body.chars().take(200).collect::<String>()
                ))
            }
            ureq::Error::Transport(t) => {
                let from = if matches!(self.credentials, Credentials::Metadata) {
                    "no key is configured (keyfile, credentials, GOOGLE_APPLICATION_CREDENTIALS; \
                     STORAGE_EMULATOR_HOST for an emulator) and the metadata server is not \
                     reachable: "
                } else {
                    ""
                };
                err(format!(
                    "{from}{:?}: {}",
                    t.kind(),
                    t.message().unwrap_or("")
                ))
            }
        })?;
        let body: serde_json::Value = response
            .into_string()
            .ok()
            .and_then(|b| serde_json::from_str(&b).ok())
            .ok_or_else(|| err("unreadable answer"))?;
        let token = body
            .get("access_token")
            .and_then(|t| t.as_str())
            .ok_or_else(|| err("the answer holds no access_token"))?;
        let lifetime = body
            .get("expires_in")
            .and_then(|t| t.as_u64())
            .unwrap_or(3600);
        Ok((token.to_string(), lifetime))
    }
}

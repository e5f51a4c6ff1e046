//! The registry's blob-descriptor cache as its config names it, and how to reach its Redis
//! (`redis:` in the config, or `--redis URL`). Settings only: `crate::cache` talks to it.

use std::fmt;
use std::path::PathBuf;

/// What the registry caches blob descriptors in, as its configuration says.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum RegistryCache {
    /// The target is a storage root or a bucket: the registry's configuration is not known.
    #[default]
    Unknown,
    /// The configuration sets no blob-descriptor cache.
    None,
    /// `blobdescriptor: inmemory`: only a restart of the registry forgets it.
    InMemory,
    Redis(RedisSettings),
    /// A value regsweep does not know.
    Other(String),
}

/// How to reach the registry's Redis (`redis:` in its config, or `--redis URL`).
#[derive(Clone, PartialEq, Eq)]
pub struct RedisSettings {
    /// `host:port`.
    pub addr: String,
    pub username: Option<String>,
    pub password: Option<String>,
    pub db: i64,
    /// Set when the connection is TLS.
    pub tls: Option<Tls>,
}

/// TLS to Redis: the CA certificates to trust (else the system's), and a client certificate.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tls {
    pub certificate: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub cas: Vec<PathBuf>,
}

impl fmt::Debug for RedisSettings {
    // The password never reaches a log or a report.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisSettings")
            .field("addr", &self.addr)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "(hidden)"))
            .field("db", &self.db)
            .field("tls", &self.tls)
            .finish()
    }
}

impl RedisSettings {
    /// `redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]`, or `rediss://` for TLS.
    pub fn from_url(text: &str) -> Result<RedisSettings, String> {
        // Never echoed: a password in it is a secret, and one with a `/` is enough to make
        // the URL unparseable.
        let url = url::Url::parse(text).map_err(|e| {
            format!(
                "the Redis URL is not a URL ({e}); percent-encode a password's `/`, `@` and `:`"
            )
        })?;
        let tls = match url.scheme() {
            "redis" => None,
            "rediss" => Some(Tls::default()),
            other => {
                return Err(format!(
                    "{other}:// is not a Redis URL (redis://HOST:PORT/DB or rediss://...)"
                ))
            }
        };
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| "the Redis URL names no host".to_string())?;
        let db = match url.path().trim_matches('/') {
            "" => 0,
            db => db
                .parse()
                .map_err(|_| format!("database {db:?} in the Redis URL is not a number"))?,
        };
        let decode = |s: &str| {
            url::form_urlencoded::parse(format!("x={s}").as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default()
        };
        Ok(RedisSettings {
            addr: format!("{host}:{}", url.port().unwrap_or(6379)),
            username: Some(decode(url.username())).filter(|u| !u.is_empty()),
            password: url.password().map(decode),
            db,
            tls,
        })
    }

    /// Where, for messages and reports (never the password).
    pub fn display(&self) -> String {
        let scheme = if self.tls.is_some() {
            "rediss"
        } else {
            "redis"
        };
        format!("{scheme}://{}/{}", self.addr, self.db)
    }
}

//! The few S3 requests regsweep sends: list a key range, get, put (optionally only if absent),
//! delete up to 1,000 keys at once. Requests are signed by `rusty-s3` (sans-IO) and carried by
//! a blocking `ureq` agent, so rayon's workers send them directly, with no async runtime.
//!
//! Every request is counted by kind; throttling (503 SlowDown), server errors and time-outs are
//! retried with exponential backoff and jitter; `--max-requests-per-second` spaces requests
//! out. Messages name keys as `s3://bucket/key` and never carry a signed URL or a credential.

use std::io::{self, Read};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use rusty_s3::actions::{ListObjectsV2, ObjectIdentifier, S3Action};
use rusty_s3::{Bucket, UrlStyle};

use super::Requests;
use crate::config::s3::Settings;

/// How long a signed request stays valid: it is sent at once (retries sign again).
const SIGNED_FOR: Duration = Duration::from_secs(600);
/// Attempts for one request before its error is final.
const ATTEMPTS: u32 = 8;
/// S3 deletes at most this many keys in one DeleteObjects request.
pub const DELETE_BATCH: usize = 1000;

/// One listed object.
#[derive(Debug, Clone)]
pub struct Listed {
    pub key: String,
    pub size: u64,
    pub modified: SystemTime,
    /// The ETag without quotes (an MD5 in hex for a plain PUT; other forms prove nothing).
    pub etag: String,
}

/// One page of a listing.
#[derive(Debug, Default)]
pub struct Page {
    pub objects: Vec<Listed>,
    pub next: Option<String>,
}

#[derive(Debug, Default)]
struct Counters {
    list: AtomicU64,
    get: AtomicU64,
    delete: AtomicU64,
    put: AtomicU64,
    retries: AtomicU64,
}

#[derive(Clone, Copy)]
enum Kind {
    List,
    Get,
    Delete,
    Put,
}

pub struct Client {
    bucket: Bucket,
    settings: Settings,
    agent: ureq::Agent,
    counters: Counters,
    /// The earliest time the next request may go, with `--max-requests-per-second`.
    pace: Option<(Mutex<Instant>, Duration)>,
}

/// What a failed request says: an HTTP status with S3's error code, or a transport failure.
fn status_error(status: u16, body: &str, what: &str) -> io::Error {
    let code = between(body, "<Code>", "</Code>").unwrap_or("");
    let message = between(body, "<Message>", "</Message>").unwrap_or("");
    let kind = match status {
        404 => io::ErrorKind::NotFound,
        401 | 403 => io::ErrorKind::PermissionDenied,
        _ => io::ErrorKind::Other,
    };
    io::Error::new(
        kind,
        format!("{what}: HTTP {status} {code} {message}")
            .trim_end()
            .to_string(),
    )
}

fn between<'a>(s: &'a str, open: &str, close: &str) -> Option<&'a str> {
    let start = s.find(open)? + open.len();
    let end = s[start..].find(close)? + start;
    Some(&s[start..end])
}

/// Whether a failure is worth sending again: throttling, server errors, the network.
fn transient(e: &ureq::Error) -> bool {
    match e {
        ureq::Error::Status(code, _) => *code == 429 || *code >= 500,
        // A certificate the server shows will not be any better on the next try.
        ureq::Error::Transport(t) => !causes(t).contains("certificate"),
    }
}

/// Why a transport failed, down its chain of causes ("tls connection init failed" alone
/// says nothing of the certificate that was refused). Never the URL: it is signed.
fn causes(t: &ureq::Transport) -> String {
    let mut said = Vec::new();
    let mut cause = std::error::Error::source(t);
    while let Some(c) = cause {
        said.push(c.to_string());
        cause = c.source();
    }
    said.join(": ")
}

/// TLS that trusts the public roots and the certificates of `bundle` (a private CA).
fn trusting(bundle: &std::path::Path) -> io::Result<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let bad = |m: String| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{}: the CA bundle {m}", bundle.display()),
        )
    };
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let mut added = 0;
    for cert in
        CertificateDer::pem_file_iter(bundle).map_err(|e| bad(format!("cannot be read: {e}")))?
    {
        let cert = cert.map_err(|e| bad(format!("is not PEM: {e}")))?;
        roots
            .add(cert)
            .map_err(|e| bad(format!("holds a certificate that is not one: {e}")))?;
        added += 1;
    }
    if added == 0 {
        return Err(bad("holds no certificate".into()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

impl Client {
    pub fn new(settings: Settings, max_requests_per_second: Option<f64>) -> io::Result<Client> {
        let style = if settings.path_style {
            UrlStyle::Path
        } else {
            UrlStyle::VirtualHost
        };
        let bucket = Bucket::new(
            settings.endpoint.clone(),
            style,
            settings.bucket.clone(),
            settings.region.clone(),
        )
        .map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "bucket {:?} at {}: {e}",
                    settings.bucket,
                    crate::config::s3::redacted(&settings.endpoint)
                ),
            )
        })?;
        let mut agent = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(10))
            .timeout_read(Duration::from_secs(120))
            .timeout_write(Duration::from_secs(120))
            .max_idle_connections_per_host(256)
            .redirects(0);
        if let Some(bundle) = &settings.ca_bundle {
            agent = agent.tls_config(Arc::new(trusting(bundle)?));
        }
        let agent = agent.build();
        let pace = max_requests_per_second
            .filter(|r| *r > 0.0)
            .map(|r| (Mutex::new(Instant::now()), Duration::from_secs_f64(1.0 / r)));
        Ok(Client {
            bucket,
            settings,
            agent,
            counters: Counters::default(),
            pace,
        })
    }

    pub fn bucket_name(&self) -> &str {
        &self.settings.bucket
    }

    pub fn requests(&self) -> Requests {
        let c = &self.counters;
        Requests {
            list: c.list.load(Ordering::Relaxed),
            get: c.get.load(Ordering::Relaxed),
            // Never sent: a listing already says what a HEAD would.
            head: 0,
            delete: c.delete.load(Ordering::Relaxed),
            put: c.put.load(Ordering::Relaxed),
            retries: c.retries.load(Ordering::Relaxed),
            cached: 0,
        }
    }

    fn count(&self, kind: Kind) {
        let c = &self.counters;
        match kind {
            Kind::List => &c.list,
            Kind::Get => &c.get,
            Kind::Delete => &c.delete,
            Kind::Put => &c.put,
        }
        .fetch_add(1, Ordering::Relaxed);
    }

    /// Wait for this request's turn under `--max-requests-per-second`.
    fn wait_turn(&self) {
        if let Some((next, gap)) = &self.pace {
            let slot = {
                let mut next = next.lock().unwrap_or_else(|e| e.into_inner());
                let now = Instant::now();
                let slot = (*next).max(now);
                *next = slot + *gap;
                slot
            };
            let now = Instant::now();
            if slot > now {
                std::thread::sleep(slot - now);
            }
        }
    }

    /// Send a request built (and signed) afresh by `build` for each attempt, retrying what is
    /// transient. `what` names the object for messages.
    fn send(
        &self,
        kind: Kind,
        what: &str,
        build: impl Fn() -> (ureq::Request, Option<Vec<u8>>),
    ) -> io::Result<ureq::Response> {
        let mut delay = Duration::from_millis(100);
        for attempt in 1..=ATTEMPTS {
            self.wait_turn();
            self.count(kind);
            let (request, body) = build();
            let result = match body {
                Some(body) => request.send_bytes(&body),
                None => request.call(),
            };
            match result {
                Ok(response) => return Ok(response),
                Err(e) if attempt < ATTEMPTS && transient(&e) => {
                    self.counters.retries.fetch_add(1, Ordering::Relaxed);
                    // Jitter from the clock's nanoseconds: no RNG dependency for this.
                    let jitter = SystemTime::now()
                        .duration_since(SystemTime::UNIX_EPOCH)
                        .map_or(0, |d| d.subsec_nanos() % 100);
                    std::thread::sleep(delay + Duration::from_millis(u64::from(jitter)));
                    delay = (delay * 2).min(Duration::from_secs(10));
                }
                Err(ureq::Error::Status(status, response)) => {
                    let body = response.into_string().unwrap_or_default();
                    return Err(status_error(status, &body, what));
                }
                Err(ureq::Error::Transport(t)) => {
                    // Not `t.to_string()`: it carries the signed URL.
                    let cause = causes(&t);
                    return Err(io::Error::other(format!(
                        "{what}: {:?}: {}{}{cause}",
                        t.kind(),
                        t.message().unwrap_or("request failed"),
                        if cause.is_empty() { "" } else { ": " }
                    )));
                }
            }
        }
        unreachable!("the last attempt returns")
    }

    fn name(&self, key: &str) -> String {
        format!("s3://{}/{key}", self.settings.bucket)
    }

    /// One page of the keys under `prefix`, after `start_after`, or continuing `token`.
    pub fn list_page(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        token: Option<&str>,
    ) -> io::Result<Page> {
        let what = self.name(prefix);
        let creds = self.settings.credentials.as_ref();
        let response = self.send(Kind::List, &what, || {
            let mut action = ListObjectsV2::new(&self.bucket, creds);
            action.with_prefix(prefix);
            if let Some(s) = start_after {
                action.with_start_after(s);
            }
            if let Some(t) = token {
                action.with_continuation_token(t);
            }
            (self.agent.get(action.sign(SIGNED_FOR).as_str()), None)
        })?;
        let body = response
            .into_string()
            .map_err(|e| io::Error::new(e.kind(), format!("{what}: {e}")))?;
        let parsed = ListObjectsV2::parse_response(&body).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{what}: unreadable listing: {e}"),
            )
        })?;
        let mut objects = Vec::with_capacity(parsed.contents.len());
        for c in parsed.contents {
            // encoding-type=url: keys come percent-encoded.
            let key = percent_decode(&c.key);
            let modified = listed_time(c.last_modified.as_deref());
            objects.push(Listed {
                key,
                size: c.size.unwrap_or(0),
                modified,
                etag: c.etag.unwrap_or_default().trim_matches('"').to_string(),
            });
        }
        Ok(Page {
            objects,
            next: parsed.next_continuation_token,
        })
    }

    /// GET an object: its name for messages, and the response to read it from.
    fn get_response(&self, key: &str) -> io::Result<(String, ureq::Response)> {
        let what = self.name(key);
        let creds = self.settings.credentials.as_ref();
        let response = self.send(Kind::Get, &what, || {
            let action = self.bucket.get_object(creds, key);
            (self.agent.get(action.sign(SIGNED_FOR).as_str()), None)
        })?;
        Ok((what, response))
    }

    /// The whole object, refusing more than `limit` bytes.
    pub fn get(&self, key: &str, limit: u64, buf: &mut Vec<u8>) -> io::Result<()> {
        self.get_with_etag(key, limit, buf).map(|_| ())
    }

    /// Stream the whole object to `f`; returns the bytes read.
    pub fn get_chunks(&self, key: &str, f: &mut dyn FnMut(&[u8])) -> io::Result<u64> {
        let (what, response) = self.get_response(key)?;
        let mut reader = response.into_reader();
        let mut chunk = vec![0u8; 1 << 20];
        let mut total = 0;
        loop {
            let n = reader
                .read(&mut chunk)
                .map_err(|e| io::Error::new(e.kind(), format!("{what}: {e}")))?;
            if n == 0 {
                return Ok(total);
            }
            total += n as u64;
            f(&chunk[..n]);
        }
    }

    /// PUT an object. With `only_if_absent`, S3 refuses it when the key exists (conditional
    /// write); returns whether it was written.
    pub fn put(&self, key: &str, body: &[u8], only_if_absent: bool) -> io::Result<bool> {
        self.put_if(key, body, only_if_absent.then_some(("If-None-Match", "*")))
    }

    /// PUT only while the object still has this ETag (replacing exactly what was read).
    pub fn put_if_match(&self, key: &str, body: &[u8], etag: &str) -> io::Result<bool> {
        self.put_if(key, body, Some(("If-Match", etag)))
    }

    /// PUT with an optional condition; false when the server refused it on that condition.
    fn put_if(&self, key: &str, body: &[u8], condition: Option<(&str, &str)>) -> io::Result<bool> {
        let what = self.name(key);
        let creds = self.settings.credentials.as_ref();
        let result = self.send(Kind::Put, &what, || {
            let action = self.bucket.put_object(creds, key);
            let mut request = self.agent.put(action.sign(SIGNED_FOR).as_str());
            if let Some((header, value)) = condition {
                request = request.set(header, value);
            }
            (request, Some(body.to_vec()))
        });
        match result {
            Ok(_) => Ok(true),
            // 412 Precondition Failed (S3); some servers answer 409 or 403 with that code.
            Err(e) if condition.is_some() && precondition_failed(&e) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The whole object (at most `limit` bytes) and its ETag.
    pub fn get_with_etag(&self, key: &str, limit: u64, buf: &mut Vec<u8>) -> io::Result<String> {
        let (what, response) = self.get_response(key)?;
        let etag = response.header("ETag").unwrap_or_default().to_string();
        buf.clear();
        let read = response
            .into_reader()
            .take(limit + 1)
            .read_to_end(buf)
            .map_err(|e| io::Error::new(e.kind(), format!("{what}: {e}")))?;
        if read as u64 > limit {
            return Err(super::too_large(limit));
        }
        Ok(etag)
    }

    /// Copy an object within the bucket, server-side (CopyObject: at most 5 GiB).
    pub fn copy(&self, from: &str, to: &str) -> io::Result<()> {
        let what = format!("{} -> {}", self.name(from), self.name(to));
        let creds = self.settings.credentials.as_ref();
        let source = format!(
            "/{}/{}",
            self.settings.bucket,
            url::form_urlencoded::byte_serialize(from.as_bytes())
                .collect::<String>()
                .replace("%2F", "/")
        );
        let response = self.send(Kind::Put, &what, || {
            let mut action = self.bucket.put_object(creds, to);
            // x-amz-* headers must be signed.
            action
                .headers_mut()
                .insert("x-amz-copy-source", source.clone());
            (
                self.agent
                    .put(action.sign(SIGNED_FOR).as_str())
                    .set("x-amz-copy-source", &source),
                Some(Vec::new()),
            )
        })?;
        // A copy can fail after its 200 status: the error is then in the body.
        // A body that cannot be read is no proof of a copy: the source must then stay.
        let body = response
            .into_string()
            .map_err(|e| io::Error::new(e.kind(), format!("{what}: unreadable answer: {e}")))?;
        if !copied(&body) {
            return Err(status_error(500, &body, &what));
        }
        Ok(())
    }

    /// Delete one key (a missing key is success, as in S3).
    pub fn delete(&self, key: &str) -> io::Result<()> {
        let what = self.name(key);
        let creds = self.settings.credentials.as_ref();
        self.send(Kind::Delete, &what, || {
            let action = self.bucket.delete_object(creds, key);
            (self.agent.delete(action.sign(SIGNED_FOR).as_str()), None)
        })
        .map(|_| ())
    }

    /// Delete up to [`DELETE_BATCH`] keys in one request. Returns the keys S3 could not delete,
    /// with why; an error of the request as a whole is returned as such.
    pub fn delete_batch(&self, keys: &[String]) -> io::Result<Vec<(String, String)>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let what = format!("{} ({} keys)", self.name(&keys[0]), keys.len());
        let creds = self.settings.credentials.as_ref();
        let ids: Vec<ObjectIdentifier> = keys
            .iter()
            .map(|k| ObjectIdentifier::new(k.clone()))
            .collect();
        let response = self.send(Kind::Delete, &what, || {
            let mut action = self.bucket.delete_objects(creds, ids.iter());
            action.set_quiet(true);
            let url = action.sign(SIGNED_FOR);
            let (body, md5) = action.body_with_md5();
            (
                self.agent
                    .post(url.as_str())
                    .set("Content-MD5", &md5)
                    .set("Content-Type", "application/xml"),
                Some(body.into_bytes()),
            )
        })?;
        let body = response.into_string().unwrap_or_default();
        let parsed = rusty_s3::actions::DeleteObjectsResponse::parse(&body).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{what}: unreadable answer: {e}"),
            )
        })?;
        Ok(parsed
            .errors
            .into_iter()
            .map(|e| (percent_decode(&e.key), format!("{} {}", e.code, e.message)))
            .collect())
    }

    /// Create the bucket (for tests and the fixture loader).
    pub fn create_bucket(&self) -> io::Result<()> {
        let what = format!("s3://{}", self.settings.bucket);
        let Some(creds) = self.settings.credentials.as_ref() else {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!("{what}: creating a bucket needs credentials"),
            ));
        };
        self.send(Kind::Put, &what, || {
            let action = self.bucket.create_bucket(creds);
            (
                self.agent.put(action.sign(SIGNED_FOR).as_str()),
                Some(Vec::new()),
            )
        })
        .map(|_| ())
    }
}

/// A listed object's time. One it cannot read makes the object young (dated now), never old:
/// an object only goes once its age is known.
fn listed_time(text: Option<&str>) -> SystemTime {
    text.and_then(|t| humantime::parse_rfc3339_weak(t.trim_end_matches('Z')).ok())
        .unwrap_or_else(SystemTime::now)
}

/// Whether a CopyObject's 200 answer says the copy was made: S3 can answer 200 and put an
/// `<Error>` in the body, and anything that is not a CopyObjectResult proves nothing.
fn copied(body: &str) -> bool {
    !body.contains("<Error>") && body.contains("CopyObjectResult")
}

fn precondition_failed(e: &io::Error) -> bool {
    let s = e.to_string();
    s.contains("HTTP 412") || s.contains("PreconditionFailed") || s.contains("HTTP 409")
}

/// Decode `%XX` escapes (listings ask for `encoding-type=url`).
fn percent_decode(s: &str) -> String {
    if !s.contains('%') && !s.contains('+') {
        return s.to_string();
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match u8::from_str_radix(&s[i + 1..i + 3], 16) {
                Ok(b) => {
                    out.push(b);
                    i += 3;
                    continue;
                }
                Err(_) => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_object_time_that_cannot_be_read_is_young_never_old() {
        // #22: it was the epoch, so a just-written object looked ancient.
        let now = SystemTime::now();
        for t in [
            None,
            Some("yesterday"),
            Some(""),
            Some("2024-13-45T99:00:00Z"),
        ] {
            assert!(listed_time(t) >= now, "{t:?}");
        }
        let t = listed_time(Some("2024-01-02T03:04:05.000Z"));
        assert_eq!(
            humantime::format_rfc3339_seconds(t).to_string(),
            "2024-01-02T03:04:05Z"
        );
    }

    #[test]
    fn a_copy_is_made_only_when_the_answer_says_so() {
        // #22: a 200 with an <Error> body was taken as a copy, and its source deleted.
        assert!(copied(
            "<?xml version=\"1.0\"?><CopyObjectResult><ETag>\"x\"</ETag></CopyObjectResult>"
        ));
        assert!(!copied(
            "<?xml version=\"1.0\"?><Error><Code>InternalError</Code></Error>"
        ));
        assert!(!copied(""));
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a/b%2Fc+d%20e"), "a/b/c d e");
        assert_eq!(percent_decode("plain/key"), "plain/key");
        assert_eq!(percent_decode("bad%zz"), "bad%zz");
        assert_eq!(percent_decode("end%4"), "end%4");
    }

    #[test]
    fn errors_say_the_status_and_code_but_no_url() {
        let e = status_error(
            503,
            "<Error><Code>SlowDown</Code><Message>Reduce your rate</Message></Error>",
            "s3://b/k",
        );
        assert_eq!(
            e.to_string(),
            "s3://b/k: HTTP 503 SlowDown Reduce your rate"
        );
        assert_eq!(
            status_error(404, "", "s3://b/k").kind(),
            io::ErrorKind::NotFound
        );
    }
}

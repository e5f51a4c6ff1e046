//! What every object store's client shares: one blocking `ureq` agent (rustls, optionally
//! trusting a private CA), requests counted by kind, `--max-requests-per-second`, and retries
//! with exponential backoff and jitter on what each service says is transient (throttling,
//! server errors, the network). Rayon's workers send requests directly, with no async runtime.
//!
//! Messages name objects as `scheme://bucket/key` and never carry a signed URL or a
//! credential: a transport error is said by its kind and causes, not its URL.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use super::Requests;

/// Attempts for one request before its error is final.
const ATTEMPTS: u32 = 8;

/// What a request is, for the counts in reports and benchmarks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    List,
    Get,
    Head,
    Delete,
    Put,
}

#[derive(Debug, Default)]
struct Counters {
    list: AtomicU64,
    get: AtomicU64,
    head: AtomicU64,
    delete: AtomicU64,
    put: AtomicU64,
    retries: AtomicU64,
}

/// Turns a refused request's status and body into an error (each service words its errors
/// its own way); `what` names the object.
pub type StatusError = fn(status: u16, body: &str, what: &str) -> io::Error;

pub struct Transport {
    pub agent: ureq::Agent,
    counters: Counters,
    /// The earliest time the next request may go, with `--max-requests-per-second`.
    pace: Option<(Mutex<Instant>, Duration)>,
    status_error: StatusError,
}

impl Transport {
    pub fn new(
        ca_bundle: Option<&std::path::Path>,
        max_requests_per_second: Option<f64>,
        status_error: StatusError,
    ) -> io::Result<Transport> {
        let mut agent = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(10))
            .timeout_read(Duration::from_secs(120))
            .timeout_write(Duration::from_secs(120))
            .max_idle_connections_per_host(256)
            .redirects(0);
        if let Some(bundle) = ca_bundle {
            agent = agent.tls_config(Arc::new(trusting(bundle)?));
        }
        let pace = max_requests_per_second
            .filter(|r| *r > 0.0)
            .map(|r| (Mutex::new(Instant::now()), Duration::from_secs_f64(1.0 / r)));
        Ok(Transport {
            agent: agent.build(),
            counters: Counters::default(),
            pace,
            status_error,
        })
    }

    pub fn requests(&self) -> Requests {
        let c = &self.counters;
        Requests {
            list: c.list.load(Ordering::Relaxed),
            get: c.get.load(Ordering::Relaxed),
            head: c.head.load(Ordering::Relaxed),
            delete: c.delete.load(Ordering::Relaxed),
            put: c.put.load(Ordering::Relaxed),
            retries: c.retries.load(Ordering::Relaxed),
            cached: 0,
        }
    }

    /// Count a request sent outside [`Transport::send`] (a batch's sub-requests are one).
    fn count(&self, op: Op) {
        let c = &self.counters;
        match op {
            Op::List => &c.list,
            Op::Get => &c.get,
            Op::Head => &c.head,
            Op::Delete => &c.delete,
            Op::Put => &c.put,
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
    pub fn send(
        &self,
        op: Op,
        what: &str,
        build: impl Fn() -> (ureq::Request, Option<Vec<u8>>),
    ) -> io::Result<ureq::Response> {
        let mut delay = Duration::from_millis(100);
        for attempt in 1..=ATTEMPTS {
            self.wait_turn();
            self.count(op);
            let (request, body) = build();
            let result = match body {
                Some(body) => request.send_bytes(&body),
                None => request.call(),
            };
            match result {
                Ok(response) => return Ok(response),
                Err(e) if attempt < ATTEMPTS && transient(&e) => {
                    self.counters.retries.fetch_add(1, Ordering::Relaxed);
                    // A throttled service may say when to come back.
                    let asked = match &e {
                        ureq::Error::Status(_, r) => r
                            .header("Retry-After")
                            .and_then(|s| s.trim().parse::<u64>().ok())
                            .map(|s| Duration::from_secs(s.min(60))),
                        _ => None,
                    };
                    // Jitter from the clock's nanoseconds: no RNG dependency for this.
                    let jitter = SystemTime::now()
                        .duration_since(SystemTime::UNIX_EPOCH)
                        .map_or(0, |d| d.subsec_nanos() % 100);
                    let wait = asked.unwrap_or(delay).max(delay);
                    std::thread::sleep(wait + Duration::from_millis(u64::from(jitter)));
                    delay = (delay * 2).min(Duration::from_secs(10));
                }
                Err(ureq::Error::Status(status, response)) => {
                    let body = response.into_string().unwrap_or_default();
                    return Err((self.status_error)(status, &body, what));
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
}

/// The error kind of a refused request's status.
pub fn kind_of(status: u16) -> io::ErrorKind {
    match status {
        404 => io::ErrorKind::NotFound,
        401 | 403 => io::ErrorKind::PermissionDenied,
        _ => io::ErrorKind::Other,
    }
}

/// The text between the first `<name>` and the `</name>` after it: enough for the few fixed
/// answers S3 and Azure give (their names are escaped, so no tag hides inside a text).
pub fn xml_text<'a>(xml: &'a str, name: &str) -> Option<&'a str> {
    let open = format!("<{name}>");
    let start = xml.find(&open)? + open.len();
    let end = xml[start..].find(&format!("</{name}>"))? + start;
    Some(&xml[start..end])
}

/// Undo XML's escapes (the five named entities and numeric ones) in a text.
pub fn xml_unescape(s: &str) -> String {
    if !s.contains('&') {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        let Some(end) = tail.find(';') else {
            out.push_str(tail);
            return out;
        };
        let entity = &tail[1..end];
        let c = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            e => e
                .strip_prefix("#x")
                .and_then(|h| u32::from_str_radix(h, 16).ok())
                .or_else(|| e.strip_prefix('#').and_then(|d| d.parse().ok()))
                .and_then(char::from_u32),
        };
        match c {
            Some(c) => out.push(c),
            None => out.push_str(&tail[..=end]),
        }
        rest = &tail[end + 1..];
    }
    out.push_str(rest);
    out
}

/// What a refused request says where the service answers `<Error><Code>…</Code><Message>…`
/// (S3, Azure): the status, the code and the message's first line.
pub fn xml_status_error(status: u16, body: &str, what: &str) -> io::Error {
    let code = xml_text(body, "Code").unwrap_or("");
    let message = xml_text(body, "Message")
        .and_then(|m| m.lines().next())
        .unwrap_or("");
    io::Error::new(
        kind_of(status),
        format!("{what}: HTTP {status} {code} {message}")
            .trim_end()
            .to_string(),
    )
}

/// An answer that could not be read, or not understood.
pub fn unreadable(what: &str, e: impl std::fmt::Display) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("{what}: unreadable answer: {e}"),
    )
}

/// Read a whole response body, at most `limit` bytes, into `buf`.
pub fn read_body(
    response: ureq::Response,
    limit: u64,
    buf: &mut Vec<u8>,
    what: &str,
) -> io::Result<()> {
    use std::io::Read;
    buf.clear();
    let read = response
        .into_reader()
        .take(limit + 1)
        .read_to_end(buf)
        .map_err(|e| io::Error::new(e.kind(), format!("{what}: {e}")))?;
    if read as u64 > limit {
        return Err(super::too_large(limit));
    }
    Ok(())
}

/// Stream a response body to `f` a megabyte at a time; returns the bytes read.
pub fn stream_body(
    response: ureq::Response,
    what: &str,
    f: &mut dyn FnMut(&[u8]),
) -> io::Result<u64> {
    use std::io::Read;
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

/// Whether a failure is worth sending again: throttling (429, S3's 503 SlowDown, Azure's
/// 503 ServerBusy), server errors, the network.
fn transient(e: &ureq::Error) -> bool {
    match e {
        ureq::Error::Status(code, _) => *code == 408 || *code == 429 || *code >= 500,
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

/// Whether a conditional request was refused on its condition: 412 Precondition Failed (S3,
/// GCS, Azure); some S3 servers answer 409 or 403 with that code.
pub fn precondition_failed(e: &io::Error) -> bool {
    let s = e.to_string();
    s.contains("HTTP 412") || s.contains("PreconditionFailed") || s.contains("HTTP 409")
}

/// A listed object's time. One it cannot read makes the object young (dated now), never old:
/// an object only goes once its age is known.
pub fn listed_time(text: Option<&str>) -> SystemTime {
    text.and_then(|t| humantime::parse_rfc3339_weak(t.trim_end_matches('Z')).ok())
        .unwrap_or_else(SystemTime::now)
}

/// Percent-encode every byte but the unreserved ones (RFC 3986), `/` too when `keep_slash`
/// is false: object names in URL paths and queries.
pub fn encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b'/' if keep_slash => out.push('/'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Split a `multipart/mixed` body (a batch's answer) into its parts' bodies.
pub fn multipart_parts<'a>(body: &'a str, boundary: &str) -> Vec<&'a str> {
    let delimiter = format!("--{boundary}");
    body.split(delimiter.as_str())
        .skip(1)
        .take_while(|p| !p.starts_with("--"))
        .collect()
}

/// The boundary of a `multipart/*` content type.
pub fn boundary_of(content_type: &str) -> Option<String> {
    content_type.split(';').find_map(|p| {
        p.trim()
            .strip_prefix("boundary=")
            .map(|b| b.trim_matches('"').to_string())
    })
}

/// The keys of a batch of deletes that failed, from the batch's `multipart/mixed` answer:
/// `call_of` finds which call a part answers (each service names them its own way; in order
/// when a part does not say). A key already gone is deleted; a call the answer does not
/// mention failed.
pub fn batch_failures(
    response: ureq::Response,
    keys: &[String],
    what: &str,
    call_of: fn(&str) -> Option<usize>,
) -> io::Result<Vec<(String, String)>> {
    let boundary = response
        .header("Content-Type")
        .and_then(boundary_of)
        .ok_or_else(|| unreadable(what, "not a multipart answer"))?;
    let body = response.into_string().map_err(|e| unreadable(what, e))?;
    let mut answered = vec![false; keys.len()];
    let mut failed = Vec::new();
    for (n, part) in multipart_parts(&body, &boundary).iter().enumerate() {
        let i = call_of(part).unwrap_or(n);
        let Some(key) = keys.get(i) else { continue };
        answered[i] = true;
        match part_status(part) {
            Some(s) if (200..300).contains(&s) || s == 404 => {}
            Some(s) => failed.push((key.clone(), format!("HTTP {s}"))),
            None => failed.push((key.clone(), "no answer in the batch".into())),
        }
    }
    for (key, _) in keys.iter().zip(&answered).filter(|(_, a)| !**a) {
        failed.push((key.clone(), "no answer in the batch".into()));
    }
    Ok(failed)
}

/// The status of each HTTP response inside batch parts (`HTTP/1.1 204 No Content`), in order.
pub fn part_status(part: &str) -> Option<u16> {
    let line = part.lines().find(|l| l.starts_with("HTTP/"))?;
    line.split_whitespace().nth(1)?.parse().ok()
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
    fn names_are_encoded_for_urls_and_batches_split() {
        assert_eq!(encode("a/b c+d", true), "a/b%20c%2Bd");
        assert_eq!(encode("a/b", false), "a%2Fb");
        let body = "--xyz\r\nContent-Type: application/http\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n\
                    --xyz\r\nContent-Type: application/http\r\n\r\nHTTP/1.1 404 Not Found\r\n\r\n--xyz--\r\n";
        let parts = multipart_parts(body, "xyz");
        assert_eq!(parts.len(), 2);
        assert_eq!(part_status(parts[0]), Some(204));
        assert_eq!(part_status(parts[1]), Some(404));
        assert_eq!(
            boundary_of("multipart/mixed; boundary=\"batch_1\"").as_deref(),
            Some("batch_1")
        );
    }

    #[test]
    fn xml_texts_unescaped() {
        assert_eq!(xml_unescape("a&amp;b&lt;c&#x41;&#66;"), "a&b<cAB");
        assert_eq!(xml_unescape("plain"), "plain");
        assert_eq!(xml_unescape("a&bogus;b&"), "a&bogus;b&");
    }
}

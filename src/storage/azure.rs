//! Azure Blob Storage through its REST API, signed with the account's Shared Key: List Blobs
//! (5,000 a page, in sequence: a listing cannot start after a key), Get Blob, Put Blob
//! (conditional on `If-None-Match: *` / `If-Match`), Copy Blob (waited for when the service
//! copies in the background), Delete Blob, and Blob Batch (256 deletes a request). 503
//! ServerBusy, 500 and the network are retried by the shared [`Transport`].

use std::io;
use std::time::{Duration, SystemTime};

use base64::Engine as _;

use super::bucket::{md5_from_base64, Bucket, Listed, Page};
use super::http::{self, encode, unreadable, xml_text, xml_unescape, Op, Transport};
use super::Requests;
use crate::config::azure::Settings;

/// The REST version asked for: one Azurite and every Azure region speak.
const VERSION: &str = "2021-08-06";
/// Blob Batch takes at most 256 sub-requests.
const DELETE_BATCH: usize = 256;
const PAGE: usize = 5000;

pub struct Client {
    settings: Settings,
    /// The blob service without a trailing slash.
    base: String,
    /// The path of the service's root in URLs (`/devstoreaccount1` for Azurite, else empty).
    base_path: String,
    key: Vec<u8>,
    transport: Transport,
}

/// RFC 1123 time, as `x-ms-date` and listings carry it: `Mon, 30 Nov 2026 01:21:57 GMT`.
pub fn rfc1123(t: SystemTime) -> String {
    let secs = super::epoch_seconds(t).max(0);
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{}, {d:02} {} {y} {:02}:{:02}:{:02} GMT",
        DAYS[(days % 7) as usize],
        MONTHS[(m - 1) as usize],
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// A listing's `Last-Modified`; one that cannot be read makes the blob young, never old.
pub fn parse_rfc1123(text: &str) -> SystemTime {
    let parse = || -> Option<SystemTime> {
        let mut f = text.split_whitespace().skip(1);
        let d: i64 = f.next()?.parse().ok()?;
        let months = "JanFebMarAprMayJunJulAugSepOctNovDec";
        let m = months.find(f.next()?)? as i64 / 3 + 1;
        let y: i64 = f.next()?.parse().ok()?;
        let mut hms = f.next()?.split(':').map(|p| p.parse::<i64>().ok());
        let (h, mi, s) = (hms.next()??, hms.next()??, hms.next()??);
        if !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 {
            return None;
        }
        let secs = days_from_civil(y, m, d) * 86_400 + h * 3600 + mi * 60 + s;
        Some(SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).ok()?))
    };
    parse().unwrap_or_else(SystemTime::now)
}

// Howard Hinnant's algorithms between days since the epoch and the civil calendar.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

impl Client {
    pub fn new(settings: Settings, max_requests_per_second: Option<f64>) -> io::Result<Client> {
        let key = base64::engine::general_purpose::STANDARD
            .decode(settings.key.trim())
            .map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "the account key is not base64 (as the portal shows it)",
                )
            })?;
        let transport = Transport::new(
            settings.ca_bundle.as_deref(),
            max_requests_per_second,
            http::xml_status_error,
        )?;
        Ok(Client {
            base: settings.endpoint.as_str().trim_end_matches('/').to_string(),
            base_path: settings.endpoint.path().trim_end_matches('/').to_string(),
            key,
            settings,
            transport,
        })
    }

    fn name(&self, key: &str) -> String {
        format!("azblob://{}/{key}", self.settings.container)
    }

    /// The path of a blob below the service (`/container/key`, encoded).
    fn blob_path(&self, key: &str) -> String {
        format!(
            "/{}/{}",
            encode(&self.settings.container, false),
            encode(key, true)
        )
    }

    /// The Shared Key `Authorization` for a request: `path` is below the service, `query` the
    /// parameters, `headers` every `x-ms-*` header and the standard ones that are signed.
    fn authorization(
        &self,
        method: &str,
        path: &str,
        query: &[(&str, String)],
        headers: &[(&str, String)],
        content_length: usize,
    ) -> String {
        let standard = |n: &str| {
            headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(n))
                .map(|(_, v)| v.as_str())
                .unwrap_or("")
        };
        let length = if content_length == 0 {
            String::new()
        } else {
            content_length.to_string()
        };
        let mut ms: Vec<(String, &str)> = headers
            .iter()
            .filter(|(k, _)| k.to_ascii_lowercase().starts_with("x-ms-"))
            .map(|(k, v)| (k.to_ascii_lowercase(), v.trim()))
            .collect();
        ms.sort();
        let mut to_sign = format!(
            "{method}\n\n\n{length}\n\n{}\n\n\n{}\n{}\n\n{}\n",
            standard("Content-Type"),
            standard("If-Match"),
            standard("If-None-Match"),
            standard("Range"),
        );
        for (k, v) in &ms {
            to_sign.push_str(&format!("{k}:{v}\n"));
        }
        // The canonical resource: the account, then the URL's path encoded as it is sent.
        to_sign.push_str(&format!(
            "/{}{}{path}",
            self.settings.account, self.base_path
        ));
        let mut q: Vec<(String, &str)> = query
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.as_str()))
            .collect();
        q.sort();
        for (k, v) in q {
            to_sign.push_str(&format!("\n{k}:{v}"));
        }
        let mac = ring::hmac::sign(
            &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &self.key),
            to_sign.as_bytes(),
        );
        format!(
            "SharedKey {}:{}",
            self.settings.account,
            base64::engine::general_purpose::STANDARD.encode(mac.as_ref())
        )
    }

    /// Send a signed request (signed afresh on each attempt: the date moves). The arguments
    /// are the request's own parts, each signed.
    #[allow(clippy::too_many_arguments)]
    fn send(
        &self,
        op: Op,
        what: &str,
        method: &str,
        path: &str,
        query: &[(&str, String)],
        headers: &[(&str, String)],
        body: Option<Vec<u8>>,
    ) -> io::Result<ureq::Response> {
        let mut url = format!("{}{path}", self.base);
        for (i, (k, v)) in query.iter().enumerate() {
            url.push(if i == 0 { '?' } else { '&' });
            url.push_str(&format!("{k}={}", encode(v, false)));
        }
        self.transport.send(op, what, || {
            let mut all: Vec<(&str, String)> = headers.to_vec();
            all.push(("x-ms-date", rfc1123(SystemTime::now())));
            all.push(("x-ms-version", VERSION.to_string()));
            let length = body.as_ref().map_or(0, Vec::len);
            let auth = self.authorization(method, path, query, &all, length);
            let mut request = self
                .transport
                .agent
                .request(method, &url)
                .set("Authorization", &auth);
            for (k, v) in &all {
                request = request.set(k, v);
            }
            (
                request,
                body.clone().or_else(|| (method == "PUT").then(Vec::new)),
            )
        })
    }

    fn put_with(
        &self,
        key: &str,
        body: &[u8],
        condition: Option<(&str, &str)>,
    ) -> io::Result<bool> {
        let what = self.name(key);
        let mut headers = vec![
            ("x-ms-blob-type", "BlockBlob".to_string()),
            ("Content-Type", "application/octet-stream".to_string()),
        ];
        if let Some((h, v)) = condition {
            headers.push((h, v.to_string()));
        }
        let sent = self.send(
            Op::Put,
            &what,
            "PUT",
            &self.blob_path(key),
            &[],
            &headers,
            Some(body.to_vec()),
        );
        match sent {
            Ok(_) => Ok(true),
            Err(e) if condition.is_some() && http::precondition_failed(&e) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

impl Bucket for Client {
    fn get_response(&self, key: &str) -> io::Result<(String, ureq::Response)> {
        let what = self.name(key);
        let response = self.send(Op::Get, &what, "GET", &self.blob_path(key), &[], &[], None)?;
        Ok((what, response))
    }

    fn url(&self) -> String {
        format!("azblob://{}", self.settings.container)
    }

    fn identity(&self) -> String {
        format!(
            "azblob://{} of account {} at {}",
            self.settings.container,
            self.settings.account,
            crate::config::s3::redacted(&self.settings.endpoint)
        )
    }

    fn lists_from_a_key(&self) -> bool {
        false
    }

    fn list_page(
        &self,
        prefix: &str,
        _start_after: Option<&str>,
        token: Option<&str>,
    ) -> io::Result<Page> {
        let what = self.name(prefix);
        let mut query = vec![
            ("comp", "list".to_string()),
            ("maxresults", crate::hooks::page_size(PAGE).to_string()),
            ("prefix", prefix.to_string()),
            ("restype", "container".to_string()),
        ];
        if let Some(t) = token {
            query.push(("marker", t.to_string()));
        }
        let path = format!("/{}", encode(&self.settings.container, false));
        let body = self
            .send(Op::List, &what, "GET", &path, &query, &[], None)?
            .into_string()
            .map_err(|e| io::Error::new(e.kind(), format!("{what}: {e}")))?;
        if !body.contains("EnumerationResults") {
            return Err(unreadable(&what, "not a blob listing"));
        }
        let mut objects = Vec::new();
        for blob in body.split("<Blob>").skip(1) {
            let name =
                xml_text(blob, "Name").ok_or_else(|| unreadable(&what, "a blob without a name"))?;
            objects.push(Listed {
                key: xml_unescape(name),
                size: xml_text(blob, "Content-Length")
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0),
                modified: xml_text(blob, "Last-Modified")
                    .map_or_else(SystemTime::now, parse_rfc1123),
                md5: xml_text(blob, "Content-MD5").and_then(md5_from_base64),
            });
        }
        let next = xml_text(&body, "NextMarker")
            .filter(|m| !m.is_empty())
            .map(xml_unescape);
        Ok(Page { objects, next })
    }

    fn put(&self, key: &str, body: &[u8], only_if_absent: bool) -> io::Result<bool> {
        self.put_with(key, body, only_if_absent.then_some(("If-None-Match", "*")))
    }

    fn put_if_match(&self, key: &str, body: &[u8], etag: &str) -> io::Result<bool> {
        self.put_with(key, body, Some(("If-Match", etag)))
    }

    fn copy(&self, from: &str, to: &str, _size: u64) -> io::Result<()> {
        // Copy Blob within an account copies any size; the service may finish it in the
        // background (202 with x-ms-copy-status: pending): then its status is polled.
        let what = format!("{} -> {}", self.name(from), self.name(to));
        let source = format!("{}{}", self.base, self.blob_path(from));
        let response = self.send(
            Op::Put,
            &what,
            "PUT",
            &self.blob_path(to),
            &[],
            &[("x-ms-copy-source", source)],
            None,
        )?;
        let mut status = response
            .header("x-ms-copy-status")
            .unwrap_or("")
            .to_string();
        let mut wait = Duration::from_millis(200);
        loop {
            match status.as_str() {
                "success" => return Ok(()),
                "pending" => {}
                other => {
                    return Err(io::Error::other(format!(
                        "{what}: the copy did not succeed (status {other:?})"
                    )))
                }
            }
            std::thread::sleep(wait);
            wait = (wait * 2).min(Duration::from_secs(5));
            let response =
                self.send(Op::Head, &what, "HEAD", &self.blob_path(to), &[], &[], None)?;
            status = response
                .header("x-ms-copy-status")
                .unwrap_or("")
                .to_string();
        }
    }

    fn delete(&self, key: &str) -> io::Result<()> {
        let what = self.name(key);
        match self.send(
            Op::Delete,
            &what,
            "DELETE",
            &self.blob_path(key),
            &[],
            &[],
            None,
        ) {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn delete_batch_size(&self) -> usize {
        DELETE_BATCH
    }

    fn delete_batch(&self, keys: &[String]) -> io::Result<Vec<(String, String)>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let what = format!("{} ({} keys)", self.name(&keys[0]), keys.len());
        let boundary = "batch_regsweep";
        let date = rfc1123(SystemTime::now());
        let mut payload = String::new();
        for (i, key) in keys.iter().enumerate() {
            // Each sub-request is signed on its own, its path as the service sees it.
            let path = self.blob_path(key);
            let headers = [("x-ms-date", date.clone())];
            let auth = self.authorization("DELETE", &path, &[], &headers, 0);
            payload.push_str(&format!(
                "--{boundary}\r\nContent-Type: application/http\r\n\
                 Content-Transfer-Encoding: binary\r\nContent-ID: {i}\r\n\r\n\
                 DELETE {}{path} HTTP/1.1\r\nx-ms-date: {date}\r\n\
                 Authorization: {auth}\r\nContent-Length: 0\r\n\r\n",
                self.base_path
            ));
        }
        payload.push_str(&format!("--{boundary}--\r\n"));
        let content_type = format!("multipart/mixed; boundary={boundary}");
        let response = self.send(
            Op::Delete,
            &what,
            "POST",
            "/",
            &[("comp", "batch".to_string())],
            &[("Content-Type", content_type)],
            Some(payload.into_bytes()),
        )?;
        http::batch_failures(response, keys, &what, |part| {
            part.lines()
                .find_map(|l| l.strip_prefix("Content-ID:"))
                .and_then(|v| v.trim().parse().ok())
        })
    }

    fn requests(&self) -> Requests {
        self.transport.requests()
    }

    fn create_bucket(&self) -> io::Result<()> {
        let what = self.url();
        let path = format!("/{}", encode(&self.settings.container, false));
        self.send(
            Op::Put,
            &what,
            "PUT",
            &path,
            &[("restype", "container".to_string())],
            &[],
            None,
        )
        .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_both_ways() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_001_717);
        let text = rfc1123(t);
        assert_eq!(text, "Mon, 30 Nov 2026 01:21:57 GMT");
        assert_eq!(parse_rfc1123(&text), t);
        assert_eq!(
            parse_rfc1123("Thu, 29 Feb 2024 23:59:59 GMT"),
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_709_251_199)
        );
        let now = SystemTime::now();
        for bad in [
            "",
            "yesterday",
            "Mon, 99 Nov 2026 01:21:57 GMT",
            "Mon, 30 Foo 2026 1:2:3 GMT",
        ] {
            assert!(parse_rfc1123(bad) >= now, "{bad:?}");
        }
    }
}

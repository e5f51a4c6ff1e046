//! Google Cloud Storage through its JSON API: `objects.list` (5,000 a page, `startOffset` for
//! ranges), media downloads, multipart uploads (conditional on `ifGenerationMatch`), `rewrite`
//! for copies of any size, and batched deletes (100 a batch request). Requests carry a bearer
//! token from [`super::gcs_token`], or none for an emulator; 429 and server errors are retried
//! by the shared [`Transport`].

use std::io;

use super::bucket::{md5_from_base64, Bucket, Listed, Page};
use super::gcs_token::Tokens;
use super::http::{self, encode, unreadable, Op, Transport};
use super::Requests;
use crate::config::gcs::Settings;

/// GCS takes at most 100 calls in one batch request.
const DELETE_BATCH: usize = 100;
const PAGE: usize = 5000;

pub struct Client {
    settings: Settings,
    /// The endpoint without a trailing slash.
    base: String,
    transport: Transport,
    tokens: Tokens,
}

/// What a failed request says: GCS answers `{"error": {"code", "message"}}`.
fn status_error(status: u16, body: &str, what: &str) -> io::Error {
    let message = serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            v.pointer("/error/message")
                .and_then(|m| m.as_str())
                .map(str::to_string)
        })
        .unwrap_or_default();
    io::Error::new(
        http::kind_of(status),
        format!("{what}: HTTP {status} {message}")
            .trim_end()
            .to_string(),
    )
}

impl Client {
    pub fn new(settings: Settings, max_requests_per_second: Option<f64>) -> io::Result<Client> {
        let transport = Transport::new(
            settings.ca_bundle.as_deref(),
            max_requests_per_second,
            status_error,
        )?;
        let tokens = Tokens::new(settings.credentials.clone(), transport.agent.clone());
        Ok(Client {
            base: settings.endpoint.as_str().trim_end_matches('/').to_string(),
            settings,
            transport,
            tokens,
        })
    }

    fn name(&self, key: &str) -> String {
        format!("gs://{}/{key}", self.settings.bucket)
    }

    fn object_url(&self, key: &str) -> String {
        format!(
            "{}/storage/v1/b/{}/o/{}",
            self.base,
            encode(&self.settings.bucket, false),
            encode(key, false)
        )
    }

    /// A request with this client's authorization.
    fn request(&self, method: &str, url: &str) -> io::Result<ureq::Request> {
        let request = self.transport.agent.request(method, url);
        Ok(match self.tokens.header()? {
            Some(auth) => request.set("Authorization", &auth),
            None => request,
        })
    }

    fn send(
        &self,
        op: Op,
        what: &str,
        method: &str,
        url: &str,
        body: Option<(&str, Vec<u8>)>,
    ) -> io::Result<ureq::Response> {
        // The token is fetched outside the retried closure (it may need a request itself).
        let base = self.request(method, url)?;
        self.transport.send(op, what, || {
            let mut request = base.clone();
            match &body {
                Some((content_type, bytes)) => {
                    request = request.set("Content-Type", content_type);
                    (request, Some(bytes.clone()))
                }
                None => (request, None),
            }
        })
    }

    /// A multipart upload, with `condition` as its `ifGenerationMatch`.
    fn upload(&self, key: &str, body: &[u8], condition: Option<&str>) -> io::Result<bool> {
        let what = self.name(key);
        let mut url = format!(
            "{}/upload/storage/v1/b/{}/o?uploadType=multipart",
            self.base,
            encode(&self.settings.bucket, false)
        );
        if let Some(generation) = condition {
            url.push_str(&format!("&ifGenerationMatch={}", encode(generation, false)));
        }
        let boundary = "regsweep_part_boundary";
        let mut payload = format!(
            "--{boundary}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n{}\r\n\
             --{boundary}\r\nContent-Type: application/octet-stream\r\n\r\n",
            serde_json::json!({ "name": key })
        )
        .into_bytes();
        payload.extend_from_slice(body);
        payload.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        let content_type = format!("multipart/related; boundary={boundary}");
        match self.send(Op::Put, &what, "POST", &url, Some((&content_type, payload))) {
            Ok(_) => Ok(true),
            Err(e) if condition.is_some() && http::precondition_failed(&e) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

/// One object of a listing page.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Item {
    name: String,
    #[serde(default)]
    size: Option<String>,
    #[serde(default)]
    md5_hash: Option<String>,
    #[serde(default)]
    updated: Option<String>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListAnswer {
    #[serde(default)]
    items: Vec<Item>,
    #[serde(default)]
    next_page_token: Option<String>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct RewriteAnswer {
    done: bool,
    #[serde(default)]
    rewrite_token: Option<String>,
}

impl Bucket for Client {
    fn get_response(&self, key: &str) -> io::Result<(String, ureq::Response)> {
        let what = self.name(key);
        let url = format!("{}?alt=media", self.object_url(key));
        let response = self.send(Op::Get, &what, "GET", &url, None)?;
        Ok((what, response))
    }

    fn version_header(&self) -> &'static str {
        "x-goog-generation"
    }

    fn url(&self) -> String {
        format!("gs://{}", self.settings.bucket)
    }

    fn identity(&self) -> String {
        format!(
            "gs://{} at {}",
            self.settings.bucket,
            crate::config::s3::redacted(&self.settings.endpoint)
        )
    }

    fn lists_from_a_key(&self) -> bool {
        true
    }

    fn list_page(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        token: Option<&str>,
    ) -> io::Result<Page> {
        let what = self.name(prefix);
        let mut url = format!(
            "{}/storage/v1/b/{}/o?prefix={}&maxResults={}\
             &fields=items(name,size,md5Hash,updated),nextPageToken",
            self.base,
            encode(&self.settings.bucket, false),
            encode(prefix, false),
            crate::hooks::page_size(PAGE)
        );
        if let Some(t) = token {
            url.push_str(&format!("&pageToken={}", encode(t, false)));
        }
        if let Some(s) = start_after {
            // startOffset is inclusive: the boundaries given sort strictly between keys.
            url.push_str(&format!("&startOffset={}", encode(s, false)));
        }
        // Parsed as it arrives: a page of 5,000 objects is megabytes of JSON (more where a
        // server ignores `fields`), which need not be held whole.
        let response = self.send(Op::List, &what, "GET", &url, None)?;
        let answer: ListAnswer =
            serde_json::from_reader(std::io::BufReader::new(response.into_reader()))
                .map_err(|e| unreadable(&what, e))?;
        let objects = answer
            .items
            .into_iter()
            .map(|i| Listed {
                size: i.size.and_then(|s| s.parse().ok()).unwrap_or(0),
                modified: http::listed_time(i.updated.as_deref()),
                md5: i.md5_hash.as_deref().and_then(md5_from_base64),
                key: i.name,
            })
            .collect();
        Ok(Page {
            objects,
            next: answer.next_page_token.filter(|t| !t.is_empty()),
        })
    }

    fn put(&self, key: &str, body: &[u8], only_if_absent: bool) -> io::Result<bool> {
        // Generation 0 matches only an object that does not exist.
        self.upload(key, body, only_if_absent.then_some("0"))
    }

    fn put_if_match(&self, key: &str, body: &[u8], generation: &str) -> io::Result<bool> {
        if generation.is_empty() {
            // No generation was read: nothing to match, so nothing is replaced.
            return Ok(false);
        }
        self.upload(key, body, Some(generation))
    }

    fn copy(&self, from: &str, to: &str, _size: u64) -> io::Result<()> {
        // rewrite copies any size; a large object takes several calls, each continuing the
        // last one's token, until the answer says done.
        let what = format!("{} -> {}", self.name(from), self.name(to));
        let mut token: Option<String> = None;
        loop {
            let mut url = format!(
                "{}/rewriteTo/b/{}/o/{}",
                self.object_url(from),
                encode(&self.settings.bucket, false),
                encode(to, false)
            );
            if let Some(t) = &token {
                url.push_str(&format!("?rewriteToken={}", encode(t, false)));
            }
            let body = self
                .send(
                    Op::Put,
                    &what,
                    "POST",
                    &url,
                    Some(("application/json", b"{}".to_vec())),
                )?
                .into_string()
                .map_err(|e| unreadable(&what, e))?;
            // Anything but an answer that says done is no proof of a copy.
            let answer: RewriteAnswer =
                serde_json::from_str(&body).map_err(|e| unreadable(&what, e))?;
            if answer.done {
                return Ok(());
            }
            token = Some(
                answer
                    .rewrite_token
                    .filter(|t| !t.is_empty())
                    .ok_or_else(|| unreadable(&what, "not done, and no token to continue"))?,
            );
        }
    }

    fn delete(&self, key: &str) -> io::Result<()> {
        let what = self.name(key);
        match self.send(Op::Delete, &what, "DELETE", &self.object_url(key), None) {
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
        let boundary = "regsweep_batch_boundary";
        let mut payload = String::new();
        for (i, key) in keys.iter().enumerate() {
            payload.push_str(&format!(
                "--{boundary}\r\nContent-Type: application/http\r\nContent-ID: <{i}>\r\n\r\n\
                 DELETE /storage/v1/b/{}/o/{} HTTP/1.1\r\n\r\n\r\n",
                encode(&self.settings.bucket, false),
                encode(key, false)
            ));
        }
        payload.push_str(&format!("--{boundary}--\r\n"));
        let url = format!("{}/batch/storage/v1", self.base);
        let content_type = format!("multipart/mixed; boundary={boundary}");
        let response = self.send(
            Op::Delete,
            &what,
            "POST",
            &url,
            Some((&content_type, payload.into_bytes())),
        )?;
        // Answers name their call (`<response-i>`).
        http::batch_failures(response, keys, &what, |part| {
            part.split("<response-")
                .nth(1)
                .and_then(|r| r.split('>').next())
                .and_then(|i| i.parse().ok())
        })
    }

    fn requests(&self) -> Requests {
        self.transport.requests()
    }

    fn create_bucket(&self) -> io::Result<()> {
        let what = self.url();
        let url = format!("{}/storage/v1/b?project=regsweep", self.base);
        let body = serde_json::json!({ "name": self.settings.bucket }).to_string();
        self.send(
            Op::Put,
            &what,
            "POST",
            &url,
            Some(("application/json", body.into_bytes())),
        )
        .map(|_| ())
    }
}

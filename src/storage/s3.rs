//! S3 and what speaks its API: list a key range, get, put (optionally only if absent), copy,
//! delete up to 1,000 keys at once. Requests are signed by `rusty-s3` (sans-IO) and carried
//! by the shared [`Transport`]; throttling (503 SlowDown), server errors and time-outs are
//! retried there.

use std::io;
use std::time::Duration;

use rayon::prelude::*;
use rusty_s3::actions::{ListObjectsV2, ObjectIdentifier, S3Action};
use rusty_s3::UrlStyle;

use super::bucket::{md5_from_hex, Bucket, Listed, Multipart, Page};
use super::http::{self, xml_text, xml_unescape, Op, Transport};
use super::Requests;
use crate::config::s3::Settings;

/// How long a signed request stays valid: it is sent at once (retries sign again).
const SIGNED_FOR: Duration = Duration::from_secs(600);
/// S3 lists at most this many keys a page.
const PAGE: usize = 1000;
/// S3 deletes at most this many keys in one DeleteObjects request.
const DELETE_BATCH: usize = 1000;
/// The largest object one CopyObject copies; larger ones are copied part by part.
const COPY_LIMIT: u64 = 5 << 30;
/// The size of each part of a copy made part by part (a 50 GiB layer: 100 parts).
const COPY_PART: u64 = 512 << 20;

pub struct Client {
    bucket: rusty_s3::Bucket,
    settings: Settings,
    transport: Transport,
}

impl Client {
    pub fn new(settings: Settings, max_requests_per_second: Option<f64>) -> io::Result<Client> {
        let style = if settings.path_style {
            UrlStyle::Path
        } else {
            UrlStyle::VirtualHost
        };
        let bucket = rusty_s3::Bucket::new(
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
        let transport = Transport::new(
            settings.ca_bundle.as_deref(),
            max_requests_per_second,
            http::xml_status_error,
        )?;
        Ok(Client {
            bucket,
            settings,
            transport,
        })
    }

    fn send(
        &self,
        op: Op,
        what: &str,
        build: impl Fn() -> (ureq::Request, Option<Vec<u8>>),
    ) -> io::Result<ureq::Response> {
        self.transport.send(op, what, build)
    }

    fn name(&self, key: &str) -> String {
        format!("s3://{}/{key}", self.settings.bucket)
    }

    /// PUT with an optional condition; false when the server refused it on that condition.
    fn put_if(&self, key: &str, body: &[u8], condition: Option<(&str, &str)>) -> io::Result<bool> {
        let what = self.name(key);
        let creds = self.settings.credentials.as_ref();
        let result = self.send(Op::Put, &what, || {
            let action = self.bucket.put_object(creds, key);
            let mut request = self.transport.agent.put(action.sign(SIGNED_FOR).as_str());
            if let Some((header, value)) = condition {
                request = request.set(header, value);
            }
            (request, Some(body.to_vec()))
        });
        match result {
            Ok(_) => Ok(true),
            Err(e) if condition.is_some() && http::precondition_failed(&e) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// `x-amz-copy-source` for a key of this bucket.
    fn copy_source(&self, from: &str) -> String {
        format!("/{}/{}", self.settings.bucket, http::encode(from, true))
    }

    /// One CopyObject (at most [`COPY_LIMIT`] bytes).
    fn copy_whole(&self, from: &str, to: &str, what: &str) -> io::Result<()> {
        let creds = self.settings.credentials.as_ref();
        let source = self.copy_source(from);
        let response = self.send(Op::Put, what, || {
            let mut action = self.bucket.put_object(creds, to);
            // x-amz-* headers must be signed.
            action
                .headers_mut()
                .insert("x-amz-copy-source", source.clone());
            (
                self.transport
                    .agent
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
        if !copied(&body, "CopyObjectResult") {
            return Err(http::xml_status_error(500, &body, what));
        }
        Ok(())
    }

    /// A copy larger than one CopyObject: a multipart upload whose parts are ranges of the
    /// source (UploadPartCopy), completed only when every part was copied, else aborted.
    fn copy_in_parts(&self, from: &str, to: &str, size: u64, what: &str) -> io::Result<()> {
        let creds = self.settings.credentials.as_ref();
        let response = self.send(Op::Put, what, || {
            let action = self.bucket.create_multipart_upload(creds, to);
            (
                self.transport.agent.post(action.sign(SIGNED_FOR).as_str()),
                Some(Vec::new()),
            )
        })?;
        let body = response.into_string().unwrap_or_default();
        let created =
            rusty_s3::actions::CreateMultipartUpload::parse_response(&body).map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{what}: unreadable answer to starting a copy in parts: {e}"),
                )
            })?;
        let upload_id = created.upload_id().to_string();
        let part = copy_part_size();
        let ranges: Vec<(u16, u64, u64)> = (0..size.div_ceil(part))
            .map(|i| (i as u16 + 1, i * part, ((i + 1) * part).min(size) - 1))
            .collect();
        let source = self.copy_source(from);
        let etags: io::Result<Vec<String>> = ranges
            .par_iter()
            .map(|&(number, first, last)| {
                let range = format!("bytes={first}-{last}");
                let response = self.send(Op::Put, what, || {
                    let mut action = self.bucket.upload_part(creds, to, number, &upload_id);
                    let headers = action.headers_mut();
                    headers.insert("x-amz-copy-source", source.clone());
                    headers.insert("x-amz-copy-source-range", range.clone());
                    (
                        self.transport
                            .agent
                            .put(action.sign(SIGNED_FOR).as_str())
                            .set("x-amz-copy-source", &source)
                            .set("x-amz-copy-source-range", &range),
                        Some(Vec::new()),
                    )
                })?;
                let body = response.into_string().map_err(|e| {
                    io::Error::new(e.kind(), format!("{what}: unreadable answer: {e}"))
                })?;
                match xml_text(&body, "ETag") {
                    Some(etag) if copied(&body, "CopyPartResult") => {
                        Ok(etag.replace("&quot;", "\"").trim_matches('"').to_string())
                    }
                    _ => Err(http::xml_status_error(500, &body, what)),
                }
            })
            .collect();
        let completed = etags.and_then(|etags| {
            let response = self.send(Op::Put, what, || {
                let action = self.bucket.complete_multipart_upload(
                    creds,
                    to,
                    &upload_id,
                    etags.iter().map(String::as_str),
                );
                let url = action.sign(SIGNED_FOR);
                (
                    self.transport.agent.post(url.as_str()),
                    Some(action.body().into_bytes()),
                )
            })?;
            let body = response
                .into_string()
                .map_err(|e| io::Error::new(e.kind(), format!("{what}: unreadable answer: {e}")))?;
            if copied(&body, "CompleteMultipartUploadResult") {
                Ok(())
            } else {
                Err(http::xml_status_error(500, &body, what))
            }
        });
        if completed.is_err() {
            // No half copy left billing in the bucket.
            let _ = self.send(Op::Delete, what, || {
                let action = self.bucket.abort_multipart_upload(creds, to, &upload_id);
                (
                    self.transport
                        .agent
                        .delete(action.sign(SIGNED_FOR).as_str()),
                    None,
                )
            });
        }
        completed
    }
}

/// The size above which a copy goes part by part: S3's limit (a test build may lower it).
fn copy_limit() -> u64 {
    crate::hooks::copy_limit(COPY_LIMIT)
}

/// Each part of a copy in parts; S3's smallest part (5 MiB) in the test build's lowered mode.
fn copy_part_size() -> u64 {
    if copy_limit() < COPY_LIMIT {
        5 << 20
    } else {
        COPY_PART
    }
}

impl Bucket for Client {
    fn get_response(&self, key: &str) -> io::Result<(String, ureq::Response)> {
        let what = self.name(key);
        let creds = self.settings.credentials.as_ref();
        let response = self.send(Op::Get, &what, || {
            let action = self.bucket.get_object(creds, key);
            (
                self.transport.agent.get(action.sign(SIGNED_FOR).as_str()),
                None,
            )
        })?;
        Ok((what, response))
    }

    fn url(&self) -> String {
        format!("s3://{}", self.settings.bucket)
    }

    fn identity(&self) -> String {
        format!(
            "s3://{} at {}",
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
        let creds = self.settings.credentials.as_ref();
        let response = self.send(Op::List, &what, || {
            let mut action = ListObjectsV2::new(&self.bucket, creds);
            action.with_prefix(prefix);
            action.with_max_keys(crate::hooks::page_size(PAGE));
            if let Some(s) = start_after {
                action.with_start_after(s);
            }
            if let Some(t) = token {
                action.with_continuation_token(t);
            }
            (
                self.transport.agent.get(action.sign(SIGNED_FOR).as_str()),
                None,
            )
        })?;
        let body = response
            .into_string()
            .map_err(|e| io::Error::new(e.kind(), format!("{what}: {e}")))?;
        page_of(&body).map_err(|e| io::Error::new(e.kind(), format!("{what}: {e}")))
    }

    fn put(&self, key: &str, body: &[u8], only_if_absent: bool) -> io::Result<bool> {
        self.put_if(key, body, only_if_absent.then_some(("If-None-Match", "*")))
    }

    fn put_if_match(&self, key: &str, body: &[u8], etag: &str) -> io::Result<bool> {
        self.put_if(key, body, Some(("If-Match", etag)))
    }

    fn copy(&self, from: &str, to: &str, size: u64) -> io::Result<()> {
        let what = format!("{} -> {}", self.name(from), self.name(to));
        if size > copy_limit() {
            self.copy_in_parts(from, to, size, &what)
        } else {
            self.copy_whole(from, to, &what)
        }
    }

    fn delete(&self, key: &str) -> io::Result<()> {
        let what = self.name(key);
        let creds = self.settings.credentials.as_ref();
        self.send(Op::Delete, &what, || {
            let action = self.bucket.delete_object(creds, key);
            (
                self.transport
                    .agent
                    .delete(action.sign(SIGNED_FOR).as_str()),
                None,
            )
        })
        .map(|_| ())
    }

    fn delete_batch_size(&self) -> usize {
        DELETE_BATCH
    }

    fn delete_batch(&self, keys: &[String]) -> io::Result<Vec<(String, String)>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let what = format!("{} ({} keys)", self.name(&keys[0]), keys.len());
        let creds = self.settings.credentials.as_ref();
        let ids: Vec<ObjectIdentifier> = keys
            .iter()
            .map(|k| ObjectIdentifier::new(k.clone()))
            .collect();
        let response = self.send(Op::Delete, &what, || {
            let mut action = self.bucket.delete_objects(creds, ids.iter());
            action.set_quiet(true);
            let url = action.sign(SIGNED_FOR);
            let (body, md5) = action.body_with_md5();
            (
                self.transport
                    .agent
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
            // Keys as they were sent: the answer is not percent-encoded (no encoding-type
            // was asked for), so a key decoded here would match none and count as deleted.
            .map(|e| (e.key, format!("{} {}", e.code, e.message)))
            .collect())
    }

    fn list_multipart(&self, prefix: &str) -> io::Result<Vec<Multipart>> {
        let what = self.name(prefix);
        let creds = self.settings.credentials.as_ref();
        let mut out = Vec::new();
        let mut marker: Option<(String, String)> = None;
        loop {
            let body = self
                .send(Op::List, &what, || {
                    // ListMultipartUploads: GET on the bucket with `uploads`.
                    let mut action = self.bucket.get_object(creds, "");
                    let query = action.query_mut();
                    query.insert("uploads", "");
                    query.insert("prefix", prefix.to_string());
                    if let Some((key, id)) = &marker {
                        query.insert("key-marker", key.clone());
                        query.insert("upload-id-marker", id.clone());
                    }
                    (
                        self.transport.agent.get(action.sign(SIGNED_FOR).as_str()),
                        None,
                    )
                })?
                .into_string()
                .map_err(|e| io::Error::new(e.kind(), format!("{what}: {e}")))?;
            if !body.contains("ListMultipartUploadsResult") {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{what}: unreadable list of multipart uploads"),
                ));
            }
            for upload in body.split("<Upload>").skip(1) {
                let (Some(key), Some(id)) = (xml_text(upload, "Key"), xml_text(upload, "UploadId"))
                else {
                    continue;
                };
                out.push(Multipart {
                    key: xml_unescape(key),
                    upload_id: xml_unescape(id),
                    initiated: http::listed_time(xml_text(upload, "Initiated")),
                });
            }
            let truncated = xml_text(&body, "IsTruncated") == Some("true");
            let next = (
                xml_text(&body, "NextKeyMarker"),
                xml_text(&body, "NextUploadIdMarker"),
            );
            match (truncated, next) {
                (true, (Some(k), Some(i))) if !k.is_empty() => {
                    marker = Some((xml_unescape(k), xml_unescape(i)))
                }
                _ => return Ok(out),
            }
        }
    }

    fn multipart_parts(
        &self,
        upload: &Multipart,
    ) -> io::Result<(u64, Option<std::time::SystemTime>)> {
        let what = self.name(&upload.key);
        let creds = self.settings.credentials.as_ref();
        let mut size = 0;
        let mut newest = None;
        let mut marker: Option<String> = None;
        loop {
            let body = self
                .send(Op::List, &what, || {
                    let mut action = self
                        .bucket
                        .list_parts(creds, &upload.key, &upload.upload_id);
                    if let Some(m) = &marker {
                        action.query_mut().insert("part-number-marker", m.clone());
                    }
                    (
                        self.transport.agent.get(action.sign(SIGNED_FOR).as_str()),
                        None,
                    )
                })?
                .into_string()
                .map_err(|e| io::Error::new(e.kind(), format!("{what}: {e}")))?;
            for part in body.split("<Part>").skip(1) {
                size += xml_text(part, "Size")
                    .and_then(|s| s.parse::<u64>().ok())
                    .unwrap_or(0);
                let modified = http::listed_time(xml_text(part, "LastModified"));
                newest = newest.max(Some(modified));
            }
            let truncated = xml_text(&body, "IsTruncated") == Some("true");
            match xml_text(&body, "NextPartNumberMarker") {
                Some(m) if truncated && !m.is_empty() => marker = Some(m.to_string()),
                _ => return Ok((size, newest)),
            }
        }
    }

    fn abort_multipart(&self, upload: &Multipart) -> io::Result<()> {
        let what = format!("{} (upload {})", self.name(&upload.key), upload.upload_id);
        let creds = self.settings.credentials.as_ref();
        let sent = self.send(Op::Delete, &what, || {
            let action = self
                .bucket
                .abort_multipart_upload(creds, &upload.key, &upload.upload_id);
            (
                self.transport
                    .agent
                    .delete(action.sign(SIGNED_FOR).as_str()),
                None,
            )
        });
        match sent {
            Ok(_) => Ok(()),
            // NoSuchUpload: completed or aborted meanwhile.
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn requests(&self) -> Requests {
        self.transport.requests()
    }

    fn create_bucket(&self) -> io::Result<()> {
        let what = format!("s3://{}", self.settings.bucket);
        let Some(creds) = self.settings.credentials.as_ref() else {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!("{what}: creating a bucket needs credentials"),
            ));
        };
        self.send(Op::Put, &what, || {
            let action = self.bucket.create_bucket(creds);
            (
                self.transport.agent.put(action.sign(SIGNED_FOR).as_str()),
                Some(Vec::new()),
            )
        })
        .map(|_| ())
    }
}

/// One ListObjectsV2 answer as a page. Its keys come percent-encoded (`encoding-type=url`)
/// and rusty-s3 decodes them: decoding again would turn an admin's `notes-100%€.txt` into
/// nonsense (or worse) and a `+` in a rootdirectory into a space.
fn page_of(body: &str) -> io::Result<Page> {
    let parsed = ListObjectsV2::parse_response(body).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("unreadable listing: {e}"),
        )
    })?;
    let objects = parsed
        .contents
        .into_iter()
        .map(|c| Listed {
            size: c.size.unwrap_or(0),
            modified: http::listed_time(c.last_modified.as_deref()),
            md5: md5_from_hex(c.etag.as_deref().unwrap_or_default().trim_matches('"')),
            key: c.key,
        })
        .collect();
    Ok(Page {
        objects,
        next: parsed.next_continuation_token,
    })
}

/// Whether a copy's 200 answer says the copy was made: S3 can answer 200 and put an
/// `<Error>` in the body, and anything that is not the expected result proves nothing.
fn copied(body: &str, result: &str) -> bool {
    !body.contains("<Error>") && body.contains(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_is_made_only_when_the_answer_says_so() {
        // #22: a 200 with an <Error> body was taken as a copy, and its source deleted.
        assert!(copied(
            "<?xml version=\"1.0\"?><CopyObjectResult><ETag>\"x\"</ETag></CopyObjectResult>",
            "CopyObjectResult"
        ));
        assert!(!copied(
            "<?xml version=\"1.0\"?><Error><Code>InternalError</Code></Error>",
            "CopyObjectResult"
        ));
        assert!(!copied("", "CopyObjectResult"));
    }

    #[test]
    fn listed_keys_are_decoded_once() {
        // What S3 answers with encoding-type=url for `notes-100%€.txt` and `reg+a/x`.
        let body = r#"<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>b</Name><Prefix></Prefix><KeyCount>2</KeyCount><MaxKeys>1000</MaxKeys><EncodingType>url</EncodingType><IsTruncated>false</IsTruncated>
<Contents><Key>notes-100%25%E2%82%AC.txt</Key><LastModified>2026-12-01T00:00:00.000Z</LastModified><ETag>"d41d8cd98f00b204e9800998ecf8427e"</ETag><Size>0</Size><StorageClass>STANDARD</StorageClass></Contents>
<Contents><Key>reg%2Ba/x%2541</Key><LastModified>2026-12-01T00:00:00.000Z</LastModified><ETag>"d41d8cd98f00b204e9800998ecf8427e"</ETag><Size>0</Size><StorageClass>STANDARD</StorageClass></Contents>
</ListBucketResult>"#;
        let page = page_of(body).unwrap();
        let keys: Vec<&str> = page.objects.iter().map(|o| o.key.as_str()).collect();
        assert_eq!(keys, ["notes-100%€.txt", "reg+a/x%41"]);
    }

    #[test]
    fn errors_say_the_status_and_code_but_no_url() {
        let e = http::xml_status_error(
            503,
            "<Error><Code>SlowDown</Code><Message>Reduce your rate</Message></Error>",
            "s3://b/k",
        );
        assert_eq!(
            e.to_string(),
            "s3://b/k: HTTP 503 SlowDown Reduce your rate"
        );
        assert_eq!(
            http::xml_status_error(404, "", "s3://b/k").kind(),
            io::ErrorKind::NotFound
        );
    }
}

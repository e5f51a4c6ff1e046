//! The few requests regsweep sends to an object store, one implementation per service
//! ([`super::s3`], [`super::gcs`], [`super::azure`]); [`super::object::ObjectStorage`] builds
//! the registry's view, the sweep and the lock on them once for every store.

use std::io;
use std::time::SystemTime;

use super::Requests;

/// One listed object.
#[derive(Debug, Clone)]
pub struct Listed {
    pub key: String,
    pub size: u64,
    pub modified: SystemTime,
    /// The MD5 of the content when the store's listing proves it (S3: an ETag that is a plain
    /// MD5; GCS: `md5Hash`; Azure: `Content-MD5`); composite and encrypted objects have none.
    pub md5: Option<[u8; 16]>,
}

/// One page of a listing.
#[derive(Debug, Default)]
pub struct Page {
    pub objects: Vec<Listed>,
    pub next: Option<String>,
}

/// An upload begun and never completed (S3's multipart uploads): not an object, so no
/// listing shows it, yet the store keeps (and bills) its parts until it is aborted.
#[derive(Debug, Clone)]
pub struct Multipart {
    pub key: String,
    pub upload_id: String,
    pub initiated: SystemTime,
}

pub trait Bucket: Send + Sync {
    /// `s3://bucket`, `gs://bucket`, `azblob://container`: keys are named below it.
    fn url(&self) -> String;

    /// Which bucket of which service this is, for a record that must not be used with
    /// another one (the `--unreferenced-for` state): the URL, with the account and the
    /// endpoint where they tell two buckets of one name apart. Never a secret.
    fn identity(&self) -> String;

    /// Whether a listing can start after a given key (S3 `start-after`, GCS `startOffset`):
    /// then a large bucket's key space is listed in ranges at once.
    fn lists_from_a_key(&self) -> bool;

    /// One page of the keys under `prefix`, after `start_after`, or continuing `token`.
    fn list_page(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        token: Option<&str>,
    ) -> io::Result<Page>;

    /// GET an object: its name for messages, and the response to read it from.
    fn get_response(&self, key: &str) -> io::Result<(String, ureq::Response)>;

    /// The answer's header that carries an object's version for a conditional write.
    fn version_header(&self) -> &'static str {
        "ETag"
    }

    /// The whole object (at most `limit` bytes), and its version for a later conditional
    /// write (ETag, or GCS generation).
    fn get_versioned(&self, key: &str, limit: u64, buf: &mut Vec<u8>) -> io::Result<String> {
        let (what, response) = self.get_response(key)?;
        let version = response
            .header(self.version_header())
            .unwrap_or_default()
            .to_string();
        super::http::read_body(response, limit, buf, &what)?;
        Ok(version)
    }

    fn get(&self, key: &str, limit: u64, buf: &mut Vec<u8>) -> io::Result<()> {
        self.get_versioned(key, limit, buf).map(|_| ())
    }

    /// Stream the whole object to `f`; returns the bytes read.
    fn get_chunks(&self, key: &str, f: &mut dyn FnMut(&[u8])) -> io::Result<u64> {
        let (what, response) = self.get_response(key)?;
        super::http::stream_body(response, &what, f)
    }

    /// Write an object whole; with `only_if_absent`, only if the key does not exist. Returns
    /// whether it was written (false: refused on that condition).
    fn put(&self, key: &str, body: &[u8], only_if_absent: bool) -> io::Result<bool>;

    /// Write only while the object still has this version (replacing exactly what was read).
    fn put_if_match(&self, key: &str, body: &[u8], version: &str) -> io::Result<bool>;

    /// Copy an object of `size` bytes within the bucket, server-side, whatever its size.
    fn copy(&self, from: &str, to: &str, size: u64) -> io::Result<()>;

    /// Delete one key; a missing key is success.
    fn delete(&self, key: &str) -> io::Result<()>;

    /// How many keys one [`Bucket::delete_batch`] takes at most.
    fn delete_batch_size(&self) -> usize;

    /// Delete keys in one request. Returns the keys that could not be deleted, with why (a
    /// key already gone is deleted); an error of the request as a whole is returned as such.
    fn delete_batch(&self, keys: &[String]) -> io::Result<Vec<(String, String)>>;

    /// The incomplete multipart uploads under `prefix`. Stores whose unfinished uploads
    /// expire by themselves (GCS resumable uploads, Azure's uncommitted blocks: a week) have
    /// none to show.
    fn list_multipart(&self, _prefix: &str) -> io::Result<Vec<Multipart>> {
        Ok(Vec::new())
    }

    /// The bytes an incomplete upload holds and when its newest part arrived.
    fn multipart_parts(&self, _upload: &Multipart) -> io::Result<(u64, Option<SystemTime>)> {
        Ok((0, None))
    }

    /// Abort an incomplete upload: its parts are freed. One already gone is aborted.
    fn abort_multipart(&self, upload: &Multipart) -> io::Result<()> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("{}: this store has no multipart uploads", upload.key),
        ))
    }

    /// Requests sent so far, by kind.
    fn requests(&self) -> Requests;

    /// Create the bucket or container (the tests and the fixture loader).
    fn create_bucket(&self) -> io::Result<()>;
}

/// The client of the object store a target resolved to; `None` for a filesystem.
pub fn connect(
    backend: &crate::config::Backend,
    max_requests_per_second: Option<f64>,
) -> Option<io::Result<std::sync::Arc<dyn Bucket>>> {
    use crate::config::Backend;
    use std::sync::Arc;
    let rate = max_requests_per_second;
    Some(match backend {
        Backend::Fs(_) => return None,
        Backend::S3 { settings, .. } => super::s3::Client::new((**settings).clone(), rate)
            .map(|c| Arc::new(c) as Arc<dyn Bucket>),
        Backend::Gcs { settings, .. } => super::gcs::Client::new((**settings).clone(), rate)
            .map(|c| Arc::new(c) as Arc<dyn Bucket>),
        Backend::Azure { settings, .. } => super::azure::Client::new((**settings).clone(), rate)
            .map(|c| Arc::new(c) as Arc<dyn Bucket>),
    })
}

/// An MD5 from its hex form (an S3 ETag), when it is exactly one.
pub fn md5_from_hex(etag: &str) -> Option<[u8; 16]> {
    if etag.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(etag.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// An MD5 from its base64 form (GCS `md5Hash`, Azure `Content-MD5`), when it is exactly one.
pub fn md5_from_base64(text: &str) -> Option<[u8; 16]> {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .ok()?;
    bytes.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn md5_forms() {
        assert!(md5_from_hex("d41d8cd98f00b204e9800998ecf8427e").is_some());
        assert!(md5_from_hex("d41d8cd98f00b204e9800998ecf8427e-2").is_none());
        assert_eq!(
            md5_from_base64("1B2M2Y8AsgTpgAmY7PhCfg=="),
            md5_from_hex("d41d8cd98f00b204e9800998ecf8427e")
        );
        assert!(md5_from_base64("AAAA").is_none());
        assert!(md5_from_base64("").is_none());
    }
}

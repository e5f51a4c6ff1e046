//! Manifests: every media type the registry stores, reduced to what it references.
//!
//! A manifest references blobs (config, layers, artifact blobs, schema 1 `fsLayers`), child
//! manifests (indexes and manifest lists) and optionally a `subject` (it is then a referrer of
//! that manifest). Only those fields are decoded; everything else (annotations, signatures,
//! history) is skipped by the JSON parser without being allocated.
//!
//! Invariant: a manifest whose kind cannot be told is an error, never a guess. Its references
//! are unknown, so anything it might keep alive must be kept, which is the caller's decision.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;

use crate::registry::digest::Digest;

/// The registry refuses manifests above 4 MiB on push; a larger one on disk is suspicious and
/// is not read whole into memory.
pub const MAX_MANIFEST_BYTES: u64 = 4 << 20;

pub mod media_type {
    pub const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";
    pub const DOCKER_SCHEMA1_SIGNED: &str =
        "application/vnd.docker.distribution.manifest.v1+prettyjws";
    pub const DOCKER_SCHEMA2: &str = "application/vnd.docker.distribution.manifest.v2+json";
    pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
    pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
    pub const OCI_ARTIFACT: &str = "application/vnd.oci.artifact.manifest.v1+json";
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    DockerSchema1,
    DockerSchema2,
    DockerManifestList,
    OciManifest,
    OciIndex,
    OciArtifact,
}

impl Kind {
    pub fn is_index(self) -> bool {
        matches!(self, Kind::DockerManifestList | Kind::OciIndex)
    }
}

/// A blob a manifest needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobRef {
    pub digest: Digest,
    /// Declared size, when the descriptor has one (schema 1 does not).
    pub size: Option<u64>,
    /// A layer with `urls` may live outside the registry (foreign layers): its absence from
    /// the blob store is not damage.
    pub foreign: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    pub kind: Kind,
    pub blobs: Vec<BlobRef>,
    /// Child manifests, for indexes and manifest lists.
    pub children: Vec<Digest>,
    /// The manifest this one refers to (signatures, SBOMs, attestations).
    pub subject: Option<Digest>,
    /// Length of the manifest's bytes: the size of its blob.
    pub len: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    Json(String),
    UnknownMediaType(String),
    UnknownShape(String),
    BadDigest { field: String, error: String },
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::Json(e) => write!(f, "not a valid JSON manifest: {e}"),
            ParseError::UnknownMediaType(m) => write!(f, "unknown manifest media type {m:?}"),
            ParseError::UnknownShape(why) => write!(f, "unknown manifest kind: {why}"),
            ParseError::BadDigest { field, error } => {
                write!(f, "invalid digest in {field}: {error}")
            }
        }
    }
}

impl std::error::Error for ParseError {}

#[derive(Deserialize)]
struct RawDescriptor<'a> {
    #[serde(borrow)]
    digest: Cow<'a, str>,
    #[serde(default)]
    size: Option<i64>,
    #[serde(default)]
    urls: Option<Vec<serde::de::IgnoredAny>>,
}

#[derive(Deserialize)]
struct RawFsLayer<'a> {
    #[serde(rename = "blobSum", borrow)]
    blob_sum: Cow<'a, str>,
}

#[derive(Deserialize)]
struct RawManifest<'a> {
    #[serde(rename = "schemaVersion", default)]
    schema_version: Option<i64>,
    #[serde(rename = "mediaType", default, borrow)]
    media_type: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    config: Option<RawDescriptor<'a>>,
    #[serde(default, borrow)]
    layers: Option<Vec<RawDescriptor<'a>>>,
    #[serde(default, borrow)]
    manifests: Option<Vec<RawDescriptor<'a>>>,
    #[serde(default, borrow)]
    blobs: Option<Vec<RawDescriptor<'a>>>,
    #[serde(default, borrow)]
    subject: Option<RawDescriptor<'a>>,
    #[serde(rename = "fsLayers", default, borrow)]
    fs_layers: Option<Vec<RawFsLayer<'a>>>,
}

fn digest(field: &str, s: &str) -> Result<Digest, ParseError> {
    s.parse().map_err(
        |e: crate::registry::digest::DigestError| ParseError::BadDigest {
            field: field.to_string(),
            error: e.to_string(),
        },
    )
}

fn blob_ref(field: &str, d: &RawDescriptor<'_>) -> Result<BlobRef, ParseError> {
    Ok(BlobRef {
        digest: digest(field, &d.digest)?,
        size: d.size.and_then(|s| u64::try_from(s).ok()),
        foreign: d.urls.as_ref().is_some_and(|u| !u.is_empty()),
    })
}

fn detect_kind(raw: &RawManifest<'_>) -> Result<Kind, ParseError> {
    use media_type::*;
    if raw.schema_version == Some(1) {
        return match raw.media_type.as_deref() {
            None | Some(DOCKER_SCHEMA1) | Some(DOCKER_SCHEMA1_SIGNED)
                if raw.fs_layers.is_some() =>
            {
                Ok(Kind::DockerSchema1)
            }
            None | Some(DOCKER_SCHEMA1) | Some(DOCKER_SCHEMA1_SIGNED) => Err(
                ParseError::UnknownShape("schemaVersion 1 without fsLayers".into()),
            ),
            Some(other) => Err(ParseError::UnknownMediaType(other.to_string())),
        };
    }
    match raw.media_type.as_deref() {
        Some(DOCKER_SCHEMA2) => Ok(Kind::DockerSchema2),
        Some(DOCKER_LIST) => Ok(Kind::DockerManifestList),
        Some(OCI_MANIFEST) => Ok(Kind::OciManifest),
        Some(OCI_INDEX) => Ok(Kind::OciIndex),
        // The artifact manifest draft had no schemaVersion.
        Some(OCI_ARTIFACT) => Ok(Kind::OciArtifact),
        Some(other) => Err(ParseError::UnknownMediaType(other.to_string())),
        // OCI makes mediaType optional: tell the kinds apart by their fields.
        None if raw.schema_version != Some(2) => Err(ParseError::UnknownShape(format!(
            "no mediaType and schemaVersion {}",
            raw.schema_version
                .map_or_else(|| "missing".to_string(), |v| v.to_string())
        ))),
        None if raw.manifests.is_some() => Ok(Kind::OciIndex),
        None if raw.config.is_some() => Ok(Kind::OciManifest),
        None => Err(ParseError::UnknownShape(
            "no mediaType, and neither manifests nor config".into(),
        )),
    }
}

/// The fields regsweep reads, as they are spelt: at the top of a manifest, and in a
/// descriptor (or an `fsLayers` entry).
const TOP_FIELDS: [&str; 8] = [
    "schemaVersion",
    "mediaType",
    "config",
    "layers",
    "manifests",
    "blobs",
    "subject",
    "fsLayers",
];
const DESCRIPTOR_FIELDS: [&str; 4] = ["digest", "size", "urls", "blobSum"];

/// A key folded as Go's `encoding/json` matches field names (`bytes.EqualFold`): ASCII case,
/// and the two non-ASCII letters that fold onto letters of these names, the long s (U+017F)
/// and the Kelvin sign (U+212A).
fn fold(key: &str) -> String {
    key.chars()
        .map(|c| match c {
            '\u{17F}' => 's',
            '\u{212A}' => 'k',
            c => c.to_ascii_lowercase(),
        })
        .collect()
}

/// Whether `bytes` may hold a key that is one of our fields in another spelling: any byte
/// outside ASCII, a JSON escape (`\u017f` is a long s), or a quoted field name in another
/// ASCII case. One pass over the bytes, and false for what registries write, so the usual
/// parse stays one parse.
fn may_hold_other_spellings(bytes: &[u8]) -> bool {
    if !bytes.is_ascii() {
        return true;
    }
    let mut i = 0;
    while let Some(q) = bytes[i..].iter().position(|&b| b == b'"') {
        let start = i + q + 1;
        // The closing quote: the next one not escaped by a backslash.
        let mut end = start;
        loop {
            match bytes[end..].iter().position(|&b| b == b'"' || b == b'\\') {
                None => return false,
                Some(p) if bytes[end + p] == b'\\' => match bytes.get(end + p + 1) {
                    Some(b'u') => return true,
                    Some(_) => end += p + 2,
                    // Cut short after a backslash: not JSON; the parse says why.
                    None => return false,
                },
                Some(p) => {
                    end += p;
                    break;
                }
            }
        }
        let token = &bytes[start..end.min(bytes.len())];
        let other_spelling = |f: &&str| {
            f.len() == token.len()
                && token != f.as_bytes()
                && token.eq_ignore_ascii_case(f.as_bytes())
        };
        if TOP_FIELDS
            .iter()
            .chain(&DESCRIPTOR_FIELDS)
            .any(other_spelling)
        {
            return true;
        }
        i = end + 1;
        if i >= bytes.len() {
            return false;
        }
    }
    false
}

/// Rewrite the keys of `object` that fold onto one of `fields` to that field's spelling.
/// Two keys for one field are merged as the registry could read either: lists are joined
/// (every reference counts), equal values are one, and different single values are an error
/// (which one the registry took cannot be known).
fn respell(
    object: serde_json::Map<String, serde_json::Value>,
    fields: &[&str],
) -> Result<serde_json::Map<String, serde_json::Value>, ParseError> {
    use serde_json::Value;
    let mut out = serde_json::Map::new();
    for (key, value) in object {
        let folded = fold(&key);
        let name = fields
            .iter()
            .find(|f| f.to_ascii_lowercase() == folded)
            .map_or(key, |f| f.to_string());
        match (out.remove(&name), value) {
            (None, v) => {
                out.insert(name, v);
            }
            (Some(Value::Array(mut a)), Value::Array(b)) => {
                a.extend(b);
                out.insert(name, Value::Array(a));
            }
            (Some(a), b) if a == b => {
                out.insert(name, a);
            }
            (Some(_), _) => {
                return Err(ParseError::UnknownShape(format!(
                    "two different values for {name} (in other spellings): which one the \
                     registry reads cannot be told"
                )))
            }
        }
    }
    Ok(out)
}

/// The manifest with every key the registry would match to one of our fields spelt as we read
/// it (the registry decodes with Go's `encoding/json`, which matches field names
/// case-insensitively: `"Layers"` is its `layers`).
fn respelt(bytes: &[u8]) -> Result<Vec<u8>, ParseError> {
    use serde_json::Value;
    let value: Value =
        serde_json::from_slice(bytes).map_err(|e| ParseError::Json(e.to_string()))?;
    let Value::Object(top) = value else {
        return Ok(bytes.to_vec());
    };
    let mut top = respell(top, &TOP_FIELDS)?;
    let descriptor = |v: &mut Value| -> Result<(), ParseError> {
        if let Value::Object(o) = v {
            *o = respell(std::mem::take(o), &DESCRIPTOR_FIELDS)?;
        }
        Ok(())
    };
    for field in ["config", "subject"] {
        if let Some(v) = top.get_mut(field) {
            descriptor(v)?;
        }
    }
    for field in ["layers", "manifests", "blobs", "fsLayers"] {
        if let Some(Value::Array(items)) = top.get_mut(field) {
            for item in items {
                descriptor(item)?;
            }
        }
    }
    serde_json::to_vec(&Value::Object(top)).map_err(|e| ParseError::Json(e.to_string()))
}

impl Manifest {
    pub fn parse(bytes: &[u8]) -> Result<Manifest, ParseError> {
        if may_hold_other_spellings(bytes) {
            let respelt = respelt(bytes)?;
            if respelt != bytes {
                let mut m = Manifest::parse_exact(&respelt)?;
                m.len = bytes.len() as u64;
                return Ok(m);
            }
        }
        Manifest::parse_exact(bytes)
    }

    /// Parse a manifest whose keys are spelt as we read them.
    fn parse_exact(bytes: &[u8]) -> Result<Manifest, ParseError> {
        let raw: RawManifest<'_> =
            serde_json::from_slice(bytes).map_err(|e| ParseError::Json(e.to_string()))?;
        let kind = detect_kind(&raw)?;
        let missing = |field: &str| ParseError::UnknownShape(format!("{kind:?} without {field}"));
        match kind {
            Kind::DockerSchema1 => {}
            Kind::DockerSchema2 | Kind::OciManifest => {
                if raw.config.is_none() {
                    return Err(missing("config"));
                }
                if raw.layers.is_none() && kind == Kind::DockerSchema2 {
                    return Err(missing("layers"));
                }
            }
            Kind::DockerManifestList | Kind::OciIndex => {
                if raw.manifests.is_none() {
                    return Err(missing("manifests"));
                }
            }
            Kind::OciArtifact => {}
        }

        // Collect references from every known field present, whatever the kind says: a field
        // we understand is never ignored, so a mislabelled manifest cannot hide a reference.
        let mut blobs = Vec::new();
        if let Some(c) = &raw.config {
            blobs.push(blob_ref("config", c)?);
        }
        for l in raw.layers.iter().flatten() {
            blobs.push(blob_ref("layers", l)?);
        }
        for b in raw.blobs.iter().flatten() {
            blobs.push(blob_ref("blobs", b)?);
        }
        for l in raw.fs_layers.iter().flatten() {
            blobs.push(BlobRef {
                digest: digest("fsLayers", &l.blob_sum)?,
                size: None,
                foreign: false,
            });
        }
        let children = raw
            .manifests
            .iter()
            .flatten()
            .map(|m| digest("manifests", &m.digest))
            .collect::<Result<Vec<_>, _>>()?;
        let subject = raw
            .subject
            .as_ref()
            .map(|s| digest("subject", &s.digest))
            .transpose()?;
        Ok(Manifest {
            kind,
            blobs,
            children,
            subject,
            len: bytes.len() as u64,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(c: char) -> String {
        format!("sha256:{}", c.to_string().repeat(64))
    }

    #[test]
    fn field_names_in_any_case_are_read_as_the_registry_reads_them() {
        // #22: the registry (Go's encoding/json) follows "Layers", "Subject", "Manifests";
        // regsweep did not, and their blobs looked dead.
        let json = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
               "Config":{{"mediaType":"c","Digest":"{}","size":2}},
               "LAYERS":[{{"mediaType":"l","digest":"{}","size":3}}],
               "layers":[{{"mediaType":"l","digest":"{}","size":4}}],
               "Subject":{{"mediaType":"m","digest":"{}","size":5}}}}"#,
            d('a'),
            d('b'),
            d('c'),
            d('d')
        );
        let m = Manifest::parse(json.as_bytes()).unwrap();
        let blobs: Vec<String> = m.blobs.iter().map(|b| b.digest.to_string()).collect();
        assert_eq!(blobs, [d('a'), d('b'), d('c')]);
        assert_eq!(m.subject.unwrap().to_string(), d('d'));
        assert_eq!(m.len, json.len() as u64);
        let index = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json",
               "Manifests":[{{"mediaType":"m","digest":"{}","size":5}}]}}"#,
            d('e')
        );
        let m = Manifest::parse(index.as_bytes()).unwrap();
        assert_eq!(m.children[0].to_string(), d('e'));
        // The long s folds onto s, as in Go: "layer\u017f" is "layers", escaped or not.
        let long_s = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
               "config":{{"digest":"{}"}},"layer\u017f":[{{"digest":"{}"}}]}}"#,
            d('a'),
            d('f')
        );
        let m = Manifest::parse(long_s.as_bytes()).unwrap();
        assert_eq!(m.blobs[1].digest.to_string(), d('f'));
        let m = Manifest::parse(long_s.replace("\\u017f", "\u{17F}").as_bytes()).unwrap();
        assert_eq!(m.blobs[1].digest.to_string(), d('f'));
        // Two different media types in two spellings: which the registry took is unknown.
        let two = r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","MediaType":"application/vnd.oci.image.manifest.v1+json","manifests":[]}"#;
        assert!(Manifest::parse(two.as_bytes()).is_err());
    }

    #[test]
    fn the_quick_scan_finds_other_spellings_and_only_them() {
        let usual = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"digest":"{}","size":2}},"layers":[{{"digest":"{}","size":3,"annotations":{{"say":"a \"quoted\" layers"}}}}]}}"#,
            d('a'),
            d('b')
        );
        assert!(!may_hold_other_spellings(usual.as_bytes()));
        // After long values and escaped quotes, a key in another case is still found.
        let odd = usual.replace(r#""layers":"#, r#""Layers":"#);
        assert!(may_hold_other_spellings(odd.as_bytes()));
        let odd = usual.replace(r#""size":3"#, r#""SIZE":3"#);
        assert!(may_hold_other_spellings(odd.as_bytes()));
        assert!(may_hold_other_spellings(br#"{"layer\u0073":[]}"#));
    }

    #[test]
    fn docker_schema2() {
        let json = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"application/vnd.docker.container.image.v1+json","size":1470,"digest":"{}"}},"layers":[{{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","size":2811969,"digest":"{}"}}]}}"#,
            media_type::DOCKER_SCHEMA2,
            d('a'),
            d('b')
        );
        let m = Manifest::parse(json.as_bytes()).unwrap();
        assert_eq!(m.kind, Kind::DockerSchema2);
        let digests: Vec<_> = m.blobs.iter().map(|b| b.digest.to_string()).collect();
        assert_eq!(digests, [d('a'), d('b')]);
        assert_eq!(m.blobs[1].size, Some(2811969));
        assert!(m.children.is_empty() && m.subject.is_none());
    }

    #[test]
    fn docker_schema1_signed() {
        // Shape of a real signed schema 1 manifest (prettyjws), signatures abbreviated.
        let json = format!(
            r#"{{
   "schemaVersion": 1,
   "name": "library/hello",
   "tag": "latest",
   "architecture": "amd64",
   "fsLayers": [ {{ "blobSum": "{}" }}, {{ "blobSum": "{}" }} ],
   "history": [ {{ "v1Compatibility": "{{\"id\":\"x\"}}" }} ],
   "signatures": [ {{ "header": {{ "jwk": {{ "crv": "P-256", "kty": "EC" }}, "alg": "ES256" }},
      "signature": "abc", "protected": "def" }} ]
}}"#,
            d('1'),
            d('2')
        );
        let m = Manifest::parse(json.as_bytes()).unwrap();
        assert_eq!(m.kind, Kind::DockerSchema1);
        assert_eq!(m.blobs.len(), 2);
        assert_eq!(m.blobs[0].digest.to_string(), d('1'));
    }

    #[test]
    fn docker_manifest_list() {
        let json = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","manifests":[{{"mediaType":"{}","size":7143,"digest":"{}","platform":{{"architecture":"ppc64le","os":"linux"}}}},{{"mediaType":"{}","size":7682,"digest":"{}","platform":{{"architecture":"amd64","os":"linux"}}}}]}}"#,
            media_type::DOCKER_LIST,
            media_type::DOCKER_SCHEMA2,
            d('c'),
            media_type::DOCKER_SCHEMA2,
            d('e')
        );
        let m = Manifest::parse(json.as_bytes()).unwrap();
        assert_eq!(m.kind, Kind::DockerManifestList);
        assert!(m.kind.is_index());
        assert!(m.blobs.is_empty());
        let children: Vec<_> = m.children.iter().map(|c| c.to_string()).collect();
        assert_eq!(children, [d('c'), d('e')]);
    }

    #[test]
    fn oci_manifest_with_subject_and_foreign_layer() {
        let json = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","artifactType":"application/vnd.example.sbom","config":{{"mediaType":"application/vnd.oci.empty.v1+json","digest":"{}","size":2}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{}","size":10,"urls":["https://example.com/layer"]}}],"subject":{{"mediaType":"{}","digest":"{}","size":100}},"annotations":{{"a":"b"}}}}"#,
            media_type::OCI_MANIFEST,
            d('4'),
            d('5'),
            media_type::OCI_MANIFEST,
            d('6')
        );
        let m = Manifest::parse(json.as_bytes()).unwrap();
        assert_eq!(m.kind, Kind::OciManifest);
        assert!(!m.blobs[0].foreign);
        assert!(m.blobs[1].foreign);
        assert_eq!(m.subject.unwrap().to_string(), d('6'));
    }

    #[test]
    fn oci_without_media_type_is_told_apart_by_fields() {
        let manifest = format!(
            r#"{{"schemaVersion":2,"config":{{"digest":"{}","size":1}},"layers":[]}}"#,
            d('7')
        );
        assert_eq!(
            Manifest::parse(manifest.as_bytes()).unwrap().kind,
            Kind::OciManifest
        );
        let index = format!(
            r#"{{"schemaVersion":2,"manifests":[{{"digest":"{}","size":1}}]}}"#,
            d('8')
        );
        let m = Manifest::parse(index.as_bytes()).unwrap();
        assert_eq!(m.kind, Kind::OciIndex);
        assert_eq!(m.children.len(), 1);
    }

    #[test]
    fn oci_index_with_subject_and_artifact_manifest() {
        let index = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","manifests":[{{"digest":"{}","size":1}}],"subject":{{"digest":"{}","size":1}}}}"#,
            media_type::OCI_INDEX,
            d('8'),
            d('9')
        );
        let m = Manifest::parse(index.as_bytes()).unwrap();
        assert_eq!(m.subject.unwrap().to_string(), d('9'));
        let artifact = format!(
            r#"{{"mediaType":"{}","artifactType":"application/x","blobs":[{{"digest":"{}","size":3}}],"subject":{{"digest":"{}","size":1}}}}"#,
            media_type::OCI_ARTIFACT,
            d('a'),
            d('b')
        );
        let m = Manifest::parse(artifact.as_bytes()).unwrap();
        assert_eq!(m.kind, Kind::OciArtifact);
        assert_eq!(m.blobs[0].digest.to_string(), d('a'));
    }

    #[test]
    fn unknown_and_broken_manifests_are_errors() {
        let cases: &[&str] = &[
            "",
            "{",
            "[]",
            r#"{"schemaVersion":2,"mediaType":"application/vnd.example.unknown+json","config":{"digest":"sha256:00","size":1}}"#,
            r#"{"schemaVersion":2}"#,
            r#"{"schemaVersion":3,"config":{"digest":"sha256:00"}}"#,
            r#"{"schemaVersion":1}"#,
            r#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","layers":[]}"#,
            r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json"}"#,
            r#"{"schemaVersion":2,"config":{"digest":"md5:abc"},"layers":[]}"#,
            r#"{"schemaVersion":2,"manifests":[{"size":3}]}"#,
        ];
        for json in cases {
            assert!(Manifest::parse(json.as_bytes()).is_err(), "accepted {json}");
        }
    }
}

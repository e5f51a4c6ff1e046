//! Content digests (`sha256:<64 hex>`, `sha512:<128 hex>`).
//!
//! A [`Digest`] is validated once, at the edge (link files, manifest descriptors, directory
//! names), and then carried as raw bytes: it is hashed and compared millions of times during a
//! mark, so it must be small and cheap. sha256 is stored inline (33 bytes of payload); the rare
//! sha512 digest is boxed so that it does not double the size of every sha256 one.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The digest algorithms the distribution registry accepts. Anything else is an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Algorithm {
    Sha256,
    Sha512,
}

impl Algorithm {
    pub const ALL: [Algorithm; 2] = [Algorithm::Sha256, Algorithm::Sha512];

    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }

    /// Length of the hex encoding.
    pub fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Sha512 => 128,
        }
    }

    pub fn from_name(name: &str) -> Option<Algorithm> {
        match name {
            "sha256" => Some(Algorithm::Sha256),
            "sha512" => Some(Algorithm::Sha512),
            _ => None,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A validated digest. Ordering is by algorithm, then bytes, which is also the order of the
/// textual form, so sorted output is stable and readable.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Digest {
    Sha256([u8; 32]),
    Sha512(Box<[u8; 64]>),
}

/// Why a string is not a digest. Kept small and path-free: callers attach the path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    #[error("empty digest")]
    Empty,
    #[error("digest {0:?} has no algorithm prefix (expected sha256:<hex> or sha512:<hex>)")]
    NoAlgorithm(String),
    #[error("unsupported digest algorithm {0:?} (only sha256 and sha512 are valid)")]
    UnsupportedAlgorithm(String),
    #[error("digest {0:?} has the wrong length for its algorithm")]
    BadLength(String),
    #[error("digest {0:?} is not lower-case hexadecimal")]
    BadHex(String),
}

fn truncate_for_message(s: &str) -> String {
    // Garbage link files can be large; keep error messages readable.
    const MAX: usize = 80;
    if s.len() <= MAX {
        s.to_string()
    } else {
        let mut end = MAX;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}...", &s[..end])
    }
}

/// Value of each byte as a lower-case hex digit, or `INVALID`. Upper-case hex is rejected on
/// purpose: the registry only ever writes lower case, and `sha256:ABC` names a different path
/// than `sha256:abc` on a case-sensitive filesystem. A table, because every blob name, link
/// and descriptor goes through here (millions on a large registry).
const INVALID: u8 = 0xff;
const HEX: [u8; 256] = {
    let mut t = [INVALID; 256];
    let mut c = 0;
    while c < 10 {
        t[b'0' as usize + c] = c as u8;
        c += 1;
    }
    let mut c = 0;
    while c < 6 {
        t[b'a' as usize + c] = 10 + c as u8;
        c += 1;
    }
    t
};

/// `whole` names the digest in an error; it is only built when there is one (this runs for
/// every blob and link, so the happy path must not allocate).
fn decode_hex<const N: usize>(
    hex: &str,
    whole: impl Fn() -> String,
) -> Result<[u8; N], DigestError> {
    let bytes = hex.as_bytes();
    if bytes.len() != N * 2 {
        return Err(DigestError::BadLength(truncate_for_message(&whole())));
    }
    let mut out = [0u8; N];
    // Check once at the end: valid digits are 0..=15, so any invalid one shows in the high
    // bits of `bad`.
    let mut bad = 0u8;
    for (o, pair) in out.iter_mut().zip(bytes.chunks_exact(2)) {
        let (hi, lo) = (HEX[pair[0] as usize], HEX[pair[1] as usize]);
        bad |= hi | lo;
        *o = hi << 4 | lo;
    }
    if bad > 0x0f {
        return Err(DigestError::BadHex(truncate_for_message(&whole())));
    }
    Ok(out)
}

impl Digest {
    /// Build a digest from an algorithm and its hex encoding (as found in directory names).
    pub fn from_parts(alg: Algorithm, hex: &str) -> Result<Digest, DigestError> {
        let whole = || format!("{alg}:{hex}");
        match alg {
            Algorithm::Sha256 => Ok(Digest::Sha256(decode_hex::<32>(hex, whole)?)),
            Algorithm::Sha512 => Ok(Digest::Sha512(Box::new(decode_hex::<64>(hex, whole)?))),
        }
    }

    /// Parse the content of a link file: one digest, with surrounding whitespace tolerated
    /// (the registry writes none, but hand-edited or copied trees often end in a newline).
    pub fn parse_link(content: &[u8]) -> Result<Digest, DigestError> {
        let text = std::str::from_utf8(content)
            .map_err(|_| DigestError::BadHex(String::from_utf8_lossy(content).into_owned()))?;
        text.trim().parse()
    }

    /// Whether `content` is what a link being written in place reads as: empty, or the first
    /// part of a digest string (the filesystem driver opens, truncates, then writes).
    pub fn is_partial_link(content: &[u8]) -> bool {
        Algorithm::ALL.iter().any(|alg| {
            let prefix = alg.name().as_bytes();
            let full = prefix.len() + 1 + alg.hex_len();
            if content.len() >= full {
                return false;
            }
            let (head, rest) = content.split_at(content.len().min(prefix.len() + 1));
            let mut expect = prefix.to_vec();
            expect.push(b':');
            expect.starts_with(head) && rest.iter().all(u8::is_ascii_hexdigit)
        })
    }

    pub fn algorithm(&self) -> Algorithm {
        match self {
            Digest::Sha256(_) => Algorithm::Sha256,
            Digest::Sha512(_) => Algorithm::Sha512,
        }
    }

    pub fn bytes(&self) -> &[u8] {
        match self {
            Digest::Sha256(b) => b,
            Digest::Sha512(b) => &b[..],
        }
    }

    /// Lower-case hex of the digest bytes, as used in storage paths.
    pub fn hex(&self) -> String {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let bytes = self.bytes();
        let mut s = String::with_capacity(bytes.len() * 2);
        for b in bytes {
            s.push(HEX[(b >> 4) as usize] as char);
            s.push(HEX[(b & 0xf) as usize] as char);
        }
        s
    }

    /// Digest of some content with the given algorithm.
    pub fn of(alg: Algorithm, content: &[u8]) -> Digest {
        use sha2::Digest as _;
        match alg {
            Algorithm::Sha256 => Digest::Sha256(sha2::Sha256::digest(content).into()),
            Algorithm::Sha512 => Digest::Sha512(Box::new(sha2::Sha512::digest(content).into())),
        }
    }
}

impl FromStr for Digest {
    type Err = DigestError;

    fn from_str(s: &str) -> Result<Digest, DigestError> {
        if s.is_empty() {
            return Err(DigestError::Empty);
        }
        let Some((alg, hex)) = s.split_once(':') else {
            return Err(DigestError::NoAlgorithm(truncate_for_message(s)));
        };
        let alg = Algorithm::from_name(alg)
            .ok_or_else(|| DigestError::UnsupportedAlgorithm(truncate_for_message(alg)))?;
        Digest::from_parts(alg, hex).map_err(|e| match e {
            // Report the whole string, not just the hex half.
            DigestError::BadLength(_) => DigestError::BadLength(truncate_for_message(s)),
            DigestError::BadHex(_) => DigestError::BadHex(truncate_for_message(s)),
            other => other,
        })
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm(), self.hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Digest, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX64: &str = "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae";

    #[test]
    fn parses_and_displays_sha256() {
        let s = format!("sha256:{HEX64}");
        let d: Digest = s.parse().unwrap();
        assert_eq!(d.algorithm(), Algorithm::Sha256);
        assert_eq!(d.to_string(), s);
        assert_eq!(d.hex(), HEX64);
    }

    #[test]
    fn parses_sha512() {
        let hex = "ab".repeat(64);
        let d: Digest = format!("sha512:{hex}").parse().unwrap();
        assert_eq!(d.algorithm(), Algorithm::Sha512);
        assert_eq!(d.hex(), hex);
    }

    #[test]
    fn digest_of_content_matches_known_value() {
        // sha256("foo")
        assert_eq!(Digest::of(Algorithm::Sha256, b"foo").hex(), HEX64);
    }

    #[test]
    fn rejects_bad_digests() {
        let cases = [
            ("", DigestError::Empty),
            (HEX64, DigestError::NoAlgorithm(HEX64.to_string())),
            ("md5:abcd", DigestError::UnsupportedAlgorithm("md5".into())),
            (
                "SHA256:abcd",
                DigestError::UnsupportedAlgorithm("SHA256".into()),
            ),
            ("sha256:abcd", DigestError::BadLength("sha256:abcd".into())),
        ];
        for (input, want) in cases {
            assert_eq!(
                input.parse::<Digest>().unwrap_err(),
                want,
                "input {input:?}"
            );
        }
        let upper = format!("sha256:{}", HEX64.to_uppercase());
        assert!(matches!(
            upper.parse::<Digest>(),
            Err(DigestError::BadHex(_))
        ));
        let nonhex = format!("sha256:{}", "g".repeat(64));
        assert!(matches!(
            nonhex.parse::<Digest>(),
            Err(DigestError::BadHex(_))
        ));
        // Every byte value at every position: only 0-9 and a-f decode, to their value.
        for pos in [0, 1, 33, 63] {
            for b in 0..=255u8 {
                let mut hex = HEX64.as_bytes().to_vec();
                hex[pos] = b;
                let Ok(text) = std::str::from_utf8(&hex) else {
                    continue;
                };
                let parsed = Digest::from_parts(Algorithm::Sha256, text);
                let valid = b.is_ascii_digit() || (b'a'..=b'f').contains(&b);
                assert_eq!(parsed.is_ok(), valid, "byte {b:#04x} at {pos}");
                if let Ok(d) = parsed {
                    let nibble = (d.bytes()[pos / 2] >> if pos % 2 == 0 { 4 } else { 0 }) & 0xf;
                    assert_eq!(format!("{nibble:x}").as_bytes()[0], b);
                }
            }
        }
        // A sha256-length hex under the sha512 name is wrong, not silently accepted.
        let wrong_alg = format!("sha512:{HEX64}");
        assert!(matches!(
            wrong_alg.parse::<Digest>(),
            Err(DigestError::BadLength(_))
        ));
    }

    #[test]
    fn link_content_tolerates_surrounding_whitespace_only() {
        let d = Digest::parse_link(format!("  sha256:{HEX64}\n").as_bytes()).unwrap();
        assert_eq!(d.hex(), HEX64);
        assert!(Digest::parse_link(b"").is_err());
        assert!(Digest::parse_link(format!("sha256: {HEX64}").as_bytes()).is_err());
        assert!(Digest::parse_link(&[0xff, 0xfe]).is_err());
    }

    #[test]
    fn serde_round_trip() {
        let d: Digest = format!("sha256:{HEX64}").parse().unwrap();
        let json = serde_json::to_string(&d).unwrap();
        assert_eq!(json, format!("\"sha256:{HEX64}\""));
        assert_eq!(serde_json::from_str::<Digest>(&json).unwrap(), d);
        assert!(serde_json::from_str::<Digest>("\"sha256:zz\"").is_err());
    }

    #[test]
    fn stays_small() {
        assert!(std::mem::size_of::<Digest>() <= 40);
    }
}

//! A bounded, deterministic fuzz harness for the parsers that read untrusted bytes from
//! storage: manifests (`Manifest::parse`) and link files (`Digest::parse_link`).
//!
//! Seeds are the committed corpus under `fuzz/corpus/` (real manifests from the fixture
//! registry, hand-written kinds, odd link files). Each seed is mutated (bit flips, byte
//! replacements with JSON-significant characters, truncations, duplicated or deleted ranges,
//! splices with other seeds) with a fixed-seed RNG, so a failure reproduces exactly. The
//! parsers must never panic, and what they accept must be consistent: a parsed link prints back
//! to the digest it parsed, and a parsed manifest's length is the input's.
//!
//! `REGSWEEP_FUZZ_ITERS` sets the number of mutations per seed (default 300; CI runs the
//! default, a longer hunt is `REGSWEEP_FUZZ_ITERS=100000 cargo test --release --test fuzz`).

use std::panic;
use std::path::Path;

use rand::{Rng, SeedableRng};
use regsweep::registry::digest::Digest;
use regsweep::registry::manifest::Manifest;

fn corpus(kind: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(kind);
    let mut seeds: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    seeds.sort();
    let seeds: Vec<Vec<u8>> = seeds.iter().map(|p| std::fs::read(p).unwrap()).collect();
    assert!(seeds.len() >= 5, "{}: corpus too small", dir.display());
    seeds
}

fn iterations() -> usize {
    std::env::var("REGSWEEP_FUZZ_ITERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300)
}

const INTERESTING: &[u8] = b"{}[]\":,\\0 \n\x00\xff9-.eE";

fn mutate(rng: &mut impl Rng, input: &[u8], other: &[u8]) -> Vec<u8> {
    let mut v = input.to_vec();
    for _ in 0..rng.gen_range(1..=4) {
        let len = v.len();
        match rng.gen_range(0..6) {
            0 if len > 0 => {
                let i = rng.gen_range(0..len);
                v[i] ^= 1 << rng.gen_range(0..8);
            }
            1 if len > 0 => {
                let i = rng.gen_range(0..len);
                v[i] = INTERESTING[rng.gen_range(0..INTERESTING.len())];
            }
            2 if len > 0 => v.truncate(rng.gen_range(0..len)),
            3 if len > 0 => {
                let a = rng.gen_range(0..len);
                let b = rng.gen_range(a..=len.min(a + 64));
                let chunk = v[a..b].to_vec();
                let at = rng.gen_range(0..=v.len());
                v.splice(at..at, chunk);
            }
            4 if len > 0 => {
                let a = rng.gen_range(0..len);
                let b = rng.gen_range(a..=len.min(a + 64));
                v.drain(a..b);
            }
            _ => {
                // Splice: our head, the other seed's tail.
                let cut = rng.gen_range(0..=v.len());
                let from = rng.gen_range(0..=other.len());
                v.truncate(cut);
                v.extend_from_slice(&other[from..]);
            }
        }
    }
    v
}

fn check_manifest(bytes: &[u8]) {
    if let Ok(m) = Manifest::parse(bytes) {
        assert_eq!(m.len, bytes.len() as u64);
        for b in &m.blobs {
            assert_eq!(b.digest.to_string().parse::<Digest>().unwrap(), b.digest);
        }
    }
}

fn check_link(bytes: &[u8]) {
    if let Ok(d) = Digest::parse_link(bytes) {
        let text = d.to_string();
        assert_eq!(Digest::parse_link(text.as_bytes()).unwrap(), d);
        // Only surrounding whitespace may differ from the canonical form.
        assert_eq!(std::str::from_utf8(bytes).unwrap().trim(), text);
    }
}

fn run(kind: &str, check: fn(&[u8]), seed: u64) {
    let seeds = corpus(kind);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut tried = 0;
    for (i, s) in seeds.iter().enumerate() {
        check(s);
        for _ in 0..iterations() {
            let other = &seeds[rng.gen_range(0..seeds.len())];
            let input = mutate(&mut rng, s, other);
            if panic::catch_unwind(|| check(&input)).is_err() {
                panic!(
                    "{kind} parser failed on a mutation of seed {i}: {:?}",
                    String::from_utf8_lossy(&input)
                );
            }
            tried += 1;
        }
    }
    assert!(tried >= seeds.len() * iterations());
}

#[test]
fn manifest_parser_survives_mutations() {
    run("manifest", check_manifest, 0x5eed_0001);
}

#[test]
fn link_parser_survives_mutations() {
    run("link", check_link, 0x5eed_0002);
}

#[test]
fn the_corpus_parses_as_expected() {
    // The seeds themselves: every fixture manifest parses; the odd links parse or not as the
    // semantics say (whitespace padding is fine, case, algorithm and length are not).
    for m in corpus("manifest") {
        Manifest::parse(&m).unwrap_or_else(|e| panic!("{e:?}: {}", String::from_utf8_lossy(&m)));
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/link");
    for (name, ok) in [
        ("sha256", true),
        ("sha512", true),
        ("padded", true),
        ("upper", false),
        ("empty", false),
        ("md5", false),
        ("short", false),
        ("nul", false),
    ] {
        let bytes = std::fs::read(dir.join(name)).unwrap();
        assert_eq!(Digest::parse_link(&bytes).is_ok(), ok, "{name}");
    }
}

//! `--unreferenced-for`: delete a blob, manifest, layer link or empty repository only once
//! every real run has seen it unreferenced for at least that long, measured from when it lost
//! its last reference, not from its modification time.
//!
//! Between runs the state holds, for each candidate, when a real run first saw it unreferenced.
//! A candidate a run does not see unreferenced (referenced again, or gone) is dropped, so it
//! starts over. The state is binary and compact (about 45 bytes a blob), checksummed, and
//! written atomically (a temporary file, fsync, rename; on object storage one PUT). A missing
//! state means everything is seen for the first time; an unreadable or corrupt one protects
//! everything the rule protects until `--reset-state`. Times from the future (a clock that went
//! back) count as now: the rule never deletes early.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use sha2::Digest as _;

use crate::gc::plan::Plan;
use crate::registry::digest::{Algorithm, Digest};
use crate::storage::epoch_seconds;

/// Version 2 records which registry the state belongs to; version 1 (no identity) is still
/// read, once: the next write records the identity.
const MAGIC: &[u8; 8] = b"RGSWUNR2";
const MAGIC_V1: &[u8; 8] = b"RGSWUNR1";

/// Something the collector could delete.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Candidate {
    Blob(Digest),
    Manifest(String, Digest),
    LayerLink(String, Digest),
    Repository(String),
}

impl Candidate {
    fn kind(&self) -> u8 {
        match self {
            Candidate::Blob(_) => 0,
            Candidate::Manifest(..) => 1,
            Candidate::LayerLink(..) => 2,
            Candidate::Repository(_) => 3,
        }
    }
}

/// When each candidate was first seen unreferenced (seconds since the epoch).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct State {
    /// Which registry: its storage root, or bucket and prefix (see `Storage::identity`).
    /// Empty in a version 1 state.
    pub registry: String,
    pub first_seen: HashMap<Candidate, u64>,
}

fn put_digest(out: &mut Vec<u8>, d: &Digest) {
    out.push(match d.algorithm() {
        Algorithm::Sha256 => 0,
        Algorithm::Sha512 => 1,
    });
    out.extend_from_slice(d.bytes());
}

fn put_name(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u16).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], String> {
        if self.0.len() < n {
            return Err("truncated".into());
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn digest(&mut self) -> Result<Digest, String> {
        let (alg, width) = match self.take(1)?[0] {
            0 => (Algorithm::Sha256, 32),
            1 => (Algorithm::Sha512, 64),
            other => return Err(format!("unknown algorithm {other}")),
        };
        let bytes = self.take(width)?;
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        Digest::from_parts(alg, &hex).map_err(|e| e.to_string())
    }

    fn name(&mut self) -> Result<String, String> {
        let len = u16::from_le_bytes(self.take(2)?.try_into().expect("2 bytes")) as usize;
        String::from_utf8(self.take(len)?.to_vec()).map_err(|_| "a name is not UTF-8".into())
    }
}

impl State {
    pub fn encode(&self) -> Vec<u8> {
        let mut entries: Vec<(&Candidate, &u64)> = self.first_seen.iter().collect();
        entries.sort();
        let mut out = Vec::with_capacity(16 + entries.len() * 48);
        out.extend_from_slice(MAGIC);
        put_name(&mut out, &self.registry);
        out.extend_from_slice(&(entries.len() as u64).to_le_bytes());
        for (c, t) in entries {
            out.push(c.kind());
            out.extend_from_slice(&t.to_le_bytes());
            match c {
                Candidate::Blob(d) => put_digest(&mut out, d),
                Candidate::Manifest(r, d) | Candidate::LayerLink(r, d) => {
                    put_name(&mut out, r);
                    put_digest(&mut out, d);
                }
                Candidate::Repository(r) => put_name(&mut out, r),
            }
        }
        let sum = sha2::Sha256::digest(&out);
        out.extend_from_slice(&sum);
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<State, String> {
        let magic = bytes.get(..MAGIC.len());
        if bytes.len() < MAGIC.len() + 8 + 32 || (magic != Some(MAGIC) && magic != Some(MAGIC_V1)) {
            return Err("not a regsweep state file".into());
        }
        let (body, sum) = bytes.split_at(bytes.len() - 32);
        if sha2::Sha256::digest(body).as_slice() != sum {
            return Err("checksum mismatch (damaged or cut short)".into());
        }
        let mut r = Reader(&body[MAGIC.len()..]);
        let registry = if magic == Some(MAGIC) {
            r.name()?
        } else {
            String::new()
        };
        let n = u64::from_le_bytes(r.take(8)?.try_into().expect("8 bytes"));
        let mut first_seen = HashMap::new();
        for _ in 0..n {
            let kind = r.take(1)?[0];
            let t = u64::from_le_bytes(r.take(8)?.try_into().expect("8 bytes"));
            let c = match kind {
                0 => Candidate::Blob(r.digest()?),
                1 => {
                    let repo = r.name()?;
                    Candidate::Manifest(repo, r.digest()?)
                }
                2 => {
                    let repo = r.name()?;
                    Candidate::LayerLink(repo, r.digest()?)
                }
                3 => Candidate::Repository(r.name()?),
                other => return Err(format!("unknown entry kind {other}")),
            };
            first_seen.insert(c, t);
        }
        if !r.0.is_empty() {
            return Err("trailing bytes".into());
        }
        Ok(State {
            registry,
            first_seen,
        })
    }
}

/// A candidate kept by the rule, and when it may go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Waiting {
    /// `blob`, `manifest`, `layer_link` or `repository`.
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<Digest>,
    /// When a run first saw it unreferenced (RFC 3339).
    pub first_seen: String,
    /// When the rule lets it go (RFC 3339).
    pub eligible_at: String,
}

fn rfc3339(secs: u64) -> String {
    humantime::format_rfc3339_seconds(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
        .to_string()
}

/// What the rule did to a plan.
#[derive(Debug, Default)]
pub struct Applied {
    /// The state to write after a real run: every candidate of this run, with when it was
    /// first seen unreferenced.
    pub state: State,
    pub waiting: Vec<Waiting>,
}

/// Judges candidates against the previous state, recording each in the new one.
struct Judge<'a> {
    previous: Option<&'a State>,
    now: u64,
    window: u64,
    applied: Applied,
}

impl Judge<'_> {
    /// Whether a candidate may go now.
    fn judge(&mut self, c: Candidate) -> bool {
        let seen = self
            .previous
            .and_then(|p| p.first_seen.get(&c).copied())
            // A time from the future (the clock went back) counts as now.
            .map_or(self.now, |t| t.min(self.now));
        self.applied.state.first_seen.insert(c.clone(), seen);
        let ok = self.previous.is_some() && seen.saturating_add(self.window) <= self.now;
        if !ok {
            let (kind, repository, digest) = match c {
                Candidate::Blob(d) => ("blob", None, Some(d)),
                Candidate::Manifest(r, d) => ("manifest", Some(r), Some(d)),
                Candidate::LayerLink(r, d) => ("layer_link", Some(r), Some(d)),
                Candidate::Repository(r) => ("repository", Some(r), None),
            };
            self.applied.waiting.push(Waiting {
                kind: kind.into(),
                repository,
                digest,
                first_seen: rfc3339(seen),
                eligible_at: rfc3339(seen.saturating_add(self.window)),
            });
        }
        ok
    }
}

/// Keep in `plan` only what has been seen unreferenced for `window`; `previous` is the state of
/// earlier runs (`None`: unreadable, so everything waits).
pub fn apply(
    plan: &mut Plan,
    previous: Option<&State>,
    now: SystemTime,
    window: Duration,
) -> Applied {
    let mut j = Judge {
        previous,
        now: epoch_seconds(now).max(0) as u64,
        window: window.as_secs(),
        applied: Applied::default(),
    };
    // Manifests first: whatever waits is kept whole, to a fixed point. A waiting manifest
    // keeps its content, its blobs, its layer links and its children (which then wait with it,
    // and keep theirs), whatever their own wait says: a blob whose day is over but that an
    // untagged image still waiting uses would leave that image unpullable by digest.
    let mut held = HashSet::new();
    let mut waiting: Vec<(String, Vec<Digest>)> = Vec::new();
    plan.manifests.retain(|m| {
        let ok = j.judge(Candidate::Manifest(m.repository.clone(), m.digest.clone()));
        if !ok {
            waiting.push((m.repository.clone(), m.references.clone()));
        }
        ok
    });
    while let Some((repo, refs)) = waiting.pop() {
        for r in refs {
            held.insert(Candidate::Blob(r.clone()));
            held.insert(Candidate::LayerLink(repo.clone(), r.clone()));
            plan.manifests.retain(|m| {
                if m.repository == repo && m.digest == r {
                    waiting.push((m.repository.clone(), m.references.clone()));
                    return false;
                }
                true
            });
        }
    }
    plan.blobs.retain(|b| {
        let c = Candidate::Blob(b.digest.clone());
        j.judge(c.clone()) && !held.contains(&c)
    });
    plan.layer_links.retain(|l| {
        let c = Candidate::LayerLink(l.repository.clone(), l.digest.clone());
        j.judge(c.clone()) && !held.contains(&c)
    });
    // A repository goes only with everything in it, and after its own wait.
    let kept_back: std::collections::HashSet<String> = j
        .applied
        .waiting
        .iter()
        .filter_map(|w| w.repository.clone())
        .collect();
    plan.repositories
        .retain(|r| j.judge(Candidate::Repository(r.name.clone())) && !kept_back.contains(&r.name));
    // A shard goes only when every blob in it does.
    let waiting_shards: std::collections::HashSet<(Algorithm, String)> = j
        .applied
        .waiting
        .iter()
        .filter(|w| w.kind == "blob")
        .filter_map(|w| w.digest.as_ref())
        .map(|d| (d.algorithm(), crate::registry::layout::shard_of(d)))
        .collect();
    plan.shards
        .retain(|s| !waiting_shards.contains(&(s.algorithm, s.prefix.clone())));
    j.applied
}

/// Every candidate a plan holds, as the state names them.
pub fn candidates(plan: &Plan) -> HashSet<Candidate> {
    let blobs = plan.blobs.iter().map(|b| Candidate::Blob(b.digest.clone()));
    let manifests = plan
        .manifests
        .iter()
        .map(|m| Candidate::Manifest(m.repository.clone(), m.digest.clone()));
    let links = plan
        .layer_links
        .iter()
        .map(|l| Candidate::LayerLink(l.repository.clone(), l.digest.clone()));
    let repositories = plan
        .repositories
        .iter()
        .map(|r| Candidate::Repository(r.name.clone()));
    blobs
        .chain(manifests)
        .chain(links)
        .chain(repositories)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gc::plan::{BlobDeletion, LayerLinkDeletion, ManifestDeletion, ShardDeletion};

    fn d(n: u8) -> Digest {
        Digest::Sha256([n; 32])
    }

    fn plan() -> Plan {
        Plan {
            blobs: vec![
                BlobDeletion {
                    digest: d(1),
                    size: 10,
                },
                BlobDeletion {
                    digest: d(2),
                    size: 20,
                },
            ],
            manifests: vec![ManifestDeletion {
                references: vec![],
                repository: "a".into(),
                digest: d(3),
                tags: vec![],
            }],
            layer_links: vec![LayerLinkDeletion {
                repository: "a".into(),
                digest: d(1),
            }],
            shards: vec![ShardDeletion {
                algorithm: Algorithm::Sha256,
                prefix: "01".into(),
            }],
            ..Plan::default()
        }
    }

    #[test]
    fn nothing_goes_before_it_has_been_unreferenced_long_enough() {
        let day = Duration::from_secs(86400);
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        // First run: everything is new.
        let mut p = plan();
        let first = apply(&mut p, Some(&State::default()), t0, day);
        assert!(p.blobs.is_empty() && p.manifests.is_empty() && p.shards.is_empty());
        assert_eq!(first.waiting.len(), 4);
        // A day and a bit later, blob 2 was referenced again in between (not in that run's
        // plan), so it starts over; the rest goes.
        let mut between = plan();
        between.blobs.retain(|b| b.digest != d(2));
        let second = apply(&mut between, Some(&first.state), t0 + day / 2, day);
        let mut p = plan();
        let third = apply(
            &mut p,
            Some(&second.state),
            t0 + day + Duration::from_secs(60),
            day,
        );
        let gone: Vec<Digest> = p.blobs.iter().map(|b| b.digest.clone()).collect();
        assert_eq!(gone, [d(1)]);
        assert_eq!(p.manifests.len(), 1);
        assert_eq!(p.shards.len(), 1, "shard 01 goes with its only blob");
        assert_eq!(third.waiting.len(), 1);
        // An unreadable state protects everything.
        let mut p = plan();
        apply(&mut p, None, t0 + 10 * day, day);
        assert!(p.blobs.is_empty() && p.manifests.is_empty() && p.layer_links.is_empty());
        // A state written in the future never deletes early.
        let mut future = State::default();
        future
            .first_seen
            .insert(Candidate::Blob(d(1)), 4_000_000_000);
        let mut p = plan();
        apply(&mut p, Some(&future), t0, day);
        assert!(p.blobs.iter().all(|b| b.digest != d(1)));
    }

    #[test]
    fn the_state_round_trips_and_refuses_damage() {
        let mut s = State::default();
        s.first_seen.insert(Candidate::Blob(d(1)), 5);
        s.first_seen
            .insert(Candidate::Manifest("team/app".into(), d(2)), 6);
        s.first_seen
            .insert(Candidate::LayerLink("x".into(), d(3)), 7);
        s.first_seen.insert(Candidate::Repository("gone".into()), 8);
        let bytes = s.encode();
        assert_eq!(State::decode(&bytes).unwrap(), s);
        let mut damaged = bytes.clone();
        damaged[20] ^= 1;
        assert!(State::decode(&damaged).is_err());
        assert!(State::decode(&bytes[..bytes.len() - 1]).is_err());
        assert!(State::decode(b"garbage").is_err());
        // Compact: a blob entry is under 50 bytes.
        let mut many = State::default();
        for i in 0..1000u32 {
            let mut b = [0u8; 32];
            b[..4].copy_from_slice(&i.to_le_bytes());
            many.first_seen
                .insert(Candidate::Blob(Digest::Sha256(b)), 1);
        }
        assert!(many.encode().len() < 1000 * 50);
    }
}

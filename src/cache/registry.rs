//! The registry's blob-descriptor cache, brought back in line with storage after a run.
//!
//! A registry with `storage.cache.blobdescriptor: redis` answers `HEAD /v2/<name>/blobs/<d>`
//! from Redis when it can. After an offline collection those entries describe blobs and links
//! that are gone: a client skips the upload, the registry accepts the manifest, and the image
//! does not pull. The registry's own code (distribution 2.8 and 3.x,
//! `registry/storage/cache/redis`) keeps three kinds of key:
//!
//! | key | type | what it says |
//! |---|---|---|
//! | `blobs::<digest>` | hash (`digest`, `size`, `mediatype`) | the blob exists |
//! | `repository::<name>::blobs` | set of digests | the repository links the blob |
//! | `repository::<name>::blobs::<digest>` | hash (`mediatype`) | the repository's media type for it |
//!
//! This is a reconciliation, not a replay of what one run deleted: every entry is judged
//! against the storage as the run leaves it (in a dry run: as the plan would leave it), so
//! entries an earlier run, a manual `rm` or another collector left behind go too. An entry
//! names something present when:
//! - `blobs::<d>`: the blob's `data` exists;
//! - a repository's member `<d>` (and its hash): the blob's data exists and the repository
//!   has a layer link or a manifest revision link for it.
//!
//! Evicting is always safe (the registry falls back to storage on a miss), so anything the
//! run cannot judge for certain in the keeping direction (an unreadable link) is kept, and
//! anything it cannot find is evicted. Keys are found with SCAN (never KEYS), deleted 1,000 a
//! command.

use std::collections::{HashMap, HashSet};
use std::io;
use std::path::PathBuf;
use std::time::Duration;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::config::redis::{RedisSettings, RegistryCache};
use crate::error::Problem;
use crate::registry::digest::Digest;
use crate::registry::layout;
use crate::storage::{Kind, Storage};

/// Keys a SCAN step asks for, and keys or members one delete command carries.
const BATCH: usize = 1000;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// A connection to the registry's Redis, with time-outs, so a hung server cannot hang a run.
fn connect(settings: &RedisSettings) -> Result<redis::Connection, String> {
    let (host, port) = match settings.addr.rsplit_once(':') {
        Some((h, p)) => (
            h.trim_start_matches('[').trim_end_matches(']'),
            p.parse::<u16>()
                .map_err(|_| format!("port {p:?} is not a number"))?,
        ),
        None => (settings.addr.as_str(), 6379),
    };
    let mut url = url::Url::parse(if settings.tls.is_some() {
        "rediss://localhost"
    } else {
        "redis://localhost"
    })
    .map_err(|e| e.to_string())?;
    url.set_host(Some(host)).map_err(|e| e.to_string())?;
    let _ = url.set_port(Some(port));
    if let Some(user) = &settings.username {
        let _ = url.set_username(user);
    }
    if let Some(password) = &settings.password {
        let _ = url.set_password(Some(password));
    }
    url.set_path(&settings.db.to_string());
    let client = match &settings.tls {
        None => redis::Client::open(url.as_str()),
        Some(tls) => {
            let read = |p: &PathBuf| {
                std::fs::read(p).map_err(|e| format!("{}: cannot read: {e}", p.display()))
            };
            let client_tls = match (&tls.certificate, &tls.key) {
                (Some(c), Some(k)) => Some(redis::ClientTlsConfig {
                    client_cert: read(c)?,
                    client_key: read(k)?,
                }),
                _ => None,
            };
            let mut roots = Vec::new();
            for ca in &tls.cas {
                roots.extend(read(ca)?);
                roots.push(b'\n');
            }
            redis::Client::build_with_tls(
                url.as_str(),
                redis::TlsCertificates {
                    client_tls,
                    root_cert: (!roots.is_empty()).then_some(roots),
                },
            )
        }
    }
    .map_err(|e| e.to_string())?;
    let con = client
        .get_connection_with_timeout(CONNECT_TIMEOUT)
        .map_err(|e| e.to_string())?;
    con.set_read_timeout(Some(IO_TIMEOUT))
        .and_then(|()| con.set_write_timeout(Some(IO_TIMEOUT)))
        .map_err(|e| e.to_string())?;
    Ok(con)
}

/// What this command does about the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CacheKind {
    Redis,
    InMemory,
    /// The registry's configuration sets no blob-descriptor cache.
    None,
    /// The target is a storage root or a bucket and no `--redis` was given.
    Unknown,
    /// `--no-cache-evict`.
    Skipped,
}

/// Cache entries by kind (evicted, or in a dry run to be evicted; or kept).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryCounts {
    /// `blobs::<digest>`
    pub blob_descriptors: usize,
    /// Members of `repository::<name>::blobs`.
    pub repository_memberships: usize,
    /// `repository::<name>::blobs::<digest>`
    pub repository_descriptors: usize,
}

impl EntryCounts {
    pub fn total(&self) -> usize {
        self.blob_descriptors + self.repository_memberships + self.repository_descriptors
    }

    pub fn add(&mut self, other: EntryCounts) {
        self.blob_descriptors += other.blob_descriptors;
        self.repository_memberships += other.repository_memberships;
        self.repository_descriptors += other.repository_descriptors;
    }
}

/// One cache entry: a key, and for a repository's set, the member.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct CacheEntry {
    pub key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member: Option<String>,
}

/// The `cache` object of the JSON report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CacheReport {
    pub kind: CacheKind,
    /// Where the Redis is (`redis://HOST:PORT/DB`), never with its password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Entries evicted (in a dry run: that would be), by kind.
    pub evicted: EntryCounts,
    /// Entries that describe what is in storage, left alone.
    pub kept: EntryCounts,
    /// Every entry evicted (in a dry run: that would be).
    pub evicted_entries: Vec<CacheEntry>,
    /// The registry must be restarted to forget what this run deleted (an in-memory cache).
    pub restart_required: bool,
    /// What the administrator should know, in one sentence (empty when nothing to say).
    pub note: String,
    pub errors: Vec<Problem>,
}

impl CacheReport {
    /// What a run evicted ahead of its removals, to be merged into the reconciliation's
    /// report at the end ([`CacheReport::merge_ahead`]).
    pub fn ahead(evicted: EntryCounts) -> CacheReport {
        let mut r = CacheReport::new(CacheKind::Redis);
        r.evicted = evicted;
        r
    }

    /// Count in what was evicted ahead of the removals (a dry run evicts nothing ahead).
    pub fn merge_ahead(&mut self, ahead: Option<&CacheReport>) {
        if let Some(a) = ahead {
            self.evicted.add(a.evicted);
        }
    }

    fn new(kind: CacheKind) -> CacheReport {
        CacheReport {
            kind,
            address: None,
            evicted: EntryCounts::default(),
            kept: EntryCounts::default(),
            evicted_entries: Vec::new(),
            restart_required: false,
            note: String::new(),
            errors: Vec::new(),
        }
    }
}

/// What a command removed (or in a dry run would remove), as storage keys: the cache is judged
/// against the storage less these. A key stands for everything below it.
#[derive(Debug, Default)]
pub struct Gone {
    keys: HashSet<String>,
    /// How much went, for the messages when the cache cannot be reached.
    blobs: usize,
    links: usize,
}

impl Gone {
    /// Keys that went (each stands for everything below it), and how many blobs and links
    /// they were, for the messages.
    pub fn add(&mut self, keys: impl IntoIterator<Item = String>, blobs: usize, links: usize) {
        self.keys.extend(keys);
        self.blobs += blobs;
        self.links += links;
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Whether `key` or a directory above it went.
    fn contains(&self, key: &str) -> bool {
        let mut k = key;
        loop {
            if self.keys.contains(k) {
                return true;
            }
            match k.rsplit_once('/') {
                Some((parent, _)) => k = parent,
                None => return false,
            }
        }
    }
}

/// Whether a key is in storage once `gone` has gone. Only "not found" is absence: a key that
/// cannot be read is counted present, so its entry is kept.
fn present(storage: &dyn Storage, gone: &Gone, key: &str, kind: Kind) -> bool {
    if gone.contains(key) {
        return false;
    }
    match storage.stat(key) {
        Ok(meta) => meta.kind == kind,
        Err(e) => e.kind() != io::ErrorKind::NotFound,
    }
}

fn blob_present(storage: &dyn Storage, gone: &Gone, d: &Digest) -> bool {
    present(storage, gone, &layout::blob_data(d), Kind::File)
}

fn linked(storage: &dyn Storage, gone: &Gone, repo: &str, d: &Digest) -> bool {
    let link = |key: String| present(storage, gone, &key, Kind::File);
    blob_present(storage, gone, d)
        && (link(layout::layer_link(repo, d)) || link(layout::revision_link(repo, d)))
}

/// A key of the registry's cache, by what it names.
#[derive(Debug, PartialEq, Eq)]
enum CacheKey<'a> {
    Blob(&'a str),
    RepositorySet(&'a str),
    RepositoryBlob(&'a str, &'a str),
}

fn parse_key(key: &str) -> Option<CacheKey<'_>> {
    if let Some(d) = key.strip_prefix("blobs::") {
        return Some(CacheKey::Blob(d));
    }
    // Repository names never hold a colon, so the separators are unambiguous.
    let rest = key.strip_prefix("repository::")?;
    if let Some(repo) = rest.strip_suffix("::blobs") {
        return Some(CacheKey::RepositorySet(repo));
    }
    let (repo, d) = rest.split_once("::blobs::")?;
    Some(CacheKey::RepositoryBlob(repo, d))
}

/// What to do about the registry's cache after a command that deleted (`deleted_anything`)
/// or would delete (`dry_run`) what `gone` holds.
pub fn reconcile(
    storage: &dyn Storage,
    cache: &RegistryCache,
    skip: bool,
    gone: &Gone,
    dry_run: bool,
) -> CacheReport {
    let would = if dry_run { "would have" } else { "has" };
    match cache {
        _ if skip => {
            let mut r = CacheReport::new(CacheKind::Skipped);
            if matches!(cache, RegistryCache::Redis(_)) && !gone.is_empty() {
                r.note = format!(
                    "--no-cache-evict: the registry's Redis cache {would} entries for what was \
                     deleted until a run without it evicts them"
                );
            }
            r
        }
        RegistryCache::Redis(settings) => evict(storage, settings, gone, dry_run),
        RegistryCache::InMemory => {
            let mut r = CacheReport::new(CacheKind::InMemory);
            if !gone.is_empty() {
                r.restart_required = true;
                r.note =
                    format!(
                    "the registry caches blob descriptors in memory (blobdescriptor: inmemory): \
                     restart it{} so that it stops answering for deleted blobs",
                    if dry_run { " after the real run" } else { " now" }
                );
            }
            r
        }
        RegistryCache::None => CacheReport::new(CacheKind::None),
        RegistryCache::Unknown | RegistryCache::Other(_) => {
            let mut r = CacheReport::new(CacheKind::Unknown);
            if !gone.is_empty() {
                r.note = match cache {
                    RegistryCache::Other(v) => format!(
                        "the registry's blob-descriptor cache is {v:?}, which regsweep does not \
                         know: restart the registry, and flush that cache"
                    ),
                    _ => "the registry's cache is not known (the target is not its config): if \
                          it caches blob descriptors in Redis, run with --redis URL or give the \
                          config; if in memory, restart it"
                        .into(),
                };
            }
            r
        }
    }
}

fn evict(
    storage: &dyn Storage,
    settings: &RedisSettings,
    gone: &Gone,
    dry_run: bool,
) -> CacheReport {
    let mut report = CacheReport::new(CacheKind::Redis);
    report.address = Some(settings.display());
    let result = connect(settings)
        .and_then(|mut con| evict_on(&mut con, storage, gone, dry_run, &mut report));
    if let Err(e) = result {
        let what = if dry_run {
            // A dry run removed nothing: its entries are only as stale as before it.
            "whatever stale entries it held before this dry run (nothing was removed)".to_string()
        } else if gone.blobs + gone.links > 0 {
            format!(
                "its entries for the {} blobs and {} links this command removed (and for \
                 anything else no longer in storage)",
                gone.blobs, gone.links
            )
        } else {
            "its entries for anything no longer in storage".to_string()
        };
        let done = if report.evicted.total() > 0 && !dry_run {
            format!(
                " ({} were evicted before the failure)",
                report.evicted.total()
            )
        } else {
            String::new()
        };
        report.errors.push(Problem::new(
            settings.display(),
            format!(
                "cannot reconcile the registry's Redis cache: {e}. The storage is as this run \
                 left it, but the cache may still hold {what}{done}; the next run evicts them \
                 (or run `regsweep gc` again once Redis is reachable)"
            ),
        ));
    }
    report
}

/// Before a run removes anything, and again once its dead blobs are in the trash: evict the
/// registry's cache entries for what it is removing (`blobs::<d>` of the blobs, and each
/// repository's membership and descriptor of the links), so that meanwhile the registry asks
/// storage instead of believing its cache and accepting a manifest whose blob is going. Only
/// those keys: no SCAN, no judgment (evicting is always safe). Returns how many entries went.
pub fn evict_ahead(
    cache: &RegistryCache,
    blobs: &[Digest],
    links: &[(String, Digest)],
) -> Result<EntryCounts, String> {
    let mut evicted = EntryCounts::default();
    let RegistryCache::Redis(settings) = cache else {
        return Ok(evicted);
    };
    if blobs.is_empty() && links.is_empty() {
        return Ok(evicted);
    }
    let err = |e: redis::RedisError| format!("{}: {e}", settings.display());
    let mut con = connect(settings).map_err(|e| format!("{}: {e}", settings.display()))?;
    let mut members: HashMap<&str, Vec<String>> = HashMap::new();
    for (repo, d) in links {
        members.entry(repo).or_default().push(d.to_string());
    }
    // Memberships first: a membership never outlives the descriptor it vouches for.
    for (repo, digests) in &members {
        for chunk in digests.chunks(BATCH) {
            let n: i64 = redis::cmd("SREM")
                .arg(format!("repository::{repo}::blobs"))
                .arg(chunk)
                .query(&mut con)
                .map_err(err)?;
            evicted.repository_memberships += n as usize;
        }
    }
    let descriptors: Vec<String> = links
        .iter()
        .map(|(repo, d)| format!("repository::{repo}::blobs::{d}"))
        .collect();
    for chunk in descriptors.chunks(BATCH) {
        let n: i64 = redis::cmd("DEL").arg(chunk).query(&mut con).map_err(err)?;
        evicted.repository_descriptors += n as usize;
    }
    let blob_keys: Vec<String> = blobs.iter().map(|d| format!("blobs::{d}")).collect();
    for chunk in blob_keys.chunks(BATCH) {
        let n: i64 = redis::cmd("DEL").arg(chunk).query(&mut con).map_err(err)?;
        evicted.blob_descriptors += n as usize;
    }
    Ok(evicted)
}

/// Split keys into those of the type the registry gives such a name (a hash for `blobs::<d>`
/// and `repository::<name>::blobs::<d>`, a set for `repository::<name>::blobs`) and the rest,
/// asking Redis for every type in pipelines of `BATCH`.
fn of_the_registrys_types(
    con: &mut redis::Connection,
    keys: Vec<String>,
) -> redis::RedisResult<(Vec<String>, Vec<String>)> {
    let mut ours = Vec::with_capacity(keys.len());
    let mut others = Vec::new();
    for chunk in keys.chunks(BATCH) {
        let mut pipe = redis::pipe();
        for k in chunk {
            pipe.cmd("TYPE").arg(k);
        }
        let types: Vec<String> = pipe.query(con)?;
        for (k, t) in chunk.iter().zip(types) {
            let expected = match parse_key(k) {
                Some(CacheKey::RepositorySet(_)) => "set",
                Some(_) => "hash",
                None => "",
            };
            if t == expected {
                ours.push(k.clone());
            } else {
                others.push(k.clone());
            }
        }
    }
    Ok((ours, others))
}

/// Every item a cursor command returns (SCAN, SSCAN), `BATCH` a step, UTF-8 only (a key that
/// is not is none of the registry's), each once (a cursor may return an item twice).
fn all_of(
    con: &mut redis::Connection,
    command: impl Fn(u64) -> redis::Cmd,
) -> redis::RedisResult<Vec<String>> {
    let mut items = Vec::new();
    let mut cursor: u64 = 0;
    loop {
        let (next, batch): (u64, Vec<Vec<u8>>) = command(cursor).query(con)?;
        items.extend(batch.into_iter().filter_map(|k| String::from_utf8(k).ok()));
        if next == 0 {
            break;
        }
        cursor = next;
    }
    items.sort_unstable();
    items.dedup();
    Ok(items)
}

/// Every key matching `pattern` (SCAN, never KEYS).
fn scan(con: &mut redis::Connection, pattern: &str) -> redis::RedisResult<Vec<String>> {
    all_of(con, |cursor| {
        let mut cmd = redis::cmd("SCAN");
        cmd.arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(BATCH);
        cmd
    })
}

/// Every member of the set `key`.
fn sscan(con: &mut redis::Connection, key: &str) -> redis::RedisResult<Vec<String>> {
    all_of(con, |cursor| {
        let mut cmd = redis::cmd("SSCAN");
        cmd.arg(key).arg(cursor).arg("COUNT").arg(BATCH);
        cmd
    })
}

fn evict_on(
    con: &mut redis::Connection,
    storage: &dyn Storage,
    gone: &Gone,
    dry_run: bool,
    report: &mut CacheReport,
) -> Result<(), String> {
    let err = |e: redis::RedisError| e.to_string();
    let mut keys = scan(con, "blobs::*").map_err(err)?;
    keys.extend(scan(con, "repository::*").map_err(err)?);
    // A key named like the registry's but of another type is another application's (a Redis
    // shared with others): never read as the registry's, never deleted.
    let (ours, others) = of_the_registrys_types(con, keys).map_err(err)?;
    keys = ours;
    if !others.is_empty() {
        report.note = format!(
            "{} key{} named like the registry's cache entries but of another type (such as \
             {:?}) {} left alone",
            others.len(),
            if others.len() == 1 { "" } else { "s" },
            others[0],
            if others.len() == 1 { "was" } else { "were" },
        );
    }

    // Members of each repository's set, read before any judgment.
    let mut sets = Vec::new();
    for key in &keys {
        if let Some(CacheKey::RepositorySet(repo)) = parse_key(key) {
            sets.push((key.clone(), repo.to_string(), sscan(con, key).map_err(err)?));
        }
    }

    // Judge in parallel: each judgment is a stat or two.
    let stale_key = |key: &String| -> Option<bool> {
        let stale = match parse_key(key)? {
            CacheKey::Blob(d) => !blob_present(storage, gone, &d.parse().ok()?),
            CacheKey::RepositoryBlob(repo, d) => !linked(storage, gone, repo, &d.parse().ok()?),
            CacheKey::RepositorySet(_) => return None,
        };
        Some(stale)
    };
    let judged: Vec<(usize, bool)> = keys
        .par_iter()
        .enumerate()
        .filter_map(|(i, k)| stale_key(k).map(|s| (i, s)))
        .collect();
    let mut stale_keys = Vec::new();
    for (i, stale) in judged {
        let key = &keys[i];
        let counts = if stale {
            &mut report.evicted
        } else {
            &mut report.kept
        };
        match parse_key(key) {
            Some(CacheKey::Blob(_)) => counts.blob_descriptors += 1,
            _ => counts.repository_descriptors += 1,
        }
        if stale {
            stale_keys.push(key.clone());
        }
    }
    let mut stale_members: Vec<(String, Vec<String>)> = Vec::new();
    for (key, repo, members) in &sets {
        let stale: Vec<String> = members
            .par_iter()
            .filter(|m| match m.parse::<Digest>() {
                Ok(d) => !linked(storage, gone, repo, &d),
                // Not a digest: not something the registry put there; not ours to judge.
                Err(_) => false,
            })
            .cloned()
            .collect();
        report.kept.repository_memberships += members.len() - stale.len();
        report.evicted.repository_memberships += stale.len();
        if !stale.is_empty() {
            stale_members.push((key.clone(), stale));
        }
    }

    report.evicted_entries = stale_keys
        .iter()
        .map(|k| CacheEntry {
            key: k.clone(),
            member: None,
        })
        .chain(stale_members.iter().flat_map(|(k, ms)| {
            ms.iter().map(move |m| CacheEntry {
                key: k.clone(),
                member: Some(m.clone()),
            })
        }))
        .collect();
    report.evicted_entries.sort();
    if dry_run {
        return Ok(());
    }

    // Members first, then the keys: a membership never outlives the descriptor it vouches for.
    let mut evicted = EntryCounts::default();
    let result = (|| {
        for (key, members) in &stale_members {
            for chunk in members.chunks(BATCH) {
                redis::cmd("SREM")
                    .arg(key)
                    .arg(chunk)
                    .query::<i64>(con)
                    .map_err(err)?;
                evicted.repository_memberships += chunk.len();
            }
        }
        for chunk in stale_keys.chunks(BATCH) {
            redis::cmd("DEL")
                .arg(chunk)
                .query::<i64>(con)
                .map_err(err)?;
            for k in chunk {
                match parse_key(k) {
                    Some(CacheKey::Blob(_)) => evicted.blob_descriptors += 1,
                    _ => evicted.repository_descriptors += 1,
                }
            }
        }
        Ok(())
    })();
    if result.is_err() {
        // Say what was really evicted, not what was meant to be.
        report.evicted = evicted;
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_read_the_way_the_registry_writes_them() {
        let d = "sha256:0000000000000000000000000000000000000000000000000000000000000000";
        assert_eq!(parse_key(&format!("blobs::{d}")), Some(CacheKey::Blob(d)));
        assert_eq!(
            parse_key("repository::team/app::blobs"),
            Some(CacheKey::RepositorySet("team/app"))
        );
        assert_eq!(
            parse_key(&format!("repository::team/app::blobs::{d}")),
            Some(CacheKey::RepositoryBlob("team/app", d))
        );
        assert_eq!(parse_key("sessions::x"), None);
    }

    #[test]
    fn redis_urls() {
        let s = RedisSettings::from_url("redis://:p%40ss@127.0.0.1:6380/3").unwrap();
        assert_eq!(s.addr, "127.0.0.1:6380");
        assert_eq!(s.password.as_deref(), Some("p@ss"));
        assert_eq!(s.username, None);
        assert_eq!(s.db, 3);
        assert!(s.tls.is_none());
        assert_eq!(s.display(), "redis://127.0.0.1:6380/3");
        assert!(!format!("{s:?}").contains("p@ss"));
        let t = RedisSettings::from_url("rediss://cache.example").unwrap();
        assert_eq!(t.addr, "cache.example:6379");
        assert!(t.tls.is_some());
        assert!(RedisSettings::from_url("http://x").is_err());
        assert!(RedisSettings::from_url("redis://h/x").is_err());
    }

    #[test]
    fn a_gone_directory_takes_everything_below_it() {
        let mut gone = Gone::default();
        gone.keys.insert(layout::repository_dir("a/b"));
        let d: Digest = "sha256:0000000000000000000000000000000000000000000000000000000000000000"
            .parse()
            .unwrap();
        assert!(gone.contains(&layout::layer_link("a/b", &d)));
        assert!(!gone.contains(&layout::layer_link("a/bc", &d)));
    }
}

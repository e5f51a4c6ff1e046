//! How a registry's keys are listed from object storage: once, without a delimiter, and in
//! parallel ranges when the bucket is large and the store can start a listing after a key.
//!
//! Where the first page ends tells how large the bucket is (hashes spread evenly over the
//! blob shards); a large one has the rest of its key space split at fixed points (blob shards,
//! repository names), the ranges listed at once. Each range ends in a partial page, so there
//! are only as many ranges as cost at most an eighth more pages than one sequential listing.

use std::io;

use rayon::prelude::*;

use super::bucket::{Bucket, Listed};

/// Where the rest of the key space is split after the first page, relative to
/// `docker/registry/v2/`: the blob shards by their first hex digit, and repositories by the
/// first letter of their names. Only points past the first page are used.
const SPLITS: [&str; 22] = [
    "blobs/sha256/1",
    "blobs/sha256/2",
    "blobs/sha256/3",
    "blobs/sha256/4",
    "blobs/sha256/5",
    "blobs/sha256/6",
    "blobs/sha256/7",
    "blobs/sha256/8",
    "blobs/sha256/9",
    "blobs/sha256/a",
    "blobs/sha256/b",
    "blobs/sha256/c",
    "blobs/sha256/d",
    "blobs/sha256/e",
    "blobs/sha256/f",
    "blobs/sha257",
    "repositories/",
    "repositories/e",
    "repositories/j",
    "repositories/o",
    "repositories/s",
    "repositories/w",
];

/// How many pages a whole listing takes, judged from where its first page (1,000 keys) ended
/// (`last`, relative to `docker/registry/v2/`): blob digests are spread evenly over the shards,
/// and a registry holds about 2.5 keys (links, tags) per blob; repository names, less evenly,
/// over their first letter.
fn estimated_pages(last: &str) -> f64 {
    if let Some(hex) = last.strip_prefix("blobs/sha256/") {
        if let Some(covered) = hex.get(..2).and_then(|h| u8::from_str_radix(h, 16).ok()) {
            return 2.5 * 256.0 / (f64::from(covered) + 1.0);
        }
    }
    if let Some(name) = last.strip_prefix("repositories/") {
        let rank = name
            .chars()
            .next()
            .and_then(|c| "0123456789abcdefghijklmnopqrstuvwxyz".find(c.to_ascii_lowercase()));
        if let Some(rank) = rank {
            return 36.0 / (rank as f64 + 1.0);
        }
    }
    1.0
}

/// At most `n` of the sorted `points`, spread evenly.
fn spread(mut points: Vec<String>, n: usize) -> Vec<String> {
    points.sort();
    if n >= points.len() {
        return points;
    }
    if n == 0 {
        return Vec::new();
    }
    let step = points.len() as f64 / n as f64;
    (0..n)
        .map(|i| points[(i as f64 * step) as usize].clone())
        .collect()
}

/// The largest key that sorts before `boundary` and before every key that starts with it:
/// `start-after` of the range that begins at `boundary`.
fn before(boundary: &str) -> String {
    let mut s = boundary.to_string();
    let last = s.pop().expect("boundaries are not empty");
    s.push(char::from_u32(last as u32 - 1).unwrap_or(last));
    s.push('\u{10FFFF}');
    s
}

/// Every key under `prefix` (a directory: `/` is added), each page turned into what the
/// caller keeps by `keep` as it arrives (the listing's own strings are not held twice); `v2`
/// is the registry's `docker/registry/v2` in the bucket, where the split points are.
pub fn list_all<T: Send>(
    client: &dyn Bucket,
    prefix: &str,
    v2: &str,
    keep: &(dyn Fn(Listed) -> Option<T> + Sync),
) -> io::Result<Vec<T>> {
    let dir = format!("{prefix}/");
    let first = client.list_page(&dir, None, None)?;
    let last = first
        .objects
        .last()
        .map(|l| l.key.clone())
        .unwrap_or_default();
    let mut all: Vec<T> = first.objects.into_iter().filter_map(keep).collect();
    let Some(token) = first.next else {
        return Ok(all);
    };
    if !client.lists_from_a_key() {
        all.extend(list_range(client, &dir, None, Some(token), None, keep)?);
        return Ok(all);
    }
    let v2 = format!("{v2}/");
    let candidates: Vec<String> = SPLITS
        .iter()
        .map(|s| format!("{v2}{s}"))
        .filter(|p| p.starts_with(&dir) && *p > last)
        .collect();
    let ranges_allowed = crate::hooks::list_ranges(
        (estimated_pages(last.strip_prefix(&v2).unwrap_or("")) / 8.0) as usize,
    );
    let points = spread(candidates, ranges_allowed);
    // The first range continues the first listing; each other starts at its point.
    let mut ranges: Vec<(Option<String>, Option<String>, Option<String>)> = Vec::new();
    ranges.push((None, Some(token), points.first().cloned()));
    for (i, p) in points.iter().enumerate() {
        ranges.push((Some(before(p)), None, points.get(i + 1).cloned()));
    }
    let listed: Vec<io::Result<Vec<T>>> = ranges
        .into_par_iter()
        .map(|(start_after, token, end)| {
            list_range(client, &dir, start_after, token, end.as_deref(), keep)
        })
        .collect();
    for l in listed {
        all.extend(l?);
    }
    Ok(all)
}

/// The keys under `dir` from `start_after` (or continuing `token`) up to, not including,
/// `end`, as `keep` turns them.
fn list_range<T>(
    client: &dyn Bucket,
    dir: &str,
    mut start_after: Option<String>,
    mut token: Option<String>,
    end: Option<&str>,
    keep: &(dyn Fn(Listed) -> Option<T> + Sync),
) -> io::Result<Vec<T>> {
    let mut out = Vec::new();
    loop {
        let page = client.list_page(dir, start_after.as_deref(), token.as_deref())?;
        let mut done = page.next.is_none();
        for l in page.objects {
            if end.is_some_and(|e| l.key.as_str() >= e) {
                done = true;
                break;
            }
            out.extend(keep(l));
        }
        if done {
            return Ok(out);
        }
        token = page.next;
        start_after = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_after_points_sort_between_ranges() {
        let b = before("blobs/sha256/1");
        assert!(b.as_str() > "blobs/sha256/0fff/data");
        assert!(b.as_str() < "blobs/sha256/1");
        let b = before("repositories/");
        assert!(b.as_str() > "repositories.x" && b.as_str() < "repositories/a");
    }

    #[test]
    fn small_buckets_list_in_sequence_and_large_ones_split() {
        // A first page that ended in shard 3f covered a quarter of the blobs: about 10 pages.
        assert!((estimated_pages("blobs/sha256/3f/abc/data") - 10.0).abs() < 0.1);
        // Ended past the blobs, among the repositories: a small registry.
        assert!(estimated_pages("repositories/x/_layers/sha256/ab/link") < 2.0);
        assert!(estimated_pages("blobs/sha256/00/a/data") > 600.0);
        let points: Vec<String> = SPLITS.iter().map(|s| s.to_string()).collect();
        assert_eq!(spread(points.clone(), 0), Vec::<String>::new());
        assert_eq!(spread(points.clone(), 100).len(), SPLITS.len());
        let four = spread(points, 4);
        assert_eq!(four.len(), 4);
        assert!(four.windows(2).all(|w| w[0] < w[1]));
    }
}

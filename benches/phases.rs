//! criterion benches of each phase on the `small` synthetic preset (20 repositories, ~300
//! manifests, ~1,600 blobs), warm cache. The whole-binary comparison with the reference
//! collector lives in benches/compare.sh.

use std::sync::atomic::AtomicU64;
use std::time::{Duration, SystemTime};

use criterion::{criterion_group, criterion_main, Criterion};
use regsweep::gc::discover::{self, Counters, Repository};
use regsweep::gc::mark::{self, LiveSet};
use regsweep::gc::parse::{self, Manifests};
use regsweep::gc::plan;
use regsweep::storage::{FsStorage, Storage};
use regsweep::synth::{self, SMALL};

fn phases(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    synth::generate(dir.path(), SMALL, 1).expect("generate the small preset");
    let storage = FsStorage::new(dir.path());
    let counters = Counters::default();
    let options = discover::Options {
        tag_history: true,
        link_times: true,
        uploads: true,
    };
    let cutoff = SystemTime::now() - Duration::from_secs(3600);
    let mark_options = mark::Options {
        delete_untagged: true,
        cutoff,
    };
    let plan_options = plan::Options {
        delete_untagged: true,
        cutoff,
        ignore_errors: false,
        uploads_before: Some(cutoff),
        empty_repositories: false,
    };
    let display = |k: &str| storage.display(k);

    c.bench_function("discover/blobs", |b| {
        b.iter(|| discover::discover_blobs(&storage, &counters))
    });
    let (names, _) = discover::repository_names(&storage);
    c.bench_function("discover/repositories", |b| {
        b.iter(|| {
            names
                .iter()
                .map(|n| discover::discover_repository(&storage, n.clone(), options).0)
                .collect::<Vec<_>>()
        })
    });

    let repos: Vec<Repository> = names
        .iter()
        .map(|n| discover::discover_repository(&storage, n.clone(), options).0)
        .collect();
    let read = AtomicU64::new(0);
    let mut buf = Vec::new();
    c.bench_function("parse", |b| {
        b.iter(|| {
            repos
                .iter()
                .map(|r| parse::load_repository(&storage, r, &mut buf, &read))
                .collect::<Vec<_>>()
        })
    });

    let manifests: Vec<Manifests> = repos
        .iter()
        .map(|r| parse::load_repository(&storage, r, &mut buf, &read))
        .collect();
    let (index, _) = discover::discover_blobs(&storage, &counters);
    c.bench_function("mark", |b| {
        b.iter(|| {
            let live = LiveSet::new(&index);
            for (r, m) in repos.iter().zip(&manifests) {
                let (_, blobs, _) = mark::mark_repository(r, m, mark_options, &display);
                for (d, size) in &blobs {
                    live.keep(&index, d, *size);
                }
            }
            live
        })
    });

    let live = LiveSet::new(&index);
    let marks: Vec<_> = repos
        .iter()
        .zip(&manifests)
        .map(|(r, m)| {
            let (rmark, blobs, _) = mark::mark_repository(r, m, mark_options, &display);
            for (d, size) in &blobs {
                live.keep(&index, d, *size);
            }
            rmark
        })
        .collect();
    let mut index = index;
    discover::stat_blobs(&storage, &mut index, |s, i| !live.contains(s, i));
    c.bench_function("plan", |b| {
        b.iter(|| {
            let repo_plans = repos
                .iter()
                .zip(&marks)
                .map(|(r, m)| plan::plan_repository(r, m, plan_options))
                .collect();
            plan::assemble(repo_plans, &index, &live, false, plan_options)
        })
    });

    c.bench_function("gc/dry-run", |b| {
        b.iter(|| {
            regsweep::gc::driver::gc(
                &storage,
                &regsweep::gc::driver::GcOptions {
                    dry_run: true,
                    delete_untagged: true,
                    min_age: Duration::from_secs(3600),
                    ignore_errors: false,
                    wait_for_lock: false,
                    progress: false,
                    uploads_older_than: Some(regsweep::gc::driver::DEFAULT_UPLOADS_OLDER_THAN),
                    empty_repositories: false,
                    unreferenced: None,
                    max_delete: None,
                    cache: Default::default(),
                },
            )
            .expect("gc")
        })
    });
}

criterion_group!(benches, phases);
criterion_main!(benches);

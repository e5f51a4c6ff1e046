//! regsweep: an offline mark-and-sweep garbage collector for container registries in the
//! CNCF distribution layout, on a filesystem or in object storage.
//!
//! Folders by layer; imports run down only (`tests/layers.rs` checks it):
//!
//! | layer | what | may import |
//! |---|---|---|
//! | [`command`] | open a target, run a command, finish it (report, cache, metrics) | all below |
//! | [`output`] | human summaries, JSON, the storage report, metrics | all below |
//! | [`edit`], [`check`] | `delete`/`prune` edits; the integrity check | [`gc`] and below |
//! | [`gc`] | discover -> parse -> mark -> plan -> look again -> sweep, and its driver | [`cache`] and below |
//! | [`cache`] | the registry's blob-descriptor cache, reconciled with storage | [`storage`] and below |
//! | [`storage`] | the `Storage` trait, one backend per file, the run lock | [`config`] and below |
//! | [`config`] | the registry's config.yml, URL targets, backend settings | [`registry`] and the base |
//! | [`registry`] | layout, digest, manifest: what the registry stores and where (no I/O) | the base |
//! | base: [`error`], [`units`], [`progress`], [`hooks`] | errors with paths, durations and sizes, progress | nothing |
//!
//! [`synth`] writes synthetic registries for the benchmarks and tests; it sits on [`registry`].

pub mod cache;
pub mod check;
pub mod command;
pub mod config;
pub mod edit;
pub mod error;
pub mod gc;
pub mod hooks;
pub mod output;
pub mod progress;
pub mod registry;
pub mod storage;
pub mod synth;
pub mod units;

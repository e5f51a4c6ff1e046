//! The collector: discover -> parse -> mark -> plan -> look again -> sweep, one module per
//! phase, and the [`driver`] that runs them in that order for `gc` (and for `delete --gc`).
//!
//! Phases hand plain structs to each other; [`mark`] is pure. [`sweep`] is the only module
//! here that removes anything, and [`recheck`] the looks that protect a registry that keeps
//! taking pushes. [`report`] is the run's result, as data.
//!
//! May import: [`crate::registry`], [`crate::config`], [`crate::storage`], [`crate::cache`],
//! the base modules ([`crate::error`], [`crate::units`], [`crate::progress`]). Never the edits,
//! the outputs or the commands above it.

pub mod discover;
pub mod driver;
pub mod mark;
pub mod parse;
pub mod plan;
pub mod read;
pub mod recheck;
pub mod report;
pub mod sweep;
pub mod unreferenced;

//! The registry's blob-descriptor cache (Redis, or in the registry's memory), brought back in
//! line with storage after a run ([`registry`]).
//!
//! Sits on [`crate::storage`] (it judges every cache entry against what storage holds) and
//! [`crate::config`] (where the cache is). The collector and the edits tell it what they
//! removed through [`registry::Gone`]; it imports neither.

pub mod registry;

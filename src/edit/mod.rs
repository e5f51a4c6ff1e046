//! The edits of `delete` and `prune`: which repositories a command applies to ([`select`]),
//! references resolved into edits ([`delete`]), cleanup policies evaluated into edits
//! ([`prune`]), the edits themselves and how they are carried out ([`edits`]), and the
//! [`driver`] that selects, applies and optionally collects.
//!
//! Edits only remove references (tags, revisions, layer links, repositories); blobs are the
//! collector's. May import the collector ([`crate::gc`]) and everything below it; never the
//! outputs or the commands.

pub mod delete;
pub mod driver;
pub mod edits;
pub mod prune;
pub mod report;
pub mod select;

//! What a run says: the human summaries and the JSON document ([`report`], [`check`]), the
//! storage report of `regsweep report` ([`usage`]), and Prometheus metrics ([`metrics`]).
//!
//! The result types live with the phases that produce them; this layer only formats them
//! (the `write_human` of each report is implemented here). May import everything below it;
//! nothing below imports it.

pub mod check;
pub mod metrics;
pub mod report;
pub mod usage;

//! What the registry stores and where: the layout of its keys, content digests, and every
//! manifest kind reduced to what it references.
//!
//! The bottom layer. No I/O, and no import from any other folder of the crate but
//! [`crate::error`]: everything else builds on these types.

pub mod digest;
pub mod layout;
pub mod manifest;

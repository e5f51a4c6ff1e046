//! Shared helpers for the integration and end-to-end tests.
#![allow(dead_code)]

pub mod emulators;
pub mod images;
pub mod pause;
pub mod pull;
pub mod redis_server;
pub mod registry;
pub mod s3;
pub mod scenario;
pub mod tree;

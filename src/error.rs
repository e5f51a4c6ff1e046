//! Errors and diagnostics.
//!
//! [`Error`] is what stops a command before it can plan anything (bad target, unreadable
//! storage root). [`Problem`] is a finding about one path, collected while walking; a problem
//! of severity error means the live set may be incomplete, so nothing is deleted.

use std::io;
use std::path::PathBuf;

use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The target is not something regsweep can collect (missing, not a registry, a config
    /// without filesystem storage). Nothing has been touched.
    #[error("{path}: {message}")]
    Target { path: PathBuf, message: String },
    /// The command's arguments name things that do not exist or make no sense (one message
    /// per problem). Nothing has been touched.
    #[error("{}", .0.join("\nregsweep: error: "))]
    Usage(Vec<String>),
    /// Another run holds the lock on this storage.
    #[error("{path}: {message}")]
    Locked { path: PathBuf, message: String },
}

impl Error {
    pub fn io(path: impl Into<PathBuf>, source: io::Error) -> Error {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    pub fn target(path: impl Into<PathBuf>, message: impl Into<String>) -> Error {
        Error::Target {
            path: path.into(),
            message: message.into(),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// One finding, tied to the file or directory that caused it. `path` is the full path on disk
/// so an administrator can go and look.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, serde::Deserialize)]
pub struct Problem {
    pub path: String,
    pub message: String,
}

impl Problem {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Problem {
        Problem {
            path: path.into(),
            message: message.into(),
        }
    }
}

/// Problems found by one phase, split by what they mean for the sweep.
#[derive(Debug, Default, Clone)]
pub struct Diagnostics {
    /// The live set may be incomplete because of these: nothing may be deleted.
    pub errors: Vec<Problem>,
    /// Worth telling the administrator, but the live set is complete without them.
    pub warnings: Vec<Problem>,
}

impl Diagnostics {
    pub fn error(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.errors.push(Problem::new(path, message));
    }

    pub fn warn(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.warnings.push(Problem::new(path, message));
    }

    pub fn merge(&mut self, other: Diagnostics) {
        self.errors.extend(other.errors);
        self.warnings.extend(other.warnings);
    }

    /// Sort for stable output: phases run in parallel, so arrival order means nothing.
    pub fn sort(&mut self) {
        self.errors.sort();
        self.errors.dedup();
        self.warnings.sort();
        self.warnings.dedup();
    }
}

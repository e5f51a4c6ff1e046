//! The human summary of `check`.

use std::io::{self, Write};

use crate::check::CheckReport;
use crate::output::report::{write_requests, write_root_source};
use crate::units::bytes;

impl CheckReport {
    pub fn write_human(&self, mut out: impl Write) -> io::Result<()> {
        let s = &self.summary;
        writeln!(
            out,
            "regsweep check{} on {}",
            if self.verify { " --verify" } else { "" },
            self.root
        )?;
        write_root_source(&mut out, &self.root_source)?;
        writeln!(
            out,
            "Checked {} repositories, {} manifests, {} links, {} blobs ({})",
            s.repositories,
            s.manifests,
            s.links,
            s.blobs,
            bytes(s.bytes)
        )?;
        if self.verify {
            writeln!(
                out,
                "Verified {} blobs ({}) at {}/s",
                s.verified_blobs,
                bytes(s.verified_bytes),
                bytes(s.verify_bytes_per_second as u64)
            )?;
        }
        if self.problems.is_empty() {
            writeln!(out, "No damage found.")?;
        } else {
            writeln!(out, "{} problems:", self.problems.len())?;
            for p in &self.problems {
                write!(out, "  {:?}: {}", p.kind, p.path)?;
                if let Some(d) = &p.digest {
                    write!(out, " ({d})")?;
                }
                writeln!(out, ": {}", p.message)?;
            }
        }
        if !self.repaired.is_empty() {
            writeln!(out, "Repaired: wrote {} links back:", self.repaired.len())?;
            for path in &self.repaired {
                writeln!(out, "  {path}")?;
            }
        } else if self.repairable > 0 {
            writeln!(
                out,
                "{} missing links can be written back: `regsweep check --repair` does it",
                self.repairable
            )?;
        }
        writeln!(out, "Took {:.2}s.", s.elapsed_seconds)?;
        write_requests(&mut out, self.requests.as_ref())
    }
}

//! Regenerate `fixtures/registry/`: a small, complete registry written by the real registry
//! server (Debian's `docker-registry`), pushed over its HTTP API.
//!
//! Also writes `fixtures/registry.expect.json`: what each gc mode must delete, stated by the
//! intent of each scenario step (which image was deleted, which tag moved; see
//! tests/support/scenario.rs), not computed by regsweep. The integration tests hold regsweep
//! to it.
//!
//! Usage: cargo run --example make-fixture -- [OUT_DIR]   (default: fixtures/registry)

#[path = "../tests/support/images.rs"]
mod images;
#[path = "../tests/support/registry.rs"]
mod registry;
#[path = "../tests/support/scenario.rs"]
mod scenario;

use std::path::{Path, PathBuf};

/// git does not track empty directories, and the registry leaves some behind (a manifest
/// deleted through the API keeps its revision directory; an untagged repository keeps an empty
/// `tags/`). Without them a repository can lose its `_manifests` in a clone and stop being one,
/// so each gets a `.gitkeep`, which neither the registry nor regsweep reads as anything. An
/// empty `tags/` or `_uploads/` means the same as none and is left for git to drop (a file in
/// `tags/` would be listed as a tag by the registry).
fn keep_empty_dirs(dir: &Path) {
    let entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .collect();
    let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if entries.is_empty() && name != "tags" && name != "_uploads" {
        std::fs::write(dir.join(".gitkeep"), b"").unwrap();
    }
    for e in entries {
        if e.file_type().unwrap().is_dir() {
            keep_empty_dirs(&e.path());
        }
    }
}

fn main() {
    let out = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "fixtures/registry".to_string()),
    );
    if !registry::server_available() {
        eprintln!("make-fixture: {} is not installed", registry::SERVER);
        std::process::exit(2);
    }
    if out.exists() {
        std::fs::remove_dir_all(&out).expect("remove old fixture");
    }
    let server = registry::Registry::start(&out);
    let expect = scenario::standard(&server.client());
    drop(server);
    keep_empty_dirs(&out);
    let expect_path = out.with_extension("expect.json");
    std::fs::write(
        &expect_path,
        serde_json::to_string_pretty(&expect.to_json()).unwrap() + "\n",
    )
    .expect("write expectations");
    eprintln!("wrote {} and {}", out.display(), expect_path.display());
}

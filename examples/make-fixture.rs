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

use std::path::PathBuf;

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
    let expect_path = out.with_extension("expect.json");
    std::fs::write(
        &expect_path,
        serde_json::to_string_pretty(&expect.to_json()).unwrap() + "\n",
    )
    .expect("write expectations");
    eprintln!("wrote {} and {}", out.display(), expect_path.display());
}

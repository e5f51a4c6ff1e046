//! Write a seeded synthetic registry for benchmarks.
//!
//! cargo run --release --example gen-registry -- --preset medium [--seed 1] DIR
//!     [--upload s3://BUCKET/PREFIX|gs://BUCKET/PREFIX|azblob://CONTAINER/PREFIX --endpoint URL]
//!
//! With `--upload`, the tree written to DIR is also put into the bucket (created if missing;
//! endpoint and credentials as regsweep finds them), so disk and bucket hold the same registry.

use std::path::PathBuf;
use std::time::Instant;

use clap::Parser;

#[derive(Parser)]
struct Args {
    /// small, medium or large.
    #[arg(long, default_value = "small")]
    preset: String,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// The storage root to create (must not exist or be empty).
    dir: PathBuf,
    /// Also put the tree into this bucket and prefix (s3://, gs:// or azblob://).
    #[arg(long, value_name = "URL")]
    upload: Option<String>,
    /// The endpoint for --upload (default: as regsweep finds it).
    #[arg(long, visible_alias = "s3-endpoint", value_name = "URL")]
    endpoint: Option<String>,
}

fn main() {
    let args = Args::parse();
    let Some(preset) = regsweep::synth::preset(&args.preset) else {
        eprintln!(
            "gen-registry: unknown preset {:?} (small, medium, large)",
            args.preset
        );
        std::process::exit(2);
    };
    if args.dir.exists() && std::fs::read_dir(&args.dir).map_or(true, |mut d| d.next().is_some()) {
        eprintln!(
            "gen-registry: {} exists and is not empty",
            args.dir.display()
        );
        std::process::exit(2);
    }
    let started = Instant::now();
    match regsweep::synth::generate(&args.dir, preset, args.seed) {
        Ok(s) => eprintln!(
            "gen-registry: {} preset, seed {}: {} repositories, {} tags, {} manifests, {} blobs written in {:.1}s",
            preset.name,
            args.seed,
            s.repositories,
            s.tags,
            s.manifests,
            s.blobs_written,
            started.elapsed().as_secs_f64()
        ),
        Err(e) => {
            eprintln!("gen-registry: {}: {e}", args.dir.display());
            std::process::exit(1);
        }
    }
    if let Some(url) = &args.upload {
        if let Err(e) = upload(url, args.endpoint.as_deref(), &args.dir) {
            eprintln!("gen-registry: {url}: {e}");
            std::process::exit(1);
        }
    }
}

fn upload(url: &str, endpoint: Option<&str>, dir: &std::path::Path) -> Result<(), String> {
    use regsweep::config::{resolve, Backend};
    let resolved = resolve(std::path::Path::new(url), endpoint).map_err(|e| e.to_string())?;
    let prefix = match &resolved.backend {
        Backend::S3 { prefix, .. }
        | Backend::Gcs { prefix, .. }
        | Backend::Azure { prefix, .. } => prefix.clone(),
        Backend::Fs(_) => return Err("not a bucket URL".into()),
    };
    let client = regsweep::storage::bucket::connect(&resolved.backend, None)
        .expect("a bucket")
        .map_err(|e| e.to_string())?;
    // Already there is fine.
    let _ = client.create_bucket();
    let started = Instant::now();
    let n = regsweep::storage::object::load_tree(client.as_ref(), &prefix, dir)
        .map_err(|e| e.to_string())?;
    eprintln!(
        "gen-registry: {n} objects put into {url} in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

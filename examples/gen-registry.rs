//! Write a seeded synthetic registry for benchmarks.
//!
//! cargo run --release --example gen-registry -- --preset medium [--seed 1] DIR

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
}

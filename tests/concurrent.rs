//! Pushes during a run: a real registry server keeps serving while `regsweep gc` runs on its
//! storage, and images that reuse "dead" blobs are pushed at every point of the run. No pushed
//! image may end up broken. (The registry is not in read-only mode here on purpose: this is
//! the case the second and last looks and the trash exist for.)

mod support;

use std::process::Stdio;
use std::time::{Duration, Instant};

use regsweep::registry::digest::{Algorithm, Digest};
use support::images::{push_image, push_with_retry, Format};
use support::registry::{server_available, Registry};
use support::tree::{age_tree, blobs_on_disk, regsweep};

#[test]
fn pushes_reusing_dead_blobs_during_a_run_are_never_broken() {
    if !server_available() {
        eprintln!("skipping: docker-registry is not installed (scripts/test installs it)");
        return;
    }
    let root = tempfile::tempdir().unwrap();
    regsweep::synth::generate(root.path(), support::tree::BUSY, 5).unwrap();
    age_tree(root.path(), Duration::from_secs(3 * 3600));
    let mut registry = Registry::start(root.path());
    let c = registry.client();

    // How long a run takes here, to spread the pushes over it.
    let t0 = Instant::now();
    let dry = regsweep()
        .args(["gc", "-d", "-q"])
        .arg(root.path())
        .status()
        .unwrap();
    assert!(dry.success());
    let took = t0.elapsed().max(Duration::from_millis(50));

    let trials = 12;
    let mut rescued_any = false;
    for t in 0..trials {
        // Content that is dead when the run starts: pushed, deleted, and old.
        let seeds = [format!("reuse-{t}-a"), format!("reuse-{t}-b")];
        let seed_refs: Vec<&str> = seeds.iter().map(String::as_str).collect();
        let victim = push_image(&c, "victim", Some("v"), Format::Oci, "amd64", &seed_refs);
        c.delete_manifest("victim", &victim.digest);
        age_tree(root.path(), Duration::from_secs(3 * 3600));

        let mut args = vec!["gc", "--json", "-"];
        if t % 2 == 1 {
            args.push("-m");
        }
        let child = regsweep()
            .args(&args)
            .arg(root.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // From the start of the mark to past the end of the sweep.
        std::thread::sleep(took.mul_f64(1.3 * t as f64 / trials as f64));
        let repo = format!("pushed/{t}");
        let (digest, blobs) = push_with_retry(&c, &repo, &seed_refs);
        let out = child.wait_with_output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "trial {t}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report: regsweep::gc::report::GcReport = serde_json::from_slice(&out.stdout).unwrap();
        rescued_any |= report.summary.rescued_blobs + report.summary.rescued_layer_links > 0;

        // The pushed image pulls: manifest by tag, every blob with the right digest, on disk.
        let (status, body) = c.get_manifest(&repo, "latest");
        assert_eq!(status, 200, "trial {t}: manifest of {repo}");
        assert_eq!(Digest::of(Algorithm::Sha256, &body), digest);
        let on_disk = blobs_on_disk(root.path());
        for b in &blobs {
            assert!(on_disk.contains(b), "trial {t}: {repo} lost blob {b}");
            let (status, content) = c.get_blob(&repo, b);
            assert_eq!(status, 200, "trial {t}: blob {b} of {repo}");
            assert_eq!(&Digest::of(Algorithm::Sha256, &content), b);
        }
    }
    registry.stop();
    eprintln!("a later look rescued something in at least one trial: {rescued_any}");
}

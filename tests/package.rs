//! Installed like a system tool (issue 16): the Debian package is built from the repository,
//! installed with `dpkg -i`, and then what an administrator relies on is there: the binary,
//! the man pages, the completions, the systemd units (which `systemd-analyze verify` accepts),
//! the example policy. The man pages and completions are regenerated here and compared with
//! what the package installed, so they cannot drift from `--help`.

mod support;

use std::path::Path;
use std::process::Command;

use support::tree::{regsweep, run};

fn available(tool: &str) -> bool {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .is_ok_and(|o| o.status.success());
    if !found && std::env::var_os("CI").is_some() {
        panic!("{tool} is not installed and CI is set: run scripts/test, which installs it");
    }
    found
}

fn sh(cmd: &mut Command) -> String {
    let out = cmd.output().expect("run");
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn gunzip(path: &Path) -> Vec<u8> {
    let out = Command::new("gzip")
        .arg("-dc")
        .arg(path)
        .output()
        .expect("gzip");
    assert!(out.status.success(), "{}", path.display());
    out.stdout
}

#[test]
fn the_package_installs_a_binary_man_pages_completions_and_units() {
    let root = unsafe { libc::geteuid() } == 0;
    if !root
        || !["cargo-deb", "dpkg", "man", "systemd-analyze"]
            .iter()
            .all(|t| available(t))
    {
        eprintln!("skipping: needs root, cargo-deb, dpkg, man and systemd-analyze (scripts/test)");
        return;
    }
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    // The same features as the binary the other tests run, so that it is not rebuilt.
    let features = if cfg!(feature = "test-hooks") {
        "test-hooks"
    } else {
        ""
    };
    let built = sh(Command::new(repo.join("scripts/build-deb"))
        .arg("--debug")
        .env("REGSWEEP_DEB_FEATURES", features));
    let deb = repo.join(built.lines().last().expect("the package's path"));
    sh(Command::new("dpkg").arg("-i").arg(&deb));

    let version = sh(Command::new("/usr/bin/regsweep").arg("--version"));
    assert_eq!(
        version.trim(),
        format!("regsweep {}", env!("CARGO_PKG_VERSION"))
    );
    for page in [
        "regsweep",
        "regsweep-gc",
        "regsweep-delete",
        "regsweep-prune",
        "regsweep-report",
        "regsweep-check",
    ] {
        let path = sh(Command::new("man").args(["-w", page]));
        assert!(
            path.trim().ends_with(&format!("{page}.1.gz")),
            "{page}: {path}"
        );
    }
    let units = [
        "/lib/systemd/system/regsweep-gc.service",
        "/lib/systemd/system/regsweep-gc.timer",
    ];
    sh(Command::new("systemd-analyze").arg("verify").args(units));
    let service = std::fs::read_to_string(units[0]).unwrap();
    // The packaged defaults: a window to undo a deletion and a cap on one night's deletions
    // (systemd's `%%` is a literal `%`), each explained where `systemctl cat` shows it.
    assert!(service.contains(
        "gc -m --min-age 6h --unreferenced-for 24h --max-delete 50%% --quiet --json /var/log/regsweep/"
    ));
    for flag in [
        "--min-age 6h",
        "--unreferenced-for 24h",
        "--max-delete 50%%",
    ] {
        assert!(
            service
                .lines()
                .any(|l| l.starts_with('#') && l.contains(flag.split(' ').next().unwrap())),
            "{flag} is not explained in a comment"
        );
    }
    assert!(service.contains("/etc/docker/registry/config.yml"));
    let timer = std::fs::read_to_string(units[1]).unwrap();
    assert!(timer.contains("RandomizedDelaySec="));
    // Installed, not enabled: no symlink in timers.target.wants.
    assert!(!Path::new("/etc/systemd/system/timers.target.wants/regsweep-gc.timer").exists());
    assert!(Path::new("/usr/share/doc/regsweep/examples/policy.json").is_file());

    // Regenerated now, from the binary under test: the same bytes as packaged.
    let dir = tempfile::tempdir().unwrap();
    let r = run(&["man", dir.path().to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let mut pages = 0;
    for entry in std::fs::read_dir(dir.path()).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let packaged = gunzip(&Path::new("/usr/share/man/man1").join(format!("{name}.gz")));
        assert_eq!(
            std::fs::read(entry.path()).unwrap(),
            packaged,
            "{name} drifted"
        );
        pages += 1;
    }
    assert_eq!(pages, 8, "regsweep.1 and one page per subcommand");
    for (shell, installed) in [
        ("bash", "/usr/share/bash-completion/completions/regsweep"),
        ("zsh", "/usr/share/zsh/vendor-completions/_regsweep"),
        ("fish", "/usr/share/fish/vendor_completions.d/regsweep.fish"),
    ] {
        let out = regsweep().args(["completions", shell]).output().unwrap();
        assert!(out.status.success());
        assert_eq!(
            out.stdout,
            std::fs::read(installed).unwrap(),
            "{shell} completions drifted"
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("--min-age"));
    }
    the_packaged_service_runs_as_the_registrys_user_on_debians_default_config(&service);
    sh(Command::new("dpkg").args(["-r", "regsweep"]));
}

/// #25: the timer's service on Debian's registry with its default config (blob descriptors
/// cached in the registry's memory), the unit's ExecStart run as its User, then its
/// ExecStartPost; afterwards an image reusing a deleted blob is pushed, and pulls.
fn the_packaged_service_runs_as_the_registrys_user_on_debians_default_config(service: &str) {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let debian = std::fs::read_to_string("/etc/docker/registry/config.yml").unwrap_or_default();
    let user = service
        .lines()
        .find_map(|l| l.strip_prefix("User="))
        .expect("the unit names its User");
    if !debian.contains("blobdescriptor: inmemory") || !available("setpriv") {
        eprintln!("skipping the service run: Debian's docker-registry config is not installed");
        return;
    }
    let top = tempfile::tempdir().unwrap();
    std::fs::set_permissions(top.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let data = top.path().join("data");
    let logs = top.path().join("log");
    for d in [&data, &logs] {
        std::fs::create_dir(d).unwrap();
        sh(Command::new("chown").arg(format!("{user}:{user}")).arg(d));
    }
    let cache = "  cache:\n    blobdescriptor: inmemory\n";
    let mut registry = support::registry::Registry::start_as(&data, user, cache);
    let c = registry.client();
    // A registry in use: most of it stays (the unit refuses to delete more than half).
    support::images::push_image(
        &c,
        "app",
        Some("keep"),
        support::images::Format::Oci,
        "amd64",
        &["kept-1", "kept-2", "kept-3", "kept-4", "kept-5"],
    );
    let seeds = ["packaged-a", "packaged-b"];
    let gone = support::images::push_image(
        &c,
        "app",
        Some("old"),
        support::images::Format::Oci,
        "amd64",
        &seeds,
    );
    c.delete_manifest("app", &gone.digest);
    support::tree::age_tree(&data, std::time::Duration::from_secs(3 * 86400));

    let json = logs.join("gc.json");
    let line = |key: &str| {
        service
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .unwrap_or_else(|| panic!("no {key}"))
            .replace("%%", "%")
            .replace("/var/log/regsweep/gc.json", json.to_str().unwrap())
            .replace(
                "/etc/docker/registry/config.yml",
                registry.config.to_str().unwrap(),
            )
    };
    let exec_start = line("ExecStart=");
    let run_as_user = |offset_hours: u64| {
        let at = humantime::format_rfc3339_seconds(
            std::time::SystemTime::now() + std::time::Duration::from_secs(offset_hours * 3600),
        );
        let out = Command::new("setpriv")
            .args(["--reuid", user, "--regid", user, "--init-groups", "--"])
            .args(exec_start.split_whitespace())
            .env("REGSWEEP_TEST_NOW", at.to_string())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    // The first night sees them unreferenced; the second, a day on, deletes them.
    run_as_user(0);
    let said = run_as_user(25);
    assert!(said.contains("RESTART THE REGISTRY"), "{said}");
    let report: regsweep::gc::report::GcReport =
        serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert!(!report.deleted.blobs.is_empty());
    assert!(report.cache.as_ref().is_some_and(|c| c.restart_required));
    // Everything in the storage is still the registry user's.
    let uid = std::fs::metadata(&data).unwrap().uid();
    for e in walkdir::WalkDir::new(&data) {
        let e = e.unwrap();
        assert_eq!(
            std::fs::symlink_metadata(e.path()).unwrap().uid(),
            uid,
            "{}",
            e.path().display()
        );
    }
    // ExecStartPost, with the registry's restart seen rather than done to a system service.
    let restarted = top.path().join("restarted");
    let post = line("ExecStartPost=+").replace(
        "systemctl try-restart docker-registry.service",
        &format!("touch {}", restarted.display()),
    );
    sh(Command::new("sh").arg("-c").arg(&post));
    assert!(
        restarted.exists(),
        "the unit did not restart a registry that needed it"
    );
    registry.restart();
    let c = registry.client();
    // A push reusing a deleted blob: the registry no longer claims to have it, so the client
    // uploads it, and the image pulls.
    let (digest, _) = support::images::push_as_a_client(&c, "app", None, &seeds);
    support::pull::verify_image(&c, "app", &digest).expect("the image pushed again pulls");
}

/// A production binary lets no environment variable pause it, move its clock or kill it: the
/// hooks are a cargo feature that no default and no release build turns on.
#[test]
fn release_builds_have_no_test_hooks() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let manifest = std::fs::read_to_string(repo.join("Cargo.toml")).unwrap();
    let features = manifest
        .split("[features]")
        .nth(1)
        .and_then(|s| s.split("\n[").next())
        .unwrap();
    assert!(
        !features
            .lines()
            .any(|l| l.trim_start().starts_with("default")),
        "no default features: {features}"
    );
    let build = std::fs::read_to_string(repo.join("scripts/build-deb")).unwrap();
    let release = build
        .lines()
        .find(|l| l.contains("cargo build --release"))
        .unwrap();
    assert!(!release.contains("--features"), "{release}");
    let hooks = std::fs::read_to_string(repo.join("src/hooks.rs")).unwrap();
    assert!(hooks.contains("#[cfg(feature = \"test-hooks\")]\nmod enabled"));
}

//! `regsweep delete` and `regsweep prune`, run as a user runs them, on temporary copies of the
//! fixture registry written by the real registry server. Extra tags are written the way the
//! registry writes them (current link and history entry), with controlled modification times.

mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, SystemTime};

use regsweep::edit::report::EditReport;
use regsweep::registry::digest::Digest;
use support::tree::{
    aged_copy, assert_every_tag_pulls, gc_json, repository_names, run, snapshot, v2, Run,
    TreeBuilder,
};

fn edit_json(args: &[&str]) -> (EditReport, Run) {
    let mut all = args.to_vec();
    all.extend(["--json", "-"]);
    let r = run(&all);
    let report: EditReport = serde_json::from_str(&r.stdout)
        .unwrap_or_else(|e| panic!("bad JSON ({e}): {}\nstderr: {}", r.stdout, r.stderr));
    (report, r)
}

fn tags_dir(root: &Path, repo: &str) -> std::path::PathBuf {
    v2(root).join(format!("repositories/{repo}/_manifests/tags"))
}

fn tags(root: &Path, repo: &str) -> BTreeSet<String> {
    match std::fs::read_dir(tags_dir(root, repo)) {
        Ok(rd) => rd
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect(),
        Err(_) => BTreeSet::new(),
    }
}

fn current(root: &Path, repo: &str, tag: &str) -> Digest {
    let p = tags_dir(root, repo).join(format!("{tag}/current/link"));
    Digest::parse_link(&std::fs::read(p).unwrap()).unwrap()
}

/// Add `tag` to `repo`, pointing where `like` points, last pushed `age` ago.
fn add_tag(root: &Path, repo: &str, tag: &str, like: &str, age: Option<Duration>) {
    let d = current(root, repo, like);
    let link = TreeBuilder {
        root: root.to_path_buf(),
    }
    .tag(repo, tag, &d);
    match age {
        Some(age) => {
            let t = filetime::FileTime::from_system_time(SystemTime::now() - age);
            filetime::set_file_mtime(&link, t).unwrap();
        }
        // A tag without a timestamp: no current link at all.
        None => std::fs::remove_file(&link).unwrap(),
    }
}

/// The tree's state, minus the lock file and the mtime of the directory holding it: a real
/// run that refuses still takes (and leaves) the lock, which is no change to the registry.
fn data_snapshot(root: &Path) -> impl PartialEq {
    let mut s = snapshot(root);
    s.remove(Path::new("docker/registry/v2/.regsweep.lock"));
    s.remove(Path::new("docker/registry/v2"));
    s
}

fn days(n: u64) -> Option<Duration> {
    Some(Duration::from_secs(n * 86400))
}

#[test]
fn delete_a_tag_keeps_its_manifest_untagged() {
    let dir = aged_copy("registry");
    let root = dir.path().to_str().unwrap();
    let digest = current(dir.path(), "library/alpine", "3.19");
    let (r, out) = edit_json(&["delete", root, "library/alpine:3.19"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(r.command, "delete");
    assert_eq!(r.summary.tags_deleted, 1);
    assert_eq!(
        r.repositories[0].tags[0].digest.as_deref(),
        Some(&*digest.to_string())
    );
    assert_eq!(
        tags(dir.path(), "library/alpine"),
        BTreeSet::from(["latest".to_string()])
    );
    let rev = v2(dir.path()).join(format!(
        "repositories/library/alpine/_manifests/revisions/sha256/{}/link",
        digest.hex()
    ));
    assert!(rev.exists(), "the manifest stays as an untagged revision");
    assert!(
        gc_json(dir.path(), &["-d"]).0.deleted.blobs.len()
            < gc_json(dir.path(), &["-d", "-m"]).0.deleted.blobs.len()
    );
    assert_every_tag_pulls(dir.path());
}

#[test]
fn delete_by_digest_removes_the_revision_and_its_tags() {
    let dir = aged_copy("registry");
    let root = dir.path().to_str().unwrap();
    let digest = current(dir.path(), "library/alpine", "latest");
    add_tag(dir.path(), "library/alpine", "same", "latest", days(3));
    add_tag(dir.path(), "library/alpine", "other", "latest", days(3));
    // Move `other` to a different manifest of the repository.
    let other_digest = current(dir.path(), "team/app", "v1");
    std::fs::write(
        tags_dir(dir.path(), "library/alpine").join("other/current/link"),
        other_digest.to_string(),
    )
    .unwrap();
    let pointing: Vec<String> = tags(dir.path(), "library/alpine")
        .into_iter()
        .filter(|t| current(dir.path(), "library/alpine", t) == digest)
        .collect();
    assert!(pointing.len() >= 2, "{pointing:?}");
    let reference = format!("library/alpine@{digest}");
    let (r, out) = edit_json(&["delete", root, &reference]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(r.summary.manifests_deleted, 1);
    assert_eq!(r.repositories[0].manifests[0].tags, pointing);
    assert_eq!(
        tags(dir.path(), "library/alpine"),
        BTreeSet::from(["other".to_string()])
    );
    assert!(!v2(dir.path())
        .join(format!(
            "repositories/library/alpine/_manifests/revisions/sha256/{}",
            digest.hex()
        ))
        .exists());
    // Deleting it again: nothing matches, a loud error, nothing touched.
    let before = data_snapshot(dir.path());
    let again = run(&["delete", root, &reference]);
    assert_eq!(again.code, 2, "{}", again.stderr);
    assert!(again.stderr.contains(&reference), "{}", again.stderr);
    assert!(
        before == data_snapshot(dir.path()),
        "a refused delete changed the tree"
    );
}

#[test]
fn delete_repositories_by_name_and_glob_keeps_nested_ones() {
    let dir = aged_copy("registry");
    let root = dir.path().to_str().unwrap();
    let all = repository_names(dir.path());
    assert!(all.contains("team/app") && all.contains("team/app/cache"));

    // A bare name without --repository is refused: a forgotten tag must not delete a repository.
    let before = data_snapshot(dir.path());
    let refused = run(&["delete", root, "team/app"]);
    assert_eq!(refused.code, 2);
    assert!(
        refused.stderr.contains("--repository"),
        "{}",
        refused.stderr
    );
    // A glob that matches nothing is refused, even beside one that matches.
    let none = run(&["delete", "--repository", root, "nothing/*", "team/*"]);
    assert_eq!(none.code, 2);
    assert!(none.stderr.contains("nothing/*"), "{}", none.stderr);
    assert!(
        before == data_snapshot(dir.path()),
        "a refused delete changed the tree"
    );

    // `team/*` stays within one component: team/app goes, team/app/cache stays.
    let (r, out) = edit_json(&["delete", "--repository", root, "team/*"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(r.summary.repositories_deleted, 1);
    let left = repository_names(dir.path());
    assert!(!left.contains("team/app"));
    assert!(left.contains("team/app/cache"));
    assert!(!v2(dir.path())
        .join("repositories/team/app/_layers")
        .exists());

    // `**/cache` at any depth; then the emptied directories go too.
    let (r, out) = edit_json(&["delete", "--repository", root, "**/cache"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(r.repositories[0].name, "team/app/cache");
    assert!(!v2(dir.path()).join("repositories/team").exists());
    assert_eq!(
        repository_names(dir.path()),
        &all - &BTreeSet::from(["team/app".into(), "team/app/cache".into()])
    );

    let (gc, out) = gc_json(dir.path(), &["-m", "--min-age", "0"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(gc.summary.deleted_blobs > 0);
    assert_every_tag_pulls(dir.path());
}

#[test]
fn dry_runs_write_nothing_and_show_what_the_real_run_does() {
    let cases: &[&[&str]] = &[
        &["delete", "library/alpine:3.19", "team/app:v1"],
        &["delete", "--repository", "library/*"],
        &["prune", "--keep-n", "0"],
        &["prune", "--name-regex-delete", "v.*|3\\..*"],
    ];
    for case in cases {
        let dir = aged_copy("registry");
        let root = dir.path().to_str().unwrap().to_string();
        let (cmd, rest) = case.split_first().unwrap();
        let with = |extra: &[&str]| -> Vec<String> {
            let mut v = vec![cmd.to_string(), root.clone()];
            v.extend(rest.iter().map(|s| s.to_string()));
            v.extend(extra.iter().map(|s| s.to_string()));
            v
        };
        let before = snapshot(dir.path());
        let args = with(&["--dry-run", "--gc", "--min-age", "0"]);
        let (plan, out) = edit_json(&args.iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(out.code, 0, "{case:?}: {}", out.stderr);
        assert!(
            before == snapshot(dir.path()),
            "{case:?}: the dry run wrote"
        );
        assert!(plan.dry_run);
        let plan_gc = plan.gc.clone().expect("--gc report");
        assert!(plan_gc.dry_run && plan_gc.delete_untagged);
        assert!(
            plan_gc.summary.deleted_blobs > 0,
            "{case:?}: nothing to not do"
        );

        let args = with(&["--gc", "--min-age", "0"]);
        let (done, out) = edit_json(&args.iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(out.code, 0, "{case:?}: {}", out.stderr);
        assert_eq!(done.repositories, plan.repositories, "{case:?}");
        assert_eq!(done.gc.unwrap().deleted, plan_gc.deleted, "{case:?}");
        assert_every_tag_pulls(dir.path());
        let (again, _) = gc_json(dir.path(), &["-m", "--min-age", "0", "-d"]);
        assert_eq!(again.deleted, Default::default(), "{case:?}");
    }
}

/// The policy table from the semantics, checked on a real tree with controlled times.
#[test]
fn prune_policies_on_a_real_tree() {
    // (arguments, tags of library/alpine that must go)
    let cases: &[(&[&str], &[&str])] = &[
        // keep-n counts only candidates; `latest` is kept and not counted; no timestamp is newest.
        (&["--keep-n", "2"], &["old-1", "old-2", "old-3", "v1.0"]),
        // older-than: a tag without a timestamp never goes.
        (&["--older-than", "20d"], &["old-2", "old-3", "v1.0"]),
        // both: outside the newest 3 candidates AND older than 35 days.
        (
            &["--keep-n", "3", "--older-than", "35d"],
            &["old-3", "v1.0"],
        ),
        // regexes match whole names; keep wins over delete.
        (&["--name-regex-delete", "old"], &[]),
        (
            &[
                "--name-regex-delete",
                "old-.*",
                "--name-regex-keep",
                "old-1",
            ],
            &["old-2", "old-3"],
        ),
        (
            &["--name-regex-delete", "old-.*", "--keep-n", "1"],
            &["old-2", "old-3"],
        ),
        // `latest` goes only when told.
        (
            &["--older-than", "1d", "--keep-latest=false"],
            &["3.19", "latest", "old-1", "old-2", "old-3", "v1.0"],
        ),
        (
            &["--older-than", "1d"],
            &["3.19", "old-1", "old-2", "old-3", "v1.0"],
        ),
    ];
    for (args, want) in cases {
        let dir = aged_copy("registry");
        let root = dir.path().to_str().unwrap();
        // latest and 3.19 were pushed a day ago (aged_copy); add older ones and one without
        // a current link.
        add_tag(dir.path(), "library/alpine", "old-1", "latest", days(10));
        add_tag(dir.path(), "library/alpine", "old-2", "latest", days(30));
        add_tag(dir.path(), "library/alpine", "old-3", "3.19", days(40));
        add_tag(dir.path(), "library/alpine", "v1.0", "3.19", days(50));
        add_tag(dir.path(), "library/alpine", "no-stamp", "3.19", None);
        let before = tags(dir.path(), "library/alpine");

        let mut all = vec!["prune", root, "--repository", "library/alpine"];
        all.extend_from_slice(args);
        let (r, out) = edit_json(&all);
        assert_eq!(out.code, 0, "{args:?}: {}", out.stderr);
        let gone: Vec<&str> = r
            .repositories
            .iter()
            .flat_map(|e| e.tags.iter().map(|t| t.tag.as_str()))
            .collect();
        assert_eq!(&gone, want, "{args:?}");
        let want: BTreeSet<String> = want.iter().map(|s| s.to_string()).collect();
        assert_eq!(
            tags(dir.path(), "library/alpine"),
            &before - &want,
            "{args:?}"
        );
        for t in r.repositories.iter().flat_map(|e| &e.tags) {
            assert!(t.reason.starts_with("command line:"), "{}", t.reason);
        }
        // Other repositories are untouched.
        assert!(r.repositories.iter().all(|e| e.name == "library/alpine"));
    }
}

#[test]
fn prune_policy_file_first_matching_rule_applies() {
    let dir = aged_copy("registry");
    let root = dir.path().to_str().unwrap();
    add_tag(dir.path(), "library/alpine", "old", "latest", days(30));
    add_tag(dir.path(), "team/app", "old", "v1", days(30));
    add_tag(dir.path(), "team/app/cache", "old", "buildcache", days(30));
    let policy = dir.path().join("policy.json");
    std::fs::write(
        &policy,
        r#"{"rules": [
            {"repository": "team/app/*", "keep_n": 0, "name_regex_keep": "build.*"},
            {"repository": "team/**", "older_than": "365d"},
            {"repository": "**", "older_than": "7d"}
        ]}"#,
    )
    .unwrap();
    let (r, out) = edit_json(&["prune", root, "--policy", policy.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let gone: BTreeSet<(String, String, String)> = r
        .repositories
        .iter()
        .flat_map(|e| {
            e.tags.iter().map(|t| {
                (
                    e.name.clone(),
                    t.tag.clone(),
                    t.reason.split(':').next().unwrap().to_string(),
                )
            })
        })
        .collect();
    let want: BTreeSet<(String, String, String)> = [
        ("library/alpine", "old", "rule 3 (**)"),
        ("team/app/cache", "old", "rule 1 (team/app/*)"),
    ]
    .iter()
    .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
    .collect();
    assert_eq!(gone, want);
    assert!(
        tags(dir.path(), "team/app").contains("old"),
        "rule 2 keeps it"
    );
}

#[test]
fn prune_rejects_bad_policies_before_touching_anything() {
    let dir = aged_copy("registry");
    let root = dir.path().to_str().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let policy = elsewhere.path().join("p.json");
    let before = data_snapshot(dir.path());
    let bad: &[(&str, &str)] = &[
        (
            r#"{"rules": [{"repository": "**", "keep_n": 1, "keepn": 2}]}"#,
            "keepn",
        ),
        (
            r#"{"rules": [{"repository": "**", "name_regex_delete": "("}]}"#,
            "name_regex_delete",
        ),
        (r#"{"rules": [{"repository": "**"}]}"#, "at least one"),
        (r#"{"rules": [{"keep_n": 1}]}"#, "repository"),
        (r#"{"rules": []}"#, "no rules"),
    ];
    for (text, needle) in bad {
        std::fs::write(&policy, text).unwrap();
        let out = run(&["prune", root, "--policy", policy.to_str().unwrap()]);
        assert_eq!(out.code, 2, "{text}: {}", out.stderr);
        assert!(out.stderr.contains(needle), "{text}: {}", out.stderr);
        assert!(out.stderr.contains("p.json"), "{text}: {}", out.stderr);
    }
    std::fs::remove_file(&policy).unwrap();
    let cli_bad: &[&[&str]] = &[
        &["--name-regex-keep", "[", "--keep-n", "1"],
        &["--keep-n", "1", "--repository", "nothing/*"],
        &["--older-than", "soon"],
        &[],
        &["--keep-n", "1", "--policy", "/nonexistent"],
    ];
    for args in cli_bad {
        let mut all = vec!["prune", root];
        all.extend_from_slice(args);
        let out = run(&all);
        assert_eq!(out.code, 2, "{args:?}: {}", out.stderr);
    }
    assert!(
        before == data_snapshot(dir.path()),
        "a refused prune changed the tree"
    );
}

#[test]
fn edits_take_the_lock_and_dry_runs_do_not() {
    let dir = aged_copy("registry");
    let root = dir.path().to_str().unwrap();
    let _held = regsweep::storage::lock::Lock::acquire(dir.path(), false).unwrap();
    let out = run(&["delete", root, "library/alpine:3.19"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains("lock"), "{}", out.stderr);
    let out = run(&["prune", root, "--keep-n", "0", "--dry-run"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(tags(dir.path(), "library/alpine").contains("3.19"));
}

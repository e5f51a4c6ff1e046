//! The READMEs in the users' languages (issue 16) must not promise a flag the tool does not
//! have: every `--flag` they name is one that some `regsweep ... --help` lists (or belongs to
//! the other command on the same line: cargo's `--release`, systemctl's `--now`).

mod support;

use std::collections::BTreeSet;

use support::tree::run;

/// Every long flag of `text`.
fn flags(text: &str) -> BTreeSet<String> {
    let bytes = text.as_bytes();
    let mut out = BTreeSet::new();
    let mut i = 0;
    while i + 2 < bytes.len() {
        let starts = bytes[i] == b'-'
            && bytes[i + 1] == b'-'
            && bytes[i + 2].is_ascii_lowercase()
            && (i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'-'));
        if starts {
            let end = (i + 2..bytes.len())
                .find(|&j| {
                    !(bytes[j].is_ascii_lowercase()
                        || bytes[j].is_ascii_digit()
                        || bytes[j] == b'-')
                })
                .unwrap_or(bytes.len());
            out.insert(text[i..end].trim_end_matches('-').to_string());
            i = end;
        } else {
            i += 1;
        }
    }
    out
}

#[test]
fn translated_readmes_name_only_flags_the_tool_has() {
    let mut known = BTreeSet::new();
    for sub in [
        "",
        "gc",
        "delete",
        "prune",
        "report",
        "check",
        "completions",
        "man",
    ] {
        let args: Vec<&str> = [sub, "--help"]
            .into_iter()
            .filter(|a| !a.is_empty())
            .collect();
        let r = run(&args);
        assert_eq!(r.code, 0, "{sub} --help: {}", r.stderr);
        known.extend(flags(&r.stdout));
    }
    assert!(known.contains("--min-age") && known.contains("--metrics-file"));
    let foreign = ["--release", "--now"];
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    for readme in ["README.zh-CN.md", "README.ko.md"] {
        let text = std::fs::read_to_string(root.join(readme)).unwrap();
        let named = flags(&text);
        assert!(named.len() > 10, "{readme} names its flags");
        let unknown: Vec<&String> = named
            .iter()
            .filter(|f| !known.contains(*f) && !foreign.contains(&f.as_str()))
            .collect();
        assert!(
            unknown.is_empty(),
            "{readme} names flags --help does not have: {unknown:?}"
        );
        assert!(
            text.contains("README.md"),
            "{readme} links back to the English README"
        );
    }
    let english = std::fs::read_to_string(root.join("README.md")).unwrap();
    assert!(english.contains("README.zh-CN.md") && english.contains("README.ko.md"));
}

#[test]
fn the_flag_finder_finds_flags() {
    let f = flags("run `regsweep gc -m --min-age 6h --json x` (--dry-run), not a--b or ---");
    let want: BTreeSet<String> = ["--min-age", "--json", "--dry-run"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(f, want);
}

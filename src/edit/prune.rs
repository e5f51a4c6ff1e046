//! `prune`: cleanup policies with GitLab's semantics, evaluated into tag removals.
//!
//! For each repository, the first rule whose repository glob matches applies:
//! 1. candidates are the tags whose whole name matches `name_regex_delete`, minus those whose
//!    whole name matches `name_regex_keep` (keep wins), minus `latest` unless `keep_latest` is
//!    off;
//! 2. `keep_n` keeps the N newest candidates (a tag without a timestamp sorts as newest);
//! 3. `older_than` spares candidates pushed more recently than that (a tag without a
//!    timestamp is never old enough).
//!
//! A tag's timestamp is the modification time of its `current/link`: when it was last pushed.

use std::path::Path;
use std::time::{Duration, SystemTime};

use rayon::prelude::*;
use regex::Regex;
use serde::Deserialize;

use crate::edit::edits::{RepoEdits, TagRemoval};
use crate::edit::select::RepoPattern;
use crate::error::Diagnostics;
use crate::gc::discover::{self, Tag};
use crate::storage::Storage;

/// One rule as written in a policy file (or assembled from command-line flags).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    /// Repository glob; a rule from the command line may have several.
    #[serde(default)]
    pub repository: Option<String>,
    #[serde(skip)]
    pub repositories: Vec<String>,
    pub keep_n: Option<usize>,
    /// A duration such as `30d` or `12h`.
    pub older_than: Option<String>,
    pub name_regex_delete: Option<String>,
    pub name_regex_keep: Option<String>,
    pub keep_latest: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    rules: Vec<RuleSpec>,
}

#[derive(Debug, Clone)]
pub struct Rule {
    /// "rule 2 (team/*)" or "command line": names the rule in reasons.
    pub label: String,
    /// Empty: every repository.
    pub repositories: Vec<RepoPattern>,
    pub keep_n: Option<usize>,
    pub older_than: Option<Duration>,
    delete: Regex,
    delete_text: String,
    keep: Option<(Regex, String)>,
    pub keep_latest: bool,
}

/// A regex that must match the whole tag name.
fn whole(re: &str, what: &str) -> Result<Regex, String> {
    Regex::new(&format!("^(?:{re})$")).map_err(|e| format!("invalid {what} {re:?}: {e}"))
}

impl Rule {
    pub fn compile(spec: &RuleSpec, label: String) -> Result<Rule, String> {
        let fail = |m: String| format!("{label}: {m}");
        if spec.keep_n.is_none() && spec.older_than.is_none() && spec.name_regex_delete.is_none() {
            return Err(fail(
                "give at least one of keep_n, older_than or name_regex_delete \
                 (otherwise every tag but `latest` would go)"
                    .into(),
            ));
        }
        let mut globs: Vec<&String> = spec.repositories.iter().collect();
        globs.extend(spec.repository.iter());
        let repositories = globs
            .into_iter()
            .map(|g| RepoPattern::new(g).map_err(&fail))
            .collect::<Result<Vec<_>, _>>()?;
        let older_than = spec
            .older_than
            .as_deref()
            .map(|s| {
                crate::units::parse_duration(s)
                    .map_err(|e| fail(format!("invalid older_than {s:?}: {e}")))
            })
            .transpose()?;
        let delete_text = spec.name_regex_delete.clone().unwrap_or(".*".into());
        let delete = whole(&delete_text, "name_regex_delete").map_err(&fail)?;
        let keep = spec
            .name_regex_keep
            .as_ref()
            .map(|k| whole(k, "name_regex_keep").map(|r| (r, k.clone())))
            .transpose()
            .map_err(&fail)?;
        Ok(Rule {
            label,
            repositories,
            keep_n: spec.keep_n,
            older_than,
            delete,
            delete_text,
            keep,
            keep_latest: spec.keep_latest.unwrap_or(true),
        })
    }

    pub fn applies_to(&self, repository: &str) -> bool {
        self.repositories.is_empty() || self.repositories.iter().any(|p| p.matches(repository))
    }

    /// Decide which of a repository's tags go. Returns the removals (with reasons) and how
    /// many tags were kept.
    pub fn evaluate(&self, tags: &[Tag], now: SystemTime) -> (Vec<TagRemoval>, usize) {
        let mut candidates: Vec<&Tag> = tags
            .iter()
            .filter(|t| self.delete.is_match(&t.name))
            .filter(|t| !self.keep.as_ref().is_some_and(|(k, _)| k.is_match(&t.name)))
            .filter(|t| !(self.keep_latest && t.name == "latest"))
            .collect();
        // Newest first; no timestamp counts as newest; the name breaks ties so the result
        // does not depend on listing order.
        candidates.sort_by(|a, b| {
            let newer = match (a.pushed, b.pushed) {
                (None, None) => std::cmp::Ordering::Equal,
                (None, Some(_)) => std::cmp::Ordering::Less,
                (Some(_), None) => std::cmp::Ordering::Greater,
                (Some(x), Some(y)) => y.cmp(&x),
            };
            newer.then_with(|| a.name.cmp(&b.name))
        });
        let cutoff = self
            .older_than
            .map(|d| now.checked_sub(d).unwrap_or(SystemTime::UNIX_EPOCH));
        let skip = self.keep_n.unwrap_or(0);
        let mut removals = Vec::new();
        for tag in candidates.into_iter().skip(skip) {
            if let Some(cutoff) = cutoff {
                match tag.pushed {
                    Some(t) if t < cutoff => {}
                    _ => continue,
                }
            }
            removals.push(TagRemoval {
                tag: tag.name.clone(),
                digest: tag.current.as_ref().ok().map(|d| d.to_string()),
                pushed: tag
                    .pushed
                    .map(|t| humantime::format_rfc3339_seconds(t).to_string()),
                reason: self.reason(),
            });
        }
        removals.sort_by(|a, b| a.tag.cmp(&b.tag));
        let kept = tags.len() - removals.len();
        (removals, kept)
    }

    fn reason(&self) -> String {
        let mut why = vec![format!("name matches {:?}", self.delete_text)];
        if let Some((_, k)) = &self.keep {
            why.push(format!("not {k:?}"));
        }
        if let Some(n) = self.keep_n {
            why.push(format!("not among the {n} newest candidates"));
        }
        if let Some(d) = self.older_than {
            why.push(format!(
                "pushed more than {} ago",
                humantime::format_duration(d)
            ));
        }
        format!("{}: {}", self.label, why.join(", "))
    }
}

/// Read a policy file: `{"rules": [{"repository": GLOB, ...}, ...]}`. Unknown keys, a rule
/// without a repository glob, and invalid values are errors naming the file and the rule.
pub fn load_policy(path: &Path) -> Result<Vec<Rule>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let file: PolicyFile =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    if file.rules.is_empty() {
        return Err(format!("{}: the policy has no rules", path.display()));
    }
    file.rules
        .iter()
        .enumerate()
        .map(|(i, spec)| {
            let glob = spec.repository.as_deref().ok_or_else(|| {
                format!(
                    "{}: rule {}: missing \"repository\" glob",
                    path.display(),
                    i + 1
                )
            })?;
            Rule::compile(spec, format!("rule {} ({glob})", i + 1))
                .map_err(|e| format!("{}: {e}", path.display()))
        })
        .collect()
}

/// The first rule that applies to a repository, if any.
pub fn rule_for<'a>(rules: &'a [Rule], repository: &str) -> Option<&'a Rule> {
    rules.iter().find(|r| r.applies_to(repository))
}

/// Evaluate the rules on every repository they apply to (in parallel). With
/// `require_match`, a repository pattern that matches no repository is an error (a typo on
/// the command line should be loud). A repository whose tags cannot all be listed is an error
/// in the diagnostics: keep-n cannot count what it cannot see, so the run refuses.
pub fn select(
    storage: &dyn Storage,
    names: &[String],
    rules: &[Rule],
    require_match: bool,
    now: SystemTime,
) -> Result<(Vec<RepoEdits>, Diagnostics), Vec<String>> {
    if require_match {
        let unmatched: Vec<String> = rules
            .iter()
            .flat_map(|r| &r.repositories)
            .filter(|p| !names.iter().any(|n| p.matches(n)))
            .map(|p| format!("--repository {}: matches no repository", p.as_str()))
            .collect();
        if !unmatched.is_empty() {
            return Err(unmatched);
        }
    }
    let per_repo: Vec<(RepoEdits, Diagnostics)> = names
        .par_iter()
        .filter_map(|name| rule_for(rules, name).map(|rule| (name, rule)))
        .map(|(name, rule)| {
            let (tags, complete, diags) = discover::discover_tags(storage, name);
            let mut edits = RepoEdits::new(name.as_str());
            if complete {
                let (removals, kept) = rule.evaluate(&tags, now);
                edits.tags = removals;
                edits.kept_tags = kept;
            }
            (edits, diags)
        })
        .collect();
    let mut diagnostics = Diagnostics::default();
    let mut edits = Vec::with_capacity(per_repo.len());
    for (e, d) in per_repo {
        edits.push(e);
        diagnostics.merge(d);
    }
    edits.sort_by(|a, b| a.name.cmp(&b.name));
    Ok((edits, diagnostics))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::digest::Digest;

    fn tag(name: &str, age_days: Option<u64>, now: SystemTime) -> Tag {
        Tag {
            name: name.into(),
            current: Ok(format!("sha256:{}", "ab".repeat(32))
                .parse::<Digest>()
                .unwrap()),
            pushed: age_days.map(|d| now - Duration::from_secs(d * 86400)),
            made: None,
            history: vec![],
        }
    }

    fn rule(spec: RuleSpec) -> Rule {
        Rule::compile(&spec, "test".into()).unwrap()
    }

    fn gone(rule: &Rule, tags: &[Tag], now: SystemTime) -> Vec<String> {
        rule.evaluate(tags, now)
            .0
            .into_iter()
            .map(|r| r.tag)
            .collect()
    }

    #[test]
    fn the_policy_table() {
        let now = SystemTime::now();
        let tags = vec![
            tag("latest", Some(100), now),
            tag("v1", Some(50), now),
            tag("v2", Some(40), now),
            tag("v3", Some(5), now),
            tag("dev-a", Some(60), now),
            tag("dev-b", Some(1), now),
            tag("stamp-less", None, now),
        ];
        let d = |s: &str| Some(s.to_string());
        let cases: Vec<(RuleSpec, Vec<&str>)> = vec![
            // keep_n counts only candidates; no timestamp sorts newest; latest kept.
            (
                RuleSpec {
                    keep_n: Some(2),
                    ..Default::default()
                },
                vec!["dev-a", "v1", "v2", "v3"],
            ),
            // older_than: the timestamp-less tag never goes.
            (
                RuleSpec {
                    older_than: d("30d"),
                    ..Default::default()
                },
                vec!["dev-a", "v1", "v2"],
            ),
            // name_regex_delete matches whole names only.
            (
                RuleSpec {
                    name_regex_delete: d("dev"),
                    ..Default::default()
                },
                vec![],
            ),
            (
                RuleSpec {
                    name_regex_delete: d("dev-.*"),
                    ..Default::default()
                },
                vec!["dev-a", "dev-b"],
            ),
            // keep wins over delete.
            (
                RuleSpec {
                    name_regex_delete: d(".*"),
                    name_regex_keep: d("v\\d+"),
                    ..Default::default()
                },
                vec!["dev-a", "dev-b", "stamp-less"],
            ),
            // keep_n among candidates only: v-tags, newest 1 kept.
            (
                RuleSpec {
                    name_regex_delete: d("v.*"),
                    keep_n: Some(1),
                    ..Default::default()
                },
                vec!["v1", "v2"],
            ),
            // both conditions: outside the newest 1 AND older than 45 days.
            (
                RuleSpec {
                    name_regex_delete: d("v.*"),
                    keep_n: Some(1),
                    older_than: d("45d"),
                    ..Default::default()
                },
                vec!["v1"],
            ),
            // latest can be pruned when told.
            (
                RuleSpec {
                    older_than: d("90d"),
                    keep_latest: Some(false),
                    ..Default::default()
                },
                vec!["latest"],
            ),
            (
                RuleSpec {
                    keep_n: Some(0),
                    older_than: d("1000d"),
                    ..Default::default()
                },
                vec![],
            ),
        ];
        for (i, (spec, want)) in cases.into_iter().enumerate() {
            assert_eq!(gone(&rule(spec), &tags, now), want, "case {i}");
        }
    }

    #[test]
    fn invalid_rules_are_errors() {
        assert!(Rule::compile(&RuleSpec::default(), "r".into()).is_err());
        let bad_re = RuleSpec {
            name_regex_delete: Some("(".into()),
            ..Default::default()
        };
        assert!(Rule::compile(&bad_re, "r".into())
            .unwrap_err()
            .contains("name_regex_delete"));
        let bad_age = RuleSpec {
            older_than: Some("soon".into()),
            ..Default::default()
        };
        assert!(Rule::compile(&bad_age, "r".into()).is_err());
    }

    #[test]
    fn policy_files_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("p.json");
        std::fs::write(
            &p,
            r#"{"rules":[{"repository":"a/*","keep_n":1,"bogus":2}]}"#,
        )
        .unwrap();
        assert!(load_policy(&p).unwrap_err().contains("bogus"));
        std::fs::write(&p, r#"{"rules":[{"keep_n":1}]}"#).unwrap();
        assert!(load_policy(&p).unwrap_err().contains("repository"));
        std::fs::write(
            &p,
            r#"{"rules":[{"repository":"a/*","keep_n":1},{"repository":"**","older_than":"7d"}]}"#,
        )
        .unwrap();
        let rules = load_policy(&p).unwrap();
        assert_eq!(rule_for(&rules, "a/b").unwrap().keep_n, Some(1));
        assert_eq!(rule_for(&rules, "c").unwrap().keep_n, None);
        assert!(rule_for(&rules[..1], "c").is_none());
    }
}

//! `delete`: resolve references (`REPO:TAG`, `REPO@DIGEST`, `REPO`) into edits.
//!
//! Resolution reads the storage and changes nothing. Every reference must match something: a
//! repository glob that matches no repository, a tag or manifest that no matched repository
//! has, is an error before anything is touched, because a typo in a scheduled delete should be
//! loud, not a silent no-op.

use std::collections::{BTreeMap, HashMap};

use crate::edit::edits::{ManifestRemoval, RepoEdits, TagRemoval};
use crate::edit::select::RepoPattern;
use crate::error::Diagnostics;
use crate::gc::discover::{self, Tag};
use crate::registry::digest::Digest;
use crate::registry::layout;
use crate::storage::Storage;

#[derive(Debug, Clone)]
pub enum Target {
    Tag(String),
    Manifest(Digest),
    Repository,
}

#[derive(Debug, Clone)]
pub struct Reference {
    /// As given on the command line, for messages and reasons.
    pub text: String,
    pub repository: RepoPattern,
    pub target: Target,
}

/// Tag names as the distribution spec allows them.
pub fn valid_tag(tag: &str) -> bool {
    let mut chars = tag.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric() || c == '_')
        && tag.len() <= 128
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

impl Reference {
    /// Parse `REPO:TAG`, `REPO@DIGEST`, or (only when `repositories` is set, so a forgotten
    /// tag cannot delete a whole repository) a bare `REPO`.
    pub fn parse(text: &str, repositories: bool) -> Result<Reference, String> {
        if text.trim().is_empty() {
            return Err(format!(
                "{text:?}: the reference is empty (give REPO:TAG, REPO@DIGEST, or REPO with --repository)"
            ));
        }
        let (repo, target) = if let Some((repo, digest)) = text.split_once('@') {
            let digest: Digest = digest
                .parse()
                .map_err(|e| format!("{text}: invalid digest: {e}"))?;
            (repo, Target::Manifest(digest))
        } else if let Some((repo, tag)) = text.rsplit_once(':') {
            if !valid_tag(tag) {
                return Err(format!("{text}: invalid tag name {tag:?}"));
            }
            (repo, Target::Tag(tag.to_string()))
        } else if repositories {
            (text, Target::Repository)
        } else {
            return Err(format!(
                "{text}: names a whole repository; pass --repository to delete repositories \
                 (or give REPO:TAG or REPO@DIGEST)"
            ));
        };
        Ok(Reference {
            text: text.to_string(),
            repository: RepoPattern::new(repo)?,
            target,
        })
    }
}

fn tag_removal(tag: &Tag, reason: String) -> TagRemoval {
    TagRemoval {
        tag: tag.name.clone(),
        digest: tag.current.as_ref().ok().map(|d| d.to_string()),
        pushed: tag
            .pushed
            .map(|t| humantime::format_rfc3339_seconds(t).to_string()),
        reason,
    }
}

/// Resolve references against the repositories in `names`. Returns the edits per repository
/// (sorted by name) and the problems met on the way, or every reference that matched nothing.
pub fn resolve(
    storage: &dyn Storage,
    names: &[String],
    refs: &[Reference],
) -> Result<(Vec<RepoEdits>, Diagnostics), Vec<String>> {
    let mut edits: BTreeMap<String, RepoEdits> = BTreeMap::new();
    let mut tags_of: HashMap<String, Vec<Tag>> = HashMap::new();
    let mut diags = Diagnostics::default();
    let mut unmatched = Vec::new();

    for r in refs {
        let repos: Vec<&String> = names.iter().filter(|n| r.repository.matches(n)).collect();
        if repos.is_empty() {
            unmatched.push(format!(
                "{}: no repository matches {}",
                r.text,
                r.repository.as_str()
            ));
            continue;
        }
        let mut found = false;
        for repo in repos {
            let tags = tags_of.entry(repo.clone()).or_insert_with(|| {
                let (tags, _, d) = discover::discover_tags(storage, repo);
                diags.merge(d);
                tags
            });
            let entry = edits
                .entry(repo.clone())
                .or_insert_with(|| RepoEdits::new(repo.as_str()));
            match &r.target {
                Target::Repository => {
                    entry.repository = true;
                    found = true;
                }
                Target::Tag(name) => {
                    if let Some(tag) = tags.iter().find(|t| &t.name == name) {
                        if !entry.tags.iter().any(|t| &t.tag == name) {
                            entry
                                .tags
                                .push(tag_removal(tag, format!("delete {}", r.text)));
                        }
                        found = true;
                    }
                }
                Target::Manifest(digest) => {
                    if storage.stat(&layout::revision_link(repo, digest)).is_ok() {
                        let digest_text = digest.to_string();
                        if !entry.manifests.iter().any(|m| m.digest == digest_text) {
                            entry.manifests.push(ManifestRemoval {
                                digest: digest_text,
                                tags: tags
                                    .iter()
                                    .filter(|t| t.current.as_ref().ok() == Some(digest))
                                    .map(|t| t.name.clone())
                                    .collect(),
                            });
                        }
                        found = true;
                    }
                }
            }
        }
        if !found {
            let what = match &r.target {
                Target::Tag(t) => format!("tag {t:?}"),
                Target::Manifest(d) => format!("manifest {d}"),
                Target::Repository => unreachable!("a matched repository is always found"),
            };
            unmatched.push(format!(
                "{}: no repository matching {} has {what}",
                r.text,
                r.repository.as_str()
            ));
        }
    }
    if !unmatched.is_empty() {
        return Err(unmatched);
    }
    let mut out: Vec<RepoEdits> = edits.into_values().filter(|e| !e.is_empty()).collect();
    for e in &mut out {
        if e.repository {
            // The whole repository goes: listing its tags one by one would only repeat that.
            e.tags.clear();
            e.manifests.clear();
        }
        e.tags.sort_by(|a, b| a.tag.cmp(&b.tag));
        e.manifests.sort_by(|a, b| a.digest.cmp(&b.digest));
    }
    Ok((out, diags))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_references() {
        let hex = "ab".repeat(32);
        let r = Reference::parse("team/app:v1.2", false).unwrap();
        assert!(matches!(r.target, Target::Tag(ref t) if t == "v1.2"));
        assert_eq!(r.repository.as_str(), "team/app");
        let r = Reference::parse(&format!("team/*@sha256:{hex}"), false).unwrap();
        assert!(matches!(r.target, Target::Manifest(_)));
        assert!(r.repository.is_glob());
        assert!(Reference::parse("team/app", false).is_err());
        assert!(matches!(
            Reference::parse("team/app", true).unwrap().target,
            Target::Repository
        ));
        let empty = Reference::parse("", true).unwrap_err();
        assert!(empty.contains("the reference is empty"), "{empty}");
        for bad in ["app:", "app:-x", "app@sha256:12", ":v1", "app:a/b", "", " "] {
            assert!(Reference::parse(bad, true).is_err(), "{bad}");
        }
    }
}

//! Which repositories a command applies to: literal names or globs over repository names.
//!
//! A glob's `*` and `?` stay within one path component (`team/*` matches `team/app`, not
//! `team/app/cache`); `**` spans any number of components (`**/cache` matches `cache`,
//! `a/cache` and `a/b/cache`). A pattern without glob characters must name a repository exactly.

use globset::{GlobBuilder, GlobMatcher};

#[derive(Debug, Clone)]
pub struct RepoPattern {
    text: String,
    glob: Option<GlobMatcher>,
}

impl RepoPattern {
    pub fn new(text: &str) -> Result<RepoPattern, String> {
        let trimmed = text.trim_matches('/');
        if trimmed.is_empty() {
            return Err(format!("{text:?}: empty repository name"));
        }
        if trimmed
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == ".." || c.starts_with('_'))
        {
            return Err(format!(
                "{text:?}: not a repository name (empty, `.`, `..` or `_`-prefixed component)"
            ));
        }
        let glob = if trimmed.contains(['*', '?', '[', '{']) {
            let g = GlobBuilder::new(trimmed)
                .literal_separator(true)
                .build()
                .map_err(|e| format!("{text:?}: invalid glob: {e}"))?;
            Some(g.compile_matcher())
        } else {
            None
        };
        Ok(RepoPattern {
            text: trimmed.to_string(),
            glob,
        })
    }

    pub fn is_glob(&self) -> bool {
        self.glob.is_some()
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn matches(&self, name: &str) -> bool {
        match &self.glob {
            Some(g) => g.is_match(name),
            None => self.text == name,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_respect_components() {
        let p = RepoPattern::new("team/*").unwrap();
        assert!(p.is_glob());
        assert!(p.matches("team/app"));
        assert!(!p.matches("team/app/cache"));
        assert!(!p.matches("team"));
        let p = RepoPattern::new("**/cache").unwrap();
        for name in ["cache", "a/cache", "a/b/cache"] {
            assert!(p.matches(name), "{name}");
        }
        assert!(!p.matches("a/cached"));
        let p = RepoPattern::new("team/app").unwrap();
        assert!(!p.is_glob());
        assert!(p.matches("team/app"));
        assert!(!p.matches("team/app2"));
    }

    #[test]
    fn rejects_what_cannot_be_a_repository() {
        for bad in ["", "/", "a//b", "../x", "a/_manifests", "a/[b"] {
            assert!(RepoPattern::new(bad).is_err(), "{bad}");
        }
    }
}

//! Glob patterns in an environment's settings: `paths` (the files a merge must change for
//! it to deploy there) and `tags` (the tag names whose push deploys there). Compiled once
//! at start into one [`globset::GlobSet`]; the patterns' text is kept to show and compare.
//!
//! The rules are those of `.gitignore`-style globs a monorepo user expects: `*` and `?`
//! stay within one path segment (`services/*` is not `services/api/src/main.rs`), `**`
//! crosses segments (`services/api/**`), `[ab]` and `{a,b}` choose. Matching is
//! case-sensitive, as Git's paths and tag names are.

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

/// A list of glob patterns, compiled. Empty: matches nothing (see [`Patterns::is_empty`]).
#[derive(Clone, Default)]
pub struct Patterns {
    texts: Vec<String>,
    set: GlobSet,
}

impl Patterns {
    /// Compiles `texts`; the error names the pattern and what is wrong with it. `what`
    /// names the setting (`paths`, `tags`) in the error.
    pub fn parse(texts: &[String], what: &str) -> Result<Self, String> {
        let mut builder = GlobSetBuilder::new();
        for text in texts {
            if text.trim().is_empty() {
                return Err(format!("{what}: a pattern must not be empty"));
            }
            if text.starts_with('/') {
                return Err(format!(
                    "{what}: {text:?} starts with /, but GitHub names files from the \
                     repository's root without one: write {:?}",
                    text.trim_start_matches('/')
                ));
            }
            let glob = GlobBuilder::new(text)
                .literal_separator(true)
                .backslash_escape(true)
                .build()
                .map_err(|e| format!("{what}: {text:?} is not a glob pattern: {}", e.kind()))?;
            builder.add(glob);
        }
        let set = builder
            .build()
            .map_err(|e| format!("{what}: the patterns could not be compiled: {e}"))?;
        Ok(Self {
            texts: texts.to_vec(),
            set,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.texts.is_empty()
    }

    /// Whether `candidate` (a file's path from the repository's root, or a tag's name)
    /// matches one of the patterns.
    pub fn matches(&self, candidate: &str) -> bool {
        self.set.is_match(candidate)
    }

    /// The patterns as written.
    pub fn texts(&self) -> &[String] {
        &self.texts
    }
}

impl PartialEq for Patterns {
    fn eq(&self, other: &Self) -> bool {
        self.texts == other.texts
    }
}

impl std::fmt::Debug for Patterns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(&self.texts).finish()
    }
}

impl std::fmt::Display for Patterns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let quoted: Vec<String> = self.texts.iter().map(|t| format!("{t:?}")).collect();
        write!(f, "[{}]", quoted.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn patterns(texts: &[&str]) -> Patterns {
        let texts: Vec<String> = texts.iter().map(|t| (*t).to_owned()).collect();
        Patterns::parse(&texts, "paths").unwrap()
    }

    #[test]
    fn a_double_star_crosses_directories_and_a_single_star_does_not() {
        let p = patterns(&["services/api/**", "Cargo.lock", "docs/*.md"]);
        for hit in [
            "services/api/src/main.rs",
            "services/api/Dockerfile",
            "Cargo.lock",
            "docs/index.md",
        ] {
            assert!(p.matches(hit), "{hit} should match {p}");
        }
        for miss in [
            "services/web/src/main.rs",
            "services/apiary/x",
            "crates/Cargo.lock",
            "docs/guide/setup.md",
            "cargo.lock",
        ] {
            assert!(!p.matches(miss), "{miss} should not match {p}");
        }
    }

    #[test]
    fn question_marks_classes_and_alternatives_choose_within_a_segment() {
        let p = patterns(&["v?.*", "**/*.{sql,toml}", "lib[12]/x"]);
        assert!(p.matches("v1.2"));
        assert!(!p.matches("v10.2"));
        assert!(p.matches("migrations/0001_init.sql"));
        assert!(
            p.matches("deploy.toml"),
            "** also matches no directory at all"
        );
        assert!(p.matches("lib2/x"));
        assert!(!p.matches("lib3/x"));
    }

    #[test]
    fn tag_patterns_match_whole_names() {
        let p = Patterns::parse(&["v*".to_owned()], "tags").unwrap();
        assert!(p.matches("v1.2.0"));
        assert!(!p.matches("release-v1"));
        assert!(!p.matches("v1/hotfix"), "* stays within one segment");
    }

    #[test]
    fn bad_patterns_are_refused_naming_the_setting_and_the_pattern() {
        let bad = |text: &str| Patterns::parse(&[text.to_owned()], "paths").unwrap_err();
        assert!(
            bad("services/[api").contains("\"services/[api\""),
            "{}",
            bad("x/[a")
        );
        assert!(bad("/services/**").contains("write \"services/**\""));
        assert!(bad(" ").contains("must not be empty"));
    }

    #[test]
    fn no_patterns_match_nothing_and_compare_by_their_text() {
        let none = Patterns::default();
        assert!(none.is_empty() && !none.matches("anything"));
        assert_eq!(patterns(&["a/**"]), patterns(&["a/**"]));
        assert_ne!(patterns(&["a/**"]), patterns(&["b/**"]));
        assert_eq!(format!("{:?}", patterns(&["a/**"])), r#"["a/**"]"#);
    }
}

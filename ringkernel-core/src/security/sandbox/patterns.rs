//! Kernel-id and topic patterns: exact ids, `*` (any run of characters, including
//! none) and `?` (exactly one character).
//!
//! Matching is case-sensitive and works on Unicode scalar values, so `?` matches one
//! character of a non-ASCII id, not one byte. Patterns are validated when a policy is
//! built: empty patterns, control characters, invisible or bidirectional format
//! characters (Unicode Cf), line separators and leading or trailing whitespace are
//! refused (kernel ids can hold none of these, so such a pattern could never match —
//! and a deny rule that silently never matches is a hole).
//!
//! ```
//! use ringkernel_core::security::sandbox::Pattern;
//!
//! let p = Pattern::new("external_*").unwrap();
//! assert!(p.matches("external_feed"));
//! assert!(p.matches("external_"));
//! assert!(!p.matches("external"));
//! assert!(Pattern::new("a?c").unwrap().matches("abc"));
//! assert!(Pattern::new("admin ").is_err());
//! ```

use std::collections::HashSet;
use std::fmt;

use crate::error::{Error, Result};

/// One compiled pattern.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Pattern {
    source: String,
    kind: Kind,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Kind {
    /// No wildcard: string equality.
    Exact,
    /// `*` alone: everything.
    Any,
    /// General glob, as characters.
    Glob(Vec<Token>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Token {
    Char(char),
    One,
    Star,
}

impl Pattern {
    /// Validates and compiles a pattern.
    pub fn new(pattern: &str) -> Result<Self> {
        let bad = |why: &str| {
            Err(Error::InvalidConfig(format!(
                "invalid pattern {pattern:?}: {why}"
            )))
        };
        if pattern.is_empty() {
            return bad("patterns must not be empty");
        }
        if let Some(forbidden) = crate::k2k::ForbiddenChar::find(pattern) {
            return bad(&format!("patterns must not contain {}", forbidden.what()));
        }
        if pattern.trim() != pattern {
            return bad("leading or trailing whitespace can never match a kernel id");
        }
        let kind = if !pattern.contains(['*', '?']) {
            Kind::Exact
        } else if pattern.chars().all(|c| c == '*') {
            Kind::Any
        } else {
            let mut tokens: Vec<Token> = Vec::with_capacity(pattern.len());
            for c in pattern.chars() {
                let t = match c {
                    '*' => Token::Star,
                    '?' => Token::One,
                    c => Token::Char(c),
                };
                // Runs of `*` are one `*`.
                if !(t == Token::Star && tokens.last() == Some(&Token::Star)) {
                    tokens.push(t);
                }
            }
            Kind::Glob(tokens)
        };
        Ok(Pattern {
            source: pattern.to_owned(),
            kind,
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Whether the pattern has no wildcard.
    pub fn is_exact(&self) -> bool {
        self.kind == Kind::Exact
    }

    /// Whether `text` matches.
    pub fn matches(&self, text: &str) -> bool {
        match &self.kind {
            Kind::Exact => self.source == text,
            Kind::Any => true,
            Kind::Glob(tokens) => glob_match(tokens, text),
        }
    }
}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pattern({:?})", self.source)
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

/// Iterative glob matching with single-star backtracking: O(len(text) × len(tokens))
/// in the worst case, no recursion, no allocation. `c` is a byte offset into `text`,
/// always on a character boundary; each step takes one character (Unicode scalar).
fn glob_match(tokens: &[Token], text: &str) -> bool {
    let (mut t, mut c) = (0usize, 0usize);
    // The last `*` seen: its token index and the text offset it has consumed up to.
    let mut star: Option<(usize, usize)> = None;
    while let Some(ch) = text[c..].chars().next() {
        match tokens.get(t) {
            Some(Token::Char(x)) if *x == ch => {
                t += 1;
                c += ch.len_utf8();
            }
            Some(Token::One) => {
                t += 1;
                c += ch.len_utf8();
            }
            Some(Token::Star) => {
                star = Some((t, c));
                t += 1;
            }
            _ => match star {
                Some((st, sc)) => {
                    // The star takes one more character and matching resumes after it.
                    let Some(taken) = text[sc..].chars().next() else {
                        return false;
                    };
                    let next = sc + taken.len_utf8();
                    t = st + 1;
                    c = next;
                    star = Some((st, next));
                }
                None => return false,
            },
        }
    }
    tokens[t..].iter().all(|x| *x == Token::Star)
}

/// A set of patterns compiled for fast matching: exact ids in a hash set (O(1)),
/// wildcard patterns scanned.
#[derive(Clone, Debug, Default)]
pub struct PatternSet {
    exact: HashSet<String>,
    globs: Vec<Pattern>,
    any: bool,
    len: usize,
}

impl PatternSet {
    /// Compiles `patterns`; the first invalid one is reported.
    pub fn new<S: AsRef<str>>(patterns: &[S]) -> Result<Self> {
        let mut set = PatternSet::default();
        for p in patterns {
            set.insert(Pattern::new(p.as_ref())?);
        }
        Ok(set)
    }

    /// Adds a compiled pattern.
    pub fn insert(&mut self, p: Pattern) {
        self.len += 1;
        match p.kind {
            Kind::Exact => {
                self.exact.insert(p.source);
            }
            Kind::Any => self.any = true,
            Kind::Glob(_) => self.globs.push(p),
        }
    }

    /// Whether any pattern matches `text`.
    pub fn matches(&self, text: &str) -> bool {
        self.any || self.exact.contains(text) || self.globs.iter().any(|g| g.matches(text))
    }

    /// Number of patterns.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The patterns as written (exact ones sorted first, then wildcards).
    pub fn patterns(&self) -> Vec<String> {
        let mut v: Vec<String> = self.exact.iter().cloned().collect();
        v.sort();
        if self.any {
            v.push("*".into());
        }
        v.extend(self.globs.iter().map(|g| g.source.clone()));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_cases() {
        let cases: &[(&str, &str, bool)] = &[
            ("external_*", "external_feed", true),
            ("external_*", "external_", true),
            ("external_*", "external", false),
            ("external_*", "xexternal_a", false),
            ("*_admin", "db_admin", true),
            ("*_admin", "_admin", true),
            ("*_admin", "db_admin2", false),
            ("a?c", "abc", true),
            ("a?c", "ac", false),
            ("a?c", "abbc", false),
            ("a?c", "aüc", true),
            ("*", "", true),
            ("**", "x", true),
            ("a*b*c", "aXbYc", true),
            ("a*b*c", "aXbY", false),
            ("Admin", "admin", false),
            ("proc_?_*", "proc_1_x", true),
            ("proc_?_*", "proc_12_x", false),
            // Backtracking over characters of 2, 3 and 4 bytes.
            ("*ü?", "aüüx", true),
            ("a*€", "a€x€", true),
            ("a*€", "a€x", false),
            ("?*😀", "😀😀", true),
            ("*😀?", "😀", false),
            ("*😀?", "x😀😀", true),
        ];
        for (p, t, want) in cases {
            assert_eq!(Pattern::new(p).unwrap().matches(t), *want, "{p:?} vs {t:?}");
        }
    }

    #[test]
    fn invalid_patterns_are_refused() {
        for bad in ["", "admin ", " admin", "a\tb", "x\n"] {
            assert!(Pattern::new(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn set_uses_exact_and_globs() {
        let s = PatternSet::new(&["a", "b", "ext_*"]).unwrap();
        assert!(s.matches("a") && s.matches("ext_1") && !s.matches("c"));
        assert_eq!(s.len(), 3);
        assert!(PatternSet::new(&["ok", ""]).is_err());
    }
}

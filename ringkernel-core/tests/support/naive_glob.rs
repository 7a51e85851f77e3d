//! The naive reference glob matcher, shared by `tests/sandbox.rs`,
//! `tests/sandbox_differential.rs` and the fuzz crate (`fuzz/src/lib.rs`), each of which
//! includes this file with `#[path = ...] mod naive_glob;`.

/// A naive recursive glob matcher, the reference for the compiled one: `*` any run of
/// characters (including none), `?` exactly one character, anything else itself.
/// Recursive and exponential in the number of stars: callers bound the lengths.
pub fn naive(p: &[char], t: &[char]) -> bool {
    match (p.first(), t.first()) {
        (None, None) => true,
        (Some('*'), _) => naive(&p[1..], t) || (!t.is_empty() && naive(p, &t[1..])),
        (Some('?'), Some(_)) => naive(&p[1..], &t[1..]),
        (Some(a), Some(b)) if a == b => naive(&p[1..], &t[1..]),
        _ => false,
    }
}

/// Whether any of `patterns` matches `text`, by the naive matcher.
pub fn naive_any(patterns: &[String], text: &str) -> bool {
    let t: Vec<char> = text.chars().collect();
    patterns
        .iter()
        .any(|p| naive(&p.chars().collect::<Vec<_>>(), &t))
}

//! Sandbox pattern compilation and matching against the naive reference matcher.
//!
//! Pattern sets (allow, deny, topics) and kernel ids / topics are drawn either from a
//! small alphabet (`a b ü _ * ?`, so matches are common) or as arbitrary Unicode (to
//! exercise validation). Properties: nothing panics; a policy compiles exactly when
//! every pattern compiles on its own; `Pattern::matches`, `PatternSet::matches`,
//! `allows_route` (deny beats allow, then allow, then the default) and `allows_topic`
//! agree with the naive reference on every input.
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use ringkernel_core::security::sandbox::{Pattern, PatternSet, SandboxPolicy};
use ringkernel_fuzz::naive_any;

const ALPHABET: [char; 6] = ['a', 'b', 'ü', '_', '*', '?'];

fn small(u: &mut Unstructured<'_>, max: usize) -> arbitrary::Result<String> {
    let len = u.int_in_range(0..=max)?;
    (0..len).map(|_| Ok(*u.choose(&ALPHABET)?)).collect()
}

fn text(u: &mut Unstructured<'_>, wide: bool, max: usize) -> arbitrary::Result<String> {
    if wide {
        let s = String::arbitrary(u)?;
        Ok(s.chars().take(max).collect())
    } else {
        small(u, max)
    }
}

fn set(u: &mut Unstructured<'_>, wide: bool) -> arbitrary::Result<Vec<String>> {
    let n = u.int_in_range(0..=4)?;
    (0..n).map(|_| text(u, wide, 10)).collect()
}

fn run(u: &mut Unstructured<'_>) -> arbitrary::Result<()> {
    let wide = bool::arbitrary(u)?;
    let (allow, deny, topics) = (set(u, wide)?, set(u, wide)?, set(u, wide)?);
    let default = u8::arbitrary(u)? % 3;
    let mut policy = match default {
        0 => SandboxPolicy::new(),
        1 => SandboxPolicy::restrictive(),
        _ => SandboxPolicy::permissive(),
    };
    policy = policy
        .k2k_allow_list(&allow)
        .deny_k2k_to(&deny)
        .allow_topics(&topics);
    let all_valid = allow
        .iter()
        .chain(&deny)
        .chain(&topics)
        .all(|p| Pattern::new(p).is_ok());
    let compiled = policy.compile();
    assert_eq!(
        compiled.is_ok(),
        all_valid,
        "policy compiles iff every pattern does"
    );
    let probes: Vec<String> = (0..u.int_in_range(1..=6)?)
        .map(|_| text(u, wide, 14))
        .collect::<arbitrary::Result<_>>()?;
    for p in allow.iter().chain(&deny).chain(&topics) {
        if let Ok(pat) = Pattern::new(p) {
            assert_eq!(pat.as_str(), p);
            assert_eq!(pat.is_exact(), !p.contains(['*', '?']));
            for t in &probes {
                assert_eq!(
                    pat.matches(t),
                    naive_any(std::slice::from_ref(p), t),
                    "{p:?} vs {t:?}"
                );
            }
        }
    }
    let Ok(compiled) = compiled else {
        return Ok(());
    };
    let allow_set = PatternSet::new(&allow).expect("valid");
    assert_eq!(allow_set.len(), allow.len());
    for t in &probes {
        assert_eq!(
            allow_set.matches(t),
            naive_any(&allow, t),
            "set {allow:?} vs {t:?}"
        );
        let default_allow = match default {
            0 => allow.is_empty(),
            1 => false,
            _ => true,
        };
        let want_route = !naive_any(&deny, t) && (default_allow || naive_any(&allow, t));
        assert_eq!(
            compiled.allows_route(t),
            want_route,
            "route to {t:?}: {policy:?}"
        );
        let want_topic = topics.is_empty() || naive_any(&topics, t);
        assert_eq!(
            compiled.allows_topic(t),
            want_topic,
            "topic {t:?}: {policy:?}"
        );
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let _ = run(&mut Unstructured::new(data));
});

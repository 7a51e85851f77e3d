//! The sandbox's compiled policy decisions against a naive reference, at scale
//! (issue #16): generated (pattern set, kernel id, topic) cases from a fixed seed. Each
//! case is a [`KernelSandbox`] with a default policy and, half the time, a per-kernel
//! override (a selector pattern and a second policy); the sending kernel's policy comes
//! from [`KernelSandbox::policy_for`] and decides with
//! [`CompiledPolicy::allows_route`] / [`CompiledPolicy::allows_topic`]. The reference
//! writes the rules out by hand over a naive recursive glob matcher: the override
//! applies when its selector matches the sender; deny beats allow, then allow, then
//! the policy's default; a topic passes when there is no topic list or a topic pattern
//! matches.
//!
//! Cases: 10^6 in release builds (`cargo test --release -p ringkernel-core --test
//! sandbox_differential`, as scripts/test.sh runs it), 20,000 in debug builds, or
//! `RINGKERNEL_DIFFERENTIAL_CASES` of them when set. Zero disagreements allowed.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use ringkernel_core::security::sandbox::{
    KernelSandbox, Pattern, PatternSet, ResourceLimits, SandboxPolicy,
};

/// splitmix64: a small deterministic generator (no dependency, same cases everywhere).
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }
}

/// Characters of ids and topics: few, so that patterns match often; one non-ASCII
/// (`?` matches a character, not a byte).
const ID_CHARS: [char; 6] = ['a', 'b', 'c', '_', '.', 'ü'];

/// The naive recursive glob matcher (the reference of tests/sandbox.rs too).
#[path = "support/naive_glob.rs"]
mod naive_glob;
use naive_glob::naive_any;

/// A pattern of 1..=8 characters, a third of them wildcards.
fn pattern(rng: &mut Rng) -> String {
    let len = 1 + rng.below(8);
    (0..len)
        .map(|_| match rng.below(6) {
            0 => '*',
            1 => '?',
            _ => rng.pick(&ID_CHARS),
        })
        .collect()
}

fn pattern_set(rng: &mut Rng, max: usize) -> Vec<String> {
    (0..rng.below(max + 1)).map(|_| pattern(rng)).collect()
}

/// An id or topic: half the time one that a pattern of the case matches (its `*` and
/// `?` filled in at random, then maybe one character changed), else random.
fn probe(rng: &mut Rng, patterns: &[&String]) -> String {
    if !patterns.is_empty() && rng.below(2) == 0 {
        let p = patterns[rng.below(patterns.len())];
        let mut s: Vec<char> = Vec::new();
        for c in p.chars() {
            match c {
                '*' => (0..rng.below(4)).for_each(|_| s.push(rng.pick(&ID_CHARS))),
                '?' => s.push(rng.pick(&ID_CHARS)),
                c => s.push(c),
            }
        }
        if !s.is_empty() && rng.below(4) == 0 {
            let i = rng.below(s.len());
            s[i] = rng.pick(&ID_CHARS);
        }
        s.into_iter().collect()
    } else {
        (0..1 + rng.below(10))
            .map(|_| rng.pick(&ID_CHARS))
            .collect()
    }
}

/// The number of cases: see the module docs.
fn cases() -> u64 {
    match std::env::var("RINGKERNEL_DIFFERENTIAL_CASES") {
        Ok(n) => n
            .parse()
            .expect("RINGKERNEL_DIFFERENTIAL_CASES is a number"),
        Err(_) if cfg!(debug_assertions) => 20_000,
        Err(_) => 1_000_000,
    }
}

#[derive(Clone, Copy, Debug)]
enum DefaultRoute {
    New,
    Restrictive,
    Permissive,
}

/// One policy's rules.
struct Rules {
    default: DefaultRoute,
    allow: Vec<String>,
    deny: Vec<String>,
    topics: Vec<String>,
}

impl Rules {
    fn generate(rng: &mut Rng) -> Rules {
        let default = rng.pick(&[
            DefaultRoute::New,
            DefaultRoute::Restrictive,
            DefaultRoute::Permissive,
        ]);
        let (allow, deny, topics) = (
            pattern_set(rng, 4),
            pattern_set(rng, 3),
            pattern_set(rng, 3),
        );
        Rules {
            default,
            allow,
            deny,
            topics,
        }
    }

    fn policy(&self) -> SandboxPolicy {
        let base = match self.default {
            DefaultRoute::New => SandboxPolicy::new(),
            DefaultRoute::Restrictive => SandboxPolicy::restrictive(),
            DefaultRoute::Permissive => SandboxPolicy::permissive(),
        };
        base.k2k_allow_list(&self.allow)
            .deny_k2k_to(&self.deny)
            .allow_topics(&self.topics)
    }

    /// The reference decisions for a send to `kernel` on `topic`: (route, topic).
    fn reference(&self, kernel: &str, topic: &str) -> (bool, bool) {
        let default_allow = match self.default {
            DefaultRoute::New => self.allow.is_empty(),
            DefaultRoute::Restrictive => false,
            DefaultRoute::Permissive => true,
        };
        let route =
            !naive_any(&self.deny, kernel) && (default_allow || naive_any(&self.allow, kernel));
        let topic = self.topics.is_empty() || naive_any(&self.topics, topic);
        (route, topic)
    }
}

struct Case {
    rules: Rules,
    /// A per-kernel override: selector and rules.
    kernel_override: Option<(String, Rules)>,
    sender: String,
    kernel: String,
    topic: String,
}

impl Case {
    fn generate(rng: &mut Rng) -> Case {
        let rules = Rules::generate(rng);
        let kernel_override = (rng.below(2) == 0).then(|| (pattern(rng), Rules::generate(rng)));
        let selectors: Vec<&String> = kernel_override.iter().map(|(s, _)| s).collect();
        let sender = probe(rng, &selectors);
        let mut routes: Vec<&String> = rules.allow.iter().chain(&rules.deny).collect();
        let mut topics: Vec<&String> = rules.topics.iter().collect();
        if let Some((_, o)) = &kernel_override {
            routes.extend(o.allow.iter().chain(&o.deny));
            topics.extend(&o.topics);
        }
        let kernel = probe(rng, &routes);
        let topic = probe(rng, &topics);
        Case {
            rules,
            kernel_override,
            sender,
            kernel,
            topic,
        }
    }

    fn sandbox(&self) -> KernelSandbox {
        let limits = ResourceLimits::default();
        let sb = KernelSandbox::with_policy(limits, self.rules.policy());
        match &self.kernel_override {
            Some((selector, o)) => sb.with_kernel_policy(selector, limits, o.policy()),
            None => sb,
        }
    }

    /// The rules that apply to the sender, by the naive matcher.
    fn sender_rules(&self) -> &Rules {
        match &self.kernel_override {
            Some((selector, o)) if naive_any(std::slice::from_ref(selector), &self.sender) => o,
            _ => &self.rules,
        }
    }
}

#[test]
fn compiled_policies_agree_with_the_naive_reference() {
    let n = cases();
    let mut rng = Rng(0x5eed_0016_d1ff_2026);
    let started = std::time::Instant::now();
    let (mut disagreements, mut routes_allowed, mut topics_allowed) = (Vec::new(), 0u64, 0u64);
    for i in 0..n {
        let case = Case::generate(&mut rng);
        let (_, compiled) = case.sandbox().policy_for(&case.sender).unwrap();
        let got = (
            compiled.allows_route(&case.kernel),
            compiled.allows_topic(&case.topic),
        );
        let rules = case.sender_rules();
        let want = rules.reference(&case.kernel, &case.topic);
        routes_allowed += u64::from(want.0);
        topics_allowed += u64::from(want.1);
        // The pattern set and each pattern on their own agree too.
        let set = PatternSet::new(&rules.allow).unwrap();
        let set_agrees = set.matches(&case.kernel) == naive_any(&rules.allow, &case.kernel)
            && rules.allow.iter().all(|p| {
                Pattern::new(p).unwrap().matches(&case.kernel)
                    == naive_any(std::slice::from_ref(p), &case.kernel)
            });
        if got != want || !set_agrees {
            disagreements.push(format!(
                "case {i}: sender {:?} (override {:?}) {:?} allow {:?} deny {:?} topics {:?}, kernel {:?} topic {:?}: compiled {got:?}, reference {want:?}, pattern set agrees: {set_agrees}",
                case.sender,
                case.kernel_override.as_ref().map(|(s, _)| s),
                rules.default,
                rules.allow,
                rules.deny,
                rules.topics,
                case.kernel,
                case.topic
            ));
        }
    }
    eprintln!(
        "sandbox differential: {n} cases in {:.1?}, {} disagreements ({routes_allowed} routes and {topics_allowed} topics allowed by the reference)",
        started.elapsed(),
        disagreements.len()
    );
    // Both answers occur often: the cases are not all one-sided (checked when there
    // are enough of them to tell).
    if n >= 1000 {
        let often = n / 10..=n * 9 / 10;
        assert!(often.contains(&routes_allowed), "{routes_allowed} of {n}");
        assert!(often.contains(&topics_allowed), "{topics_allowed} of {n}");
    }
    assert!(
        disagreements.is_empty(),
        "{} disagreements, the first: {:#?}",
        disagreements.len(),
        &disagreements[..disagreements.len().min(10)]
    );
}

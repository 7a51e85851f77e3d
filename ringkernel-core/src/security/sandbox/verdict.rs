//! A sandbox decision: every violation recorded while reaching it, in the order found,
//! and so what the runtime must do.

use super::ViolationAction;
use crate::error::Error;

/// A decision the gate must carry out.
///
/// A decision goes on past a violation whose action is `LogOnly` (the send still faces
/// every later check) and ends at the first one that refuses. So every violation but
/// the last is `LogOnly`, and the last one decides: none or `LogOnly`, go ahead;
/// `Deny`, refuse; `Terminate`, refuse and stop the kernel. Each is audited on its own,
/// so that a violation only logged is never hidden by a later one.
#[derive(Debug, Default)]
pub(crate) struct Verdict {
    recorded: Vec<(Error, ViolationAction)>,
}

/// What the gate does once a verdict's violations are recorded.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// Go ahead.
    Proceed,
    /// Refuse with this error.
    Refuse(Error),
    /// Refuse with this error and stop the kernel.
    RefuseAndTerminate(Error),
}

impl Verdict {
    /// No violation: go ahead.
    pub(crate) const fn allow() -> Self {
        Verdict {
            recorded: Vec::new(),
        }
    }

    /// Whether no violation was recorded.
    pub(crate) fn is_allow(&self) -> bool {
        self.recorded.is_empty()
    }

    /// Whether the decision refuses (its last violation is not only logged).
    pub(crate) fn refuses(&self) -> bool {
        self.recorded
            .last()
            .is_some_and(|(_, a)| *a != ViolationAction::LogOnly)
    }

    /// Adds a violation recorded with `action`; true when it ends the decision (the
    /// action refuses).
    pub(crate) fn add(&mut self, error: Error, action: ViolationAction) -> bool {
        debug_assert!(!self.refuses(), "a decision ends at its first refusal");
        self.recorded.push((error, action));
        action != ViolationAction::LogOnly
    }

    /// The violations recorded, in the order found, with the action each was given.
    pub(crate) fn violations(&self) -> impl Iterator<Item = (&Error, ViolationAction)> {
        self.recorded.iter().map(|(e, a)| (e, *a))
    }

    /// What to do: decided by the last violation.
    pub(crate) fn into_outcome(mut self) -> Outcome {
        match self.recorded.pop() {
            None | Some((_, ViolationAction::LogOnly)) => Outcome::Proceed,
            Some((e, ViolationAction::Deny)) => Outcome::Refuse(e),
            Some((e, ViolationAction::Terminate)) => Outcome::RefuseAndTerminate(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::security::sandbox::ViolationKind;

    fn denied(kind: ViolationKind) -> Error {
        Error::Denied {
            kernel: "k".into(),
            violation: kind,
            reason: String::new(),
        }
    }

    #[test]
    fn the_last_violation_decides_and_every_one_is_kept() {
        assert!(matches!(Verdict::allow().into_outcome(), Outcome::Proceed));
        let mut v = Verdict::allow();
        assert!(!v.add(
            denied(ViolationKind::UnauthorizedK2K),
            ViolationAction::LogOnly
        ));
        assert!(!v.is_allow() && !v.refuses());
        assert!(v.add(
            denied(ViolationKind::RateLimitExceeded),
            ViolationAction::Terminate
        ));
        assert!(v.refuses());
        let kinds: Vec<_> = v
            .violations()
            .map(|(e, a)| match e {
                Error::Denied { violation, .. } => (*violation, a),
                _ => unreachable!(),
            })
            .collect();
        assert_eq!(
            kinds,
            [
                (ViolationKind::UnauthorizedK2K, ViolationAction::LogOnly),
                (ViolationKind::RateLimitExceeded, ViolationAction::Terminate)
            ]
        );
        match v.into_outcome() {
            Outcome::RefuseAndTerminate(Error::Denied { violation, .. }) => {
                assert_eq!(violation, ViolationKind::RateLimitExceeded)
            }
            other => panic!("{other:?}"),
        }
        let mut logged = Verdict::allow();
        logged.add(
            denied(ViolationKind::UnauthorizedTopic),
            ViolationAction::LogOnly,
        );
        assert!(matches!(logged.into_outcome(), Outcome::Proceed));
    }
}

//! What a check reports when it does not fail ([`Verdict`]), and what a
//! check may need of a fixture ([`Need`]).

use crate::fixture::Fixture;
use lock_core::Capabilities;
use std::fmt;

/// The outcome of a check that did not fail. A failing check panics, with a
/// message saying what was expected and what happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Every part of the check ran and held.
    Passed,
    /// The check ran and held, but a part of it could not run on this
    /// fixture; the text names the part and the missing capability.
    Partial(String),
    /// The check could not run: the text names the missing capability.
    NotApplicable(String),
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Passed => f.write_str("passed"),
            Verdict::Partial(why) => write!(f, "passed in part: {why}"),
            Verdict::NotApplicable(why) => write!(f, "not applicable: {why}"),
        }
    }
}

/// Something a check needs of the fixture or the backend; without it the
/// check is [`Verdict::NotApplicable`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Need {
    /// [`Fixture::faults`]: the check hurts the store (it is destructive,
    /// and never run against a live deployment).
    Faults,
    /// [`Capabilities::fair`]: waiters are granted in arrival order.
    Fair,
    /// [`Capabilities::notifies_waiters`]: waiters are woken by the store.
    NotifiesWaiters,
    /// [`Capabilities::cancel_cleans_up`]: a cancelled `lock` leaves the
    /// store exactly as before.
    CancelCleansUp,
    /// [`Fixture::url`]: a URL naming the store.
    Url,
}

impl Need {
    /// Why this need is not met, or `None` if it is.
    pub fn unmet(self, fx: &dyn Fixture, caps: &Capabilities) -> Option<String> {
        let backend = caps.name;
        let met = match self {
            Need::Faults => fx.faults().is_some(),
            Need::Fair => caps.fair,
            Need::NotifiesWaiters => caps.notifies_waiters,
            Need::CancelCleansUp => caps.cancel_cleans_up,
            Need::Url => fx.url().is_some(),
        };
        (!met).then(|| match self {
            Need::Faults => format!("fixture `{}` has no fault injection", fx.name()),
            Need::Fair => format!("backend `{backend}` capabilities().fair is false"),
            Need::NotifiesWaiters => {
                format!("backend `{backend}` capabilities().notifies_waiters is false")
            }
            Need::CancelCleansUp => {
                format!("backend `{backend}` capabilities().cancel_cleans_up is false")
            }
            Need::Url => format!("fixture `{}` names no URL", fx.name()),
        })
    }
}

/// The verdict for a check needing `needs`: `None` if all are met, else
/// [`Verdict::NotApplicable`] naming every one that is not.
pub fn applicability(needs: &[Need], fx: &dyn Fixture, caps: &Capabilities) -> Option<Verdict> {
    let missing: Vec<String> = needs.iter().filter_map(|n| n.unmet(fx, caps)).collect();
    (!missing.is_empty()).then(|| Verdict::NotApplicable(missing.join("; ")))
}

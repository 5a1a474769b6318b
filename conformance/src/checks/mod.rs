//! The checks: each SPEC item as a plain async function of a [`Fixture`],
//! and the registry of them all ([`all_checks`]).
//!
//! A check returns a [`Verdict`] when it holds or cannot run, and panics
//! with a message saying what was expected and what happened when it does
//! not hold, so it can be called from a `#[tokio::test]` as it is. Every
//! check uses fresh keys of its own, so checks can run at the same time.

mod cancellation;
mod exclusion;
mod expiry;
mod fencing;
mod input;
mod loss;
mod model;
mod reentrancy;
mod release;
mod renewal;
mod util;
mod waiting;

pub use model::{ModelConfig, model_with};

use crate::Fixture;
use crate::timing::LONG_TTL;
use crate::verdict::{Need, Verdict, applicability};
use futures::future::BoxFuture;
use lock_core::Capabilities;

/// A check as the registry holds it.
pub type CheckFn = for<'a> fn(&'a dyn Fixture) -> BoxFuture<'a, Verdict>;

/// One check of the suite.
#[derive(Clone, Copy)]
pub struct Check {
    /// Its name (the name of its function and of its generated test).
    pub name: &'static str,
    /// What it needs; without it, it is not applicable.
    pub needs: &'static [Need],
    /// Runs it.
    pub run: CheckFn,
}

impl std::fmt::Debug for Check {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Check")
            .field("name", &self.name)
            .field("needs", &self.needs)
            .finish()
    }
}

impl Check {
    /// Whether it hurts the store (needs fault injection): never run
    /// against a live deployment.
    pub fn destructive(&self) -> bool {
        self.needs.contains(&Need::Faults)
    }

    /// `None` if it can run on `fx` with a backend of `caps`, else its
    /// [`Verdict::NotApplicable`].
    pub fn applicability(&self, fx: &dyn Fixture, caps: &Capabilities) -> Option<Verdict> {
        applicability(self.needs, fx, caps)
    }
}

/// The verdict of a check whose `needs` are not met, or `None`. Reads the
/// backend's capabilities from a locker only when a capability is needed.
async fn unmet(fx: &dyn Fixture, needs: &[Need]) -> Option<Verdict> {
    if needs.is_empty() {
        return None;
    }
    let locker = util::locker(fx, LONG_TTL).await;
    applicability(needs, fx, locker.capabilities())
}

/// Declares each check once: its public function (which reports itself
/// not applicable when a need is not met), and its registry entry.
macro_rules! checks {
    ($($(#[doc = $doc:literal])* $name:ident => $imp:path, needs [$($need:ident),*];)*) => {
        $(
            $(#[doc = $doc])*
            pub async fn $name(fx: &dyn Fixture) -> Verdict {
                if let Some(verdict) = unmet(fx, &[$(Need::$need),*]).await {
                    return verdict;
                }
                $imp(fx).await
            }
        )*

        /// Every check of the suite, in the order of the SPEC.
        pub fn all_checks() -> Vec<Check> {
            vec![$(Check {
                name: stringify!($name),
                needs: &[$(Need::$need),*],
                run: |fx| Box::pin($name(fx)),
            }),*]
        }
    };
}

checks! {
    /// SPEC 1: 16 clients x 50 holds of one key; a read-sleep-write counter
    /// in the critical section ends exact, no two sections overlap, and
    /// tokens increase from hold to hold.
    mutual_exclusion => exclusion::mutual_exclusion, needs [];
    /// SPEC "owner": two tasks of one process that name no owner exclude
    /// each other.
    tasks_without_owner_exclude => exclusion::tasks_without_owner_exclude, needs [];
    /// SPEC 2: an owner re-enters with the same token; each release takes
    /// one count; the key is free at zero.
    reentrancy_with_owner => reentrancy::reentrancy_with_owner, needs [];
    /// SPEC 3: tokens strictly increase from hold to hold (across clients),
    /// equal across re-entries; a fenced resource accepts every write.
    fencing_tokens_increase => fencing::fencing_tokens_increase, needs [];
    /// SPEC 3: a holder that lost its lock (paused past its ttl) and then
    /// writes is refused by the fenced resource.
    fencing_refuses_stale_holder => fencing::fencing_refuses_stale_holder, needs [];
    /// SPEC "ttl": a crashed holder's lock (no renewal, guard leaked) is
    /// free within ttl + slack, not before its deadline, with a larger
    /// token.
    crashed_holder_expires => expiry::crashed_holder_expires, needs [];
    /// SPEC 4: background renewal keeps a lock for 5 ttls.
    renewal_keeps_lock => renewal::renewal_keeps_lock, needs [];
    /// SPEC 4: `extend` by hand keeps a lock past its ttl; without it the
    /// hold ends within a ttl; extending it then fails with `NotHeld`.
    manual_extend => renewal::manual_extend, needs [];
    /// SPEC 4/5: `extend` of a hold deleted from the store fails with
    /// `NotHeld` and ends the hold.
    extend_of_deleted_hold => renewal::extend_of_deleted_hold, needs [Faults];
    /// SPEC 5: a hold deleted behind its holder's back resolves `lost()`
    /// within one ttl (+ slack), and `is_held()` turns false.
    loss_when_deleted => loss::loss_when_deleted, needs [Faults];
    /// SPEC 5/9: a holder cut off from its store resolves `lost()` within
    /// one ttl (+ slack), its `is_held()` is false before any other owner
    /// is granted, the cut-off client gets errors (never a grant), and it
    /// works again once healed.
    loss_when_unreachable => loss::loss_when_unreachable, needs [Faults];
    /// SPEC 6: releasing after expiry reports `NotHeld` and leaves the next
    /// owner's hold alone.
    release_after_expiry_frees_nothing => release::release_after_expiry_frees_nothing, needs [];
    /// SPEC 6: a release that reaches the store after the store expired the
    /// hold and gave the key to another owner reports `NotHeld` and frees
    /// nothing.
    release_of_expired_hold_frees_nothing => release::release_of_expired_hold_frees_nothing, needs [Faults];
    /// SPEC 6: a retried release takes off one count only; re-entered
    /// twice and released once, the hold is still held.
    double_release => reentrancy::double_release, needs [];
    /// SPEC 7: `try_lock` answers at once; `lock` with a wait fails with
    /// `Timeout` after about that wait, leaving nothing queued.
    wait_timeout => waiting::wait_timeout, needs [];
    /// SPEC 7: a waiter is granted within a few store round trips of the
    /// release (a waiter polling every 100 ms fails this).
    waiter_woken_promptly => waiting::waiter_woken_promptly, needs [NotifiesWaiters];
    /// SPEC 7: a fair backend grants waiters in arrival order.
    fifo_order => waiting::fifo_order, needs [Fair];
    /// SPEC 8: `lock` futures dropped at random points leave nothing held
    /// once the ttl has passed.
    cancelled_lock_expires => cancellation::cancelled_lock_expires, needs [];
    /// SPEC 8: on a backend that says `cancel_cleans_up`, dropped `lock`
    /// futures leave nothing in the store at all, right away.
    cancelled_lock_cleans_up => cancellation::cancelled_lock_cleans_up, needs [CancelCleansUp];
    /// SPEC "Words"/"Errors": bad keys are `InvalidKey`, bad ttls and
    /// owners `InvalidConfig`, identically on every backend.
    bad_keys_and_ttls => input::bad_keys_and_ttls, needs [];
    /// SPEC "key": every valid key works (255 bytes, Unicode, separators,
    /// hash tags), each its own lock (the store mapping is injective).
    valid_keys_are_distinct_locks => input::valid_keys_are_distinct_locks, needs [];
    /// SPEC "URLs": unknown options, bad values, unknown schemes are
    /// `InvalidConfig` naming what was wrong.
    bad_urls => input::bad_urls, needs [Url];
    /// All of it together: random acquire/try/release/extend/expire
    /// sequences by 3 owners against a reference model (`expire` only with
    /// fault injection). See [`ModelConfig`].
    model => model::model, needs [];
}

/// The names of [`all_checks`], in order.
pub fn check_names() -> Vec<&'static str> {
    all_checks().iter().map(|c| c.name).collect()
}

/// The check named `name`.
pub fn find(name: &str) -> Option<Check> {
    all_checks().into_iter().find(|c| c.name == name)
}

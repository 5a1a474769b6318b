//! Deliberately broken backends (mutants of the memory backend), each with a
//! test that the check guarding against its bug FAILS on it. They are the
//! lasting proof that the checks check something: a check that passes on
//! its mutant has stopped checking.

#[path = "mutants/mutant.rs"]
mod mutant;

use conformance::harness::{Outcome, run_check, runtime};
use conformance::{Fixture, MemoryFixture, checks};
use mutant::{Breakage, Mutant, Shared};
use std::sync::Arc;
use std::time::Duration;

/// A memory fixture whose every client is broken by `breakage`.
fn broken(breakage: Breakage) -> Arc<dyn Fixture> {
    let shared = Shared::default();
    Arc::new(MemoryFixture::wrapped(move |client| {
        Arc::new(Mutant::new(client, breakage, shared.clone()))
    }))
}

/// Runs check `name` on a memory fixture broken by `breakage` and asserts
/// that it fails with a message containing `expected`.
fn must_fail(breakage: Breakage, name: &str, expected: &str) {
    let check = checks::find(name).unwrap_or_else(|| panic!("no check {name}"));
    let (outcome, took) = runtime().block_on(run_check(broken(breakage), check));
    expect_failure(outcome, took, breakage, name, expected);
}

fn expect_failure(
    outcome: Outcome,
    took: Duration,
    breakage: Breakage,
    name: &str,
    expected: &str,
) {
    match outcome {
        Outcome::Failed(why) => {
            println!("{name} caught {breakage:?} after {took:.2?}: {why}");
            assert!(
                why.contains(expected),
                "{name} failed on {breakage:?}, but not for the expected reason \
                 ({expected:?}): {why}"
            );
        }
        Outcome::Verdict(v) => panic!("check {name} did not catch mutant {breakage:?}: {v}"),
    }
}

#[test]
fn release_freeing_any_owner_is_caught() {
    must_fail(
        Breakage::ReleaseFreesAnyOwner,
        "release_of_expired_hold_frees_nothing",
        "expected error NotHeld, got success",
    );
}

#[test]
fn repeating_tokens_are_caught() {
    must_fail(
        Breakage::RepeatingTokens,
        "fencing_tokens_increase",
        "is not larger than",
    );
}

#[test]
fn repeating_tokens_are_caught_after_a_crash() {
    must_fail(
        Breakage::RepeatingTokens,
        "crashed_holder_expires",
        "is not larger than",
    );
}

#[test]
fn granting_a_held_key_is_caught() {
    must_fail(
        Breakage::GrantsWhenHeld,
        "mutual_exclusion",
        "overlapping critical sections",
    );
}

#[test]
fn hollow_renewal_is_caught() {
    must_fail(Breakage::HollowRenewal, "renewal_keeps_lock", "expected");
}

#[test]
fn leaky_cancellation_is_caught() {
    must_fail(
        Breakage::LeakyCancel,
        "cancelled_lock_cleans_up",
        "cancel_cleans_up left the store changed",
    );
}

#[test]
fn polling_waiters_are_caught() {
    must_fail(
        Breakage::PollingWaiter,
        "waiter_woken_promptly",
        "one polling every 100 ms",
    );
}

#[test]
fn unfair_waiters_are_caught() {
    must_fail(Breakage::LifoWaiters, "fifo_order", "in the order");
}

#[test]
fn retried_release_taking_two_counts_is_caught() {
    must_fail(
        Breakage::ReleaseIgnoresCount,
        "double_release",
        "a retried release",
    );
}

#[test]
fn silent_loss_is_caught() {
    must_fail(
        Breakage::SilentLoss,
        "loss_when_deleted",
        "lost() of a hold deleted",
    );
}

#[test]
fn granting_without_the_store_is_caught() {
    must_fail(
        Breakage::GrantsWhenUnreachable,
        "loss_when_unreachable",
        "never a granted lock",
    );
}

#[test]
fn immortal_leak_of_a_cancelled_lock_is_caught() {
    must_fail(
        Breakage::ImmortalLeak,
        "cancelled_lock_expires",
        "is still held",
    );
}

#[test]
fn colliding_keys_are_caught() {
    must_fail(
        Breakage::CollidingKeys,
        "valid_keys_are_distinct_locks",
        "expected to get",
    );
}

#[test]
fn extend_reporting_a_deleted_hold_as_extended_is_caught() {
    must_fail(
        Breakage::SilentLoss,
        "extend_of_deleted_hold",
        "expected error NotHeld",
    );
}

#[test]
fn hollow_manual_extend_is_caught() {
    must_fail(Breakage::HollowRenewal, "manual_extend", "expected");
}

#[test]
fn granting_a_held_key_to_a_task_is_caught() {
    must_fail(
        Breakage::GrantsWhenHeld,
        "tasks_without_owner_exclude",
        "expected",
    );
}

/// The model check with a fixed seed, so that these tests are
/// deterministic (a random case may happen not to exercise a bug).
fn model_must_fail(breakage: Breakage, expected: &str) {
    let config = checks::ModelConfig {
        cases: 32,
        steps: 20,
        seed: Some(20240601),
    };
    let (outcome, took) = runtime().block_on(async {
        let fx = broken(breakage);
        let task = tokio::spawn(async move { checks::model_with(&*fx, config).await });
        let started = tokio::time::Instant::now();
        let outcome = match task.await {
            Ok(v) => Outcome::Verdict(v),
            Err(e) => Outcome::Failed(conformance::harness::panic_message(e.into_panic())),
        };
        (outcome, started.elapsed())
    });
    expect_failure(outcome, took, breakage, "model", expected);
}

#[test]
fn the_model_catches_repeating_tokens() {
    model_must_fail(Breakage::RepeatingTokens, "is not above the last one");
}

#[test]
fn the_model_catches_granting_a_held_key() {
    model_must_fail(Breakage::GrantsWhenHeld, "while model-");
}

#[test]
fn granting_a_held_key_to_another_owner_is_caught() {
    must_fail(Breakage::GrantsWhenHeld, "reentrancy_with_owner", "bob got");
}

#[test]
fn granting_a_held_key_instead_of_timing_out_is_caught() {
    must_fail(
        Breakage::GrantsWhenHeld,
        "wait_timeout",
        "expected Ok(None)",
    );
}

#[test]
fn repeating_tokens_let_a_stale_holder_write() {
    must_fail(
        Breakage::RepeatingTokens,
        "fencing_refuses_stale_holder",
        "is not larger than",
    );
}

/// A fixture that "fixes" out-of-range ttls instead of refusing them, as a
/// careless fixture or URL builder might.
struct ClampingTtl(MemoryFixture);

#[lock_core::async_trait]
impl Fixture for ClampingTtl {
    fn name(&self) -> String {
        "memory with clamped ttls".to_owned()
    }
    async fn locker(&self, ttl: Duration) -> lock_core::Result<lock_core::Locker> {
        let clamped = ttl.clamp(lock_core::Ttl::MIN, lock_core::Ttl::MAX);
        self.0.locker(clamped).await
    }
}

#[test]
fn accepting_a_bad_ttl_is_caught() {
    let check = checks::find("bad_keys_and_ttls").expect("registered");
    let fx: Arc<dyn Fixture> = Arc::new(ClampingTtl(MemoryFixture::new()));
    let (outcome, took) = runtime().block_on(run_check(fx, check));
    match outcome {
        Outcome::Failed(why) => {
            println!("bad_keys_and_ttls caught a clamping fixture after {took:.2?}: {why}");
            assert!(
                why.contains("a locker with ttl 0ns: expected error InvalidConfig"),
                "{why}"
            );
        }
        Outcome::Verdict(v) => panic!("bad_keys_and_ttls did not catch a clamping fixture: {v}"),
    }
}

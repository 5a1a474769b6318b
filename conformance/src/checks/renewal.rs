//! SPEC item 4: background renewal, extending by hand, and extending a hold
//! that is gone.

use super::util::{Keys, expect_err, faults, key, locker, must_be_held, ok, within};
use crate::timing::SLACK;
use crate::{Fixture, Verdict};
use futures::FutureExt;
use lock_core::ErrorKind;
use tokio::time::{Instant, sleep};

/// How many ttls a renewed hold is kept.
const TTLS_KEPT: u32 = 5;

pub(crate) async fn renewal_keeps_lock(fx: &dyn Fixture) -> Verdict {
    let keys = Keys::new(fx, "renewal_keeps_lock");
    let key = keys.key("k");
    let holder = locker(fx, fx.short_ttl()).await;
    let other = locker(fx, fx.short_ttl()).await;
    let guard = ok(holder.request(&key).renewal(true).lock().await, "lock");
    let ttl = guard.ttl();
    let started = Instant::now();
    let mut lost = Box::pin(guard.lost());
    while started.elapsed() < ttl * TTLS_KEPT {
        sleep(ttl / 2).await;
        let at = started.elapsed();
        if let Some(reason) = (&mut lost).now_or_never() {
            panic!("a renewed hold (ttl {ttl:?}) was lost after {at:?}: {reason}");
        }
        assert!(
            guard.is_held(),
            "a renewed hold (ttl {ttl:?}) reports is_held() == false after {at:?}"
        );
        must_be_held(
            &other,
            &key,
            format!("another client {at:?} into a renewed hold of ttl {ttl:?}"),
        )
        .await;
    }
    ok(guard.release().await, "release after 5 ttls");
    Verdict::Passed
}

pub(crate) async fn manual_extend(fx: &dyn Fixture) -> Verdict {
    let keys = Keys::new(fx, "manual_extend");
    let key = keys.key("k");
    let holder = locker(fx, fx.short_ttl()).await;
    let other = locker(fx, fx.short_ttl()).await;
    let guard = ok(
        holder.request(&key).renewal(false).lock().await,
        "lock without renewal",
    );
    let ttl = guard.ttl();
    // Every third of a ttl, as the background renewal does, for 2 ttls.
    for round in 1..=6 {
        sleep(ttl / 3).await;
        let before = guard.valid_until();
        ok(
            guard.extend().await,
            format!("extend {round} (every half ttl)"),
        );
        assert!(
            guard.valid_until() > before,
            "extend {round} succeeded but did not move the local deadline"
        );
        must_be_held(
            &other,
            &key,
            format!("another client after extend {round}, {round}/3 ttls in"),
        )
        .await;
    }
    // Stop extending: the hold ends within its ttl.
    let reason = within(ttl + SLACK, "lost() once extending stops", guard.lost()).await;
    assert!(
        !guard.is_held(),
        "lost() resolved ({reason}) but is_held() is still true"
    );
    expect_err(
        guard.extend().await,
        ErrorKind::NotHeld,
        "extend of an expired hold",
    );
    let next = ok(
        other.request(&key).wait(ttl + SLACK).lock().await,
        "another client after expiry",
    );
    expect_err(
        guard.extend().await,
        ErrorKind::NotHeld,
        "extend of an expired hold now held by another",
    );
    ok(next.release().await, "release");
    Verdict::Passed
}

pub(crate) async fn extend_of_deleted_hold(fx: &dyn Fixture) -> Verdict {
    let keys = Keys::new(fx, "extend_of_deleted_hold");
    let name = keys.key("k");
    let holder = locker(fx, fx.short_ttl()).await;
    let guard = ok(holder.request(&name).renewal(false).lock().await, "lock");
    let deleted = ok(
        faults(fx).delete_hold(&key(&name)).await,
        "fault: delete the hold",
    );
    assert!(
        deleted,
        "fault: delete_hold found no hold of {name:?} to delete"
    );
    expect_err(
        guard.extend().await,
        ErrorKind::NotHeld,
        "extend of a hold deleted from the store",
    );
    assert!(
        !guard.is_held(),
        "an extend found the hold gone, yet is_held() is still true"
    );
    within(
        SLACK,
        "lost() after an extend found the hold gone",
        guard.lost(),
    )
    .await;
    Verdict::Passed
}

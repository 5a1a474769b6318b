//! SPEC item 6: a release never frees another owner's hold.

use super::util::{Keys, expect_err, faults, key, locker, must_be_held, must_get, ok, within};
use crate::timing::{LONG_TTL, SLACK};
use crate::{Fixture, Verdict};
use lock_core::ErrorKind;

pub(crate) async fn release_after_expiry_frees_nothing(fx: &dyn Fixture) -> Verdict {
    let keys = Keys::new(fx, "release_after_expiry_frees_nothing");
    let key = keys.key("k");
    let late = locker(fx, fx.short_ttl()).await;
    let next = locker(fx, fx.short_ttl()).await;
    let third = locker(fx, fx.short_ttl()).await;
    let old = ok(
        late.request(&key).renewal(false).lock().await,
        "first owner: lock",
    );
    let ttl = old.ttl();
    within(ttl + SLACK, "first owner: lost() after its ttl", old.lost()).await;
    let current = ok(
        next.request(&key).wait(ttl + SLACK).lock().await,
        "second owner: lock",
    );
    expect_err(
        old.release().await,
        ErrorKind::NotHeld,
        "first owner: release after expiry",
    );
    assert!(
        current.is_held(),
        "the second owner's hold ended when the first owner released"
    );
    must_be_held(
        &third,
        &key,
        "a third client after the expired owner's release",
    )
    .await;
    ok(current.release().await, "second owner: release");
    Verdict::Passed
}

pub(crate) async fn release_of_expired_hold_frees_nothing(fx: &dyn Fixture) -> Verdict {
    let keys = Keys::new(fx, "release_of_expired_hold_frees_nothing");
    let name = keys.key("k");
    let late = locker(fx, LONG_TTL).await;
    let next = locker(fx, LONG_TTL).await;
    let third = locker(fx, LONG_TTL).await;
    // Renewal off and a long ttl: the first owner still believes it holds
    // when the store has already dropped its hold (unless the store tells
    // it), so its release really reaches the store.
    let old = ok(
        late.request(&name).renewal(false).lock().await,
        "first owner: lock",
    );
    let expired = ok(
        faults(fx).expire_hold(&key(&name)).await,
        "fault: expire the hold",
    );
    assert!(expired, "fault: expire_hold found no hold of {name:?}");
    let current = must_get(
        &next,
        &name,
        "second owner: lock after the store expired the first hold",
    )
    .await;
    expect_err(
        old.release().await,
        ErrorKind::NotHeld,
        "first owner: release of a hold the store has expired and given to another owner",
    );
    assert!(
        current.is_held(),
        "the second owner's hold ended when the first owner released"
    );
    must_be_held(
        &third,
        &name,
        "a third client after the expired owner's release",
    )
    .await;
    ok(current.release().await, "second owner: release");
    Verdict::Passed
}

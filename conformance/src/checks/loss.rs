//! SPEC item 5: loss is detected and never silent; item 9: an unreachable
//! store is an error, never a granted lock.

use super::util::{Keys, expect_err, faults, get_within, key, locker, must_get, ok, within};
use crate::timing::{RECONNECT, SLACK};
use crate::{Fixture, Verdict};
use lock_core::{ErrorKind, LockGuard};
use std::time::Duration;
use tokio::time::{Instant, sleep, timeout};

pub(crate) async fn loss_when_deleted(fx: &dyn Fixture) -> Verdict {
    let keys = Keys::new(fx, "loss_when_deleted");
    let name = keys.key("k");
    let holder = locker(fx, fx.short_ttl()).await;
    let other = locker(fx, fx.short_ttl()).await;
    let guard = ok(holder.request(&name).renewal(true).lock().await, "lock");
    let ttl = guard.ttl();
    let deleted = ok(
        faults(fx).delete_hold(&key(&name)).await,
        "fault: delete the hold",
    );
    assert!(
        deleted,
        "fault: delete_hold found no hold of {name:?} to delete"
    );
    let t = Instant::now();
    let reason = within(
        ttl + SLACK,
        format!("lost() of a hold deleted behind its holder's back (ttl {ttl:?})"),
        guard.lost(),
    )
    .await;
    assert!(
        !guard.is_held(),
        "lost() resolved after {:?} ({reason}) but is_held() is still true",
        t.elapsed()
    );
    expect_err(
        guard.release().await,
        ErrorKind::NotHeld,
        "release of a deleted hold",
    );
    let next = must_get(&other, &name, "another client after the deletion").await;
    ok(next.release().await, "release");
    Verdict::Passed
}

pub(crate) async fn loss_when_unreachable(fx: &dyn Fixture) -> Verdict {
    let keys = Keys::new(fx, "loss_when_unreachable");
    let name = keys.key("k");
    let (cut_off, link) = ok(
        faults(fx).cuttable_locker(fx.short_ttl()).await,
        "fault: a client whose connection can be cut",
    );
    let other = locker(fx, fx.short_ttl()).await;
    let guard = ok(cut_off.request(&name).renewal(true).lock().await, "lock");
    let (ttl, token) = (guard.ttl(), guard.token());

    link.cut();
    let cut_at = Instant::now();
    // Another owner keeps trying: it must not get the key before the
    // partitioned holder's hold has stopped being valid.
    let contender = tokio::spawn(take_when_free(other.clone(), name.clone(), ttl));
    // The partitioned client must answer with an error, never a grant.
    let (cut2, probe_key) = (cut_off.clone(), keys.key("probe"));
    let probe = tokio::spawn(async move { timeout(ttl, cut2.try_lock(&probe_key)).await });

    let reason = within(
        ttl + SLACK,
        format!("lost() of a hold whose client was cut off from the store (ttl {ttl:?})"),
        guard.lost(),
    )
    .await;
    let lost_after = cut_at.elapsed();
    assert!(
        !guard.is_held(),
        "lost() resolved after {lost_after:?} ({reason}) but is_held() is still true"
    );
    match super::util::join_all(vec![probe]).await.remove(0) {
        Ok(Ok(Some(g))) => panic!(
            "a client cut off from its store was granted a lock (token {}): an unreachable \
             store must be an error, never a granted lock",
            g.token()
        ),
        Ok(Ok(None)) => panic!("a client cut off from its store answered try_lock with \"held\""),
        Ok(Err(_)) | Err(_) => {}
    }
    link.heal();

    let (taken, taken_at) = within(
        ttl * 2 + SLACK,
        "another client takes the key of the cut-off holder",
        async { super::util::join_all(vec![contender]).await.remove(0) },
    )
    .await;
    assert!(
        guard.valid_until() <= taken_at,
        "another owner was granted the key {:?} before the cut-off holder's local deadline",
        guard.valid_until() - taken_at
    );
    assert!(
        taken.token() > token,
        "the next token {} is not larger than {token}",
        taken.token()
    );
    expect_err(
        guard.release().await,
        ErrorKind::NotHeld,
        "release of a hold lost in a partition",
    );
    ok(taken.release().await, "other: release");

    // Healed, the client works again.
    let again = get_within(&cut_off, &name, RECONNECT, "the healed client locks again").await;
    ok(again.release().await, "healed client: release");
    Verdict::Passed
}

/// Tries `try_lock` until it is granted, ignoring errors (the store may be
/// unreachable for this client too); returns the guard and when the grant
/// arrived. Gives up (so that a failed check leaves no task behind) well
/// after the check would have failed anyway.
async fn take_when_free(
    locker: lock_core::Locker,
    key: String,
    ttl: Duration,
) -> (LockGuard, Instant) {
    let give_up = Instant::now() + ttl * 3 + SLACK * 3;
    loop {
        if let Ok(Ok(Some(g))) = timeout(ttl, locker.try_lock(&key)).await {
            return (g, Instant::now());
        }
        assert!(Instant::now() < give_up, "another client never got {key:?}");
        sleep(Duration::from_millis(10)).await;
    }
}

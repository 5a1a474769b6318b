//! SPEC item 2 (reentrancy) and the retried-release half of item 6.

use super::util::{Keys, locker, must_be_held, must_get, ok};
use crate::timing::LONG_TTL;
use crate::{Fixture, Verdict};

pub(crate) async fn reentrancy_with_owner(fx: &dyn Fixture) -> Verdict {
    let keys = Keys::new(fx, "reentrancy_with_owner");
    let key = keys.key("k");
    let client = locker(fx, LONG_TTL).await;
    let other = locker(fx, LONG_TTL).await;
    let lock = || client.request(&key).owner("alice").lock();

    let g1 = ok(lock().await, "alice: lock");
    let g2 = ok(lock().await, "alice: re-enter");
    let g3 = ok(lock().await, "alice: re-enter again");
    for (n, g) in [(2, &g2), (3, &g3)] {
        assert_eq!(
            g.token(),
            g1.token(),
            "re-entry {n}: token differs from the hold's"
        );
    }
    assert_eq!(g3.hold_count(), 3, "hold count after two re-entries");
    match client.request(&key).owner("bob").try_lock().await {
        Ok(None) => {}
        Ok(Some(_)) => panic!("bob got {key:?} through alice's locker while alice held it"),
        Err(e) => panic!("bob: try_lock: {e}"),
    }
    must_be_held(&other, &key, "another client while alice holds 3 counts").await;

    ok(g3.release().await, "alice: release 1 of 3");
    assert!(g1.is_held(), "alice's hold ended after 1 of 3 releases");
    must_be_held(&other, &key, "another client while alice holds 2 counts").await;
    ok(g2.release().await, "alice: release 2 of 3");
    must_be_held(&other, &key, "another client while alice holds 1 count").await;
    let token = g1.token();
    ok(g1.release().await, "alice: release 3 of 3");
    let next = must_get(&other, &key, "another client after alice's last release").await;
    assert!(
        next.token() > token,
        "the next hold's token {} is not larger than {token}",
        next.token()
    );
    ok(next.release().await, "release");
    crate::Verdict::Passed
}

pub(crate) async fn double_release(fx: &dyn Fixture) -> Verdict {
    let keys = Keys::new(fx, "double_release");
    let key = keys.key("k");
    let client = locker(fx, LONG_TTL).await;
    let other = locker(fx, LONG_TTL).await;
    let lock = || client.request(&key).owner("carol").lock();
    let g1 = ok(lock().await, "carol: lock");
    let g2 = ok(lock().await, "carol: re-enter");
    let g3 = ok(lock().await, "carol: re-enter again");

    ok(g3.release().await, "carol: release 1 of 3");
    must_be_held(&other, &key, "after 1 of 3 releases").await;

    // The locker retries a release whose outcome it did not learn with the
    // same count; the store must take one count off, however many tries
    // reach it (Backend::release's contract).
    let info = g2.info().clone();
    let count = g2.hold_count();
    let mut tries = Vec::new();
    for _ in 0..3 {
        tries.push(client.backend().release(&info, count).await);
    }
    must_be_held(
        &other,
        &key,
        format!("after one release of count {count} sent three times (a retried release)"),
    )
    .await;
    for (n, result) in tries.into_iter().enumerate() {
        ok(
            result,
            format!(
                "Backend::release(count {count}), try {} of a retried release",
                n + 1
            ),
        );
    }
    // The locker still counts 2; its own release of count 2 now finds the
    // count already taken and must not take another.
    ok(g2.release().await, "carol: release 2 of 3");
    must_be_held(&other, &key, "after 2 of 3 releases, one of them retried").await;
    ok(g1.release().await, "carol: release 3 of 3");
    let next = must_get(&other, &key, "after carol's last release").await;
    ok(next.release().await, "release");
    Verdict::Passed
}

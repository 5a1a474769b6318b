//! SPEC item 3: fencing tokens.

use super::util::{Keys, locker, ok, within};
use crate::timing::{LONG_TTL, SLACK};
use crate::{FencedResource, Fixture, Verdict};

const HOLDS: usize = 12;

pub(crate) async fn fencing_tokens_increase(fx: &dyn Fixture) -> Verdict {
    let keys = Keys::new(fx, "fencing_tokens_increase");
    let key = keys.key("k");
    let resource = FencedResource::new();
    let lockers = [
        locker(fx, LONG_TTL).await,
        locker(fx, LONG_TTL).await,
        locker(fx, LONG_TTL).await,
    ];
    let mut previous = None;
    for hold in 0..HOLDS {
        let client = &lockers[hold % lockers.len()];
        let owner = format!("owner-{hold}");
        let outer = ok(
            client.request(&key).owner(&owner).lock().await,
            format!("hold {hold}: lock"),
        );
        let token = outer.token();
        if let Some(prev) = previous {
            assert!(
                token > prev,
                "hold {hold} of {key:?} began after hold {} ended, yet its token {token} is not \
                 larger than {prev}",
                hold - 1
            );
        }
        previous = Some(token);
        let inner = ok(
            client.request(&key).owner(&owner).lock().await,
            format!("hold {hold}: re-entry"),
        );
        assert_eq!(
            inner.token(),
            token,
            "hold {hold}: a re-entry must carry the hold's token"
        );
        for (guard, what) in [(&outer, "first"), (&inner, "re-entrant")] {
            if let Err(refused) = resource.write(guard.token(), format!("{hold}")) {
                panic!(
                    "hold {hold}: the {what} write was refused by the fenced resource: {refused:?}"
                );
            }
        }
        ok(
            inner.release().await,
            format!("hold {hold}: release re-entry"),
        );
        ok(outer.release().await, format!("hold {hold}: release"));
    }
    Verdict::Passed
}

pub(crate) async fn fencing_refuses_stale_holder(fx: &dyn Fixture) -> Verdict {
    let keys = Keys::new(fx, "fencing_refuses_stale_holder");
    let key = keys.key("k");
    let resource = FencedResource::new();
    let paused = locker(fx, fx.short_ttl()).await;
    let next = locker(fx, fx.short_ttl()).await;

    // A holder that stops renewing, as a process paused by GC would.
    let stale = ok(
        paused.request(&key).renewal(false).lock().await,
        "first holder: lock",
    );
    let ttl = stale.ttl();
    ok(
        resource
            .write(stale.token(), "first")
            .map_err(|r| lock_core::Error::backend(format!("{r:?}"))),
        "first holder: write while valid",
    );
    within(
        ttl + SLACK,
        "first holder: lost() after its ttl without renewal",
        stale.lost(),
    )
    .await;
    let fresh = ok(
        next.request(&key).wait(ttl + SLACK).lock().await,
        "second holder: lock after the first one's ttl",
    );
    assert!(
        fresh.token() > stale.token(),
        "the second hold's token {} is not larger than the lost hold's {}",
        fresh.token(),
        stale.token()
    );
    if let Err(r) = resource.write(fresh.token(), "second") {
        panic!("second holder: its write was refused: {r:?}");
    }
    // The first holder wakes up and writes: the resource must refuse it.
    assert!(
        !stale.is_held(),
        "the first holder still reports is_held() after another owner took the key"
    );
    match resource.write(stale.token(), "stale") {
        Err(_) => {}
        Ok(()) => panic!(
            "a holder that lost its lock wrote with token {} after the next holder wrote with {}, \
             and the fenced resource accepted it",
            stale.token(),
            fresh.token()
        ),
    }
    assert_eq!(resource.value().as_deref(), Some("second"));
    ok(fresh.release().await, "second holder: release");
    Verdict::Passed
}

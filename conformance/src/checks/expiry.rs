//! The ttl frees the lock of a crashed holder (SPEC "ttl / lease", items 3
//! and 5).

use super::util::{Keys, locker, ok};
use crate::timing::SLACK;
use crate::{Fixture, Verdict};
use tokio::time::Instant;

pub(crate) async fn crashed_holder_expires(fx: &dyn Fixture) -> Verdict {
    let keys = Keys::new(fx, "crashed_holder_expires");
    let key = keys.key("k");
    let crashed = locker(fx, fx.short_ttl()).await;
    let next = locker(fx, fx.short_ttl()).await;

    // A holder that crashes: no renewal, and its guard is never released
    // (leaked, so not even a background release is sent).
    let guard = ok(
        crashed.request(&key).renewal(false).lock().await,
        "holder: lock",
    );
    let granted = Instant::now();
    let (ttl, token, deadline) = (guard.ttl(), guard.token(), guard.valid_until());
    std::mem::forget(guard);

    let bound = ttl + SLACK;
    let taken = ok(
        next.request(&key).wait(bound + SLACK).lock().await,
        format!("next owner: lock a key whose holder crashed (ttl {ttl:?})"),
    );
    let after = granted.elapsed();
    assert!(
        after <= bound,
        "a crashed holder's lock (ttl {ttl:?}) was freed only {after:?} after its grant; \
         expected within ttl + {SLACK:?}"
    );
    assert!(
        Instant::now() >= deadline,
        "another owner was granted the key before the crashed holder's local deadline had passed"
    );
    assert!(
        taken.token() > token,
        "the next hold's token {} is not larger than the crashed hold's {token}",
        taken.token()
    );
    ok(taken.release().await, "next owner: release");
    Verdict::Passed
}

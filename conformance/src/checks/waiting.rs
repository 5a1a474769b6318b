//! SPEC item 7: `try_lock` answers at once, `lock` times out, waiters are
//! woken by the store, and fair backends grant in arrival order.

use super::util::{Keys, get_within, join_all, locker, median, ok, round_trip, within};
use crate::timing::{HANDOFF_ROUND_TRIPS, HANDOFF_SLACK, LONG_TTL, LONG_WAIT, SLACK};
use crate::{Fixture, Verdict};
use lock_core::Error;
use rand::{Rng, SeedableRng};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::{Instant, sleep};

/// The wait of the timeout check.
const WAIT: Duration = Duration::from_millis(400);
/// Handoffs measured by the wake-up check.
const HANDOFFS: usize = 7;
/// Waiters queued by the FIFO check.
const QUEUED: usize = 5;

pub(crate) async fn wait_timeout(fx: &dyn Fixture) -> Verdict {
    let keys = Keys::new(fx, "wait_timeout");
    let key = keys.key("k");
    let holder = locker(fx, LONG_TTL).await;
    let waiter = locker(fx, LONG_TTL).await;
    let guard = ok(holder.lock(&key).await, "holder: lock");

    let t = Instant::now();
    match waiter.try_lock(&key).await {
        Ok(None) => {}
        other => panic!("try_lock of a held key: expected Ok(None), got {other:?}"),
    }
    let answered = t.elapsed();
    assert!(
        answered <= SLACK,
        "try_lock of a held key took {answered:?}: it must answer at once"
    );

    let t = Instant::now();
    let result = waiter.request(&key).wait(WAIT).lock().await;
    let waited = t.elapsed();
    match result {
        Err(Error::Timeout { .. }) => {}
        other => panic!("lock with wait {WAIT:?} on a held key: expected Timeout, got {other:?}"),
    }
    // Timers never fire early; allow a millisecond of rounding.
    assert!(
        waited + Duration::from_millis(1) >= WAIT && waited <= WAIT + SLACK,
        "lock with wait {WAIT:?} gave up after {waited:?}; expected between {WAIT:?} and {:?}",
        WAIT + SLACK
    );
    ok(guard.release().await, "holder: release");
    // The timed-out waiter left nothing queued in front of newcomers.
    let next = get_within(
        &waiter,
        &key,
        SLACK,
        "a newcomer after the timed-out waiter",
    )
    .await;
    ok(next.release().await, "release");
    Verdict::Passed
}

pub(crate) async fn waiter_woken_promptly(fx: &dyn Fixture) -> Verdict {
    let keys = Keys::new(fx, "waiter_woken_promptly");
    let key = keys.key("k");
    let holder = locker(fx, LONG_TTL).await;
    let waiter = locker(fx, LONG_TTL).await;
    let rtt = round_trip(&holder, &key).await;
    let bound = rtt * HANDOFF_ROUND_TRIPS + HANDOFF_SLACK;
    let mut rng = rand::rngs::StdRng::from_os_rng();
    let mut samples = Vec::with_capacity(HANDOFFS);
    for round in 0..HANDOFFS {
        let guard = ok(
            holder.lock(&key).await,
            format!("round {round}: holder: lock"),
        );
        let (w, k) = (waiter.clone(), key.clone());
        let task = tokio::spawn(async move {
            let g = ok(w.request(&k).wait(LONG_WAIT).lock().await, "waiter: lock");
            let at = Instant::now();
            ok(g.release().await, "waiter: release");
            at
        });
        // Let the waiter start waiting; a random pause so that a waiter
        // polling on a fixed period cannot be in phase by luck.
        sleep(Duration::from_millis(rng.random_range(30..70))).await;
        assert!(
            !task.is_finished(),
            "round {round}: the waiter was granted while the key was held"
        );
        let released = Instant::now();
        ok(
            guard.release().await,
            format!("round {round}: holder: release"),
        );
        let granted = within(LONG_WAIT, "waiter granted", async {
            join_all(vec![task]).await.remove(0)
        })
        .await;
        samples.push(granted.saturating_duration_since(released));
    }
    let mut sorted = samples.clone();
    let typical = median(&mut sorted);
    assert!(
        typical <= bound,
        "a waiter was granted a median {typical:?} after the release (samples {samples:?}); \
         expected within {HANDOFF_ROUND_TRIPS} round trips of {rtt:?} + {HANDOFF_SLACK:?} = \
         {bound:?}, as a waiter woken by the store is (one polling every 100 ms is not)"
    );
    Verdict::Passed
}

pub(crate) async fn fifo_order(fx: &dyn Fixture) -> Verdict {
    let keys = Keys::new(fx, "fifo_order");
    let key = keys.key("k");
    let holder = locker(fx, LONG_TTL).await;
    let guard = ok(holder.lock(&key).await, "holder: lock");
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for n in 0..QUEUED {
        let client = locker(fx, LONG_TTL).await;
        let (k, order) = (key.clone(), order.clone());
        tasks.push(tokio::spawn(async move {
            let g = ok(
                client.request(&k).wait(LONG_WAIT).lock().await,
                format!("waiter {n}: lock"),
            );
            order.lock().unwrap_or_else(|p| p.into_inner()).push(n);
            sleep(Duration::from_millis(5)).await;
            ok(g.release().await, format!("waiter {n}: release"));
        }));
        wait_until_queued(&holder, &key, n + 1).await;
    }
    ok(guard.release().await, "holder: release");
    join_all(tasks).await;
    let order = order.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let arrival: Vec<usize> = (0..QUEUED).collect();
    assert_eq!(
        order, arrival,
        "a fair backend granted {QUEUED} waiters in the order {order:?}; they arrived in the order {arrival:?}"
    );
    Verdict::Passed
}

/// Waits until the store shows `n` waiters where it counts them, else (or
/// if it never shows them) gives the newest waiter time to reach the store.
/// The order of grants decides the check, not the count.
async fn wait_until_queued(locker: &lock_core::Locker, key: &str, n: usize) {
    let until = Instant::now() + Duration::from_millis(250);
    while Instant::now() < until {
        match ok(locker.status(key).await, "status").waiters {
            Some(w) if w >= n => return,
            Some(_) => sleep(Duration::from_millis(5)).await,
            None => break,
        }
    }
    sleep(Duration::from_millis(50)).await;
}

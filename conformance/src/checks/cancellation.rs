//! SPEC item 8: a `lock` future dropped at any await point leaves no hold
//! behind.

use super::util::{Keys, faults, locker, ok, round_trip};
use crate::fixture::Link;
use crate::timing::{CLEANUP_GRACE, LONG_TTL, LONG_WAIT, SLACK};
use crate::{Fixture, Verdict};
use lock_core::Locker;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::time::Duration;
use tokio::time::{Instant, sleep, timeout};

/// Dropped acquisitions per run, each on its own key.
const ROUNDS: usize = 24;

/// What one round of [`drop_lock_futures`] left to look at.
struct Round {
    key: String,
    cancelled: bool,
}

/// Drops `lock` futures at random points: half of them on a key someone
/// holds (dropped while waiting), half on a free key (dropped while being
/// granted). Where the fixture can slow the connection, each round adds a
/// random latency so that drops land in the middle of a store call.
/// With `clean_at_once`, each round's key is checked with that client
/// right after the round (holder released) for anything left behind.
async fn drop_lock_futures(
    fx: &dyn Fixture,
    keys: &Keys,
    ttl: Duration,
    clean_at_once: Option<&Locker>,
) -> Vec<Round> {
    let holder = locker(fx, LONG_TTL).await;
    let (dropper, link): (Locker, Option<Box<dyn Link>>) = match fx.faults() {
        Some(_) => {
            let (l, link) = ok(
                faults(fx).cuttable_locker(ttl).await,
                "fault: a client to slow down",
            );
            (l, Some(link))
        }
        None => (locker(fx, ttl).await, None),
    };
    let rtt = round_trip(&dropper, &keys.key("rtt")).await;
    let seed: u64 = rand::random();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut rounds = Vec::with_capacity(ROUNDS);
    for n in 0..ROUNDS {
        let key = keys.key(n);
        let held = rng.random_bool(0.5);
        let holding = match held {
            true => Some(ok(
                holder.lock(&key).await,
                format!("round {n}: holder: lock"),
            )),
            false => None,
        };
        let latency = Duration::from_micros(rng.random_range(0..3_000));
        if let Some(link) = &link {
            link.delay(latency);
        }
        // Up to a few round trips (with the added latency both ways).
        let span = (rtt + latency * 2) * 3 + Duration::from_millis(1);
        let limit = Duration::from_micros(rng.random_range(0..=span.as_micros() as u64));
        let attempt = timeout(limit, dropper.request(&key).wait(LONG_WAIT).lock()).await;
        if let Some(link) = &link {
            link.heal();
        }
        let cancelled = match attempt {
            Err(_) => true,
            Ok(Ok(guard)) => {
                assert!(!held, "seed {seed} round {n}: granted a key that was held");
                ok(guard.release().await, format!("round {n}: release"));
                false
            }
            Ok(Err(e)) => panic!("seed {seed} round {n}: lock failed: {e}"),
        };
        if let Some(g) = holding {
            ok(g.release().await, format!("round {n}: holder: release"));
        }
        let round = Round { key, cancelled };
        if let Some(checker) = clean_at_once {
            assert_left_clean(checker, &round).await;
        }
        rounds.push(round);
    }
    let cancelled = rounds.iter().filter(|r| r.cancelled).count();
    assert!(
        cancelled > 0,
        "seed {seed}: none of {ROUNDS} lock futures was dropped before it finished, so nothing was checked"
    );
    rounds
}

pub(crate) async fn cancelled_lock_expires(fx: &dyn Fixture) -> Verdict {
    let keys = Keys::new(fx, "cancelled_lock_expires");
    let ttl = fx.short_ttl();
    let checker = locker(fx, ttl).await;
    let rounds = drop_lock_futures(fx, &keys, ttl, None).await;
    // What the dropped futures left may stay until its ttl runs out
    // (rounded up by the store), never longer.
    let probe = ok(checker.lock(&keys.key("ttl-probe")).await, "probe: lock");
    let effective = probe.ttl();
    ok(probe.release().await, "probe: release");
    sleep(effective + SLACK).await;
    for round in &rounds {
        let status = ok(checker.status(&round.key).await, "status");
        let what = if round.cancelled {
            "a dropped lock future"
        } else {
            "a completed lock"
        };
        assert!(
            status.is_free(),
            "{:?}, after {what}, is still held {:?} after the ttl: {status:?}",
            round.key,
            effective + SLACK
        );
        match checker.try_lock(&round.key).await {
            Ok(Some(g)) => ok(g.release().await, "release"),
            other => panic!(
                "{:?} after {what} and the ttl: try_lock gave {other:?}",
                round.key
            ),
        }
    }
    Verdict::Passed
}

pub(crate) async fn cancelled_lock_cleans_up(fx: &dyn Fixture) -> Verdict {
    let keys = Keys::new(fx, "cancelled_lock_cleans_up");
    // A long ttl, so what a dropped future left behind cannot expire
    // before it is looked for.
    let checker = locker(fx, LONG_TTL).await;
    drop_lock_futures(fx, &keys, LONG_TTL, Some(&checker)).await;
    Verdict::Passed
}

/// Asserts that the store shows nothing of `round`'s key (no holder, no
/// waiter) within [`CLEANUP_GRACE`], and a fresh owner gets it.
async fn assert_left_clean(checker: &Locker, round: &Round) {
    let until = Instant::now() + CLEANUP_GRACE;
    loop {
        let status = ok(checker.status(&round.key).await, "status");
        if status.is_free() && status.waiters.unwrap_or(0) == 0 {
            if let Some(g) = ok(checker.try_lock(&round.key).await, "try_lock") {
                ok(g.release().await, "release");
                return;
            }
        }
        if Instant::now() >= until {
            panic!(
                "{:?}: a backend whose capabilities say cancel_cleans_up left the store changed \
                 {CLEANUP_GRACE:?} after a {} lock future (holder released): {status:?}",
                round.key,
                if round.cancelled {
                    "dropped"
                } else {
                    "completed"
                }
            );
        }
        sleep(Duration::from_millis(5)).await;
    }
}

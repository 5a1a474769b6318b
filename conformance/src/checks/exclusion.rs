//! SPEC item 1 (mutual exclusion) and "every acquisition that names no owner
//! gets a fresh one".

use super::util::{Keys, join_all, locker, must_be_held, ok, within};
use crate::timing::{LONG_TTL, LONG_WAIT, SLACK};
use crate::{Fixture, Verdict};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::Mutex;

const LOCKERS: usize = 16;
const ROUNDS: usize = 50;

/// What the critical sections share: a counter updated without atomicity
/// (read, sleep, write), so two holders at once lose an update; and an
/// "occupied" flag that must be free on entry.
#[derive(Default)]
struct Section {
    counter: AtomicU64,
    occupied: AtomicBool,
    overlaps: AtomicUsize,
    /// The token of the last hold to enter, to see tokens increase.
    last_token: Mutex<Option<u64>>,
    /// Holds whose token was not above the previous hold's.
    token_regressions: AtomicUsize,
}

pub(crate) async fn mutual_exclusion(fx: &dyn Fixture) -> Verdict {
    let keys = Keys::new(fx, "mutual_exclusion");
    let key = Arc::new(keys.key("contended"));
    let section = Arc::new(Section::default());
    let mut tasks = Vec::new();
    for client in 0..LOCKERS {
        let locker = locker(fx, LONG_TTL).await;
        let (key, section) = (key.clone(), section.clone());
        tasks.push(tokio::spawn(async move {
            for round in 0..ROUNDS {
                let step = format!("client {client} round {round}: lock");
                let guard = ok(locker.request(&key).wait(LONG_WAIT).lock().await, step);
                if section.occupied.swap(true, Ordering::SeqCst) {
                    section.overlaps.fetch_add(1, Ordering::SeqCst);
                }
                assert!(
                    guard.is_held(),
                    "client {client}: a fresh guard reports is_held() == false"
                );
                {
                    let mut last = section.last_token.lock().await;
                    let token = guard.token().get();
                    if last.is_some_and(|prev| token <= prev) {
                        section.token_regressions.fetch_add(1, Ordering::SeqCst);
                    }
                    *last = Some(token);
                }
                let read = section.counter.load(Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(1)).await;
                section.counter.store(read + 1, Ordering::SeqCst);
                section.occupied.store(false, Ordering::SeqCst);
                ok(
                    guard.release().await,
                    format!("client {client} round {round}: release"),
                );
            }
        }));
    }
    join_all(tasks).await;
    let overlaps = section.overlaps.load(Ordering::SeqCst);
    let counter = section.counter.load(Ordering::SeqCst);
    let regressions = section.token_regressions.load(Ordering::SeqCst);
    let expected = (LOCKERS * ROUNDS) as u64;
    assert!(
        overlaps == 0 && counter == expected,
        "mutual exclusion: {LOCKERS} clients x {ROUNDS} holds of one key: expected counter \
         {expected} and 0 overlapping critical sections, got counter {counter} and {overlaps} \
         overlaps ({regressions} holds had a token not above the previous hold's)"
    );
    assert_eq!(
        regressions, 0,
        "fencing: of {expected} successive holds of one key, {regressions} had a token not above \
         the previous hold's"
    );
    Verdict::Passed
}

pub(crate) async fn tasks_without_owner_exclude(fx: &dyn Fixture) -> Verdict {
    let keys = Keys::new(fx, "tasks_without_owner_exclude");
    let key = keys.key("k");
    let locker = locker(fx, LONG_TTL).await;
    let first = ok(locker.lock(&key).await, "task 1: lock with no owner");
    // Another task of the same process, through the same locker, no owner.
    let (l2, k2) = (locker.clone(), key.clone());
    let probe =
        tokio::spawn(
            async move { must_be_held(&l2, &k2, "task 2: try_lock while task 1 holds").await },
        );
    join_all(vec![probe]).await;
    let (l2, k2) = (locker.clone(), key.clone());
    let waiter =
        tokio::spawn(
            async move { ok(l2.request(&k2).wait(LONG_WAIT).lock().await, "task 2: lock") },
        );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        !waiter.is_finished(),
        "task 2 (no owner) was granted {key:?} while task 1 (no owner) held it: two tasks with \
         no owner named must exclude each other"
    );
    let first_token = first.token();
    ok(first.release().await, "task 1: release");
    let second = within(SLACK, "task 2 granted after task 1 released", async {
        join_all(vec![waiter]).await.remove(0)
    })
    .await;
    assert!(
        second.token() > first_token,
        "task 2's token {} is not larger than task 1's {first_token}",
        second.token()
    );
    ok(second.release().await, "task 2: release");
    Verdict::Passed
}

//! Helpers the checks share: fresh keys, lockers, and assertions that fail
//! with a message saying what was expected and what happened.

use crate::fixture::{Faults, Fixture};
use lock_core::{ErrorKind, Key, LockGuard, Locker, Result};
use std::fmt::{Debug, Display};
use std::future::Future;
use std::time::Duration;
use tokio::time::Instant;

/// Fresh, unique keys for one run of one check:
/// `<prefix>/<uuid>/<check>/<name>`.
pub(crate) struct Keys {
    base: String,
}

impl Keys {
    pub(crate) fn new(fx: &dyn Fixture, check: &str) -> Self {
        Keys {
            base: format!("{}/{}/{check}", fx.key_prefix(), uuid::Uuid::new_v4()),
        }
    }

    pub(crate) fn key(&self, name: impl Display) -> String {
        format!("{}/{name}", self.base)
    }

    /// The base every key of this run starts with.
    pub(crate) fn base(&self) -> &str {
        &self.base
    }
}

/// A new client of the fixture's store, or a failure saying why not.
pub(crate) async fn locker(fx: &dyn Fixture, ttl: Duration) -> Locker {
    fx.locker(ttl).await.unwrap_or_else(|e| {
        panic!(
            "fixture `{}`: could not make a locker with ttl {ttl:?}: {e}",
            fx.name()
        )
    })
}

/// The fixture's faults; only called by checks that declared [`Need::Faults`](crate::Need::Faults).
pub(crate) fn faults(fx: &dyn Fixture) -> &dyn Faults {
    fx.faults()
        .expect("a check needing faults runs only on a fixture with faults")
}

/// `Ok` value, or a failure naming the step.
#[track_caller]
pub(crate) fn ok<T>(result: Result<T>, step: impl Display) -> T {
    match result {
        Ok(v) => v,
        Err(e) => panic!("{step}: expected success, got error: {e} ({:?})", e.kind()),
    }
}

/// A key validated, or a failure.
#[track_caller]
pub(crate) fn key(name: &str) -> Key {
    ok(Key::new(name), format!("key {name:?}"))
}

/// Asserts that `result` failed with `kind`.
#[track_caller]
pub(crate) fn expect_err<T: Debug>(result: Result<T>, kind: ErrorKind, step: impl Display) {
    match result {
        Ok(v) => panic!("{step}: expected error {kind:?}, got success: {v:?}"),
        Err(e) if e.kind() == kind => {}
        Err(e) => panic!("{step}: expected error {kind:?}, got {:?}: {e}", e.kind()),
    }
}

/// `fut`'s output if it is ready within `bound`, else a failure naming the
/// step and the bound.
pub(crate) async fn within<T>(
    bound: Duration,
    step: impl Display,
    fut: impl Future<Output = T>,
) -> T {
    match tokio::time::timeout(bound, fut).await {
        Ok(v) => v,
        Err(_) => panic!("{step}: expected within {bound:?}, still not done"),
    }
}

/// A guard from `try_lock`, or a failure (key unexpectedly held or error).
pub(crate) async fn must_get(locker: &Locker, key: &str, step: impl Display) -> LockGuard {
    match locker.try_lock(key).await {
        Ok(Some(g)) => g,
        Ok(None) => panic!("{step}: expected to get {key:?} (free), but it is held"),
        Err(e) => panic!("{step}: expected to get {key:?}, got error: {e}"),
    }
}

/// Asserts that `try_lock` by a fresh owner finds `key` held.
pub(crate) async fn must_be_held(locker: &Locker, key: &str, step: impl Display) {
    match locker.try_lock(key).await {
        Ok(None) => {}
        Ok(Some(g)) => panic!(
            "{step}: expected {key:?} to be held, but a fresh owner got it (token {})",
            g.token()
        ),
        Err(e) => panic!("{step}: try_lock of {key:?} failed: {e}"),
    }
}

/// Tries to get `key` until `bound` runs out (for a store that frees it in
/// the background), or fails.
pub(crate) async fn get_within(
    locker: &Locker,
    key: &str,
    bound: Duration,
    step: impl Display,
) -> LockGuard {
    let until = Instant::now() + bound;
    loop {
        let last = match locker.try_lock(key).await {
            Ok(Some(g)) => return g,
            Ok(None) => "still held".to_owned(),
            Err(e) => format!("error: {e}"),
        };
        if Instant::now() >= until {
            panic!("{step}: expected {key:?} to be free within {bound:?}, but it is {last}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The median duration of a `status` call: the store's round trip as this
/// client sees it.
pub(crate) async fn round_trip(locker: &Locker, key: &str) -> Duration {
    let mut samples = Vec::with_capacity(7);
    for _ in 0..7 {
        let t = Instant::now();
        ok(locker.status(key).await, "status (measuring a round trip)");
        samples.push(t.elapsed());
    }
    median(&mut samples)
}

/// The median of `samples` (the upper one of an even count).
pub(crate) fn median(samples: &mut [Duration]) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// Waits for every task and re-raises the first panic with its message,
/// aborting the others first so that a failed check leaves nothing running.
pub(crate) async fn join_all<T>(handles: Vec<tokio::task::JoinHandle<T>>) -> Vec<T> {
    let aborts: Vec<_> = handles.iter().map(|h| h.abort_handle()).collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        match h.await {
            Ok(v) => out.push(v),
            Err(e) => {
                aborts.iter().for_each(|a| a.abort());
                match e.try_into_panic() {
                    Ok(payload) => std::panic::resume_unwind(payload),
                    Err(e) => panic!("a task of the check was cancelled: {e}"),
                }
            }
        }
    }
    out
}

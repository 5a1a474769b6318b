//! Running checks: each in its own task (so a failing check's panic becomes
//! an [`Outcome`]), with a time limit; and the entry points the
//! [`suite!`](crate::suite) macro's tests call.

use crate::checks::{Check, all_checks, find};
use crate::timing::{CHECK_TIMEOUT, LONG_TTL};
use crate::{Fixture, Verdict};
use std::fmt;
use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::runtime::Runtime;
use tokio::time::Instant;

/// How one check ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// It ran: passed, passed in part, or not applicable.
    Verdict(Verdict),
    /// It failed; the message says what was expected and what happened.
    Failed(String),
}

impl Outcome {
    /// Whether the check failed.
    pub fn failed(&self) -> bool {
        matches!(self, Outcome::Failed(_))
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Verdict(v) => v.fmt(f),
            Outcome::Failed(why) => write!(f, "FAILED: {why}"),
        }
    }
}

/// Runs `check` on `fx` in a task of its own, catching its panic, failing
/// it after [`CHECK_TIMEOUT`]; returns how it ended and how long it took.
pub async fn run_check(fx: Arc<dyn Fixture>, check: Check) -> (Outcome, Duration) {
    let started = Instant::now();
    let task = tokio::spawn(async move { (check.run)(&*fx).await });
    let abort = task.abort_handle();
    let outcome = match tokio::time::timeout(CHECK_TIMEOUT, task).await {
        Ok(Ok(verdict)) => Outcome::Verdict(verdict),
        Ok(Err(e)) if e.is_panic() => Outcome::Failed(panic_message(e.into_panic())),
        Ok(Err(e)) => Outcome::Failed(format!("the check's task was cancelled: {e}")),
        Err(_) => {
            abort.abort();
            Outcome::Failed(format!("did not finish within {CHECK_TIMEOUT:?} (hung?)"))
        }
    };
    (outcome, started.elapsed())
}

/// The text of a panic payload.
pub fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    match payload.downcast::<String>() {
        Ok(s) => *s,
        Err(payload) => match payload.downcast::<&'static str>() {
            Ok(s) => (*s).to_owned(),
            Err(_) => "a panic without a message".to_owned(),
        },
    }
}

/// The runtime every suite test of a test binary runs on: multi-threaded
/// with 2 workers, and shared, so that a fixture started once (servers,
/// fault proxies, client connection tasks) outlives the test that started
/// it and serves every other test. A runtime per test, as `#[tokio::test]`
/// makes, would kill those tasks when its test ends.
pub fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .thread_name("conformance")
            .build()
            .expect("building the conformance test runtime")
    })
}

/// What a generated test does: builds the fixture, runs the check named
/// `name`, prints a line for a check that is not applicable or passed only
/// in part, and fails (panics) with the check's message if it failed.
pub fn run_test<F>(name: &str, fixture: F)
where
    F: Future<Output = Arc<dyn Fixture>> + Send + 'static,
{
    let check = find(name).unwrap_or_else(|| panic!("no conformance check is named {name:?}"));
    let (outcome, took) = runtime().block_on(async move {
        let fx = fixture.await;
        run_check(fx, check).await
    });
    match outcome {
        Outcome::Verdict(Verdict::Passed) => println!("PASSED: {name} ({took:.2?})"),
        Outcome::Verdict(Verdict::Partial(why)) => {
            println!("PASSED IN PART: {name}: {why} ({took:.2?})")
        }
        Outcome::Verdict(Verdict::NotApplicable(why)) => println!("NOT APPLICABLE: {name}: {why}"),
        Outcome::Failed(why) => panic!("conformance check {name} FAILED after {took:.2?}: {why}"),
    }
}

/// What the generated `capabilities_report` test does: prints the
/// backend's capabilities and, for every check, whether it runs on this
/// fixture or why it is not applicable.
pub fn report_test<F>(fixture: F)
where
    F: Future<Output = Arc<dyn Fixture>> + Send + 'static,
{
    let text = runtime().block_on(async move {
        let fx = fixture.await;
        let locker = fx
            .locker(LONG_TTL)
            .await
            .unwrap_or_else(|e| panic!("fixture `{}`: could not make a locker: {e}", fx.name()));
        capabilities_report(&*fx, locker.capabilities())
    });
    println!("{text}");
}

/// The capabilities of a backend and each check's applicability, as text.
pub fn capabilities_report(fx: &dyn Fixture, caps: &lock_core::Capabilities) -> String {
    let mut out = format!(
        "conformance of `{}` (fixture `{}`)\n  fencing: {}\n  node loss: {}\n  \
         notifies waiters: {}\n  fair: {}\n  ttl granularity: {:?}\n  cancel cleans up: {}\n  \
         fault injection: {}\n",
        caps.name,
        fx.name(),
        caps.fencing,
        caps.node_loss,
        caps.notifies_waiters,
        caps.fair,
        caps.ttl_granularity,
        caps.cancel_cleans_up,
        fx.faults().is_some(),
    );
    for check in all_checks() {
        let line = match check.applicability(fx, caps) {
            Some(Verdict::NotApplicable(why)) => format!("NOT APPLICABLE: {why}"),
            _ => "runs".to_owned(),
        };
        out.push_str(&format!("  {:<40} {line}\n", check.name));
    }
    out
}

/// What the generated `suite_covers_every_check` test does: fails if the
/// macro's list of tests and the registry differ (a check added to one and
/// not the other would otherwise pass silently by never running).
pub fn assert_covers(generated: &[&str]) {
    let registered = crate::checks::check_names();
    assert_eq!(
        generated,
        registered.as_slice(),
        "conformance::suite! generates tests for {generated:?}, but the registry has {registered:?}"
    );
}

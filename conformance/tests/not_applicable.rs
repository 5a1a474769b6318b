//! A backend that offers nothing optional (unfair, polled, no cleanup on
//! cancel) on a fixture without faults or URL: every check that needs one
//! of those reports itself not applicable, naming what is missing, and
//! every other check still runs and passes. Nothing passes silently.

use conformance::harness::Outcome;
use conformance::runner::{RunOptions, run};
use conformance::{Fixture, MemoryFixture, Need, Verdict, all_checks};
use lock_core::{
    AcquireRequest, Backend, Capabilities, Grant, HoldInfo, Key, LockStatus, MemoryBackend, Result,
    async_trait,
};
use std::sync::Arc;

/// The memory backend claiming only what every backend must do.
#[derive(Debug)]
struct Plain {
    inner: MemoryBackend,
    caps: Capabilities,
}

impl Plain {
    fn new(inner: MemoryBackend) -> Self {
        let mut caps = inner.capabilities().clone();
        caps.fair = false;
        caps.notifies_waiters = false;
        caps.cancel_cleans_up = false;
        Plain { inner, caps }
    }
}

#[async_trait]
impl Backend for Plain {
    fn capabilities(&self) -> &Capabilities {
        &self.caps
    }
    async fn acquire(&self, req: &AcquireRequest) -> Result<Option<Grant>> {
        self.inner.acquire(req).await
    }
    async fn reenter(&self, hold: &HoldInfo, count: u32) -> Result<()> {
        self.inner.reenter(hold, count).await
    }
    async fn renew(&self, holds: &[Arc<HoldInfo>]) -> Vec<Result<()>> {
        self.inner.renew(holds).await
    }
    async fn release(&self, hold: &HoldInfo, count: u32) -> Result<()> {
        self.inner.release(hold, count).await
    }
    async fn status(&self, key: &Key) -> Result<LockStatus> {
        self.inner.status(key).await
    }
}

#[test]
fn missing_capabilities_make_checks_not_applicable_by_name() {
    let fx: Arc<dyn Fixture> =
        Arc::new(MemoryFixture::wrapped(|c| Arc::new(Plain::new(c))).without_faults());
    let opts = RunOptions {
        jobs: 4,
        destructive: true,
    };
    let report = conformance::harness::runtime().block_on(run(fx, "memory".into(), &opts));
    println!("{}", report.table());
    for (check, result) in all_checks().iter().zip(&report.results) {
        let expected_reason = check.needs.iter().map(|need| match need {
            Need::Faults => "has no fault injection",
            Need::Fair => "fair is false",
            Need::NotifiesWaiters => "notifies_waiters is false",
            Need::CancelCleansUp => "cancel_cleans_up is false",
            Need::Url => "names no URL",
        });
        match &result.outcome {
            Outcome::Verdict(Verdict::NotApplicable(why)) => {
                assert!(
                    !check.needs.is_empty(),
                    "{} is not applicable: {why}",
                    check.name
                );
                for reason in expected_reason {
                    assert!(
                        why.contains(reason),
                        "{}: {why:?} does not say {reason:?}",
                        check.name
                    );
                }
            }
            Outcome::Verdict(Verdict::Partial(why)) => {
                assert_eq!(check.name, "model", "only the model passes in part");
                assert!(
                    why.contains("`expire`") && why.contains("no fault injection"),
                    "{why}"
                );
            }
            Outcome::Verdict(Verdict::Passed) => {
                assert!(
                    check.needs.is_empty(),
                    "{} passed though it needs {:?}",
                    check.name,
                    check.needs
                )
            }
            Outcome::Failed(why) => panic!("{} failed: {why}", check.name),
        }
    }
}

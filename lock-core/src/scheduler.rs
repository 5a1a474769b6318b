//! The ONE background task per locker that renews every hold, fires loss at
//! local deadlines and on the store's loss signals, and finishes releases of
//! dropped guards. A service holding 10,000 locks runs one task and one
//! timer, and sends renewals in batches.

use crate::backend::{LossSignal, renew_results};
use crate::hold::Hold;
use crate::inbox::Inbox;
use crate::locker::Shared;
use crate::{Error, HoldInfo, LossReason, Result};
use futures::future::{AbortHandle, Abortable, BoxFuture};
use futures::stream::{FuturesUnordered, StreamExt};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::{Instant, sleep_until, timeout};

/// What locker handles and guards ask of the scheduler.
pub(crate) enum Command {
    /// Start renewing (if the hold asks for it) and watching a new hold.
    /// `valid_from` is when the grant's request was sent.
    Track(Arc<Hold>, Option<LossSignal>, Instant),
    /// The hold's deadline moved (a manual extend): reschedule it.
    Extended(u64),
    /// The hold ended by release: stop renewing and watching it.
    Untrack(u64),
    /// Take one count off in the background, retrying while the hold's
    /// deadline has not passed (a dropped guard, or a release whose outcome
    /// was unknown).
    Release {
        info: Arc<HoldInfo>,
        count: u32,
        until: Instant,
    },
}

/// How often a renewal happens: a third of the ttl (SPEC item 4).
pub(crate) fn renew_interval(ttl: Duration) -> Duration {
    ttl / 3
}

/// How soon a failed renewal is tried again: often enough to get several
/// tries in before the deadline, rarely enough not to hammer a sick store.
fn retry_interval(ttl: Duration) -> Duration {
    (ttl / 10).clamp(Duration::from_millis(10), Duration::from_secs(1))
}

struct Tracked {
    hold: Arc<Hold>,
    renew_at: Option<Instant>,
    deadline: Instant,
    renewing: bool,
    loss_watch: Option<AbortHandle>,
}

type RenewDone = (Instant, Vec<u64>, Vec<Result<()>>);

struct Scheduler {
    shared: Arc<Shared>,
    tracked: HashMap<u64, Tracked>,
    renew_at: BTreeSet<(Instant, u64)>,
    deadlines: BTreeSet<(Instant, u64)>,
    renewals: FuturesUnordered<BoxFuture<'static, RenewDone>>,
    releases: FuturesUnordered<BoxFuture<'static, ()>>,
    losses: FuturesUnordered<BoxFuture<'static, Option<(u64, LossReason)>>>,
    /// A wake-up new holds asked for (see [`Inbox`]), besides the timers
    /// of the holds tracked.
    horizon: Option<Instant>,
}

pub(crate) async fn run(shared: Arc<Shared>, inbox: Arc<Inbox>) {
    let mut s = Scheduler {
        shared,
        tracked: HashMap::new(),
        renew_at: BTreeSet::new(),
        deadlines: BTreeSet::new(),
        renewals: FuturesUnordered::new(),
        releases: FuturesUnordered::new(),
        losses: FuturesUnordered::new(),
        horizon: None,
    };
    loop {
        s.take(&inbox);
        if inbox.is_closed() && s.releases.is_empty() && s.tracked.is_empty() {
            // Every locker handle and guard is gone and every background
            // release has finished.
            if s.take(&inbox) {
                continue;
            }
            return;
        }
        let next = [s.renew_at.first(), s.deadlines.first()]
            .into_iter()
            .flatten()
            .map(|&(t, _)| t)
            .chain(s.horizon)
            .min();
        if inbox.publish(next) {
            continue;
        }
        tokio::select! {
            () = inbox.notified() => {}
            () = sleep_until(next.unwrap_or_else(far_future)), if next.is_some() => s.timers(),
            Some(done) = s.renewals.next() => s.renewed(done),
            Some(()) = s.releases.next() => {}
            Some(loss) = s.losses.next() => {
                if let Some((id, reason)) = loss {
                    s.lose(id, reason);
                }
            }
        }
    }
}

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(86400 * 365)
}

impl Scheduler {
    /// Takes and carries out the queued commands; returns whether there
    /// were any.
    fn take(&mut self, inbox: &Inbox) -> bool {
        let (cmds, wanted) = inbox.take();
        if let Some(w) = wanted {
            self.horizon = Some(self.horizon.map_or(w, |h| h.min(w)));
        }
        let any = !cmds.is_empty();
        for cmd in cmds {
            self.command(cmd);
        }
        any
    }

    fn command(&mut self, cmd: Command) {
        match cmd {
            Command::Track(hold, signal, sent) => self.track(hold, signal, sent),
            Command::Extended(id) => {
                if let Some(t) = self.tracked.get(&id) {
                    let hold = t.hold.clone();
                    self.reschedule(&hold, Instant::now());
                }
            }
            Command::Untrack(id) => {
                self.untrack(id);
            }
            Command::Release { info, count, until } => {
                let backend = self.shared.backend.clone();
                self.releases
                    .push(Box::pin(release_with_retries(backend, info, count, until)));
            }
        }
    }

    fn track(&mut self, hold: Arc<Hold>, signal: Option<LossSignal>, sent: Instant) {
        if hold.has_ended() {
            // Released or lost before this task took it: whoever ended it
            // has untracked it already.
            return;
        }
        let id = hold.id;
        let loss_watch = signal.map(|mut signal| {
            let (handle, registration) = AbortHandle::new_pair();
            // A signal that wakes after its hold ended (released, its
            // untracking not taken yet) is not polled again: polling it
            // could start work for nothing (a store watch).
            let ended = hold.clone();
            let guarded = futures::future::poll_fn(move |cx| {
                if ended.has_ended() {
                    return std::task::Poll::Ready(None);
                }
                signal.as_mut().poll(cx).map(Some)
            });
            let watched = Abortable::new(guarded, registration);
            self.losses.push(Box::pin(async move {
                watched.await.ok().flatten().map(|r| (id, r))
            }));
            handle
        });
        let deadline = hold.deadline();
        self.deadlines.insert((deadline, id));
        self.tracked.insert(
            id,
            Tracked {
                hold: hold.clone(),
                renew_at: None,
                deadline,
                renewing: false,
                loss_watch,
            },
        );
        // Renew a third of a ttl after the grant's request was sent.
        self.set_renew(id, hold.renew.then(|| sent + renew_interval(hold.info.ttl)));
    }

    fn set_renew(&mut self, id: u64, at: Option<Instant>) {
        let Some(t) = self.tracked.get_mut(&id) else {
            return;
        };
        if let Some(old) = t.renew_at.take() {
            self.renew_at.remove(&(old, id));
        }
        if let Some(at) = at {
            t.renew_at = Some(at);
            self.renew_at.insert((at, id));
        }
    }

    /// The hold's deadline moved (renewed at `sent`): move its timers.
    fn reschedule(&mut self, hold: &Arc<Hold>, sent: Instant) {
        let id = hold.id;
        let Some(t) = self.tracked.get_mut(&id) else {
            return;
        };
        let deadline = hold.deadline();
        if deadline != t.deadline {
            self.deadlines.remove(&(t.deadline, id));
            t.deadline = deadline;
            self.deadlines.insert((deadline, id));
        }
        let renew = hold.renew.then(|| sent + renew_interval(hold.info.ttl));
        self.set_renew(id, renew);
    }

    fn untrack(&mut self, id: u64) -> Option<Arc<Hold>> {
        let t = self.tracked.remove(&id)?;
        if let Some(at) = t.renew_at {
            self.renew_at.remove(&(at, id));
        }
        self.deadlines.remove(&(t.deadline, id));
        if let Some(watch) = t.loss_watch {
            watch.abort();
        }
        Some(t.hold)
    }

    fn lose(&mut self, id: u64, reason: LossReason) {
        if let Some(hold) = self.untrack(id)
            && hold.mark_lost(reason)
        {
            self.shared.forget(&hold);
        }
    }

    fn timers(&mut self) {
        let now = Instant::now();
        if self.horizon.is_some_and(|h| h <= now) {
            self.horizon = None;
        }
        while let Some(&(at, id)) = self.deadlines.first() {
            if at > now {
                break;
            }
            self.deadlines.remove(&(at, id));
            let Some(t) = self.tracked.get_mut(&id) else {
                continue;
            };
            let current = t.hold.deadline();
            if current > now {
                // Moved by a renewal we have not heard of yet.
                t.deadline = current;
                self.deadlines.insert((current, id));
            } else {
                self.lose(id, LossReason::DeadlinePassed);
            }
        }
        self.start_renewals(now);
    }

    /// Renews every hold that is due, together with those due within a
    /// tenth of a ttl, in one backend call.
    fn start_renewals(&mut self, now: Instant) {
        let Some(&(first, first_id)) = self.renew_at.first() else {
            return;
        };
        if first > now {
            return;
        }
        let window = self
            .tracked
            .get(&first_id)
            .map_or(Duration::ZERO, |t| t.hold.info.ttl / 10);
        let due: Vec<(Instant, u64)> = self
            .renew_at
            .range(..=(now + window, u64::MAX))
            .copied()
            .collect();
        let mut ids = Vec::with_capacity(due.len());
        let mut infos = Vec::with_capacity(due.len());
        let mut longest = Duration::ZERO;
        for (at, id) in due {
            self.renew_at.remove(&(at, id));
            let Some(t) = self.tracked.get_mut(&id) else {
                continue;
            };
            t.renew_at = None;
            if t.renewing || !t.hold.is_held() {
                continue;
            }
            t.renewing = true;
            longest = longest.max(t.hold.info.ttl);
            ids.push(id);
            infos.push(t.hold.info.clone());
        }
        if ids.is_empty() {
            return;
        }
        let backend = self.shared.backend.clone();
        let sent = Instant::now();
        tracing::debug!(holds = ids.len(), "renewing");
        self.renewals.push(Box::pin(async move {
            let n = infos.len();
            // A renewal that outlives a ttl is useless: every deadline in it
            // has passed by then.
            let results = match timeout(longest, backend.renew(&infos)).await {
                Ok(results) => renew_results(results, n),
                Err(_) => (0..n)
                    .map(|_| Err(Error::unavailable("renewal timed out")))
                    .collect(),
            };
            (sent, ids, results)
        }));
    }

    fn renewed(&mut self, (sent, ids, results): RenewDone) {
        for (id, result) in ids.into_iter().zip(results) {
            let Some(t) = self.tracked.get_mut(&id) else {
                continue;
            };
            t.renewing = false;
            let hold = t.hold.clone();
            match result {
                Ok(()) => {
                    if hold.renewed(sent) {
                        tracing::trace!(key = %hold.info.key, "renewed");
                        self.reschedule(&hold, sent);
                    }
                }
                Err(Error::NotHeld { .. }) => {
                    self.lose(id, LossReason::Gone("a renewal found the hold gone".into()))
                }
                Err(e) => {
                    tracing::warn!(key = %hold.info.key, error = %e, "renewal failed; retrying until the deadline");
                    let retry = Instant::now() + retry_interval(hold.info.ttl);
                    self.set_renew(id, Some(retry));
                }
            }
        }
    }
}

/// Releases one count, retrying a retryable failure until `until` (after
/// that the store frees the hold by expiry anyway).
async fn release_with_retries(
    backend: Arc<dyn crate::Backend>,
    info: Arc<HoldInfo>,
    count: u32,
    until: Instant,
) {
    let mut delay = Duration::from_millis(20);
    loop {
        let attempt = timeout(info.ttl, backend.release(&info, count)).await;
        match attempt {
            Ok(Ok(())) => {
                tracing::debug!(key = %info.key, owner = %info.owner, "released in the background");
                return;
            }
            Ok(Err(e)) if !e.is_retryable() => {
                tracing::debug!(key = %info.key, error = %e, "background release: nothing to release");
                return;
            }
            Ok(Err(e)) => tracing::warn!(key = %info.key, error = %e, "background release failed"),
            Err(_) => tracing::warn!(key = %info.key, "background release timed out"),
        }
        if Instant::now() + delay >= until {
            tracing::warn!(key = %info.key, "giving up the release; the store expires the hold");
            return;
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(1));
    }
}

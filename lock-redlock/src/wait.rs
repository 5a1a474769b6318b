//! Waiting for a held lock: woken by a release message on any master's
//! channel (each release publishes on every node), with a jittered sleep
//! as the fallback, since a message can be missed.

use crate::backend::Inner;
use crate::round::Busy;
use futures::StreamExt;
use futures::future::join_all;
use futures::stream::FuturesUnordered;
use lock_core::Key;
use lock_redis::node::Registration;
use std::time::Duration;
use tokio::time::{Instant, sleep, sleep_until, timeout};

/// How long a woken waiter waits for the other masters' release messages
/// before it tries anyway.
const QUORUM_GRACE: Duration = Duration::from_millis(20);

/// One waiter's registrations on the release channels of the masters
/// connected when it began waiting.
pub(crate) struct Waiters {
    regs: Vec<Registration>,
    quorum: usize,
    backoff: Duration,
}

impl Waiters {
    /// Starts listening on `key`'s release channel on every connected
    /// master.
    pub(crate) fn register(inner: &Inner, key: &Key) -> Waiters {
        let regs = inner
            .slots
            .iter()
            .filter_map(|s| s.node())
            .map(|n| n.register(&n.names(key).channel))
            .collect();
        Waiters {
            regs,
            quorum: inner.config.quorum,
            backoff: Duration::from_millis(10),
        }
    }

    /// Waits before the next try: not at all if a channel was just
    /// subscribed (a release before the subscription must not be missed);
    /// otherwise until a release message, the pause `busy` calls for, or
    /// `deadline`, whichever comes first.
    ///
    /// # Cancel safety
    /// Safe to drop. A wake-up taken by a waiter dropped before its try is
    /// lost, but each release publishes on every master, so other waiters
    /// get theirs from the other nodes (and the fallback sleep bounds it).
    pub(crate) async fn wait(&mut self, busy: &Busy, deadline: Option<Instant>, limit: Duration) {
        let fresh: Vec<&Registration> = self.regs.iter().filter(|r| !r.is_current()).collect();
        if !fresh.is_empty() {
            let subscribed = join_all(
                fresh
                    .into_iter()
                    .map(|r| async move { timeout(limit, r.subscribe()).await.unwrap_or(false) }),
            )
            .await;
            if subscribed.into_iter().any(|s| s) {
                return;
            }
        }
        let current = self.regs.iter().filter(|r| r.is_current()).count();
        let pause = self.pause(busy, current >= self.quorum);
        // A release publishes on every master at about the same time: once
        // woken, wait a little (QUORUM_GRACE at most) until a quorum of them
        // told, so the next round finds the lock free on a quorum rather
        // than half released.
        let quorum = self.quorum;
        let woken = async {
            let mut told: FuturesUnordered<_> =
                self.regs.iter().map(|r| r.channel().notified()).collect();
            if told.next().await.is_none() {
                return std::future::pending().await;
            }
            let grace = sleep(limit.min(QUORUM_GRACE));
            tokio::pin!(grace);
            let mut count = 1;
            while count < quorum {
                tokio::select! {
                    Some(()) = told.next() => count += 1,
                    () = &mut grace => break,
                }
            }
        };
        tokio::select! {
            () = woken => {}
            () = sleep(pause) => {}
            () = async { sleep_until(deadline.expect("guarded")).await }, if deadline.is_some() => {}
        }
    }

    /// How long to sleep when no message comes.
    fn pause(&mut self, busy: &Busy, subscribed: bool) -> Duration {
        let jitter = rand::random_range(0.5..=1.0);
        match busy {
            // Nobody has a quorum: a short random delay, so that clients
            // that split the vote do not collide again.
            Busy::Split => Duration::from_millis(rand::random_range(2..=40)),
            Busy::Held(pttl) => {
                // The lock is free once its holder's ttl runs out.
                let bound = pttl.map(|p| p + Duration::from_millis(1));
                if subscribed {
                    bound.unwrap_or(Duration::from_secs(2)).mul_f64(jitter)
                } else {
                    let d = self.backoff.mul_f64(jitter);
                    self.backoff = (self.backoff * 2).min(Duration::from_secs(1));
                    bound.map_or(d, |b| d.min(b))
                }
            }
        }
        .max(Duration::from_millis(1))
    }
}

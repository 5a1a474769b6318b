//! The one shared pub/sub subscriber of a backend: it wakes the waiters of
//! every key on the release channel's message, and it watches the
//! connection to the server.
//!
//! The subscriber keeps one connection open for the backend's whole life,
//! reconnecting in the background. Each time it connects, a new *epoch*
//! begins. A hold is granted under the epoch that was live when its
//! request was sent, and is reported lost as soon as that epoch ends (the
//! server closed the connection: it was killed, restarted, or the network
//! reset it). A restarted server without persistence has forgotten every
//! lock, and another client may take them the moment it is back; since the
//! closed connection is seen before the server can restart, the holder
//! learns of the loss before anyone else can be granted the lock.
//!
//! Waiting follows Redisson: a waiter subscribes to the lock's channel
//! before it tries again, so a release between its failed try and its
//! wait is not missed; a message wakes one waiter of this process (the
//! wake passes to the next waiter if the woken one is cancelled); and since
//! a message can still be missed, every wait is bounded by the holder's
//! remaining ttl.

use futures::StreamExt;
use redis::aio::PubSubSink;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tokio::time::{sleep, timeout};

/// How often the idle pub/sub connection is pinged.
const KEEPALIVE: Duration = Duration::from_secs(30);

/// One connection to the server, as seen by the subscriber.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Epoch {
    /// Counts connections; 0 before the first.
    pub number: u64,
    /// Whether connection `number` is open.
    pub up: bool,
}

/// One channel some waiters of this process listen on.
#[derive(Debug)]
pub struct Channel {
    name: String,
    notify: Notify,
    /// How many registrations use it (changed only under the map's lock).
    users: Mutex<usize>,
    /// The epoch in which SUBSCRIBE was confirmed (0: not subscribed).
    subscribed: Mutex<u64>,
}

impl Channel {
    /// Resolves on the next wake: a message on the channel (one waiter), or
    /// the connection changing (every waiter).
    pub fn notified(&self) -> tokio::sync::futures::Notified<'_> {
        self.notify.notified()
    }

    /// Hands a wake-up this waiter took but did not use to another waiter.
    pub fn pass_wake(&self) {
        self.notify.notify_one();
    }
}

struct Live {
    sink: PubSubSink,
    number: u64,
}

struct Shared {
    client: redis::Client,
    addr: String,
    /// The backend's own channel, always subscribed (see `connect`).
    own_channel: String,
    timeout: Duration,
    channels: Mutex<HashMap<String, Arc<Channel>>>,
    /// The live connection's sink. Held across every SUBSCRIBE and
    /// UNSUBSCRIBE, so they reach the server in the order they were decided.
    live: tokio::sync::Mutex<Option<Live>>,
    epoch: watch::Sender<Epoch>,
    /// Why the last connection attempt failed, for the backend's error.
    last_error: Mutex<Option<redis::RedisError>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section is a single update: a poisoned lock still
    // holds consistent data.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    /// Wakes every waiter of every channel: the connection changed, so a
    /// message may have been missed.
    fn wake_all(&self) {
        let channels: Vec<Arc<Channel>> = lock(&self.channels).values().cloned().collect();
        for c in channels {
            c.notify.notify_waiters();
        }
    }

    fn deliver(&self, channel: &str) {
        let found = lock(&self.channels).get(channel).cloned();
        if let Some(c) = found {
            c.notify.notify_one();
        }
    }
}

/// The backend's subscriber. Dropping it closes its connection.
pub(crate) struct Subscriber {
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for Subscriber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscriber")
            .field("addr", &self.shared.addr)
            .field("epoch", &*self.shared.epoch.borrow())
            .finish()
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Subscriber {
    /// Starts the subscriber's connection task (inside a Tokio runtime).
    pub(crate) fn start(
        client: redis::Client,
        addr: String,
        own_channel: String,
        timeout: Duration,
    ) -> Subscriber {
        let shared = Arc::new(Shared {
            client,
            addr,
            own_channel,
            timeout,
            channels: Mutex::new(HashMap::new()),
            live: tokio::sync::Mutex::new(None),
            last_error: Mutex::new(None),
            epoch: watch::Sender::new(Epoch {
                number: 0,
                up: false,
            }),
        });
        let task = tokio::spawn(run(shared.clone()));
        Subscriber { shared, task }
    }

    /// The current epoch.
    pub(crate) fn epoch(&self) -> Epoch {
        *self.shared.epoch.borrow()
    }

    /// The live epoch, waiting up to the request timeout for the
    /// connection to come up; `None` if it does not.
    pub(crate) async fn live_epoch(&self) -> Option<Epoch> {
        let now = self.epoch();
        if now.up {
            return Some(now);
        }
        let mut rx = self.shared.epoch.subscribe();
        let waited = timeout(self.shared.timeout, rx.wait_for(|e| e.up)).await;
        match waited {
            Ok(Ok(e)) => Some(*e),
            _ => None,
        }
    }

    /// Why the last connection attempt failed, if it did.
    pub(crate) fn last_error(&self) -> Option<redis::RedisError> {
        lock(&self.shared.last_error).clone()
    }

    /// Resolves when epoch `number` ends (at once if it already has).
    pub(crate) fn epoch_ended(
        &self,
        number: u64,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut rx = self.shared.epoch.subscribe();
        async move {
            if rx.wait_for(|e| e.number != number || !e.up).await.is_err() {
                // The backend is gone; so is every locker that could ask.
                std::future::pending::<()>().await;
            }
        }
    }

    /// Starts listening on `name` for this waiter.
    pub(crate) fn register(&self, name: &str) -> Registration {
        // Users are counted under the map's lock, so a channel is never
        // removed from the map while a new waiter takes it.
        let mut channels = lock(&self.shared.channels);
        let channel = channels
            .entry(name.to_owned())
            .or_insert_with(|| {
                Arc::new(Channel {
                    name: name.to_owned(),
                    notify: Notify::new(),
                    users: Mutex::new(0),
                    subscribed: Mutex::new(0),
                })
            })
            .clone();
        *lock(&channel.users) += 1;
        drop(channels);
        Registration {
            shared: self.shared.clone(),
            channel,
        }
    }
}

/// One waiter's interest in one channel. Dropping the last registration of
/// a channel unsubscribes it in the background.
#[derive(Debug)]
pub struct Registration {
    shared: Arc<Shared>,
    channel: Arc<Channel>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").field("addr", &self.addr).finish()
    }
}

impl Registration {
    /// The channel, to wait on.
    pub fn channel(&self) -> &Channel {
        &self.channel
    }

    /// Whether the channel is subscribed on the live connection.
    pub fn is_current(&self) -> bool {
        let e = *self.shared.epoch.borrow();
        e.up && *lock(&self.channel.subscribed) == e.number
    }

    /// Subscribes the channel on the live connection and waits for the
    /// server's confirmation, up to the request timeout. False if there is
    /// no live connection or no confirmation came.
    ///
    /// # Cancel safety
    /// If dropped, the channel may or may not be subscribed; a later call
    /// subscribes it again.
    pub async fn subscribe(&self) -> bool {
        let shared = &self.shared;
        let attempt = async {
            let live = shared.live.lock().await;
            let Some(live) = live.as_ref() else {
                return false;
            };
            if *lock(&self.channel.subscribed) == live.number {
                return true;
            }
            let mut sink = live.sink.clone();
            match sink.subscribe(&self.channel.name).await {
                Ok(()) => {
                    *lock(&self.channel.subscribed) = live.number;
                    true
                }
                Err(e) => {
                    tracing::debug!(addr = %shared.addr, error = %e, "SUBSCRIBE failed");
                    false
                }
            }
        };
        timeout(shared.timeout, attempt).await.unwrap_or(false)
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        {
            let mut channels = lock(&self.shared.channels);
            let mut users = lock(&self.channel.users);
            *users -= 1;
            if *users > 0 {
                return;
            }
            if channels
                .get(&self.channel.name)
                .is_some_and(|c| Arc::ptr_eq(c, &self.channel))
            {
                channels.remove(&self.channel.name);
            }
        }
        // Unsubscribe even if no SUBSCRIBE was confirmed: one cancelled in
        // flight may still reach the server.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let shared = self.shared.clone();
        let name = self.channel.name.clone();
        runtime.spawn(async move {
            let unsubscribe = async {
                let live = shared.live.lock().await;
                // A new waiter of the same channel came meanwhile: it stays
                // subscribed (its SUBSCRIBE comes after this lock anyway).
                if lock(&shared.channels).contains_key(&name) {
                    return;
                }
                if let Some(live) = live.as_ref() {
                    let _ = live.sink.clone().unsubscribe(&name).await;
                }
            };
            let _ = timeout(shared.timeout, unsubscribe).await;
        });
    }
}

/// The subscriber's life: connect, resubscribe, deliver messages until the
/// connection ends, and again, with a jittered backoff between failures.
async fn run(shared: Arc<Shared>) {
    let mut backoff = Duration::from_millis(20);
    loop {
        match connect(&shared).await {
            Some(mut messages) => {
                backoff = Duration::from_millis(20);
                let mut keepalive = tokio::time::interval(KEEPALIVE);
                keepalive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                keepalive.tick().await;
                loop {
                    tokio::select! {
                        msg = messages.next() => match msg {
                            Some(msg) => shared.deliver(msg.get_channel_name()),
                            None => break,
                        },
                        _ = keepalive.tick() => ping(&shared).await,
                    }
                }
                tracing::debug!(addr = %shared.addr, "pub/sub connection closed");
                // End the epoch first: holds granted under it are lost now,
                // even if a waiter's SUBSCRIBE holds the sink a while.
                shared.epoch.send_modify(|e| e.up = false);
                shared.wake_all();
                *shared.live.lock().await = None;
            }
            None => {
                let jitter = rand::random_range(0.5..1.0);
                sleep(backoff.mul_f64(jitter)).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
}

/// Pings on the pub/sub connection, so that middleboxes that drop idle
/// connections keep it. Its answer does not matter: a dead connection is
/// seen by its end.
async fn ping(shared: &Shared) {
    let sink = shared.live.lock().await.as_ref().map(|l| l.sink.clone());
    if let Some(mut sink) = sink {
        let _ = timeout(shared.timeout, sink.ping::<redis::Value>()).await;
    }
}

/// Opens a connection and subscribes every channel waiters listen on; on
/// success a new epoch begins.
async fn connect(shared: &Shared) -> Option<redis::aio::PubSubStream> {
    let pubsub = match timeout(shared.timeout, shared.client.get_async_pubsub()).await {
        Ok(Ok(p)) => p,
        Ok(Err(e)) => {
            tracing::debug!(addr = %shared.addr, error = %e, "pub/sub connection failed");
            *lock(&shared.last_error) = Some(e);
            return None;
        }
        Err(_) => {
            tracing::debug!(addr = %shared.addr, "pub/sub connection timed out");
            return None;
        }
    };
    let (mut sink, stream) = pubsub.split();
    let mut live = shared.live.lock().await;
    let number = shared.epoch.borrow().number + 1;
    let names: Vec<Arc<Channel>> = lock(&shared.channels).values().cloned().collect();
    // The backend's own channel puts the connection in pub/sub mode at
    // once, which exempts it from the server's idle `timeout`: an idle
    // close would end the epoch and, with it, every hold. One channel per
    // SUBSCRIBE: the client matches one confirmation to each request, so
    // a request naming several would confirm later requests too early.
    let mut list: Vec<&str> = vec![shared.own_channel.as_str()];
    list.extend(names.iter().map(|c| c.name.as_str()));
    for name in list {
        match timeout(shared.timeout, sink.subscribe(name)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::debug!(addr = %shared.addr, error = %e, "SUBSCRIBE failed");
                *lock(&shared.last_error) = Some(e);
                return None;
            }
            Err(_) => return None,
        }
    }
    for c in &names {
        *lock(&c.subscribed) = number;
    }
    *live = Some(Live { sink, number });
    shared.epoch.send_replace(Epoch { number, up: true });
    drop(live);
    tracing::debug!(addr = %shared.addr, number, "pub/sub connection open");
    shared.wake_all();
    Some(stream)
}

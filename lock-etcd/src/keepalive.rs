//! ONE keep-alive stream per backend for all its leases.
//!
//! etcd-client offers a keep-alive stream per lease (`LeaseKeeper`), which
//! only ever names its own lease. The etcd protocol has no such limit: a
//! `LeaseKeepAlive` stream takes requests for any lease and answers each in
//! order, echoing its id. This task opens one stream (with the first lease
//! it is asked about), then sends every request on the keeper's sender (made
//! public by etcd-client's `pub-response-field` feature) and matches answers
//! to callers by lease id. A stream that breaks fails what is in flight as
//! unanswered and is reopened by the next request.

use crate::errors;
use etcd_client::{LeaseClient, LeaseKeepAliveStream, LeaseKeeper};
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use lock_core::{Error, Result};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::time::timeout;

/// What the store said of one keep-alive: the lease's ttl in seconds after
/// the refresh, or zero or less if the lease is gone.
pub(crate) type Answer = Result<i64>;

struct Request {
    lease: i64,
    reply: oneshot::Sender<Answer>,
}

/// A handle on the backend's keep-alive task; the task ends with the last
/// handle.
#[derive(Clone, Debug)]
pub(crate) struct KeepAlive {
    requests: mpsc::UnboundedSender<Request>,
}

impl KeepAlive {
    /// Starts the task on the current runtime.
    pub(crate) fn start(client: LeaseClient, endpoints: Arc<str>, open_timeout: Duration) -> Self {
        let (requests, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(client, endpoints, open_timeout, rx));
        KeepAlive { requests }
    }

    /// Sends one keep-alive per lease, all at once on the one stream, and
    /// waits for every answer (in the order of `leases`).
    ///
    /// # Cancel safety
    /// If dropped, the keep-alives may or may not have reached etcd (which
    /// is harmless); their answers are thrown away.
    pub(crate) async fn refresh(&self, leases: &[i64]) -> Vec<Answer> {
        let waits: Vec<_> = leases
            .iter()
            .map(|&lease| {
                let (reply, answer) = oneshot::channel();
                let sent = self.requests.send(Request { lease, reply }).is_ok();
                (sent, answer)
            })
            .collect();
        let mut answers = Vec::with_capacity(waits.len());
        for (sent, answer) in waits {
            answers.push(match (sent, answer.await) {
                (true, Ok(a)) => a,
                _ => Err(Error::unavailable("the keep-alive task has stopped")),
            });
        }
        answers
    }
}

type Opened = (
    i64,
    std::result::Result<(LeaseKeeper, LeaseKeepAliveStream), etcd_client::Error>,
);

struct Task {
    client: LeaseClient,
    endpoints: Arc<str>,
    open_timeout: Duration,
    stream: Option<(LeaseKeeper, LeaseKeepAliveStream)>,
    opening: Option<BoxFuture<'static, Option<Opened>>>,
    /// Requests waiting for the stream to open; the first one opens it.
    queued: VecDeque<Request>,
    /// Callers waiting for an answer, per lease, oldest first.
    in_flight: HashMap<i64, VecDeque<oneshot::Sender<Answer>>>,
}

async fn run(
    client: LeaseClient,
    endpoints: Arc<str>,
    open_timeout: Duration,
    mut requests: mpsc::UnboundedReceiver<Request>,
) {
    let mut t = Task {
        client,
        endpoints,
        open_timeout,
        stream: None,
        opening: None,
        queued: VecDeque::new(),
        in_flight: HashMap::new(),
    };
    loop {
        let event = {
            let has_opening = t.opening.is_some();
            let has_stream = t.stream.is_some();
            let opening = t.opening.as_mut();
            let stream = t.stream.as_mut().map(|(_, s)| s);
            tokio::select! {
                req = requests.recv() => Event::Request(req),
                opened = async { opening.expect("guarded").await }, if has_opening => {
                    Event::Opened(opened)
                }
                msg = async { stream.expect("guarded").next().await }, if has_stream => {
                    Event::Answer(msg)
                }
            }
        };
        match event {
            Event::Request(Some(req)) => t.request(req),
            Event::Request(None) => return,
            Event::Opened(opened) => {
                t.opening = None;
                t.opened(opened);
            }
            Event::Answer(msg) => t.answer(msg),
        }
    }
}

type StreamItem =
    Option<std::result::Result<etcd_client::LeaseKeepAliveResponse, etcd_client::Error>>;

enum Event {
    Request(Option<Request>),
    Opened(Option<Opened>),
    Answer(StreamItem),
}

impl Task {
    fn request(&mut self, req: Request) {
        if req.reply.is_closed() {
            return;
        }
        if let Some((keeper, _)) = &self.stream {
            let mut msg = blank(&keeper.sender);
            msg.id = req.lease;
            match keeper.sender.try_send(msg) {
                Ok(()) => self
                    .in_flight
                    .entry(req.lease)
                    .or_default()
                    .push_back(req.reply),
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    // The stream ended under us: drop it, and open a new one
                    // for this request.
                    self.answer(None);
                    self.queued.push_back(req);
                    self.open_next();
                }
                Err(mpsc::error::TrySendError::Full(_)) => {
                    let _ = req.reply.send(Err(Error::unavailable(format!(
                        "etcd at {}: the keep-alive stream is not taking requests",
                        self.endpoints
                    ))));
                }
            }
            return;
        }
        self.queued.push_back(req);
        self.open_next();
    }

    /// Starts opening the stream with the first queued lease, unless it is
    /// being opened already.
    fn open_next(&mut self) {
        if self.opening.is_some() {
            return;
        }
        while let Some(first) = self.queued.front() {
            if first.reply.is_closed() {
                self.queued.pop_front();
                continue;
            }
            let lease = first.lease;
            let mut client = self.client.clone();
            let limit = self.open_timeout;
            self.opening = Some(
                async move {
                    timeout(limit, client.keep_alive(lease))
                        .await
                        .ok()
                        .map(|r| (lease, r))
                }
                .boxed(),
            );
            return;
        }
    }

    fn opened(&mut self, opened: Option<Opened>) {
        let first = self.queued.pop_front();
        match opened {
            Some((lease, Ok(stream))) => {
                // Opening sent one keep-alive for `lease` and read its answer.
                if let Some(first) = first.filter(|r| r.lease == lease) {
                    let _ = first.reply.send(Ok(1));
                }
                self.stream = Some(stream);
                for req in std::mem::take(&mut self.queued) {
                    self.request(req);
                }
            }
            Some((_, Err(e))) if errors::is_lease_not_found(&e) => {
                if let Some(first) = first {
                    let _ = first.reply.send(Ok(0));
                }
                self.open_next();
            }
            failed => {
                let err = |what: &Option<Opened>| match what {
                    Some((_, Err(e))) => Error::unavailable(format!(
                        "etcd at {}: cannot open the keep-alive stream: {e}",
                        self.endpoints
                    )),
                    _ => errors::timed_out(&self.endpoints, "opening the keep-alive stream"),
                };
                for req in first.into_iter().chain(std::mem::take(&mut self.queued)) {
                    let _ = req.reply.send(Err(err(&failed)));
                }
            }
        }
    }

    fn answer(&mut self, msg: StreamItem) {
        match msg {
            Some(Ok(resp)) => {
                if let Some(waiting) = self.in_flight.get_mut(&resp.id()) {
                    if let Some(reply) = waiting.pop_front() {
                        let _ = reply.send(Ok(resp.ttl()));
                    }
                    if waiting.is_empty() {
                        self.in_flight.remove(&resp.id());
                    }
                }
            }
            broken => {
                let why = match broken {
                    Some(Err(e)) => e.to_string(),
                    _ => "closed by the server".to_owned(),
                };
                tracing::debug!(endpoints = %self.endpoints, %why, "keep-alive stream broke; reopening on demand");
                self.stream = None;
                for (_, waiting) in self.in_flight.drain() {
                    for reply in waiting {
                        let _ = reply.send(Err(Error::unavailable(format!(
                            "etcd at {}: the keep-alive stream broke: {why}",
                            self.endpoints
                        ))));
                    }
                }
            }
        }
    }
}

/// A fresh keep-alive request of the type `sender` carries: etcd-client
/// does not name that type publicly, so it is reached by inference.
fn blank<T: Default>(_sender: &mpsc::Sender<T>) -> T {
    T::default()
}

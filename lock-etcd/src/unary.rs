//! The backend's own transport for etcd's UNARY calls (the Txns and reads
//! of the lock protocol): one HTTP/2 connection, driven by the `h2` crate,
//! that etcd-client uses through [`etcd_client::Channel::Custom`].
//!
//! Why not etcd-client's channel: every unary call there crosses tonic's
//! balancer (a `Buffer` worker task) and hyper's HTTP/2 client, which
//! spawns a task per request to pipe its body; each hop wakes another Tokio
//! worker. A unary request has one message, ready at once, so this channel
//! writes the request head and body from the caller's own task, and reads
//! the answer there too. Measured on the lock path: the two Txns of an
//! uncontended lock and release took 0.88 of etcd-client's `LockClient`
//! here, against 1.01 on etcd-client's channel.
//!
//! What it keeps of the standard channel:
//! - **members**: it talks to one member at a time, dialled in rotation
//!   starting after the last one tried, so a dead or partitioned member is
//!   left for the next in the list;
//! - **liveness**: when a call has waited a second with nothing heard from
//!   etcd, the connection is pinged, and dropped if the ping goes
//!   unanswered for the request timeout; in-flight calls then fail, the
//!   next call dials again (another member, if there are several). Like
//!   etcd-client's connection here (which pings every 6 s while its
//!   streams are open), it does not ping an idle connection: etcd closes
//!   a connection pinged more often than every 5 s with nothing to answer
//!   (GOAWAY `too_many_pings`), and the next call would pay for a new one. A
//!   member partitioned while the connection is idle is found by the next
//!   call's ping, and that call may fail;
//! - **retry semantics**: a call that failed before its request was handed
//!   to the connection (no connection could be made, or the connection was
//!   already closed) is marked so that
//!   [`errors::not_sent`](crate::errors::not_sent) sends it again; a call
//!   that failed later may have been applied, and is reported unavailable.
//!
//! Plain TCP only: with TLS (`config.tls`) the backend keeps etcd-client's
//! channel for KV as well. Streams (watches, keep-alives) and leases always
//! stay on etcd-client's channel.

use crate::config::EtcdConfig;
use bytes::Bytes;
use h2::client::{Connection, SendRequest};
use h2::{Ping, PingPong, RecvStream};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Request, Response, Uri, Version};
use http_body::Frame;
use http_body_util::BodyExt;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::time::{Instant, sleep, timeout};
use tonic::Status;

/// How long etcd may stay silent while a call waits for its answer before
/// the connection is pinged: a call on a dead member fails over within
/// about this plus the request timeout.
const PING_AFTER: Duration = Duration::from_secs(1);

/// The least time between two pings with no answer from etcd in between.
/// etcd's gRPC server counts such a ping sooner than its
/// `--grpc-keepalive-min-time` (5 s by default) after the previous one as a
/// strike, and closes the connection (GOAWAY `too_many_pings`) at the
/// third; a ping after etcd has written an answer counts as none.
const PING_MIN_GAP: Duration = Duration::from_secs(5);

/// The flow-control windows hyper's HTTP/2 client opens by default (per
/// stream, per connection): an answer of a few MB (a long list of
/// contenders) arrives without waiting for window updates.
const STREAM_WINDOW: u32 = 2 * 1024 * 1024;
/// See [`STREAM_WINDOW`].
const CONNECTION_WINDOW: u32 = 5 * 1024 * 1024;

/// The channel for etcd-client over a [`Unary`] for `config`'s endpoints.
pub(crate) fn channel(config: &EtcdConfig) -> etcd_client::Channel {
    etcd_client::Channel::Custom(tower::util::BoxCloneSyncService::new(Unary::new(config)))
}

/// A `tower::Service` carrying gRPC unary calls over one HTTP/2 connection
/// shared by all its clones, dialled on first use and again after it ends.
#[derive(Clone)]
pub(crate) struct Unary {
    shared: Arc<Shared>,
}

/// One member to dial.
struct Target {
    host: String,
    port: u16,
    /// `host:port`, for the request URI (tonic hands over the path only).
    authority: Authority,
}

/// What every clone of a [`Unary`] shares.
struct Shared {
    targets: Vec<Target>,
    /// Bounds a dial of one member, and a ping's wait for its answer.
    timeout: Duration,
    state: Mutex<State>,
    /// Held while dialling, so that callers finding no connection at the
    /// same moment dial once, not once each.
    dialing: tokio::sync::Mutex<()>,
}

/// The connection, if any, and where the next dial starts.
#[derive(Default)]
struct State {
    conn: Option<Conn>,
    /// The member dialled last: the next dial starts after it, as this
    /// one's connection ended (or it failed, or its dial was abandoned).
    tried: Option<usize>,
    /// Numbers the connections, so that a connection's end clears the
    /// slot only if it still holds that connection.
    dialed: u64,
}

/// One open connection: a handle to send on, and what its calls and its
/// driver share.
#[derive(Clone)]
struct Conn {
    send: SendRequest<Bytes>,
    info: Arc<ConnInfo>,
}

/// One connection's number, member and activity.
struct ConnInfo {
    id: u64,
    authority: Authority,
    activity: Activity,
}

/// What the calls on one connection tell its driver, which pings only
/// while a call waits on a silent etcd.
#[derive(Default)]
struct Activity {
    /// Calls sent and not yet answered (nor dropped).
    waiting: AtomicUsize,
    /// Answers received so far.
    answers: AtomicU64,
}

/// Counts one call as waiting for its answer, until dropped.
struct Waiting<'a>(&'a Activity);

impl<'a> Waiting<'a> {
    fn new(activity: &'a Activity) -> Self {
        activity.waiting.fetch_add(1, Ordering::Relaxed);
        Waiting(activity)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Marks a [`Status`] whose request never reached a connection: nothing
/// was sent, so it is safe to send again whatever it was.
#[derive(Debug)]
struct NotSent;

impl std::fmt::Display for NotSent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the request was not sent")
    }
}

impl std::error::Error for NotSent {}

/// Whether `status` is a failure of this channel before its request was
/// handed to a connection (see [`errors::not_sent`](crate::errors::not_sent)).
pub(crate) fn never_sent(status: &Status) -> bool {
    std::error::Error::source(status).is_some_and(|source| source.is::<NotSent>())
}

/// An `Unavailable` status for a request that was never sent.
fn unsent(message: String) -> Status {
    let mut status = Status::unavailable(message);
    status.set_source(Arc::new(NotSent));
    status
}

/// An `Unavailable` status for a request that may have reached etcd (and
/// may have been applied).
fn unanswered(e: &h2::Error) -> Status {
    Status::unavailable(format!("etcd connection: {e}"))
}

/// Whether `e` ends the whole connection rather than one stream.
fn ends_connection(e: &h2::Error) -> bool {
    !e.is_reset()
}

impl Unary {
    /// A channel to `config`'s endpoints; it dials on its first call.
    pub(crate) fn new(config: &EtcdConfig) -> Self {
        // An endpoint that is no authority never gets here: etcd-client's
        // own client, made first from the same list, refuses it.
        let targets = config
            .endpoints
            .iter()
            .filter_map(|e| {
                let authority = e.to_string().parse().ok()?;
                Some(Target {
                    host: e.host.clone(),
                    port: e.port,
                    authority,
                })
            })
            .collect();
        Unary {
            shared: Arc::new(Shared {
                targets,
                timeout: config.timeout,
                state: Mutex::new(State::default()),
                dialing: tokio::sync::Mutex::new(()),
            }),
        }
    }
}

impl tower::Service<Request<tonic::body::Body>> for Unary {
    type Response = Response<tonic::body::Body>;
    type Error = tower::BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Connections are made in `call`, where a failure can be reported
        // for the one request (and classified as not sent).
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<tonic::body::Body>) -> Self::Future {
        let shared = self.shared.clone();
        Box::pin(async move {
            shared
                .unary(req)
                .await
                .map_err(|status| Box::new(status) as tower::BoxError)
        })
    }
}

impl Shared {
    /// Sends one unary call and returns its answer, whose body ends with
    /// the gRPC status in trailers.
    ///
    /// # Cancel safety
    /// If dropped before the request was handed to the connection, nothing
    /// is sent; after, h2 resets the stream, and etcd may or may not have
    /// applied the request.
    async fn unary(
        self: Arc<Self>,
        req: Request<tonic::body::Body>,
    ) -> Result<Response<tonic::body::Body>, Status> {
        let (mut head, body) = req.into_parts();
        // A unary call's body is its one message, encoded already: this
        // resolves at once, on the caller's task.
        let data = body.collect().await?.to_bytes();
        let (conn, mut send) = self.ready().await?;
        let ConnInfo {
            id,
            authority,
            activity,
        } = &*conn;
        let path = head
            .uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        let mut uri = http::uri::Parts::default();
        uri.scheme = Some(Scheme::HTTP);
        uri.authority = Some(authority.clone());
        uri.path_and_query = Some(path);
        head.uri = Uri::from_parts(uri).map_err(|e| Status::internal(e.to_string()))?;
        head.version = Version::HTTP_2;
        let waiting = Waiting::new(activity);
        let (answer, mut stream) = send
            .send_request(Request::from_parts(head, ()), false)
            .map_err(|e| {
                self.forget(*id);
                unsent(format!("etcd connection closed: {e}"))
            })?;
        // etcd acts on a unary call only once its message has arrived: a
        // body that could not be queued leaves the call unapplied.
        stream.send_data(data, true).map_err(|e| {
            if ends_connection(&e) {
                self.forget(*id);
            }
            unsent(format!("etcd connection closed: {e}"))
        })?;
        let answer = answer.await.map_err(|e| {
            if ends_connection(&e) {
                self.forget(*id);
            }
            unanswered(&e)
        })?;
        activity.answers.fetch_add(1, Ordering::Relaxed);
        drop(waiting);
        Ok(answer.map(|recv| {
            tonic::body::Body::new(RecvBody {
                recv,
                data_done: false,
                done: false,
            })
        }))
    }

    /// The connection, ready for a new stream: the current one, or one
    /// dialled now. A current connection found closed (its end not yet
    /// noticed by its driver) is replaced once.
    ///
    /// # Cancel safety
    /// If dropped while dialling, the dial is abandoned and the next one
    /// starts with the member after it.
    async fn ready(self: &Arc<Self>) -> Result<(Arc<ConnInfo>, SendRequest<Bytes>), Status> {
        let mut replaced = false;
        loop {
            let Conn { send, info } = self.connection().await?;
            match send.ready().await {
                Ok(send) => return Ok((info, send)),
                Err(e) => {
                    self.forget(info.id);
                    if replaced {
                        return Err(unsent(format!("etcd connection closed: {e}")));
                    }
                    replaced = true;
                }
            }
        }
    }

    /// The current connection, or a new one.
    ///
    /// # Cancel safety
    /// As [`ready`](Self::ready).
    async fn connection(self: &Arc<Self>) -> Result<Conn, Status> {
        if let Some(conn) = self.current() {
            return Ok(conn);
        }
        let _dialing = self.dialing.lock().await;
        if let Some(conn) = self.current() {
            return Ok(conn);
        }
        self.dial().await
    }

    fn current(&self) -> Option<Conn> {
        lock(&self.state).conn.clone()
    }

    /// Clears the slot if it still holds connection `id`, so that the
    /// next call dials.
    fn forget(&self, id: u64) {
        let mut state = lock(&self.state);
        if state.conn.as_ref().is_some_and(|c| c.info.id == id) {
            state.conn = None;
        }
    }

    /// Dials the members in turn, starting after the one tried last, until
    /// one connects; an error naming each failure if none does (marked not
    /// sent).
    ///
    /// # Cancel safety
    /// As [`ready`](Self::ready): the member being dialled counts as tried.
    async fn dial(self: &Arc<Self>) -> Result<Conn, Status> {
        let n = self.targets.len();
        if n == 0 {
            return Err(unsent("no etcd endpoint to connect to".to_owned()));
        }
        let start = lock(&self.state).tried.map_or(0, |i| (i + 1) % n);
        let mut failures = Vec::new();
        for i in (start..n).chain(0..start) {
            lock(&self.state).tried = Some(i);
            match self.open(i).await {
                Ok(conn) => return Ok(conn),
                Err(why) => {
                    tracing::debug!(endpoint = %self.targets[i].authority, %why, "etcd: cannot connect");
                    failures.push(format!("{}: {why}", self.targets[i].authority));
                }
            }
        }
        Err(unsent(format!(
            "tcp connect error: {}",
            failures.join("; ")
        )))
    }

    /// Connects to member `i` (TCP within the timeout, then the HTTP/2
    /// preface), installs the connection, and starts its driver.
    ///
    /// # Cancel safety
    /// If dropped, the half-made connection is closed.
    async fn open(self: &Arc<Self>, i: usize) -> Result<Conn, String> {
        let target = &self.targets[i];
        let connecting = async {
            let tcp = TcpStream::connect((target.host.as_str(), target.port))
                .await
                .map_err(|e| e.to_string())?;
            // Requests are small and each is written at once: never hold
            // one back for Nagle.
            tcp.set_nodelay(true).map_err(|e| e.to_string())?;
            h2::client::Builder::new()
                .enable_push(false)
                .initial_window_size(STREAM_WINDOW)
                .initial_connection_window_size(CONNECTION_WINDOW)
                .handshake::<_, Bytes>(tcp)
                .await
                .map_err(|e| e.to_string())
        };
        let (send, connection) = timeout(self.timeout, connecting)
            .await
            .map_err(|_| format!("no connection within {:?}", self.timeout))??;
        let conn = {
            let mut state = lock(&self.state);
            state.dialed += 1;
            let conn = Conn {
                send,
                info: Arc::new(ConnInfo {
                    id: state.dialed,
                    authority: target.authority.clone(),
                    activity: Activity::default(),
                }),
            };
            state.conn = Some(conn.clone());
            conn
        };
        tracing::debug!(endpoint = %target.authority, "etcd: connected for unary calls");
        tokio::spawn(drive(
            connection,
            Arc::downgrade(self),
            conn.info.clone(),
            self.timeout,
        ));
        Ok(conn)
    }
}

/// Runs the connection `info` describes until it ends: closed by etcd,
/// broken, or a ping unanswered within `limit`. Then clears the slot (if it
/// still holds this connection), so that the next call dials again. Holds
/// the shared state weakly and no request handle: once every clone of the
/// channel is gone, h2 closes the connection and this ends.
///
/// # Cancel safety
/// Spawned, never dropped but with the runtime: dropping it drops the
/// connection, which fails the calls in flight on it.
async fn drive(
    mut connection: Connection<TcpStream, Bytes>,
    shared: Weak<Shared>,
    info: Arc<ConnInfo>,
    limit: Duration,
) {
    let pings = connection.ping_pong();
    let why = tokio::select! {
        ended = &mut connection => match ended {
            Ok(()) => "closed".to_owned(),
            Err(e) => e.to_string(),
        },
        why = keep_alive(pings, &info.activity, limit) => why,
    };
    tracing::debug!(endpoint = %info.authority, %why, "etcd: unary connection ended");
    if let Some(shared) = shared.upgrade() {
        shared.forget(info.id);
    }
    // Dropping the connection fails the calls still in flight on it.
    drop(connection);
}

/// Pings while a call has waited on a silent connection for
/// [`PING_AFTER`] (but never within [`PING_MIN_GAP`] of the previous ping
/// with no answer in between), and returns why it stopped: a ping unanswered within
/// `limit`, or the connection unable to ping. An idle connection is never
/// pinged: etcd would close it (see [`PING_MIN_GAP`]), and the next call
/// would pay for a new one.
///
/// # Cancel safety
/// Safe to drop: a ping in flight is forgotten.
async fn keep_alive(pings: Option<PingPong>, activity: &Activity, limit: Duration) -> String {
    let Some(mut pings) = pings else {
        return std::future::pending().await;
    };
    let answers = || activity.answers.load(Ordering::Relaxed);
    let mut seen = answers();
    let mut pinged: Option<(Instant, u64)> = None;
    loop {
        sleep(PING_AFTER).await;
        let now = answers();
        let silent = now == seen;
        seen = now;
        if !silent || activity.waiting.load(Ordering::Relaxed) == 0 {
            continue;
        }
        if pinged.is_some_and(|(at, then)| then == now && at.elapsed() < PING_MIN_GAP) {
            continue;
        }
        pinged = Some((Instant::now(), now));
        match timeout(limit, pings.ping(Ping::opaque())).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return format!("ping failed: {e}"),
            Err(_) => return format!("no answer to a ping within {limit:?}"),
        }
    }
}

/// The state's lock; a panic elsewhere while it was held leaves nothing
/// half-done in it (every update is one assignment), so poisoning is
/// ignored.
fn lock(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// An answer's body: its data frames (each releasing its flow-control
/// capacity, so etcd may send more), then its trailers, where gRPC puts
/// the call's status.
struct RecvBody {
    recv: RecvStream,
    data_done: bool,
    done: bool,
}

impl http_body::Body for RecvBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        if !this.data_done {
            match ready!(this.recv.poll_data(cx)) {
                Some(Ok(data)) => {
                    // Only fails once the stream is gone, and then there
                    // is nothing left to receive anyway.
                    let _ = this.recv.flow_control().release_capacity(data.len());
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Some(Err(e)) => {
                    this.done = true;
                    return Poll::Ready(Some(Err(unanswered(&e))));
                }
                None => this.data_done = true,
            }
        }
        let trailers = ready!(this.recv.poll_trailers(cx));
        this.done = true;
        match trailers {
            Ok(Some(trailers)) => Poll::Ready(Some(Ok(Frame::trailers(trailers)))),
            Ok(None) => Poll::Ready(None),
            Err(e) => Poll::Ready(Some(Err(unanswered(&e)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        // Not `recv.is_end_stream()`: that is true once etcd's END_STREAM
        // arrived, before the trailers (the call's status) were read.
        self.done
    }
}

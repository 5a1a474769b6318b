//! ONE etcd watch stream per backend for all its watches: a waiter's watch
//! on its predecessor, and a holder's watch on its own key (the hold's loss
//! signal).
//!
//! etcd-client opens a gRPC stream per `watch` call, and waits for etcd's
//! answer before it returns. The etcd protocol multiplexes: one `Watch`
//! stream carries any number of watches, each created with an id the client
//! picks (etcd 3.4 and later) and answered with that id on every event.
//! This module's task opens the stream with the first watch it is asked for,
//! sends every further create and cancel on it without waiting for an
//! answer, and routes events to watchers by id.
//!
//! A stream that breaks (a member gone, a leader lost: requests need a
//! leader) is reopened at once, and every watch is created again at the
//! revision it started from: etcd replays what happened since, so a
//! deletion while the stream was down is still seen. Each watcher also
//! hears of the reopening ([`Note::Reopened`]) and can look at the store
//! again; a watcher whose start revision was compacted meanwhile is told
//! so ([`Note::Canceled`]) and must look.

use crate::errors;
use etcd_client::{
    EventType, GetOptions, KvClient, WatchClient, WatchFilterType, WatchOptions,
    WatchRequestSender, WatchResponse, WatchResponseStream,
};
use futures::FutureExt;
use futures::future::BoxFuture;
use lock_core::{Error, LossReason, Result};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep, sleep_until, timeout};

/// What a watcher hears.
#[derive(Debug)]
pub(crate) enum Note {
    /// etcd created the watch when its store was at this revision.
    Created(i64),
    /// Its key was deleted (at its start revision or later).
    Deleted,
    /// etcd ended the watch: its start revision was compacted (`compacted`),
    /// or it refused it (`reason`, e.g. permission denied).
    Canceled { compacted: bool, reason: String },
    /// The stream broke and was reopened; the watch is created again at its
    /// start revision. Events may have been delayed: look again if in doubt.
    Reopened,
    /// The stream cannot be opened now, and why (the task keeps trying).
    Failed(Arc<str>),
}

/// One watch as the task knows it.
struct Reg {
    key: Vec<u8>,
    /// The revision it starts at.
    from: i64,
    notes: mpsc::UnboundedSender<Note>,
    /// Whether etcd knows it on the current stream (its create was sent).
    sent: bool,
}

enum Cmd {
    Add(i64, Reg),
    Remove(i64),
}

/// A request for the stream's writer task.
enum Out {
    Create(i64, Vec<u8>, i64),
    Cancel(i64),
}

/// A handle on the backend's watch task; the task ends with the last handle
/// (and every [`Watch`] made from it).
#[derive(Clone, Debug)]
pub(crate) struct Watches {
    cmds: mpsc::UnboundedSender<Cmd>,
    next: Arc<AtomicI64>,
}

/// One watch on the shared stream, for deletions of one key; dropping it
/// cancels the watch.
#[derive(Debug)]
pub(crate) struct Watch {
    id: i64,
    notes: mpsc::UnboundedReceiver<Note>,
    cmds: mpsc::UnboundedSender<Cmd>,
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.cmds.send(Cmd::Remove(self.id));
    }
}

impl Watch {
    /// The next thing this watcher hears; `None` once the backend is gone.
    ///
    /// # Cancel safety
    /// Safe to drop: no note is lost.
    pub(crate) async fn next(&mut self) -> Option<Note> {
        self.notes.recv().await
    }
}

impl Watches {
    /// Starts the task on the current runtime.
    pub(crate) fn start(client: WatchClient, endpoints: Arc<str>, open_timeout: Duration) -> Self {
        let (cmds, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(client, endpoints, open_timeout, rx));
        Watches {
            cmds,
            // Ids start at 1: 0 asks etcd to pick one.
            next: Arc::new(AtomicI64::new(1)),
        }
    }

    /// Watches deletions of `key` from revision `from` on (a deletion at or
    /// after `from` that already happened is reported at once); `from` 0
    /// watches from the revision at which etcd creates the watch.
    pub(crate) fn deletions(&self, key: &str, from: i64) -> Watch {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (notes, rx) = mpsc::unbounded_channel();
        let reg = Reg {
            key: key.as_bytes().to_vec(),
            from,
            notes,
            sent: false,
        };
        // If the task is gone (the backend is being dropped), the watch
        // hears nothing more: `next` answers `None`.
        let _ = self.cmds.send(Cmd::Add(id, reg));
        Watch {
            id,
            notes: rx,
            cmds: self.cmds.clone(),
        }
    }
}

type Opened = std::result::Result<etcd_client::WatchStream, etcd_client::Error>;

/// The first and the longest pause before opening a broken stream again.
const REOPEN_FIRST: Duration = Duration::from_millis(50);
/// See [`REOPEN_FIRST`].
const REOPEN_MAX: Duration = Duration::from_secs(1);

struct Task {
    client: WatchClient,
    endpoints: Arc<str>,
    open_timeout: Duration,
    regs: HashMap<i64, Reg>,
    /// The writer of the current stream, and its response side.
    out: Option<mpsc::UnboundedSender<Out>>,
    responses: Option<WatchResponseStream>,
    /// Opening a stream with this watch's create.
    opening: Option<(i64, BoxFuture<'static, Option<Opened>>)>,
    /// When to try opening again after a failure.
    retry_at: Option<Instant>,
    backoff: Duration,
    /// Whether a stream was ever open (a new one is then a reopening).
    was_open: bool,
}

enum Event {
    Cmd(Option<Cmd>),
    Opened(Option<Opened>),
    Response(Option<std::result::Result<WatchResponse, etcd_client::Error>>),
    Retry,
}

fn options(id: i64, from: i64) -> WatchOptions {
    WatchOptions::new()
        .with_watch_id(id)
        .with_start_revision(from)
        .with_filters([WatchFilterType::NoPut])
}

async fn run(
    client: WatchClient,
    endpoints: Arc<str>,
    open_timeout: Duration,
    mut cmds: mpsc::UnboundedReceiver<Cmd>,
) {
    let mut t = Task {
        client,
        endpoints,
        open_timeout,
        regs: HashMap::new(),
        out: None,
        responses: None,
        opening: None,
        retry_at: None,
        backoff: REOPEN_FIRST,
        was_open: false,
    };
    loop {
        let event = {
            let (has_opening, has_stream) = (t.opening.is_some(), t.responses.is_some());
            let opening = t.opening.as_mut().map(|(_, f)| f);
            let responses = t.responses.as_mut();
            let retry_at = t.retry_at;
            tokio::select! {
                cmd = cmds.recv() => Event::Cmd(cmd),
                opened = async { opening.expect("guarded").await }, if has_opening => {
                    Event::Opened(opened)
                }
                resp = async { responses.expect("guarded").message().await.transpose() },
                    if has_stream => Event::Response(resp),
                () = sleep_until(retry_at.unwrap_or_else(Instant::now)), if retry_at.is_some() => {
                    Event::Retry
                }
            }
        };
        match event {
            Event::Cmd(Some(Cmd::Add(id, reg))) => t.add(id, reg),
            Event::Cmd(Some(Cmd::Remove(id))) => t.remove(id),
            // Every handle and watch is gone.
            Event::Cmd(None) => return,
            Event::Opened(opened) => t.opened(opened),
            Event::Response(Some(Ok(resp))) => t.response(&resp),
            Event::Response(broken) => {
                let why = match broken {
                    Some(Err(e)) => e.to_string(),
                    _ => "closed by the server".to_owned(),
                };
                tracing::debug!(endpoints = %t.endpoints, %why, "watch stream broke; reopening");
                t.broke();
            }
            Event::Retry => {
                t.retry_at = None;
                t.open();
            }
        }
    }
}

impl Task {
    fn add(&mut self, id: i64, mut reg: Reg) {
        if let Some(out) = &self.out {
            reg.sent = out.send(Out::Create(id, reg.key.clone(), reg.from)).is_ok();
        }
        self.regs.insert(id, reg);
        self.open();
    }

    fn remove(&mut self, id: i64) {
        if let Some(reg) = self.regs.remove(&id)
            && reg.sent
            && let Some(out) = &self.out
        {
            let _ = out.send(Out::Cancel(id));
        }
    }

    /// Starts opening a stream, with the create of the oldest watch, if
    /// there is none and watches want one.
    fn open(&mut self) {
        if self.out.is_some() || self.opening.is_some() || self.retry_at.is_some() {
            return;
        }
        let Some((&id, reg)) = self.regs.iter().min_by_key(|(id, _)| **id) else {
            return;
        };
        let mut client = self.client.clone();
        let (key, from, limit) = (reg.key.clone(), reg.from, self.open_timeout);
        self.opening = Some((
            id,
            async move {
                timeout(limit, client.watch(key, Some(options(id, from))))
                    .await
                    .ok()
            }
            .boxed(),
        ));
    }

    fn opened(&mut self, opened: Option<Opened>) {
        let Some((first, _)) = self.opening.take() else {
            return;
        };
        let stream = match opened {
            Some(Ok(stream)) => stream,
            failed => {
                let error = match failed {
                    Some(Err(e)) => errors::map(&self.endpoints, "opening the watch stream", e),
                    _ => errors::timed_out(&self.endpoints, "opening the watch stream"),
                };
                tracing::debug!(error = %error, "cannot open the watch stream; trying again");
                let why: Arc<str> = error.to_string().into();
                for reg in self.regs.values() {
                    let _ = reg.notes.send(Note::Failed(why.clone()));
                }
                self.retry_at = Some(Instant::now() + self.backoff);
                self.backoff = (self.backoff * 2).min(REOPEN_MAX);
                return;
            }
        };
        let (sender, responses) = stream.split();
        let (out, rx) = mpsc::unbounded_channel();
        tokio::spawn(write(sender, rx));
        if !self.regs.contains_key(&first) {
            // Removed while the stream opened: etcd has it, cancel it.
            let _ = out.send(Out::Cancel(first));
        }
        for (&id, reg) in &mut self.regs {
            reg.sent = id == first || out.send(Out::Create(id, reg.key.clone(), reg.from)).is_ok();
            if self.was_open {
                let _ = reg.notes.send(Note::Reopened);
            }
        }
        self.out = Some(out);
        self.responses = Some(responses);
        self.was_open = true;
    }

    fn response(&mut self, resp: &WatchResponse) {
        self.backoff = REOPEN_FIRST;
        let id = resp.watch_id();
        let Some(reg) = self.regs.get(&id) else {
            return;
        };
        if resp.created() {
            let at = resp.header().map_or(0, |h| h.revision());
            let _ = reg.notes.send(Note::Created(at));
        }
        if resp
            .events()
            .iter()
            .any(|e| e.event_type() == EventType::Delete)
        {
            let _ = reg.notes.send(Note::Deleted);
        }
        if resp.canceled() {
            let _ = reg.notes.send(Note::Canceled {
                compacted: resp.compact_revision() != 0,
                reason: resp.cancel_reason().to_owned(),
            });
            // etcd forgot it: nothing to cancel when the watcher leaves.
            if let Some(reg) = self.regs.get_mut(&id) {
                reg.sent = false;
            }
        }
    }

    fn broke(&mut self) {
        self.out = None;
        self.responses = None;
        for reg in self.regs.values_mut() {
            reg.sent = false;
        }
        self.open();
    }
}

/// Writes creates and cancels on one stream, in order, until the stream or
/// the task drops it.
async fn write(mut sender: WatchRequestSender, mut out: mpsc::UnboundedReceiver<Out>) {
    while let Some(req) = out.recv().await {
        let sent = match req {
            Out::Create(id, key, from) => sender.watch(key, Some(options(id, from))).await,
            Out::Cancel(id) => sender.cancel(id).await,
        };
        if sent.is_err() {
            return;
        }
    }
}

/// How a wait for a deletion ended.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Deleted {
    /// The key was deleted, or the watch ended or was re-established (a
    /// compaction, a broken stream): look again.
    LookAgain,
    /// The deadline passed first.
    TimedOut,
}

/// Waits until `key`, seen at revision `seen`, is deleted, or `deadline`
/// passes. `still_there` reads whether `key` (the same key, not one
/// created again since) still exists; it is awaited only if the store moved
/// on between `seen` and the watch's creation.
///
/// The watch starts at the revision at which etcd creates it, not at
/// `seen + 1`. etcd sends the events of a watch that starts at a past
/// revision only from a loop that runs every 100 ms until the watch has
/// caught up, so with other writes in between, a release would reach the
/// waiter up to 100 ms late. A deletion between `seen` and the watch's
/// creation is caught by `still_there` instead.
///
/// # Cancel safety
/// Safe to drop: the watch is cancelled with it.
pub(crate) async fn deleted(
    watches: &Watches,
    endpoints: &str,
    key: &str,
    seen: i64,
    still_there: impl Future<Output = Result<bool>>,
    deadline: Option<Instant>,
) -> Result<Deleted> {
    let mut watch = watches.deletions(key, 0);
    let wait = async {
        let mut still_there = Some(still_there);
        loop {
            match watch.next().await {
                Some(Note::Created(at)) => {
                    if at > seen
                        && let Some(check) = still_there.take()
                        && !check.await?
                    {
                        return Ok(Deleted::LookAgain);
                    }
                }
                Some(
                    Note::Deleted
                    | Note::Reopened
                    | Note::Canceled {
                        compacted: true, ..
                    },
                ) => return Ok(Deleted::LookAgain),
                Some(Note::Canceled { reason, .. }) => {
                    return Err(Error::backend(format!(
                        "etcd at {endpoints}: watching the predecessor {key:?} was refused: {reason}"
                    )));
                }
                Some(Note::Failed(why)) => return Err(Error::unavailable(why.to_string())),
                None => {
                    return Err(Error::unavailable(format!(
                        "etcd at {endpoints}: the watch task has stopped"
                    )));
                }
            }
        }
    };
    match deadline {
        None => wait.await,
        Some(deadline) => tokio::select! {
            r = wait => r,
            () = sleep_until(deadline) => Ok(Deleted::TimedOut),
        },
    }
}

/// What every hold's loss signal needs, shared: one `Arc` clone per hold
/// (cloning the clients per hold costs more than the rest of a grant).
pub(crate) struct LossContext {
    pub(crate) watches: Watches,
    pub(crate) kv: KvClient,
}

/// How long a hold lives before its loss watch opens: most holds are
/// shorter, and then cost no watch at all.
pub(crate) const LOSS_WATCH_DELAY: Duration = Duration::from_millis(50);

/// Resolves when etcd says the hold with holder key `key`, created at
/// revision `rev`, is gone: the key deleted (lease revoked or expired, or a
/// client deleted it), unless `releasing` says the holder itself deleted
/// it. Stays pending otherwise. The watch starts at `rev + 1`, so a deletion
/// before it was created (or while its stream was down) is still reported;
/// a watch cancelled by compaction is replaced after checking that the key
/// still has revision `rev`.
pub(crate) async fn loss(
    ctx: Arc<LossContext>,
    key: String,
    rev: i64,
    releasing: Arc<AtomicBool>,
) -> LossReason {
    // Holds shorter than this never open a watch. Starting at `rev + 1`,
    // a watch opened later still reports a deletion made before.
    sleep(LOSS_WATCH_DELAY).await;
    let gone = |why: &str| LossReason::Gone(format!("holder key {key:?} {why}"));
    let mut from = rev + 1;
    let mut backoff = Duration::from_millis(50);
    loop {
        let mut watch = ctx.watches.deletions(&key, from);
        loop {
            match watch.next().await {
                Some(Note::Deleted) => {
                    if releasing.load(Ordering::Acquire) {
                        return std::future::pending().await;
                    }
                    return gone(
                        "was deleted (its lease was revoked or expired, or a client deleted it)",
                    );
                }
                Some(Note::Created(_)) => {}
                // Re-established from `from` by the task: nothing missed.
                Some(Note::Reopened | Note::Failed(_)) => backoff = Duration::from_millis(50),
                Some(Note::Canceled { compacted, reason }) => {
                    if !compacted {
                        tracing::warn!(%key, %reason, "etcd refused the watch on a holder key; renewals still check it");
                        sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(30));
                        break;
                    }
                    // Compacted past `from`: is the key still ours?
                    let mut kv = ctx.kv.clone();
                    if let Ok(got) = kv
                        .get(key.as_str(), Some(GetOptions::new().with_keys_only()))
                        .await
                    {
                        let still = got
                            .kvs()
                            .first()
                            .is_some_and(|kv| kv.create_revision() == rev);
                        if !still {
                            if releasing.load(Ordering::Acquire) {
                                return std::future::pending().await;
                            }
                            return gone("is gone");
                        }
                        from = got.header().map_or(from, |h| h.revision() + 1);
                    } else {
                        sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(1));
                    }
                    break;
                }
                // The backend is gone: so is the locker that asked.
                None => return std::future::pending().await,
            }
        }
    }
}

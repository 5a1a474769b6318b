//! Taking a lock: Curator's `InterProcessMutex` recipe.
//!
//! 1. Create an ephemeral sequential node `_c_<uuid>-lock-` under the
//!    key's lock node (creating that as a container node if need be: sent
//!    just before, in the same round trip, unless the backend has seen the
//!    lock node lately; Curator and zookeeper-client's recipe try the
//!    create first and make the parent after a "no node", two round trips
//!    more). If
//!    the connection breaks during the create, look for a child starting
//!    with `_c_<uuid>-` before creating again, so one attempt never makes
//!    two nodes.
//! 2. List the contenders (every child with a 10-digit sequence suffix;
//!    the first listing is sent with the create, in the same round trip);
//!    the first one holds the lock, fenced by its node's creation zxid (from
//!    the create's answer). The hold's task then watches the node: its
//!    deletion is the hold's loss.
//! 3. Not first: watch ONLY the predecessor, wait for its deletion (or the
//!    wait's end, or the session's end), and list again.
//!
//! A dropped attempt deletes its node in the background.

use crate::backend::Inner;
use crate::error::{is_connection, is_session_over, to_error};
use crate::held::delete_until_gone;
use crate::path::{contenders, lock_dir, node_prefix, sequence};
use crate::session::Session;
use lock_core::{AcquireRequest, Grant, Result, Wait};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::{Instant, sleep, sleep_until};
use zookeeper_client as zk;

/// How long a call that failed on a broken connection waits before trying
/// again (the client reconnects meanwhile).
const RETRY: Duration = Duration::from_millis(50);

/// What a dropped or failed attempt leaves to clean: its node, by name
/// once known, else by its `_c_<uuid>-` prefix.
struct Cleanup {
    session: Arc<Session>,
    dir: String,
    prefix: String,
    name: Option<String>,
    armed: bool,
}

impl Cleanup {
    fn path(&self) -> Option<String> {
        self.name.as_ref().map(|n| format!("{}/{n}", self.dir))
    }

    /// Deletes the node now; on trouble, leaves it to the background.
    async fn now(mut self) {
        if let Some(path) = self.path() {
            match self.session.client.delete(&path, None).await {
                Ok(()) | Err(zk::Error::NoNode) => self.armed = false,
                Err(e) if is_session_over(&e) => self.armed = false,
                Err(_) => {}
            }
        }
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if !self.armed || tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        let client = self.session.client.clone();
        let timeout = self.session.timeout;
        match self.path() {
            Some(path) => {
                tokio::spawn(delete_until_gone(client, path));
            }
            None => {
                let (dir, prefix) = (self.dir.clone(), self.prefix.clone());
                tokio::spawn(async move {
                    // Sent after the create on the same session, so the
                    // server answers it after applying the create, if it
                    // ever does.
                    let give_up = Instant::now() + timeout;
                    loop {
                        match client.list_children(&dir).await {
                            Ok(children) => {
                                if let Some(name) = children.iter().find(|c| c.starts_with(&prefix))
                                {
                                    delete_until_gone(client.clone(), format!("{dir}/{name}"))
                                        .await;
                                }
                                return;
                            }
                            Err(e) if is_connection(&e) && Instant::now() < give_up => {
                                sleep(RETRY).await;
                            }
                            Err(_) => return,
                        }
                    }
                });
            }
        }
    }
}

/// Runs `op` until it answers, retrying connection losses while `wait`
/// lasts (not at all for `try_lock`).
async fn retrying<T, F>(wait: &Wait, mut op: impl FnMut() -> F) -> Result<T, zk::Error>
where
    F: Future<Output = Result<T, zk::Error>>,
{
    loop {
        match op().await {
            Err(e) if is_connection(&e) && !wait.expired(Instant::now() + RETRY) => {
                sleep(RETRY).await;
            }
            other => return other,
        }
    }
}

pub(crate) async fn acquire(inner: &Inner, req: &AcquireRequest) -> Result<Option<Grant>> {
    let servers = inner.sessions.servers();
    let dir = lock_dir(&inner.base, &req.key);
    let mut fresh_sessions = 0;
    loop {
        let session = inner.sessions.get(req.ttl.get()).await?;
        match attempt(inner, &session, &dir, req).await {
            Ok(Attempt::Done(grant)) => return Ok(grant),
            // Our node vanished while we waited: start over with a new one.
            Ok(Attempt::Again) => continue,
            // The session ended under the attempt (its node, if any, went
            // with it): once, try again on a new session.
            Err(e) if is_session_over(&e) && session.is_over() && fresh_sessions == 0 => {
                fresh_sessions += 1;
            }
            Err(e) => return Err(to_error(servers, &format!("lock {}", req.key), e)),
        }
    }
}

enum Attempt {
    Done(Option<Grant>),
    Again,
}

async fn attempt(
    inner: &Inner,
    session: &Arc<Session>,
    dir: &str,
    req: &AcquireRequest,
) -> Result<Attempt, zk::Error> {
    let client = &session.client;
    let prefix = node_prefix(&uuid::Uuid::new_v4());
    let mut cleanup = Cleanup {
        session: session.clone(),
        dir: dir.to_owned(),
        prefix: prefix.clone(),
        name: None,
        armed: true,
    };
    // The create and the first listing in one round trip: the server
    // answers a session's requests in the order sent, so the listing sees
    // the node if the create made it. (Each call sends its request at once.)
    let mut sent = Instant::now();
    let path = format!("{dir}/{prefix}");
    let mode = zk::CreateMode::EphemeralSequential.with_acls(zk::Acls::anyone_all());
    let data = req.owner.as_str().as_bytes();
    // A lock node not known to exist is created first, in the same trip
    // (a fresh key: lock node, node and listing in one round trip). Its
    // answer is not needed: the create's answer says whether it is there.
    let parent = (!inner.lock_nodes.known(dir)).then(|| {
        let container = zk::CreateMode::Container.with_acls(zk::Acls::anyone_all());
        client.create(dir, &[], &container)
    });
    let (_, first_create, first_list) = futures::join!(
        async {
            if let Some(parent) = parent {
                let _ = parent.await;
            }
        },
        client.create(&path, data, &mode),
        client.list_children(dir)
    );
    // A listing is only good after our create succeeded.
    let mut listed = first_create
        .is_ok()
        .then_some(first_list)
        .and_then(|l| l.ok());
    let (name, created) = create(inner, client, dir, &prefix, req, Some(first_create)).await?;
    inner.lock_nodes.exists(dir);
    cleanup.name = Some(name.clone());
    let own = format!("{dir}/{name}");
    // Sequence 0: the lock node had never had a child when ours was made
    // (the sequence is the parent's count of child creations and
    // deletions), so every other contender came after ours: ours is first,
    // without a listing. (A lock node made just now, as for a fresh key.)
    if listed.is_none() && sequence(&name) == Some(0) {
        listed = Some(vec![name.clone()]);
    }
    loop {
        let children = match listed.take() {
            Some(c) => c,
            None => {
                sent = Instant::now();
                match client.list_children(dir).await {
                    Ok(c) => c,
                    Err(e) if is_connection(&e) && !req.wait.expired(Instant::now()) => {
                        sleep(RETRY).await;
                        continue;
                    }
                    Err(e) => return Err(e),
                }
            }
        };
        let queue = contenders(children);
        let Some(place) = queue.iter().position(|(_, c)| *c == name) else {
            return Ok(Attempt::Again);
        };
        if place == 0 {
            let czxid = match created {
                Some(czxid) => czxid,
                // Found again after a connection loss: read its zxid.
                None => match retrying(&req.wait, || client.check_stat(&own)).await? {
                    Some(stat) => stat.czxid,
                    None => return Ok(Attempt::Again),
                },
            };
            cleanup.armed = false;
            // The hold's task watches the node from here on; a deletion
            // before its watch is set is seen as "no such node" then.
            let (node, lost) = inner
                .holds
                .insert(own.clone(), czxid as u64, session.clone(), sent);
            return Ok(Attempt::Done(Some(Grant {
                token: lock_core::FencingToken(node.token),
                ttl: node.ttl,
                valid_from: sent,
                handle: own,
                lost: Some(lost),
            })));
        }
        if req.wait.expired(Instant::now()) {
            cleanup.now().await;
            return Ok(Attempt::Done(None));
        }
        let predecessor = format!("{dir}/{}", queue[place - 1].1);
        let watcher = match client.get_and_watch_data(&predecessor).await {
            Ok((_, _, w)) => w,
            Err(zk::Error::NoNode) => continue,
            Err(e) if is_connection(&e) && !req.wait.expired(Instant::now()) => {
                sleep(RETRY).await;
                continue;
            }
            Err(e) => return Err(e),
        };
        tracing::debug!(node = %own, place, %predecessor, "waiting for the predecessor");
        let mut state = client.state_watcher();
        let until = req.wait.deadline();
        let timed_out = async {
            match until {
                Some(t) => sleep_until(t).await,
                None => std::future::pending().await,
            }
        };
        let ended = async {
            loop {
                if state.changed().await.is_terminated() {
                    return;
                }
            }
        };
        tokio::select! {
            _ = watcher.changed() => {}
            () = timed_out => {
                cleanup.now().await;
                return Ok(Attempt::Done(None));
            }
            () = ended => return Err(zk::Error::SessionExpired),
        }
    }
}

/// The answer to a create of an ephemeral sequential node.
type Created = Result<(zk::Stat, zk::CreateSequence), zk::Error>;

/// Creates this attempt's node; returns its name, and its creation zxid
/// unless the node was found again after a connection loss. `first` is the
/// answer to a create already sent, if any.
async fn create(
    inner: &Inner,
    client: &zk::Client,
    dir: &str,
    prefix: &str,
    req: &AcquireRequest,
    mut first: Option<Created>,
) -> Result<(String, Option<i64>), zk::Error> {
    let path = format!("{dir}/{prefix}");
    let mode = zk::CreateMode::EphemeralSequential.with_acls(zk::Acls::anyone_all());
    let data = req.owner.as_str().as_bytes();
    loop {
        let answer = match first.take() {
            Some(answer) => answer,
            None => client.create(&path, data, &mode).await,
        };
        match answer {
            Ok((stat, seq)) => {
                // Servers before 3.5 answer without a stat.
                let czxid = (stat.czxid > 0).then_some(stat.czxid);
                return Ok((format!("{prefix}{seq}"), czxid));
            }
            // No lock node: create it (a container) and the child again,
            // both sent before either answer is awaited: the server
            // applies a session's requests in order, so one round trip.
            Err(zk::Error::NoNode) => {
                inner.lock_nodes.gone(dir);
                let container = zk::CreateMode::Container.with_acls(zk::Acls::anyone_all());
                let parent = client.create(dir, &[], &container);
                let child = client.create(&path, data, &mode);
                let parent = parent.await;
                // The child's answer is looked at in any case: after a
                // connection loss it may have been applied.
                let child = child.await;
                match parent {
                    Ok(_) | Err(zk::Error::NodeExists) => {}
                    // The base path is missing too: the child was not made.
                    Err(zk::Error::NoNode) => make_dir(inner, client, dir).await?,
                    Err(e) if is_connection(&e) => {}
                    Err(e) if child == Err(zk::Error::NoNode) => return Err(e),
                    Err(_) => {}
                }
                first = Some(child);
            }
            Err(e) if is_connection(&e) => {
                // The create may have been applied: find it by its unique
                // prefix before trying again.
                let children = retrying(&req.wait, || client.list_children(dir)).await;
                match children {
                    Ok(children) => {
                        if let Some(name) = children.into_iter().find(|c| c.starts_with(prefix)) {
                            return Ok((name, None));
                        }
                    }
                    Err(zk::Error::NoNode) => {}
                    Err(e) => return Err(e),
                }
                if req.wait.expired(Instant::now() + RETRY) {
                    return Err(e);
                }
            }
            Err(e) => return Err(e),
        }
    }
}

/// Creates the lock node `dir` (a container: the server removes it once its
/// last contender is gone), and the base path above it if need be.
async fn make_dir(inner: &Inner, client: &zk::Client, dir: &str) -> Result<(), zk::Error> {
    let container = zk::CreateMode::Container.with_acls(zk::Acls::anyone_all());
    loop {
        match client.create(dir, &[], &container).await {
            Ok(_) | Err(zk::Error::NodeExists) => return Ok(()),
            Err(zk::Error::NoNode) if !inner.base.is_empty() => {
                let persistent = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
                client.mkdir(&inner.base, &persistent).await?;
            }
            Err(e) => return Err(e),
        }
    }
}

//! [`EtcdBackend`]: the [`Backend`] of etcd, on the protocol of etcd's
//! `concurrency.Mutex`.

use crate::config::EtcdConfig;
use crate::errors;
use crate::keepalive::KeepAlive;
use crate::leases::{Lease, Leases};
use crate::mutex::{Enqueued, Kv, Turn};
use crate::names::{Names, lease_of};
use crate::unary;
use crate::watch::{self, Deleted, LossContext, Watches};
use etcd_client::{Client, ConnectOptions, LeaseTimeToLiveOptions};
use lock_core::{
    AcquireRequest, Backend, Capabilities, Error, FencingGuarantee, FencingToken, Grant, HoldInfo,
    HolderStatus, Key, LockStatus, NodeLoss, Result, Wait, async_trait,
};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::time::{Instant, timeout};

/// How often an acquisition starts over (with a fresh lease) when the key
/// it queued with vanished while it waited (its lease expired:
/// etcd#11456), a pooled lease turned out stale, or the request creating
/// the key went unanswered, before it reports the store unavailable.
const MAX_ATTEMPTS: usize = 3;

/// How a wait for the turn ended.
enum Waited {
    /// The contender is the oldest: it holds the lock.
    Mine,
    /// Its key is gone (its lease expired meanwhile): start over.
    Vanished,
    /// The wait ran out.
    TimedOut,
}

/// How often etcd-client's connection (the keep-alive and watch streams)
/// pings etcd to notice a member gone silent; a ping unanswered within the
/// request timeout drops the connection. No faster: etcd (gRPC's
/// enforcement policy, `--grpc-keepalive-min-time`, 5 s by default)
/// counts a ping sooner than that after the previous one, with nothing
/// written in between, as a strike, and closes the connection at the third
/// (GOAWAY `too_many_pings`). At 1 s, a hold of 30 s (a keep-alive answer
/// every 10 s) had the connection closed, and its streams reopened, every
/// few seconds. For the same reason no ping is sent while no stream is
/// open (etcd strikes every such ping).
const PING_INTERVAL: Duration = Duration::from_secs(6);

/// The first and the longest pause before a waiter asks an unanswering
/// store again.
const RETRY_FIRST: Duration = Duration::from_millis(50);
/// See [`RETRY_FIRST`].
const RETRY_MAX: Duration = Duration::from_secs(1);

/// The etcd backend: etcd-client's connection (multiplexed gRPC) to the
/// cluster for watches, leases and their one keep-alive stream, a small
/// pool of leases, and one HTTP/2 connection of its own for the lock
/// protocol's Txns and reads (driven by `h2` on the caller's task: fewer
/// task hops per request than etcd-client's channel). With TLS, those
/// Txns and reads use etcd-client's connection too.
///
/// Make it with [`EtcdBackend::connect`], or by URL through
/// [`lock_core::connect`] after [`register`](crate::register).
pub struct EtcdBackend {
    config: EtcdConfig,
    endpoints: Arc<str>,
    names: Names,
    kv: Kv,
    watches: Watches,
    loss: Arc<LossContext>,
    client: Client,
    leases: Arc<Leases>,
    caps: Capabilities,
}

impl std::fmt::Debug for EtcdBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdBackend")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

fn capabilities() -> Capabilities {
    let mut caps = Capabilities::new("etcd");
    caps.fencing = FencingGuarantee::Unconditional;
    caps.node_loss = NodeLoss::SurvivesMinority;
    caps.notifies_waiters = true;
    caps.fair = true;
    caps.ttl_granularity = Duration::from_secs(1);
    caps.cancel_cleans_up = true;
    caps
}

impl EtcdBackend {
    /// Connects to the cluster `config` names (requests need a leader:
    /// `require_leader`), and checks that it answers a linearizable read
    /// (over the connection the lock's requests will take) within the
    /// request timeout. Starts the keep-alive and lease tasks on
    /// the current Tokio runtime.
    ///
    /// Fails with [`Error::Unavailable`] naming the endpoints if the
    /// cluster does not answer.
    ///
    /// # Cancel safety
    /// Safe to drop: nothing is created in etcd before it returns.
    pub async fn connect(config: EtcdConfig) -> Result<Self> {
        let endpoints: Arc<str> = config.endpoints_text().into();
        let mut options = ConnectOptions::new()
            .with_require_leader(true)
            .with_connect_timeout(config.timeout)
            .with_keep_alive(PING_INTERVAL, config.timeout)
            .with_keep_alive_while_idle(false);
        if let Some((user, password)) = &config.user {
            options = options.with_user(user.clone(), password.clone());
        }
        #[cfg(feature = "tls")]
        if config.tls {
            options = options.with_tls(tls_options(&config)?);
        }
        let connecting = Client::connect(config.endpoint_urls(), Some(options.clone()));
        let client = timeout(config.timeout, connecting)
            .await
            .map_err(|_| errors::timed_out(&endpoints, "connecting"))?
            .map_err(|e| errors::map(&endpoints, "connecting", e))?;
        // The lock protocol's Txns and reads go over the backend's own
        // unary channel (cheaper per call: see src/unary.rs), through a
        // second client with the same options, so that etcd-client still
        // adds the leader requirement and the auth token. TLS stays on
        // etcd-client's channel.
        let kv_client = if config.tls {
            client.kv_client()
        } else {
            let connecting = Client::from_channel(unary::channel(&config), Some(options));
            timeout(config.timeout, connecting)
                .await
                .map_err(|_| errors::timed_out(&endpoints, "connecting"))?
                .map_err(|e| errors::map(&endpoints, "connecting", e))?
                .kv_client()
        };
        let kv = Kv {
            client: kv_client,
            endpoints: endpoints.clone(),
            timeout: config.timeout,
        };
        // The channel connects lazily: ask something that needs a leader
        // (asked again within the timeout while a member or the leader is
        // not ready yet).
        kv.probe(&format!("{}dlock-connect-probe", config.prefix))
            .await?;
        let keepalive = KeepAlive::start(client.lease_client(), endpoints.clone(), config.timeout);
        let leases = Leases::start(
            client.lease_client(),
            keepalive,
            endpoints.clone(),
            config.timeout,
            config.pool,
        );
        let watches = Watches::start(client.watch_client(), endpoints.clone(), config.timeout);
        let loss = Arc::new(LossContext {
            watches: watches.clone(),
            kv: kv.client.clone(),
        });
        Ok(EtcdBackend {
            names: Names::new(config.prefix.clone()),
            watches,
            loss,
            config,
            endpoints,
            kv,
            client,
            leases,
            caps: capabilities(),
        })
    }

    /// The configuration it was made with.
    pub fn config(&self) -> &EtcdConfig {
        &self.config
    }

    /// The etcd-client connection, for reading or writing etcd beside the
    /// locks (it requires a leader). It is etcd-client's own channel, not
    /// the one the lock protocol's Txns take.
    pub fn client(&self) -> &Client {
        &self.client
    }

    pub(crate) fn kv(&self) -> &Kv {
        &self.kv
    }

    /// The etcd key range of `key`'s contenders: `PREFIX KEY /`.
    pub fn contender_prefix(&self, key: &Key) -> String {
        self.names.dir(key)
    }

    /// One attempt at a hold: `Ok(Err(()))` means "start over with a fresh
    /// lease" (the queued key vanished, or a pooled lease was stale).
    async fn attempt(
        &self,
        req: &AcquireRequest,
        pooled: bool,
    ) -> Result<std::result::Result<Option<Grant>, ()>> {
        let class = Leases::class_of(req.ttl.get());
        self.leases.want_pool(class);
        let lease = self.leases.take(class, pooled).await?;
        // From here, a drop (cancel) or an error revokes the lease, which
        // deletes the contender key if it was created.
        let mut guard = LeaseGuard {
            leases: &self.leases,
            id: lease.id,
            armed: true,
        };
        let dir = self.names.dir(&req.key);
        let key = self.names.holder(&req.key, lease.id);
        let (rev, first) = match self.kv.enqueue(&dir, &key, lease.id).await {
            Ok(Enqueued::Created { rev, first }) => (rev, first),
            Ok(Enqueued::Existed) => return Ok(Err(())),
            Err(Error::Backend {
                source: Some(source),
                ..
            }) if source.to_string().contains("lease not found") => return Ok(Err(())),
            // Unanswered (a leader change can swallow a request): the key
            // may exist. Start over with a fresh lease; this one is revoked,
            // and its key with it.
            Err(e) if e.is_retryable() => {
                tracing::debug!(%key, error = %e, "creating the contender key: no answer; starting over");
                return Ok(Err(()));
            }
            Err(e) => return Err(e),
        };
        let mut lease = lease;
        if first != rev {
            match self.wait_turn(req, &dir, &key, rev).await? {
                Waited::Mine => {}
                Waited::Vanished => {
                    tracing::debug!(%key, "contender key vanished while waiting; starting over");
                    return Ok(Err(()));
                }
                Waited::TimedOut => {
                    // Timed out (or a try): leave the queue, and keep the
                    // lease if that worked; else the guard revokes it (in
                    // the background), which removes the key as well.
                    if let Ok(true) = self.kv.delete_if(&key, rev).await {
                        guard.armed = false;
                        self.leases.give_back(lease.id);
                    }
                    return Ok(Ok(None));
                }
            }
            // The hold's validity counts from the lease's last confirmed
            // refresh: after a long wait, refresh it first.
            let Some(current) = self.leases.lease(lease.id) else {
                return Ok(Err(()));
            };
            lease = current;
            if lease.refreshed + lease.ttl / 2 <= Instant::now() {
                match self.leases.refresh(&[lease.id]).await.pop() {
                    Some(Ok(true)) => {}
                    Some(Ok(false)) => return Ok(Err(())),
                    Some(Err(e)) => return Err(e),
                    None => return Err(errors::unexpected(&self.endpoints, "keep-alive")),
                }
            }
        }
        let Some((lease, releasing)) = self.leases.held(lease.id, rev) else {
            // The upkeep task found the lease gone while we waited.
            return Ok(Err(()));
        };
        guard.armed = false;
        let lost = watch::loss(self.loss.clone(), key.clone(), rev, releasing);
        Ok(Ok(Some(grant(lease, rev, key, Box::pin(lost)))))
    }

    /// Waits until the contender created at `rev` is the oldest: watches
    /// only its immediate predecessor until that is deleted, then looks
    /// again (one Txn that also confirms its own key is still there). Ends
    /// [`Waited::TimedOut`] if the wait runs out first (at once for
    /// [`Wait::No`]). A store that does not answer (a leader change, a
    /// member gone) is asked again with backoff until the wait runs out:
    /// the contender key's lease is kept alive meanwhile.
    async fn wait_turn(
        &self,
        req: &AcquireRequest,
        dir: &str,
        key: &str,
        rev: i64,
    ) -> Result<Waited> {
        let deadline = match req.wait {
            Wait::No => return Ok(Waited::TimedOut),
            Wait::Until(t) => Some(t),
            Wait::Forever => None,
        };
        let mut backoff = RETRY_FIRST;
        loop {
            let step = async {
                let (pred, pred_rev, seen) = match self.kv.turn(dir, key, rev).await? {
                    Turn::After(pred, pred_rev, seen) => (pred, pred_rev, seen),
                    Turn::Mine => return Ok::<_, Error>(Some(Waited::Mine)),
                    Turn::Vanished => return Ok(Some(Waited::Vanished)),
                };
                tracing::trace!(%key, %pred, "waiting for the predecessor");
                let still_there = async {
                    let present = self.kv.present(&[(pred.as_str(), pred_rev)]).await?;
                    Ok(present.first().copied().unwrap_or(false))
                };
                match watch::deleted(
                    &self.watches,
                    &self.endpoints,
                    &pred,
                    seen,
                    still_there,
                    deadline,
                )
                .await?
                {
                    Deleted::LookAgain => Ok(None),
                    Deleted::TimedOut => Ok(Some(Waited::TimedOut)),
                }
            };
            match step.await {
                Ok(Some(done)) => return Ok(done),
                Ok(None) => backoff = RETRY_FIRST,
                Err(e) if e.is_retryable() => {
                    tracing::debug!(%key, error = %e, "waiting: etcd did not answer; asking again");
                    let next = Instant::now() + backoff;
                    if deadline.is_some_and(|d| next >= d) {
                        return Ok(Waited::TimedOut);
                    }
                    tokio::time::sleep_until(next).await;
                    backoff = (backoff * 2).min(RETRY_MAX);
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// The TLS settings of `config`: the platform's roots, `cacert=` if given,
/// and the client certificate if given. A file that cannot be read is
/// [`Error::InvalidConfig`] naming it.
#[cfg(feature = "tls")]
fn tls_options(config: &EtcdConfig) -> Result<etcd_client::TlsOptions> {
    let read = |what: &str, path: &std::path::Path| {
        std::fs::read(path)
            .map_err(|e| Error::config(format!("cannot read {what} {}: {e}", path.display())))
    };
    let mut tls = etcd_client::TlsOptions::new().with_enabled_roots();
    if let Some(path) = &config.ca_cert {
        tls = tls.ca_certificate(etcd_client::Certificate::from_pem(read("cacert", path)?));
    }
    if let Some((cert, key)) = &config.client_cert {
        tls = tls.identity(etcd_client::Identity::from_pem(
            read("cert", cert)?,
            read("key", key)?,
        ));
    }
    Ok(tls)
}

fn grant(lease: Lease, rev: i64, key: String, lost: lock_core::LossSignal) -> Grant {
    Grant {
        token: FencingToken(rev.unsigned_abs()),
        ttl: lease.ttl,
        // The lease's last confirmed refresh was sent then: etcd expires it
        // no sooner than a ttl after that, whatever the Txn took.
        valid_from: lease.refreshed,
        handle: key,
        lost: Some(lost),
    }
}

/// Revokes an acquisition's lease if the acquisition does not finish
/// (dropped, failed): its contender key goes with it.
struct LeaseGuard<'a> {
    leases: &'a Leases,
    id: i64,
    armed: bool,
}

impl Drop for LeaseGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.leases.discard(self.id);
        }
    }
}

#[async_trait]
impl Backend for EtcdBackend {
    fn capabilities(&self) -> &Capabilities {
        &self.caps
    }

    /// Queues a contender key (with a pooled lease: one round trip when
    /// the lock is free), waits for its turn by watching its predecessor,
    /// confirms its key survived the wait, and grants with the key's create
    /// revision as token.
    ///
    /// # Cancel safety
    /// If dropped, the acquisition's lease is revoked in the background at
    /// once, which deletes its contender key (and so wakes its successor).
    async fn acquire(&self, req: &AcquireRequest) -> Result<Option<Grant>> {
        for attempt in 0..MAX_ATTEMPTS {
            if let Ok(outcome) = self.attempt(req, attempt == 0).await? {
                return Ok(outcome);
            }
            // A wait that ran out is a timeout; a try (`Wait::No`) keeps
            // trying, and then reports the store, never "held by someone".
            if matches!(req.wait, Wait::Until(_)) && req.wait.expired(Instant::now()) {
                return Ok(None);
            }
        }
        Err(Error::unavailable(format!(
            "etcd at {}: could not queue for {:?} (requests unanswered, or the contender key \
             vanished with its lease)",
            self.endpoints,
            req.key.as_str()
        )))
    }

    /// Sends one keep-alive per hold's lease, all on the backend's one
    /// keep-alive stream, and at the same time reads every holder key (one
    /// Txn per 128): a lease etcd no longer has, or a holder key deleted or
    /// replaced, is [`Error::NotHeld`]. One round trip for the batch.
    ///
    /// # Cancel safety
    /// If dropped, some leases may have been refreshed; harmless.
    async fn renew(&self, holds: &[Arc<HoldInfo>]) -> Vec<Result<()>> {
        let parsed: Vec<Option<(i64, i64)>> = holds
            .iter()
            .map(|h| Some((lease_of(&h.handle)?, i64::try_from(h.token.0).ok()?)))
            .collect();
        let leases: Vec<i64> = parsed.iter().flatten().map(|(lease, _)| *lease).collect();
        let keys: Vec<(&str, i64)> = holds
            .iter()
            .zip(&parsed)
            .filter_map(|(h, p)| p.map(|(_, rev)| (h.handle.as_str(), rev)))
            .collect();
        // The flags that silence each hold's loss watch: a hold this renewal
        // finds gone is reported here, and the locker must not hear of it a
        // second time from the watch (it may hold the key anew by then).
        let quiet: Vec<_> = parsed
            .iter()
            .map(|p| p.and_then(|(lease, rev)| self.leases.releasing(lease, rev)))
            .collect();
        let (alive, present) =
            futures::future::join(self.leases.refresh(&leases), self.kv.present(&keys)).await;
        let present = present.map_err(|e| e.to_string());
        let mut alive = alive.into_iter();
        let mut i = 0;
        let results: Vec<Result<()>> = holds
            .iter()
            .zip(parsed)
            .map(|(hold, p)| {
                let Some((lease, rev)) = p else {
                    return Err(hold.not_held());
                };
                let here = i;
                i += 1;
                match alive.next() {
                    Some(Ok(true)) => {}
                    Some(Ok(false)) => return Err(hold.not_held()),
                    Some(Err(e)) => return Err(e),
                    None => return Err(errors::unexpected(&self.endpoints, "keep-alive")),
                }
                match &present {
                    Ok(present) if present.get(here) == Some(&true) => Ok(()),
                    Ok(_) => {
                        self.leases.discard_hold(lease, rev);
                        Err(hold.not_held())
                    }
                    Err(why) => Err(Error::unavailable(why.clone())),
                }
            })
            .collect();
        for (result, flag) in results.iter().zip(quiet) {
            if let (Err(Error::NotHeld { .. }), Some(flag)) = (result, flag) {
                flag.store(true, Ordering::Release);
            }
        }
        results
    }

    /// At the last count, deletes the holder key if it still has the
    /// hold's create revision (so a stale release never deletes a newer
    /// hold), and returns the lease to the pool.
    ///
    /// # Cancel safety
    /// If dropped, the key may or may not be deleted; the locker retries,
    /// and a retry after a deletion answers [`Error::NotHeld`].
    async fn release(&self, hold: &HoldInfo, count: u32) -> Result<()> {
        if count > 1 {
            return Ok(());
        }
        let Some(lease) = lease_of(&hold.handle) else {
            return Err(hold.not_held());
        };
        let rev = i64::try_from(hold.token.0).map_err(|_| hold.not_held())?;
        if let Some(flag) = self.leases.releasing(lease, rev) {
            flag.store(true, Ordering::Release);
        }
        if self.kv.delete_if(&hold.handle, rev).await? {
            self.leases.give_back(lease);
            Ok(())
        } else {
            // Gone already (expired, deleted behind our back): etcd is left
            // untouched. The lease, if it lives and carries no newer hold,
            // holds nothing of ours.
            self.leases.discard_hold(lease, rev);
            Err(hold.not_held())
        }
    }

    /// The oldest contender (the holder) with its token, lease and time
    /// left; every other contender counts as a waiter.
    ///
    /// # Cancel safety
    /// Read-only.
    async fn status(&self, key: &Key) -> Result<LockStatus> {
        let contenders = self.kv.contenders(&self.names.dir(key)).await?;
        let mut status = LockStatus::free(key.clone());
        status.waiters = Some(contenders.len().saturating_sub(1));
        if let Some(first) = contenders.first() {
            let mut holder = HolderStatus::new(None);
            holder.token = Some(FencingToken(first.create_revision().unsigned_abs()));
            let lease = first.lease();
            let name = String::from_utf8_lossy(first.key()).into_owned();
            holder.detail = Some(if lease != 0 {
                format!("key {name:?}, lease {lease:x}")
            } else {
                format!("key {name:?}, no lease (foreign data)")
            });
            if lease != 0 {
                let mut client = self.client.lease_client();
                let ask = client.time_to_live(lease, Some(LeaseTimeToLiveOptions::new()));
                if let Ok(Ok(ttl)) = timeout(self.config.timeout, ask).await
                    && ttl.ttl() >= 0
                {
                    holder.remaining = Some(Duration::from_secs(ttl.ttl().unsigned_abs()));
                }
            }
            status.holders.push(holder);
        }
        Ok(status)
    }
}

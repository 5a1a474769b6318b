//! The requests of etcd's `concurrency.Mutex` protocol, one function each.

use crate::errors;
use crate::names::is_contender;
use etcd_client::{
    Compare, CompareOp, GetOptions, KeyValue, KvClient, PutOptions, SortOrder, SortTarget, Txn,
    TxnOp, TxnOpResponse,
};
use lock_core::Result;
use std::time::Duration;
use tokio::time::{Instant, sleep, timeout_at};

/// One client of the protocol: a KV client, its endpoints for messages,
/// and the per-request timeout.
#[derive(Clone)]
pub(crate) struct Kv {
    pub(crate) client: KvClient,
    pub(crate) endpoints: std::sync::Arc<str>,
    pub(crate) timeout: Duration,
}

/// Where a waiting contender stands.
#[derive(Debug)]
pub(crate) enum Turn {
    /// Behind this key (its predecessor, created at the first revision),
    /// seen at the second revision.
    After(String, i64, i64),
    /// Its turn: no contender before it, and its key is there.
    Mine,
    /// Its key is gone.
    Vanished,
}

/// How often a guarded delete is sent when its answers are lost.
const DELETE_TRIES: usize = 3;

/// etcd's default limit on the operations of one Txn (`--max-txn-ops`).
const MAX_TXN_OPS: usize = 128;

/// What creating (or finding) the contender key found.
#[derive(Debug)]
pub(crate) enum Enqueued {
    /// The key was created at this revision; `first` is the create revision
    /// of the oldest contender (ours if we hold the lock).
    Created { rev: i64, first: i64 },
    /// The key already existed (a lease reused while its old key was still
    /// there): nothing was written.
    Existed,
}

/// The oldest contender first, keys only.
fn first_create(limit: i64) -> GetOptions {
    GetOptions::new()
        .with_prefix()
        .with_sort(SortTarget::Create, SortOrder::Ascend)
        .with_keys_only()
        .with_limit(limit)
}

impl Kv {
    /// Runs one request with the request timeout. A request etcd never
    /// received or refused before proposing it (no connection to a member
    /// that is gone, no leader during an election) is sent again within
    /// the timeout; other failures are returned, except for `read`s, which
    /// are always safe to send again.
    async fn run<T, F>(&self, what: &str, read: bool, mut send: impl FnMut() -> F) -> Result<T>
    where
        F: Future<Output = std::result::Result<T, etcd_client::Error>>,
    {
        let deadline = Instant::now() + self.timeout;
        let mut pause = Duration::from_millis(20);
        loop {
            let e = match timeout_at(deadline, send()).await {
                Err(_) => return Err(errors::timed_out(&self.endpoints, what)),
                Ok(Ok(v)) => return Ok(v),
                Ok(Err(e)) => e,
            };
            let again = errors::not_sent(&e) || (read && errors::is_unreachable(&e));
            if !again || Instant::now() + pause >= deadline {
                return Err(errors::map(&self.endpoints, what, e));
            }
            tracing::debug!(error = %e, "{what}: sending again");
            sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(200));
        }
    }

    /// Creates `key` with `lease` and an empty value if it does not exist,
    /// and reads the oldest contender under `dir`, in ONE Txn (as Go's
    /// `Mutex.tryAcquire`, without its reads when the key exists: this
    /// crate never adopts an existing key).
    ///
    /// # Cancel safety
    /// If dropped, the key may have been created; revoking the lease
    /// removes it.
    pub(crate) async fn enqueue(&self, dir: &str, key: &str, lease: i64) -> Result<Enqueued> {
        let txn = Txn::new()
            .when([Compare::create_revision(key, CompareOp::Equal, 0)])
            .and_then([
                TxnOp::put(key, "", Some(PutOptions::new().with_lease(lease))),
                TxnOp::get(dir, Some(first_create(1))),
            ]);
        let resp = self
            .run("creating the contender key", false, || {
                let (mut c, txn) = (self.client.clone(), txn.clone());
                async move { c.txn(txn).await }
            })
            .await?;
        if !resp.succeeded() {
            return Ok(Enqueued::Existed);
        }
        let rev = resp
            .header()
            .map(|h| h.revision())
            .ok_or_else(|| errors::unexpected(&self.endpoints, "the acquire Txn"))?;
        let oldest = match resp.op_responses().get(1) {
            Some(TxnOpResponse::Get(get)) => get.kvs().first().cloned(),
            _ => return Err(errors::unexpected(&self.endpoints, "the acquire Txn")),
        };
        let first = match oldest {
            Some(kv) if is_contender(dir, kv.key()) => kv.create_revision(),
            // A deeper lock's key came first: read the contenders properly.
            _ => self
                .contenders(dir)
                .await?
                .first()
                .map_or(rev, KeyValue::create_revision),
        };
        Ok(Enqueued::Created { rev, first })
    }

    /// A linearizable read of `key` (count only): whether the cluster
    /// answers, with a leader.
    ///
    /// # Cancel safety
    /// Read-only.
    pub(crate) async fn probe(&self, key: &str) -> Result<()> {
        self.run("connecting", true, || {
            let mut c = self.client.clone();
            async move { c.get(key, Some(GetOptions::new().with_count_only())).await }
        })
        .await
        .map(drop)
    }

    /// Every contender under `dir`, oldest first.
    ///
    /// # Cancel safety
    /// Read-only.
    pub(crate) async fn contenders(&self, dir: &str) -> Result<Vec<KeyValue>> {
        let resp = self
            .run("listing contenders", true, || {
                let mut c = self.client.clone();
                async move { c.get(dir, Some(first_create(0))).await }
            })
            .await?;
        Ok(resp
            .kvs()
            .iter()
            .filter(|kv| is_contender(dir, kv.key()))
            .cloned()
            .collect())
    }

    /// Where the contender `key`, created at `rev`, stands, in ONE Txn of
    /// two reads (one snapshot): its immediate predecessor (the newest
    /// contender created before it), with that key's create revision and
    /// the revision at which it was seen; or its turn; or its key gone (its
    /// lease expired while it waited: it must not take the lock,
    /// etcd#11456).
    ///
    /// # Cancel safety
    /// Read-only.
    pub(crate) async fn turn(&self, dir: &str, key: &str, rev: i64) -> Result<Turn> {
        let newest_before = GetOptions::new()
            .with_prefix()
            .with_sort(SortTarget::Create, SortOrder::Descend)
            .with_max_create_revision(rev - 1)
            .with_keys_only()
            .with_limit(1);
        let txn = Txn::new().and_then([
            TxnOp::get(dir, Some(newest_before)),
            TxnOp::get(key, Some(GetOptions::new().with_keys_only())),
        ]);
        let resp = self
            .run("finding the predecessor", true, || {
                let (mut c, txn) = (self.client.clone(), txn.clone());
                async move { c.txn(txn).await }
            })
            .await?;
        let seen = resp.header().map_or(0, |h| h.revision());
        let (before, own) = match resp.op_responses().as_slice() {
            [TxnOpResponse::Get(before), TxnOpResponse::Get(own)] => {
                (before.kvs().first().cloned(), own.kvs().first().cloned())
            }
            _ => return Err(errors::unexpected(&self.endpoints, "the predecessor Txn")),
        };
        if own.is_none_or(|kv| kv.create_revision() != rev) {
            return Ok(Turn::Vanished);
        }
        let newest = match before {
            None => None,
            Some(kv) if is_contender(dir, kv.key()) => {
                Some((kv.key().to_vec(), kv.create_revision()))
            }
            Some(_) => {
                // A deeper lock's key is newest: filter the full list.
                self.contenders(dir)
                    .await?
                    .iter()
                    .rev()
                    .find(|kv| kv.create_revision() < rev)
                    .map(|kv| (kv.key().to_vec(), kv.create_revision()))
            }
        };
        Ok(match newest {
            Some((k, created)) => {
                Turn::After(String::from_utf8_lossy(&k).into_owned(), created, seen)
            }
            None => Turn::Mine,
        })
    }

    /// For each `(key, rev)`, whether `key` exists with create revision
    /// `rev`: one Txn of reads per [`MAX_TXN_OPS`] keys, all sent at once.
    ///
    /// # Cancel safety
    /// Read-only.
    pub(crate) async fn present(&self, keys: &[(&str, i64)]) -> Result<Vec<bool>> {
        let reads = keys.chunks(MAX_TXN_OPS).map(|chunk| {
            let ops: Vec<TxnOp> = chunk
                .iter()
                .map(|(key, _)| TxnOp::get(*key, Some(GetOptions::new().with_keys_only())))
                .collect();
            self.run("checking holder keys", true, move || {
                let (mut c, ops) = (self.client.clone(), ops.clone());
                async move { c.txn(Txn::new().and_then(ops)).await }
            })
        });
        let mut present = Vec::with_capacity(keys.len());
        let mut wanted = keys.iter();
        for resp in futures::future::join_all(reads).await {
            for op in resp?.op_responses() {
                let Some((_, rev)) = wanted.next() else {
                    return Err(errors::unexpected(&self.endpoints, "checking holder keys"));
                };
                present.push(match op {
                    TxnOpResponse::Get(get) => get
                        .kvs()
                        .first()
                        .is_some_and(|kv| kv.create_revision() == *rev),
                    _ => return Err(errors::unexpected(&self.endpoints, "checking holder keys")),
                });
            }
        }
        if present.len() != keys.len() {
            return Err(errors::unexpected(&self.endpoints, "checking holder keys"));
        }
        Ok(present)
    }

    /// Runs a Txn that writes (sent again only if etcd never got it).
    ///
    /// # Cancel safety
    /// If dropped, the Txn may or may not have been applied.
    pub(crate) async fn txn(&self, what: &str, txn: Txn) -> Result<etcd_client::TxnResponse> {
        self.run(what, false, || {
            let (mut c, txn) = (self.client.clone(), txn.clone());
            async move { c.txn(txn).await }
        })
        .await
    }

    /// Deletes `key` only if it still has create revision `rev`: a stale
    /// delete never removes a newer hold of the same lease (etcd#22082).
    /// Returns whether the key is gone by this call's doing: deleted now,
    /// or absent after an earlier try of this call whose answer was lost (a
    /// leader change can swallow a request; the guard makes a second try
    /// safe).
    ///
    /// # Cancel safety
    /// If dropped, the key may or may not have been deleted; a retry is
    /// safe (it deletes at most that one hold).
    pub(crate) async fn delete_if(&self, key: &str, rev: i64) -> Result<bool> {
        let txn = Txn::new()
            .when([Compare::create_revision(key, CompareOp::Equal, rev)])
            .and_then([TxnOp::delete(key, None)]);
        let mut unsure = false;
        let mut tries = 0;
        loop {
            tries += 1;
            let sent = self
                .run("deleting the holder key", false, || {
                    let (mut c, txn) = (self.client.clone(), txn.clone());
                    async move { c.txn(txn).await }
                })
                .await;
            match sent {
                Ok(resp) => return Ok(resp.succeeded() || unsure),
                Err(e) if e.is_retryable() && tries < DELETE_TRIES => unsure = true,
                Err(e) => return Err(e),
            }
        }
    }
}

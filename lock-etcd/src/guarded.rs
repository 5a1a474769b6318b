//! Writes to etcd that take effect only while a hold is current: fencing
//! inside etcd itself, with the holder key's create revision as the guard.

use crate::EtcdBackend;
use crate::errors;
use etcd_client::{Compare, CompareOp, Txn, TxnOp, TxnResponse};
use lock_core::{HoldInfo, Result};

impl EtcdBackend {
    /// Runs `ops` in one Txn that applies only if `hold`'s holder key still
    /// exists with the hold's create revision (its fencing token): a holder
    /// that lost its lock, however late it wakes up, writes nothing.
    /// Fails with [`Error::NotHeld`](lock_core::Error::NotHeld) (nothing written) when the hold is not
    /// current.
    ///
    /// Take `hold` from [`LockGuard::info`](lock_core::LockGuard::info) of a
    /// guard from a locker over this backend (build it with
    /// `Locker::builder(Arc::clone(&backend))` to keep the backend at hand).
    ///
    /// # Examples
    /// ```no_run
    /// # async fn demo(backend: std::sync::Arc<lock_etcd::EtcdBackend>) -> lock_core::Result<()> {
    /// use etcd_client::TxnOp;
    /// let locker = lock_core::Locker::new(backend.clone());
    /// let guard = locker.lock("ledger").await?;
    /// backend
    ///     .txn_if_held(guard.info(), vec![TxnOp::put("ledger/balance", "42", None)])
    ///     .await?;
    /// guard.release().await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Cancel safety
    /// If dropped, the Txn may or may not have been applied (atomically:
    /// all of `ops` or none).
    pub async fn txn_if_held(&self, hold: &HoldInfo, ops: Vec<TxnOp>) -> Result<TxnResponse> {
        let rev = i64::try_from(hold.token.0).map_err(|_| hold.not_held())?;
        let txn = Txn::new()
            .when([Compare::create_revision(
                hold.handle.as_str(),
                CompareOp::Equal,
                rev,
            )])
            .and_then(ops);
        let resp = self.kv().txn("a guarded write", txn).await?;
        if resp.succeeded() {
            Ok(resp)
        } else {
            Err(hold.not_held())
        }
    }

    /// Puts `key` = `value` only while `hold` is current; see
    /// [`txn_if_held`](Self::txn_if_held).
    ///
    /// # Cancel safety
    /// If dropped, the put may or may not have been applied.
    pub async fn put_if_held(
        &self,
        hold: &HoldInfo,
        key: impl Into<Vec<u8>>,
        value: impl Into<Vec<u8>>,
    ) -> Result<()> {
        self.txn_if_held(hold, vec![TxnOp::put(key, value, None)])
            .await
            .map(drop)
    }

    /// Deletes `key` only while `hold` is current; see
    /// [`txn_if_held`](Self::txn_if_held). Returns whether there was a key.
    ///
    /// # Cancel safety
    /// If dropped, the delete may or may not have been applied.
    pub async fn delete_if_held(&self, hold: &HoldInfo, key: impl Into<Vec<u8>>) -> Result<bool> {
        let resp = self
            .txn_if_held(hold, vec![TxnOp::delete(key, None)])
            .await?;
        match resp.op_responses().first() {
            Some(etcd_client::TxnOpResponse::Delete(d)) => Ok(d.deleted() > 0),
            _ => Err(errors::unexpected(
                &self.config().endpoints_text(),
                "a guarded delete",
            )),
        }
    }
}

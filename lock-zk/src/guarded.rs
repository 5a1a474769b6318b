//! Writes that ZooKeeper itself refuses once the lock is gone: a multi that
//! checks the hold's node still exists, then writes.

use crate::backend::ZkBackend;
use crate::error::{is_session_over, to_error};
use lock_core::{Error, HoldInfo, Result};
use zookeeper_client as zk;

impl ZkBackend {
    /// Sets `data` on the node `path` only if the hold is still in the
    /// store: one multi that checks the hold's node exists, then sets the
    /// data (with `expected_version`, if given). Returns the node's new
    /// stat.
    ///
    /// Stronger than a fencing token where the resource is ZooKeeper
    /// itself: the check and the write are one transaction.
    ///
    /// # Errors
    /// [`Error::NotHeld`] if the hold's node is gone or its session over
    /// (nothing was written);
    /// [`Error::Unavailable`] if the ensemble cannot be reached (the write
    /// may or may not have happened); [`Error::Backend`] for the write's
    /// own failure (e.g. no such node, bad version).
    ///
    /// # Cancel safety
    /// If dropped, the write may or may not have happened, as for any
    /// ZooKeeper write.
    ///
    /// # Examples
    /// ```no_run
    /// # async fn demo(backend: std::sync::Arc<lock_zk::ZkBackend>) -> lock_core::Result<()> {
    /// let locker = lock_core::Locker::new(backend.clone());
    /// let guard = locker.lock("config").await?;
    /// backend.guarded_set_data(guard.info(), "/app/config", b"v2", None).await?;
    /// guard.release().await?;
    /// # Ok(()) }
    /// ```
    pub async fn guarded_set_data(
        &self,
        hold: &HoldInfo,
        path: &str,
        data: &[u8],
        expected_version: Option<i32>,
    ) -> Result<zk::Stat> {
        let (client, lock) = self.guard_of(hold)?;
        let mut writer = client
            .new_check_writer(&lock, None)
            .map_err(|e| Error::backend_from(format!("bad lock path {lock}"), e))?;
        writer
            .add_set_data(path, data, expected_version)
            .map_err(|e| Error::backend_from(format!("bad path {path}"), e))?;
        match writer.commit().await {
            Ok(mut results) if !results.is_empty() => match results.remove(0) {
                zk::MultiWriteResult::SetData { stat } => Ok(stat),
                other => Err(Error::backend(format!(
                    "guarded write to {path}: unexpected result {other:?}"
                ))),
            },
            Ok(_) => Err(Error::backend(format!(
                "guarded write to {path}: no result"
            ))),
            Err(e) => Err(self.check_error(hold, path, e)),
        }
    }

    /// Creates the node `path` with `data` and `mode` only if the hold is
    /// still in the store (one multi, as
    /// [`guarded_set_data`](Self::guarded_set_data)). Returns the created
    /// node's path.
    ///
    /// # Errors
    /// As [`guarded_set_data`](Self::guarded_set_data).
    ///
    /// # Cancel safety
    /// As [`guarded_set_data`](Self::guarded_set_data).
    pub async fn guarded_create(
        &self,
        hold: &HoldInfo,
        path: &str,
        data: &[u8],
        mode: zk::CreateMode,
    ) -> Result<String> {
        let (client, lock) = self.guard_of(hold)?;
        let mut writer = client
            .new_check_writer(&lock, None)
            .map_err(|e| Error::backend_from(format!("bad lock path {lock}"), e))?;
        writer
            .add_create(path, data, &mode.with_acls(zk::Acls::anyone_all()))
            .map_err(|e| Error::backend_from(format!("bad path {path}"), e))?;
        match writer.commit().await {
            Ok(mut results) if !results.is_empty() => match results.remove(0) {
                zk::MultiWriteResult::Create { path, .. } => Ok(path),
                other => Err(Error::backend(format!(
                    "guarded create of {path}: unexpected result {other:?}"
                ))),
            },
            Ok(_) => Err(Error::backend(format!(
                "guarded create of {path}: no result"
            ))),
            Err(e) => Err(self.check_error(hold, path, e)),
        }
    }

    fn guard_of(&self, hold: &HoldInfo) -> Result<(zk::Client, String)> {
        let node = self
            .inner
            .holds
            .get(&hold.handle)
            .filter(|n| n.token == hold.token.get())
            .ok_or_else(|| Error::NotHeld {
                key: hold.key.as_str().to_owned(),
                owner: hold.owner.as_str().to_owned(),
            })?;
        Ok((node.session.client.clone(), node.path.clone()))
    }

    fn check_error(&self, hold: &HoldInfo, path: &str, e: zk::CheckWriteError) -> Error {
        match e {
            zk::CheckWriteError::CheckFailed { .. } => Error::NotHeld {
                key: hold.key.as_str().to_owned(),
                owner: hold.owner.as_str().to_owned(),
            },
            // The session that owned the node is over: so is the node.
            zk::CheckWriteError::RequestFailed { source } if is_session_over(&source) => {
                Error::NotHeld {
                    key: hold.key.as_str().to_owned(),
                    owner: hold.owner.as_str().to_owned(),
                }
            }
            zk::CheckWriteError::RequestFailed { source } => to_error(
                self.inner.sessions.servers(),
                &format!("guarded write to {path}"),
                source,
            ),
            zk::CheckWriteError::OperationFailed { source, .. } => {
                Error::backend_from(format!("guarded write to {path}: {source}"), source)
            }
        }
    }
}

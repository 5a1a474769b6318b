//! A dlock backend, through `lock_core::Locker` (what users call).

use crate::subject::{Hold, Kind, Subject};
use async_trait::async_trait;
use lock_core::{LockGuard, Locker};

/// A dlock backend opened from its URL.
pub struct DlockSubject {
    name: &'static str,
    kind: Kind,
    locker: Locker,
}

impl DlockSubject {
    /// Opens `url` with `lock_core::connect` (schemes registered by
    /// [`crate::backends::register_all`]).
    pub async fn connect(name: &'static str, url: &str) -> anyhow::Result<DlockSubject> {
        let locker = lock_core::connect(url)
            .await
            .map_err(|e| anyhow::anyhow!("{name}: connecting to {url}: {e}"))?;
        Ok(DlockSubject {
            name,
            kind: Kind::Dlock,
            locker,
        })
    }

    /// The same subject, reported as a [`Kind::Baseline`] for another
    /// backend.
    pub fn as_baseline(self) -> DlockSubject {
        DlockSubject {
            kind: Kind::Baseline,
            ..self
        }
    }
}

#[async_trait]
impl Subject for DlockSubject {
    fn name(&self) -> &str {
        self.name
    }

    fn kind(&self) -> Kind {
        self.kind
    }

    async fn lock(&self, key: &str) -> anyhow::Result<Hold> {
        let guard = self.locker.lock(key).await?;
        Ok(Hold::new(guard))
    }

    async fn unlock(&self, hold: Hold) -> anyhow::Result<()> {
        hold.take::<LockGuard>()?.release().await?;
        Ok(())
    }
}

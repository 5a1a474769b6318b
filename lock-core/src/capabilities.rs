//! What a backend guarantees ([`Capabilities`], SPEC "Capabilities"), and
//! what a caller requires of it ([`Requirements`]), checked when the locker is
//! built rather than discovered in production.

use crate::{Error, Result};
use std::fmt;
use std::time::Duration;

/// How far a backend's fencing tokens keep increasing (SPEC item 3), weakest
/// first, so `a >= b` means "a guarantees at least what b does".
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum FencingGuarantee {
    /// Monotonic while the one store keeps its data (single Redis: a restart
    /// without persistence, or a failover to an asynchronous replica, can
    /// move the counter back).
    WhileStoreKeepsData,
    /// Monotonic while a majority of the store's nodes keep their data
    /// (Redlock).
    WhileMajorityKeepsData,
    /// Monotonic without condition (a consensus store, or one process).
    Unconditional,
}

impl fmt::Display for FencingGuarantee {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FencingGuarantee::WhileStoreKeepsData => "monotonic while the store keeps its data",
            FencingGuarantee::WhileMajorityKeepsData => {
                "monotonic while a majority of nodes keep their data"
            }
            FencingGuarantee::Unconditional => "monotonic without condition",
        })
    }
}

/// What happens to held locks when a store node is lost.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum NodeLoss {
    /// The store runs inside this process; there is no node to lose.
    NotApplicable,
    /// Losing the one node loses every lock.
    NotSurvived,
    /// Locks survive the loss of a minority of nodes.
    SurvivesMinority,
}

impl fmt::Display for NodeLoss {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NodeLoss::NotApplicable => "in-process store (no nodes)",
            NodeLoss::NotSurvived => "does not survive the loss of its node",
            NodeLoss::SurvivesMinority => "survives the loss of a minority of nodes",
        })
    }
}

/// How a backend describes itself. Each backend crate's docs open with the
/// same facts as a table.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Capabilities {
    /// The backend's name, as in its URL scheme (`memory`, `redis`, ...).
    pub name: &'static str,
    /// How far fencing tokens stay monotonic.
    pub fencing: FencingGuarantee,
    /// What losing a store node does.
    pub node_loss: NodeLoss,
    /// Whether waiters are woken by the store's own notification (pub/sub,
    /// watch) rather than by polling.
    pub notifies_waiters: bool,
    /// Whether waiters are granted in arrival order.
    pub fair: bool,
    /// The store's ttl unit: effective ttls are rounded up to a multiple of
    /// it (1 ms for Redis, 1 s for etcd).
    pub ttl_granularity: Duration,
    /// Whether a `lock` future dropped midway removes everything it created
    /// in the store at once (true), or may leave an entry that expires within
    /// one ttl (false). Never reported as held either way.
    pub cancel_cleans_up: bool,
}

impl Capabilities {
    /// Capabilities with the given name and the weakest guarantees; backends
    /// set what they offer on top (the struct is `#[non_exhaustive]`).
    pub fn new(name: &'static str) -> Self {
        Capabilities {
            name,
            fencing: FencingGuarantee::WhileStoreKeepsData,
            node_loss: NodeLoss::NotSurvived,
            notifies_waiters: false,
            fair: false,
            ttl_granularity: Duration::from_millis(1),
            cancel_cleans_up: false,
        }
    }

    /// Checks `required` against these capabilities; fails with
    /// [`Error::InvalidConfig`] naming every missing guarantee.
    pub fn check(&self, required: &Requirements) -> Result<()> {
        let mut missing = Vec::new();
        if let Some(need) = required.fencing
            && self.fencing < need
        {
            missing.push(format!("fencing {need} (it offers: {})", self.fencing));
        }
        if required.survives_node_loss && self.node_loss != NodeLoss::SurvivesMinority {
            missing.push(format!(
                "surviving the loss of a store node (it {})",
                self.node_loss
            ));
        }
        if required.fair && !self.fair {
            missing.push("fair (arrival-order) waiting".to_owned());
        }
        if required.notifies_waiters && !self.notifies_waiters {
            missing.push("waking waiters by notification".to_owned());
        }
        if missing.is_empty() {
            Ok(())
        } else {
            Err(Error::InvalidConfig(format!(
                "backend `{}` lacks required guarantees: {}",
                self.name,
                missing.join("; ")
            )))
        }
    }
}

/// Guarantees a caller requires of its backend, checked by
/// [`LockerBuilder::require`](crate::LockerBuilder::require).
///
/// # Examples
/// ```
/// use lock_core::{FencingGuarantee, Requirements, MemoryBackend, Locker};
/// use std::sync::Arc;
///
/// // A payment path: tokens must survive failover, waiters served in order.
/// let need = Requirements::new()
///     .fencing(FencingGuarantee::Unconditional)
///     .fair();
/// assert!(Locker::builder(Arc::new(MemoryBackend::new())).require(need).build().is_ok());
///
/// // The in-process store has no nodes to lose, so this is refused.
/// let err = Locker::builder(Arc::new(MemoryBackend::new()))
///     .require(Requirements::new().survives_node_loss())
///     .build()
///     .unwrap_err();
/// assert!(err.to_string().contains("loss of a store node"));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Requirements {
    fencing: Option<FencingGuarantee>,
    survives_node_loss: bool,
    fair: bool,
    notifies_waiters: bool,
}

impl Requirements {
    /// No requirements.
    pub fn new() -> Self {
        Self::default()
    }

    /// Fencing at least as strong as `at_least`.
    pub fn fencing(mut self, at_least: FencingGuarantee) -> Self {
        self.fencing = Some(at_least);
        self
    }

    /// Locks survive the loss of a minority of store nodes.
    pub fn survives_node_loss(mut self) -> Self {
        self.survives_node_loss = true;
        self
    }

    /// Waiters are granted in arrival order.
    pub fn fair(mut self) -> Self {
        self.fair = true;
        self
    }

    /// Waiters are woken by notification, not polling.
    pub fn notifies_waiters(mut self) -> Self {
        self.notifies_waiters = true;
        self
    }

    /// Parses the `require=` URL option: a comma-separated list of
    /// `fencing-unconditional`, `fencing-majority`, `node-loss`, `fair`,
    /// `notify`.
    pub fn parse(list: &str) -> Result<Self> {
        let mut req = Requirements::new();
        for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            req = match item {
                "fencing-unconditional" => req.fencing(FencingGuarantee::Unconditional),
                "fencing-majority" => req.fencing(FencingGuarantee::WhileMajorityKeepsData),
                "node-loss" => req.survives_node_loss(),
                "fair" => req.fair(),
                "notify" => req.notifies_waiters(),
                other => {
                    return Err(Error::InvalidConfig(format!(
                        "unknown requirement {other:?} in require=; known: \
                         fencing-unconditional, fencing-majority, node-loss, fair, notify"
                    )));
                }
            };
        }
        Ok(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_every_missing_guarantee() {
        let caps = Capabilities::new("redis");
        let err = caps
            .check(
                &Requirements::new()
                    .fencing(FencingGuarantee::Unconditional)
                    .fair()
                    .survives_node_loss(),
            )
            .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("`redis`"), "{text}");
        assert!(
            text.contains("fencing monotonic without condition"),
            "{text}"
        );
        assert!(text.contains("fair"), "{text}");
        assert!(text.contains("loss of a store node"), "{text}");
    }

    #[test]
    fn stronger_fencing_satisfies_weaker() {
        let mut caps = Capabilities::new("etcd");
        caps.fencing = FencingGuarantee::Unconditional;
        let need = Requirements::new().fencing(FencingGuarantee::WhileMajorityKeepsData);
        assert!(caps.check(&need).is_ok());
    }

    #[test]
    fn parse_requirements() {
        assert_eq!(
            Requirements::parse("fair,node-loss").unwrap(),
            Requirements::new().fair().survives_node_loss()
        );
        assert!(
            Requirements::parse("fast")
                .unwrap_err()
                .to_string()
                .contains("\"fast\"")
        );
    }
}

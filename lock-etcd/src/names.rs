//! Where a lock lives in etcd: the layout of etcd's `concurrency.Mutex`.
//!
//! A lock named `NAME` under prefix `P` is the set of keys `P NAME /
//! <lease id in lowercase hex>`, one per contender, each attached to its
//! contender's lease; the one with the smallest create revision holds it.
//! This is exactly what `etcdctl lock NAME` and Go's
//! `concurrency.NewMutex(session, "NAME")` create.
//!
//! Go's mutex counts every key under `NAME/` as a contender, so its lock on
//! `a` also waits for holders of `a/b`. This crate counts only keys one
//! level below `NAME/` (`NAME/x`, never `NAME/x/y`), which keeps its own
//! names injective: `a` and `a/b` are two locks.

use lock_core::Key;

/// The key layout under one prefix.
#[derive(Clone, Debug)]
pub(crate) struct Names {
    prefix: String,
}

impl Names {
    /// The layout under `prefix`.
    pub(crate) fn new(prefix: impl Into<String>) -> Self {
        Names {
            prefix: prefix.into(),
        }
    }

    /// `P NAME /`: the range of the lock's contenders.
    pub(crate) fn dir(&self, key: &Key) -> String {
        format!("{}{}/", self.prefix, key.as_str())
    }

    /// The contender key of the holder of `lease`.
    pub(crate) fn holder(&self, key: &Key, lease: i64) -> String {
        format!("{}{}/{lease:x}", self.prefix, key.as_str())
    }
}

/// Whether `key` (from a range over `dir`) is a contender of the lock
/// `dir` names, rather than a key of a deeper lock (`dir` + `x/y`).
pub(crate) fn is_contender(dir: &str, key: &[u8]) -> bool {
    key.strip_prefix(dir.as_bytes())
        .is_some_and(|rest| !rest.is_empty() && !rest.contains(&b'/'))
}

/// The lease id at the end of a holder key (`.../<hex>`), if it has one.
pub(crate) fn lease_of(holder_key: &str) -> Option<i64> {
    let hex = holder_key.rsplit('/').next()?;
    if hex.is_empty() || hex.len() > 16 || hex.bytes().any(|b| b.is_ascii_uppercase()) {
        return None;
    }
    i64::from_str_radix(hex, 16).ok().filter(|&id| id > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_is_etcds_mutex() {
        let names = Names::new("");
        let key = Key::new("order/123").unwrap();
        assert_eq!(names.dir(&key), "order/123/");
        assert_eq!(
            names.holder(&key, 0x694d_7a3b_1c2f),
            "order/123/694d7a3b1c2f"
        );
        assert_eq!(lease_of("order/123/694d7a3b1c2f"), Some(0x694d_7a3b_1c2f));
        assert_eq!(lease_of("order/123/XYZ"), None);
        assert_eq!(lease_of("order/123/"), None);
        let names = Names::new("locks/");
        assert_eq!(names.dir(&key), "locks/order/123/");
    }

    #[test]
    fn deeper_locks_are_not_contenders() {
        assert!(is_contender("a/", b"a/1f"));
        assert!(is_contender("a/", b"a/foreign"));
        assert!(!is_contender("a/", b"a/b/1f"));
        assert!(!is_contender("a/", b"a/"));
        assert!(!is_contender("a/", b"ab/1f"));
    }
}

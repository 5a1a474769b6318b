//! ZooKeeper backend for dlock (stub).
//!
//! Not implemented yet: the `zk://` scheme is known to
//! [`lock_core::connect`] but reports that this backend is not enabled.

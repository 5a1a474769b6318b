//! etcd backend for dlock (stub).
//!
//! Not implemented yet: the `etcd://` scheme is known to
//! [`lock_core::connect`] but reports that this backend is not enabled.

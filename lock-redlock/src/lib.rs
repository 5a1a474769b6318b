//! Redlock backend for dlock over independent Redis masters (stub).
//!
//! Not implemented yet: the `redlock://` scheme is known to
//! [`lock_core::connect`] but reports that this backend is not enabled.

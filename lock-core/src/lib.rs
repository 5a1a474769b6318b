//! # lock-core
//!
//! The lock contract of dlock as a Rust API: validated [`Key`], [`Owner`],
//! [`Ttl`] and [`FencingToken`]; one [`Error`] type; the store-facing
//! [`Backend`] trait; [`Capabilities`] and [`Requirements`]; the user-facing
//! [`Locker`] and [`LockGuard`] with re-entry, background renewal by one
//! task per locker, local validity deadlines and loss signals; backends
//! chosen by URL ([`connect`]); and the embedded `memory://` backend
//! ([`MemoryBackend`]).
//!
//! The behaviour every backend keeps is `SPEC.md`; the `conformance` crate
//! checks it.
//!
//! # Examples
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> lock_core::Result<()> {
//! let locker = lock_core::connect("memory://").await?;
//! let guard = locker.lock("inventory:1001").await?;
//! // Hand the token to the storage you write to; it refuses smaller ones.
//! println!("holding {} with token {}", guard.key(), guard.token());
//! guard.release().await?;
//! # Ok(()) }
//! ```
//!
//! # Decisions where other libraries differ
//! - Ownership is an explicit id, never a thread (unlike Redisson): with no
//!   owner named, every acquisition is a new owner.
//! - `lock` waits until granted unless a wait is set (as Redisson's
//!   `lock()`, Curator's `acquire()`, etcd's `Lock(ctx)`).
//! - Renewal never fails silently (unlike Redisson's watchdog): a renewal
//!   that cannot be confirmed before the local deadline ends the hold and
//!   resolves [`LockGuard::lost`].
//! - A release whose outcome is unknown is retried in the background,
//!   never taking off two counts (unlike Curator, local state is kept until
//!   the store confirms).

mod backend;
mod capabilities;
mod error;
mod guard;
mod hold;
mod inbox;
mod key;
mod locker;
pub mod memory;
mod registry;
mod scheduler;
mod token;
mod ttl;
mod url;

pub use backend::{
    AcquireRequest, Backend, Grant, HoldInfo, HolderStatus, LockStatus, LossSignal, Wait, drift,
};
pub use capabilities::{Capabilities, FencingGuarantee, NodeLoss, Requirements};
pub use error::{BoxError, Error, ErrorKind, LossReason, Result};
pub use guard::LockGuard;
pub use key::{Key, MAX_LEN, Owner};
pub use locker::{LockRequest, Locker, LockerBuilder};
pub use memory::{MemoryBackend, MemoryStore};
pub use registry::{Connecting, OpenFn, builder_from_url, connect, register, registered_schemes};
pub use token::FencingToken;
pub use ttl::{Ttl, format_duration, parse_duration};
pub use url::{BackendUrl, Endpoint, redact};

/// Re-exported so backend crates implement [`Backend`] with the same
/// `async_trait` version.
pub use async_trait::async_trait;

/// The README's Rust examples, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;

//! # dlock
//!
//! The `dlock` command-line tool: run any command under a distributed lock
//! (what `flock(1)` does on one machine, across machines), look at a lock,
//! check a store against the lock contract, benchmark it, and run the
//! demos. See `dlock --help`.
//!
//! As a library it offers the "any driver" entry point of the workspace:
//! [`register_backends`] registers every backend crate compiled into this
//! build (one cargo feature each: `redis`, `etcd`, `redlock` and `zk` today), and [`connect`] opens a
//! [`Locker`] from a URL after doing so.
//!
//! ```no_run
//! # async fn demo() -> lock_core::Result<()> {
//! let locker = dlock::connect("redis://127.0.0.1:6379").await?;
//! let guard = locker.lock("cron.clean-expired").await?;
//! guard.release().await
//! # }
//! ```
//!
//! # Exit codes
//! The binary's exit codes are in [`exit`]: 64 bad usage, 69 store
//! unavailable, 75 lock not available, 76 lock lost, otherwise the child's
//! status (`128 + N` if it was killed by signal `N`).

mod bench;
mod check;
mod cli;
mod demo;
pub mod exit;
mod run;
mod status;
mod waitline;

use lock_core::Locker;
use std::ffi::OsString;
use std::process::ExitCode;
use std::sync::Once;

/// Registers, once, the backend crates named here whose cargo feature is
/// on. Each line is `"feature" => crate::register`.
macro_rules! register_compiled_in {
    ($($feature:literal => $register:path),* $(,)?) => {
        static ONCE: Once = Once::new();
        ONCE.call_once(|| {
            $(
                #[cfg(feature = $feature)]
                $register();
            )*
        });
    };
}

/// Registers every backend compiled into this build with
/// [`lock_core::register`], so that [`lock_core::connect`] (and
/// [`connect`]) open their URLs. Safe to call many times.
///
/// Each backend sits behind a cargo feature of this crate, on by default:
/// `redis` (`redis://`, `rediss://`), `etcd` (`etcd://`), `redlock`
/// (`redlock://`) and `zk` (`zk://`). `memory://` is always there.
pub fn register_backends() {
    // Adding a backend: its dependency and feature in Cargo.toml, and its
    // line here.
    register_compiled_in! {
        "redis" => lock_redis::register,
        "etcd" => lock_etcd::register,
        "redlock" => lock_redlock::register,
        "zk" => lock_zk::register,
    }
}

/// The URL schemes this build can open (after [`register_backends`]),
/// sorted: `["etcd", "memory", "redis", "rediss", "redlock", "zk"]` with the
/// default features.
pub fn backends() -> Vec<String> {
    register_backends();
    lock_core::registered_schemes()
}

/// [`register_backends`], then [`lock_core::connect`]: a [`Locker`] on the
/// backend `url` names, with the URL's options (`ttl=`, `wait=`, ...).
///
/// # Errors
/// [`lock_core::Error::InvalidConfig`] for a bad URL or a scheme not
/// compiled in (naming the crate to add), [`lock_core::Error::Unavailable`]
/// when the store cannot be reached (naming the address).
pub async fn connect(url: &str) -> lock_core::Result<Locker> {
    register_backends();
    lock_core::connect(url).await
}

/// The `dlock` binary: parses `args` (with the program name first, as
/// [`std::env::args_os`] gives them), runs the subcommand, and returns the
/// exit code. Errors are printed to stderr as one line.
pub fn main_with_args<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    register_backends();
    ExitCode::from(cli::main(args))
}

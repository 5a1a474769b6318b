//! # dlock examples
//!
//! Runnable demonstrations of dlock, kept as a library so the `dlock`
//! command-line tool can run them too.
//!
//! - [`flash_sale`]: 1,000 buyers race for 100 items, once without a lock
//!   (the stock is oversold) and once with one (exactly 100 sold, every sale
//!   fenced). Run it with `cargo demo`.

pub mod flash_sale;

use lock_core::{Error, ErrorKind};

/// The process exit code for an error, after the BSD `sysexits.h`
/// convention: 64 (`EX_USAGE`) for a bad URL, option or key, 69
/// (`EX_UNAVAILABLE`) when the store cannot be reached, 1 for anything
/// else.
///
/// # Examples
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let err = lock_core::connect("mongodb://x:1").await.unwrap_err();
/// assert_eq!(dlock_examples::exit_code(&err), 64);
/// # }
/// ```
pub fn exit_code(error: &Error) -> u8 {
    match error.kind() {
        ErrorKind::InvalidConfig | ErrorKind::InvalidKey => 64,
        ErrorKind::Unavailable => 69,
        _ => 1,
    }
}

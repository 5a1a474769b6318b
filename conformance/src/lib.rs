//! # conformance
//!
//! The dlock contract (`SPEC.md`) as executable checks, run by every backend
//! against a real store; a [`kit`] that starts real Redis, etcd and
//! ZooKeeper servers for those tests; and a [`runner`] (the `conformance`
//! binary) that runs the checks against a live deployment in users' CI.
//!
//! ## For a backend crate
//!
//! Implement [`Fixture`] (new clients of one store; optionally [`Faults`]
//! to hurt it), then turn the whole suite into tests with one macro call in
//! `tests/conformance.rs`:
//!
//! ```no_run
//! use conformance::{Fixture, MemoryFixture};
//! use std::sync::Arc;
//!
//! // Called by every test; start servers once with a static OnceCell here.
//! async fn fixture() -> Arc<dyn Fixture> {
//!     Arc::new(MemoryFixture::new())
//! }
//!
//! conformance::suite!(fixture());
//! # fn main() {}
//! ```
//!
//! That generates one test per check (`conformance_suite::mutual_exclusion`,
//! ...), a `capabilities_report` test printing which checks run and which
//! are not applicable (and why), and a test that the generated list is the
//! whole registry. A check the backend's capabilities rule out prints
//! `NOT APPLICABLE: <check>: <reason>`; nothing passes silently.
//!
//! Each check is also a plain function, `conformance::checks::NAME(&fixture)`,
//! returning a [`Verdict`] and panicking on failure.

pub mod checks;
mod fenced;
mod fixture;
pub mod harness;
pub mod kit;
mod memory_fixture;
pub mod runner;
pub mod stats;
mod suite;
pub mod timing;
mod url_fixture;
mod verdict;

pub use checks::{Check, all_checks};
pub use fenced::{FencedResource, Refused};
pub use fixture::{Faults, Fixture, Link};
pub use memory_fixture::MemoryFixture;
pub use url_fixture::UrlFixture;
pub use verdict::{Need, Verdict, applicability};

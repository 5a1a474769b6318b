//! The memory backend passes the whole suite, through the same macro the
//! real backends use.

use conformance::{Fixture, MemoryFixture};
use std::sync::Arc;

/// A new private store per test: the memory "partition" cuts the whole
/// store, so checks must not share one.
async fn memory() -> Arc<dyn Fixture> {
    Arc::new(MemoryFixture::new())
}

conformance::suite!(memory());

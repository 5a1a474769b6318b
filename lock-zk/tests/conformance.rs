//! The whole conformance suite against one real standalone ZooKeeper server
//! from the kit, with faults: a fault proxy in front of the server for
//! partitions and latency, a plain ZooKeeper client deleting the holder's
//! node, and a session taken over and closed for expiry.

mod common;

use conformance::Fixture;
use std::sync::Arc;

async fn standalone() -> Arc<dyn Fixture> {
    common::standalone().await
}

conformance::suite!(standalone());

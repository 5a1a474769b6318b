//! The whole conformance suite against one real standalone ZooKeeper server
//! from the kit, with faults: a fault proxy in front of the server for
//! partitions and latency, a plain ZooKeeper client deleting the holder's
//! node, and a session taken over and closed for expiry.

mod common;

use common::ZkFixture;
use conformance::Fixture;
use conformance::kit::ZkEnsemble;
use std::sync::Arc;
use tokio::sync::OnceCell;

/// One server for every test of this binary (they share the suite's
/// runtime, so the server outlives each test).
async fn standalone() -> Arc<dyn Fixture> {
    static FIXTURE: OnceCell<Arc<ZkFixture>> = OnceCell::const_new();
    FIXTURE
        .get_or_init(|| async {
            let server = ZkEnsemble::standalone()
                .await
                .unwrap_or_else(|e| panic!("start a standalone ZooKeeper: {e}"));
            Arc::new(ZkFixture::new("zookeeper standalone", Arc::new(server)))
        })
        .await
        .clone()
}

conformance::suite!(standalone());

//! The shared conformance suite against one real etcd member from the kit
//! (the 3-member cluster is `conformance_cluster.rs`).

mod common;

use common::EtcdFixture;
use conformance::Fixture;
use std::sync::Arc;
use tokio::sync::OnceCell;

async fn fixture() -> Arc<dyn Fixture> {
    static FIXTURE: OnceCell<Arc<EtcdFixture>> = OnceCell::const_new();
    lock_etcd::register();
    FIXTURE
        .get_or_init(|| async { Arc::new(EtcdFixture::start(1).await) })
        .await
        .clone()
}

conformance::suite!(fixture());

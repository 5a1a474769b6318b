//! The shared conformance suite against a real 3-member etcd cluster from the kit
//! (one member is `conformance.rs`).

mod common;

use common::EtcdFixture;
use conformance::Fixture;
use std::sync::Arc;
use tokio::sync::OnceCell;

async fn fixture() -> Arc<dyn Fixture> {
    static FIXTURE: OnceCell<Arc<EtcdFixture>> = OnceCell::const_new();
    lock_etcd::register();
    FIXTURE
        .get_or_init(|| async { Arc::new(EtcdFixture::start(3).await) })
        .await
        .clone()
}

conformance::suite!(fixture());

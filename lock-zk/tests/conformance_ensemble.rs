//! The whole conformance suite, destructive checks included, against a real
//! 3-server ZooKeeper ensemble from the kit (ZAB), each client connected to
//! every server through a fault proxy of its own.
//!
//! One test runs every check (two at a time) on one ensemble, so that
//! nextest, which runs each test in a process of its own, starts one
//! ensemble for the suite rather than one per check. The report lists each
//! check's verdict; any failure fails the test with the table.

mod common;

use common::ZkFixture;
use conformance::Fixture;
use conformance::runner::{RunOptions, run};
use std::sync::Arc;

#[test]
fn ensemble_passes_the_whole_suite() {
    let report = conformance::harness::runtime().block_on(async {
        let (_turn, servers) = common::exclusive_ensemble().await;
        let fx: Arc<dyn Fixture> =
            Arc::new(ZkFixture::new("zookeeper 3 servers", Arc::new(servers)));
        let options = RunOptions {
            jobs: 2,
            destructive: true,
        };
        run(fx, "zk".to_owned(), &options).await
    });
    let table = report.table();
    println!("{table}");
    assert_eq!(
        report.results.len(),
        conformance::all_checks().len(),
        "not every check ran:\n{table}"
    );
    assert_eq!(
        report.failures(),
        0,
        "the conformance suite failed on a 3-server ensemble:\n{table}"
    );
}

//! The flash-sale demo on `memory://`: without a lock it oversells, with
//! the lock it sells exactly the stock, with increasing fencing tokens and
//! no refused write.

use dlock_examples::exit_code;
use dlock_examples::flash_sale::{Options, Report, run, run_on};
use lock_core::{ErrorKind, Locker, MemoryBackend};
use std::sync::Arc;
use std::time::Duration;

const BUYERS: u32 = 60;
const STOCK: u32 = 10;

fn small(key: &str) -> Options {
    Options {
        buyers: BUYERS,
        stock: STOCK,
        // Each test locks its own key: the tests of this file share the
        // process-wide memory:// store.
        key: key.to_owned(),
        // Every buyer reads before any write can land: the sale opens for
        // all at once, and a write comes a whole round trip after its read.
        round_trip: Duration::from_millis(10),
        ..Options::default()
    }
}

fn check_with_lock(report: &Report) {
    let p = &report.with_lock;
    assert_eq!(p.sold, STOCK, "{report}");
    assert_eq!(p.stock_left, 0, "{report}");
    assert_eq!(p.oversold(), 0, "{report}");
    assert_eq!(p.refused, 0, "{report}");
    assert_eq!(p.gave_up, 0, "{report}");
    assert_eq!(p.sold_out, BUYERS - STOCK, "{report}");
    assert_eq!(p.holds, BUYERS, "{report}");
    assert_eq!(p.sale_tokens.len(), STOCK as usize, "{report}");
    assert!(
        p.sale_tokens.windows(2).all(|w| w[0] < w[1]),
        "tokens not strictly increasing: {:?}",
        p.sale_tokens
    );
    assert!(p.tokens_increasing());
    let (lo, hi) = p.hold_tokens.expect("tokens were handed out");
    assert!(
        hi.get() - lo.get() >= u64::from(BUYERS) - 1,
        "{BUYERS} holds must have {BUYERS} distinct tokens: {lo}..{hi}"
    );
    assert!(report.lock_held(), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_lock_oversells_with_the_lock_sells_exactly_the_stock() {
    let opts = small("test:flash-sale");
    // The oversell is a race, so in principle it can fail to happen; it
    // must happen in at least one of three runs. The lock's side is
    // checked strictly on every run.
    let mut oversold = Vec::new();
    for _ in 0..3 {
        let report = run(&opts).await.expect("the sale runs on memory://");
        check_with_lock(&report);
        let p = &report.without_lock;
        assert!(p.sold >= STOCK, "{report}");
        assert_eq!(p.stock_left, i64::from(STOCK) - i64::from(p.sold));
        assert!(p.sale_tokens.is_empty() && p.holds == 0);
        oversold.push(p.oversold());
        if p.oversold() > 0 {
            assert!(p.stock_left < 0, "{report}");
            let text = report.to_string();
            assert!(text.contains("without a lock"), "{text}");
            assert!(
                text.contains("Writes refused by the fenced stock: 0."),
                "{text}"
            );
            return;
        }
    }
    panic!("no run without a lock oversold: {oversold:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_keep_increasing_across_runs_on_one_store() {
    let opts = Options {
        round_trip: Duration::ZERO,
        ..small("test:flash-sale-twice")
    };
    let first = run(&opts).await.unwrap();
    let second = run(&opts).await.unwrap();
    check_with_lock(&first);
    check_with_lock(&second);
    let (_, first_max) = first.with_lock.hold_tokens.unwrap();
    let (second_min, _) = second.with_lock.hold_tokens.unwrap();
    assert!(second_min > first_max, "{first}\n{second}");
}

#[tokio::test]
async fn bad_input_is_a_usage_error() {
    let err = run(&Options {
        backend: "mongodb://x:1".into(),
        ..Options::default()
    })
    .await
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidConfig);
    assert!(err.to_string().contains("known schemes"), "{err}");
    assert_eq!(exit_code(&err), 64);

    let err = run(&Options {
        backend: "memory://?tll=1s".into(),
        ..Options::default()
    })
    .await
    .unwrap_err();
    assert_eq!(exit_code(&err), 64, "{err}");

    let err = run(&Options {
        key: String::new(),
        ..Options::default()
    })
    .await
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidKey);
    assert_eq!(exit_code(&err), 64);

    let err = run(&Options {
        buyers: 0,
        ..Options::default()
    })
    .await
    .unwrap_err();
    assert_eq!(exit_code(&err), 64);
}

#[tokio::test]
async fn an_unreachable_store_fails_before_any_sale() {
    let backend = MemoryBackend::new();
    backend.store().set_unavailable(true);
    let locker = Locker::new(Arc::new(backend));
    let err = run_on(&locker, &small("test:unreachable"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    assert_eq!(exit_code(&err), 69);
}

//! Fencing tokens over Redlock: strictly increasing while a majority keeps
//! its data, and the honest limit: a majority restarted empty can move
//! them back.

mod common;

use common::{locker, take_and_release};
use conformance::kit::{RedisMasters, RedisOptions};
use rand::Rng;
use std::time::Duration;

const TTL: Duration = Duration::from_secs(5);

/// 200 acquire/release rounds by three clients in turn (so proposals are
/// often stale and the second round runs), while a random minority of the
/// 5 masters (appendonly, data kept) is killed and restarted between
/// acquisitions: every token is above the one before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_increase_while_a_minority_restarts_with_data() {
    let masters = RedisMasters::start_with(
        5,
        RedisOptions {
            appendonly: true,
            ..RedisOptions::default()
        },
    )
    .await
    .expect("start 5 masters with appendonly");
    let clients = [
        locker(&masters, TTL).await,
        locker(&masters, TTL).await,
        locker(&masters, TTL).await,
    ];
    let key = "tokens-minority-restarts";
    let mut rng = rand::rng();
    let mut down: Vec<usize> = Vec::new();
    let mut last = 0u64;
    let mut restarts = 0;
    for round in 0..200 {
        // Between acquisitions: maybe kill one more node (never more than
        // a minority down), maybe bring one back with its data.
        if rng.random_bool(0.15) && down.len() < 2 {
            let i = rng.random_range(0..5);
            if !down.contains(&i) {
                masters.node(i).kill();
                down.push(i);
            }
        }
        if !down.is_empty() && rng.random_bool(0.2) {
            let i = down.swap_remove(rng.random_range(0..down.len()));
            masters.node(i).restart().await.expect("restart with data");
            restarts += 1;
        }
        let client = &clients[round % clients.len()];
        let token = take_and_release(client, key).await.get();
        assert!(
            token > last,
            "round {round}: token {token} is not above the previous {last} (nodes down: {down:?})"
        );
        last = token;
    }
    assert!(
        restarts >= 5,
        "only {restarts} restarts: the test did not hurt the masters"
    );
}

/// The limit of Redlock's fencing, shown: a minority restarted empty does
/// not move tokens back, a majority restarted empty does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_majority_restarted_empty_can_move_tokens_back() {
    let masters = RedisMasters::start(5).await.expect("start 5 masters");
    let key = "tokens-majority-empty";
    let first = locker(&masters, TTL).await;
    let mut last = 0;
    for _ in 0..5 {
        last = take_and_release(&first, key).await.get();
    }
    assert!(last >= 5, "{last}");

    // A minority forgets: a fresh client (proposing 1) still gets more.
    for i in 0..2 {
        masters.node(i).restart().await.expect("restart empty");
    }
    let fresh = locker(&masters, TTL).await;
    let after_minority = take_and_release(&fresh, key).await.get();
    assert!(
        after_minority > last,
        "a minority restarted empty moved the token back: {after_minority} after {last}"
    );

    // A majority forgets: a fresh client gets a token already handed out.
    for i in 0..3 {
        masters.node(i).restart().await.expect("restart empty");
    }
    let fresh = locker(&masters, TTL).await;
    let after_majority = take_and_release(&fresh, key).await.get();
    assert!(
        after_majority <= after_minority,
        "expected the documented limit (a majority restarted empty moves tokens back), \
         got {after_majority} after {after_minority}"
    );
}

//! The examples under `dlock/examples/`, run against `memory://` and every
//! real store compiled in.

mod common;

#[path = "../examples/fenced_sqlite.rs"]
mod fenced_sqlite;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_holders_sqlite_write_is_refused_by_the_fence() {
    let stores = common::stores().await;
    let urls = std::iter::once("memory://".to_owned()).chain(stores.iter().map(|s| s.url.clone()));
    for url in urls {
        let dir = tempfile::tempdir().unwrap();
        let outcome = fenced_sqlite::run(&url, &dir.path().join("shop.db"))
            .await
            .unwrap_or_else(|e| panic!("{url}: {e}"));
        assert!(outcome.token_b > outcome.token_a, "{url}: {outcome:?}");
        assert_eq!(outcome.rows_b, 1, "{url}: B's write refused: {outcome:?}");
        assert_eq!(
            outcome.rows_a, 0,
            "{url}: A's stale write accepted: {outcome:?}"
        );
        assert_eq!(outcome.stock, 9, "{url}: {outcome:?}");
        assert_eq!(outcome.fence, outcome.token_b as i64, "{url}: {outcome:?}");
    }
}

#[path = "../examples/axum_lock_layer.rs"]
mod axum_lock_layer;

fn pay_request(order: &str) -> axum::extract::Request {
    axum::http::Request::post(format!("/orders/{order}/pay"))
        .body(axum::body::Body::empty())
        .unwrap()
}

/// The body as text.
async fn body_text(response: axum::response::Response) -> String {
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    String::from_utf8_lossy(&bytes).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lock_layer_answers_429_with_retry_after_while_an_order_is_busy() {
    use axum::http::{StatusCode, header};
    use tower::ServiceExt as _;

    let stores = common::stores().await;
    let urls = std::iter::once("memory://".to_owned()).chain(stores.iter().map(|s| s.url.clone()));
    for url in urls {
        let locker = dlock::connect(&url).await.unwrap();
        let app = axum_lock_layer::app(locker.clone(), std::time::Duration::from_millis(800));
        let first = tokio::spawn(app.clone().oneshot(pay_request("123")));
        // Wait until the first request holds the order's lock.
        let deadline = tokio::time::Instant::now() + common::LIMIT;
        while locker.status("order/123").await.unwrap().is_free() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{url}: never locked"
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }

        let busy = app.clone().oneshot(pay_request("123")).await.unwrap();
        assert_eq!(busy.status(), StatusCode::TOO_MANY_REQUESTS, "{url}");
        let after: u64 = busy.headers()[header::RETRY_AFTER]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(after, 1, "{url}: Retry-After {after}");

        // Another order is not held up.
        let other = app.clone().oneshot(pay_request("456")).await.unwrap();
        assert_eq!(other.status(), StatusCode::OK, "{url}");

        let first = first.await.unwrap().unwrap();
        assert_eq!(first.status(), StatusCode::OK, "{url}");
        assert!(
            body_text(first)
                .await
                .contains("order 123 paid under fencing token")
        );
        // Released with the response: the next payment goes through.
        let again = app.clone().oneshot(pay_request("123")).await.unwrap();
        assert_eq!(again.status(), StatusCode::OK, "{url}");
    }
}

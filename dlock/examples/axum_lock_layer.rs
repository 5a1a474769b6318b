//! An axum service whose route takes a per-entity lock through a small
//! tower layer: the Rust way of a Gin middleware that locks per order.
//!
//! ```text
//! cargo run -p dlock --example axum_lock_layer                       # memory://, 127.0.0.1:3000
//! cargo run -p dlock --example axum_lock_layer -- redis://127.0.0.1:6379 127.0.0.1:3000
//! curl -X POST 127.0.0.1:3000/orders/123/pay & curl -i -X POST 127.0.0.1:3000/orders/123/pay
//! ```
//!
//! [`LockLayer`] maps each request to a lock key (here `order/{id}` from
//! `/orders/{id}/...`; requests without one pass through), takes the lock
//! without waiting, hands the handler the hold's fencing token as an
//! extension, and releases the lock when the handler's response is ready.
//! A request for an order that is being worked on gets `429 Too Many
//! Requests` with `Retry-After` (1 s unless set: the holder renews its lock
//! while it works, so the lock's time left says nothing of when it will be
//! done) at once, instead of queueing behind it; a store that cannot be
//! asked gets `503` with `Retry-After` too.

use axum::Router;
use axum::body::Body;
use axum::extract::{Extension, Path, Request, State};
use axum::http::{StatusCode, header};
use axum::response::Response;
use axum::routing::post;
use futures::future::BoxFuture;
use lock_core::{FencingToken, Locker};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tower::{Layer, Service};

/// Maps a request to its lock key; `None` passes it through unlocked.
pub(crate) type KeyFn = Arc<dyn Fn(&Request) -> Option<String> + Send + Sync>;

/// A tower layer taking a per-entity lock around the inner service.
#[derive(Clone)]
pub(crate) struct LockLayer {
    locker: Locker,
    key: KeyFn,
    retry_after: u64,
}

impl LockLayer {
    /// Locks `key(request)` on `locker` around each request.
    pub(crate) fn new(
        locker: Locker,
        key: impl Fn(&Request) -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        LockLayer {
            locker,
            key: Arc::new(key),
            retry_after: 1,
        }
    }

    /// The `Retry-After` seconds of a refusal (default 1).
    #[allow(dead_code)] // an option for users of the layer
    pub(crate) fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = seconds;
        self
    }
}

impl<S> Layer<S> for LockLayer {
    type Service = LockService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        LockService {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service [`LockLayer`] wraps around a route.
#[derive(Clone)]
pub(crate) struct LockService<S> {
    inner: S,
    layer: LockLayer,
}

/// A response with `status`, `Retry-After: retry_after` and a text body.
fn refuse(status: StatusCode, retry_after: u64, text: String) -> Response {
    let mut response = Response::new(Body::from(text));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, retry_after.into());
    response
}

impl<S> Service<Request> for LockService<S>
where
    S: Service<Request, Response = Response> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
        // The clone that was polled ready serves this request (tower's rule).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let layer = self.layer.clone();
        Box::pin(async move {
            let Some(key) = (layer.key)(&request) else {
                return inner.call(request).await;
            };
            match layer.locker.try_lock(&key).await {
                Ok(Some(guard)) => {
                    request.extensions_mut().insert(guard.token());
                    let response = inner.call(request).await;
                    // A failed release is freed by the store's expiry.
                    let _ = guard.release().await;
                    response
                }
                Ok(None) => {
                    let after = layer.retry_after;
                    Ok(refuse(
                        StatusCode::TOO_MANY_REQUESTS,
                        after,
                        format!("{key} is busy; retry in {after}s\n"),
                    ))
                }
                Err(e) => Ok(refuse(
                    StatusCode::SERVICE_UNAVAILABLE,
                    layer.retry_after,
                    format!("cannot lock {key}: {e}\n"),
                )),
            }
        })
    }
}

/// `order/{id}` for `/orders/{id}/...`.
pub(crate) fn order_key(request: &Request) -> Option<String> {
    let rest = request.uri().path().strip_prefix("/orders/")?;
    let (id, _) = rest.split_once('/')?;
    (!id.is_empty()).then(|| format!("order/{id}"))
}

/// Pays an order: takes `work` (the payment provider's round trip), under
/// the order's lock, with its fencing token for the writes.
async fn pay(
    State(work): State<Duration>,
    Path(id): Path<String>,
    Extension(token): Extension<FencingToken>,
) -> String {
    tokio::time::sleep(work).await;
    format!("order {id} paid under fencing token {token}\n")
}

/// The service: `POST /orders/{id}/pay`, locked per order.
pub(crate) fn app(locker: Locker, work: Duration) -> Router {
    Router::new()
        .route("/orders/{id}/pay", post(pay))
        .route_layer(LockLayer::new(locker, order_key))
        .with_state(work)
}

#[allow(dead_code)] // the tests call `app` directly
#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let url = args.next().unwrap_or_else(|| "memory://".to_owned());
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:3000".to_owned());
    let locker = dlock::connect(&url).await?;
    let app = app(locker, Duration::from_secs(2));
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("listening on http://{addr} (locks on {url}): POST /orders/{{id}}/pay");
    loop {
        let (stream, _) = listener.accept().await?;
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        tokio::spawn(async move {
            let io = hyper_util::rt::TokioIo::new(stream);
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, service)
                .await
            {
                eprintln!("connection: {e}");
            }
        });
    }
}

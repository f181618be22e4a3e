//! The tower [`Layer`] that puts a price on the routes of any service: paygate's reverse proxy, or an axum
//! `Router` in someone else's application.
//!
//! ```text
//! let app = Router::new().route("/v1/quote", get(quote)).layer(PaygateLayer::new(gateway));
//! ```

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower::{Layer, Service};
use tracing::Instrument as _;

use crate::body::Body;
use crate::engine::{Dispatch, Gateway, request_span};
use crate::request_id::REQUEST_ID;

/// Wraps a service so that its priced routes require payment.
#[derive(Debug, Clone)]
pub struct PaygateLayer {
    gateway: Arc<Gateway>,
}

impl PaygateLayer {
    pub fn new(gateway: Arc<Gateway>) -> Self {
        PaygateLayer { gateway }
    }
}

impl<S> Layer<S> for PaygateLayer {
    type Service = PaygateService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        PaygateService { gateway: self.gateway.clone(), inner }
    }
}

/// The service [`PaygateLayer`] makes.
#[derive(Debug, Clone)]
pub struct PaygateService<S> {
    gateway: Arc<Gateway>,
    inner: S,
}

impl<S> Service<Request<Body>> for PaygateService<S>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<Body>) -> Self::Future {
        // The ready service goes with this request; the clone waits for the next `poll_ready`.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        // Decided here, so that a free route's request is only the inner service's future, not the paid flow's.
        let (request_id, dispatch) = self.gateway.dispatch(&mut request);
        let span = request_span(&request, &request_id);
        match dispatch {
            Dispatch::PassThrough => {
                // The response names its request too (the id is on the request already).
                let request_id = request.headers().get(REQUEST_ID).cloned();
                let future = inner.call(request).instrument(span);
                Box::pin(async move {
                    let mut response = future.await?;
                    if let Some(id) = request_id {
                        response.headers_mut().entry(REQUEST_ID).or_insert(id);
                    }
                    Ok(response)
                })
            }
            Dispatch::Answered(response) => Box::pin(std::future::ready(Ok(response))),
            Dispatch::Priced(route) => {
                let gateway = self.gateway.clone();
                Box::pin(async move { Ok(gateway.priced(route, request, request_id, inner).instrument(span).await) })
            }
            Dispatch::Mcp => {
                let gateway = self.gateway.clone();
                Box::pin(async move { Ok(gateway.serve_mcp(request, request_id, inner).instrument(span).await) })
            }
        }
    }
}

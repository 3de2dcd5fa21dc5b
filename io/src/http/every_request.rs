//! What every request passes through, as one layer around each route: the request is timed
//! where it arrived (`api.http`); a namespace or partition is refused; a server that is not the
//! leader forwards it ([`super::forward_to_leader`]); a read is counted where it is answered
//! (`rpc.query`); the answer carries the consistency it was served in
//! ([`super::add_effective_consistency`]) and, as every answer of Consul's API does, ACLs on or
//! off, the agent's `acl.default_policy` (`X-Consul-Default-ACL-Policy`); request bodies have no
//! default size limit (each endpoint applies Consul's own).
//!
//! A hand-written service and future rather than `axum::middleware::from_fn`: a blocking query
//! holds its request's future for as long as it waits, and `from_fn` boxes an `async` block
//! that keeps the request at each level it is passed down (1.7 KB a request), while the route
//! below is boxed already. [`Answering`] holds the route's future and a few bytes beside it.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use tower::{Layer, Service, ServiceExt};

use super::{
    add_effective_consistency, answers_here, enterprise_tenancy_refusal, forward_hop, forward_to_leader, Api,
    HttpError, Query,
};
use crate::consensus::Consistency;
use crate::telemetry::{count_read, HttpTiming, ReadInFlight};

/// Consul's header with the agent's `acl.default_policy` (Go writes it
/// `X-Consul-Default-Acl-Policy`; HTTP/1.1 names are case-insensitive).
const DEFAULT_ACL_POLICY: HeaderName = HeaderName::from_static("x-consul-default-acl-policy");

/// Consul's answer to a request under one of `http_config.block_endpoints`.
const ENDPOINT_BLOCKED: &str = "Endpoint is blocked by agent configuration";

/// Puts [`EveryRequest`] around each route.
#[derive(Clone)]
pub(super) struct EveryRequestLayer {
    pub(super) api: Arc<Api>,
}

impl<S> Layer<S> for EveryRequestLayer {
    type Service = EveryRequest<<DefaultBodyLimit as Layer<S>>::Service>;

    fn layer(&self, route: S) -> Self::Service {
        EveryRequest { api: self.api.clone(), route: DefaultBodyLimit::disable().layer(route) }
    }
}

/// One route, behind what every request passes through.
#[derive(Clone)]
pub(super) struct EveryRequest<S> {
    api: Arc<Api>,
    route: S,
}

impl<S> Service<Request> for EveryRequest<S>
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + Unpin,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Answering<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.route.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Answering<S::Future> {
        let timing = HttpTiming::start(&request);
        let blocked =
            self.api.block_endpoints.iter().any(|prefix| request.uri().path().starts_with(prefix.as_str()));
        let step = if blocked {
            // Consul's denylist, before anything else about the request (its method included).
            let refusal = HttpError { status: StatusCode::FORBIDDEN, reason: ENDPOINT_BLOCKED.to_owned() };
            Step::Answered(Some(refusal.into_response()))
        } else if let Some(reason) = enterprise_tenancy_refusal(&request) {
            Step::Answered(Some(HttpError::bad_request(reason).into_response()))
        } else if answers_here(&self.api, &request) {
            answer_here(&self.api, &mut self.route, request)
        } else {
            // Boxed: held inline, the forwarding futures would size every request's future,
            // blocking queries' included, for a path a leader never takes.
            Step::Forwarded(Box::pin(forward(self.api.clone(), self.route.clone(), request)))
        };
        Answering { timing, step, api: Some(self.api.clone()) }
    }
}

/// The request answered by the route here, counted as a read where it is one, once its token
/// allows it ([`super::acl::gate`]).
fn answer_here<S: Service<Request>>(api: &Api, route: &mut S, mut request: Request) -> Step<S::Future> {
    if let Err(refusal) = super::acl::gate(api, &mut request) {
        return Step::Answered(Some(refusal.into_response()));
    }
    let consistency = Consistency::of(&Query::parse(request.uri().query()));
    let in_flight = count_read(&request);
    Step::Here { answer: route.call(request), consistency, _in_flight: in_flight }
}

/// Sends a request that needs the leader towards it and relays the answer: a follower holds
/// it up to [`super::RPC_HOLD_TIMEOUT`] while no leader is known, then sends it to the leader;
/// a client agent sends it to a server, which does the same. A server that has become the
/// leader meanwhile answers it here.
async fn forward<S>(api: Arc<Api>, mut route: S, request: Request) -> Response
where
    S: Service<Request, Response = Response, Error = Infallible> + Send,
    S::Future: Unpin,
{
    match forward_hop(&api).await {
        Ok(None) => {
            let Ok(route) = route.ready().await;
            // The headers every answer carries are added by the layer this came through.
            let answering = Answering { timing: None, step: answer_here(&api, route, request), api: None };
            let Ok(response) = answering.await;
            response
        }
        Ok(Some(hop)) => forward_to_leader(&api, hop, request).await,
        Err(error) => error.into_response(),
    }
}

/// A request being answered; see [`EveryRequest`].
pub(super) struct Answering<F> {
    /// `None` once reported, or for a request that is not timed.
    timing: Option<HttpTiming>,
    step: Step<F>,
    /// For the headers every answer carries; `None` inside a forwarding, whose outer layer
    /// adds them.
    api: Option<Arc<Api>>,
}

enum Step<F> {
    /// Answered already (`None` once the answer is taken).
    Answered(Option<Response>),
    Forwarded(Pin<Box<dyn Future<Output = Response> + Send>>),
    Here {
        answer: F,
        consistency: Consistency,
        /// Keeps a blocking read counted in `rpc.queries_blocking` while it waits.
        _in_flight: Option<ReadInFlight>,
    },
}

impl<F> Future for Answering<F>
where
    F: Future<Output = Result<Response, Infallible>> + Unpin,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let mut response = match &mut this.step {
            Step::Answered(answer) => answer.take().expect("an answered request is polled once more"),
            Step::Forwarded(forwarding) => ready!(forwarding.as_mut().poll(cx)),
            Step::Here { answer, consistency, .. } => {
                let Ok(mut response) = ready!(Pin::new(answer).poll(cx));
                add_effective_consistency(&mut response, *consistency);
                response
            }
        };
        if let Some(api) = &this.api {
            add_agent_headers(api, &mut response);
        }
        // Ends the read's count before the answer goes out, as the request's end.
        this.step = Step::Answered(None);
        if let Some(timing) = this.timing.take() {
            timing.finish();
        }
        Poll::Ready(Ok(response))
    }
}

/// What Consul's wrapper adds to every answer of its API: the agent's `acl.default_policy`
/// (not on its index: a path no endpoint serves), and `http_config.response_headers` (its
/// `setHeaders`, on the index too).
fn add_agent_headers(api: &Api, response: &mut Response) {
    if response.extensions().get::<super::Unwrapped>().is_none() {
        let policy =
            HeaderValue::from_str(&api.acl_default_policy).unwrap_or(HeaderValue::from_static("allow"));
        response.headers_mut().insert(DEFAULT_ACL_POLICY, policy);
    }
    for (name, value) in &api.response_headers {
        response.headers_mut().insert(name.clone(), value.clone());
    }
}

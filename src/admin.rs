//! The admin server on `server.admin_addr`: /metrics, /livez, /readyz, /v1/health, the calls
//! in flight (`GET /v1/calls`; `DELETE /v1/calls/{id}` only with `server.admin_mutations`)
//! and the status page. Nothing here depends on any target being reachable.

use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{Method, Request, Response};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::http::{Body, accept_loop, json, respond, serve_connection};
use crate::rpc::calls;
use crate::sidecar::Sidecar;
use crate::status_page;

/// Accepts admin connections until `cancel` fires.
pub async fn serve(
    listener: TcpListener,
    shared: Arc<Sidecar>,
    tracker: TaskTracker,
    cancel: CancellationToken,
) {
    let accept = || async { listener.accept().await.map(|(stream, _)| stream) };
    let timeouts = shared.server.timeouts();
    let serve = |stream| {
        let shared = shared.clone();
        let handler = move |req| {
            let shared = shared.clone();
            async move { route(&shared, req) }
        };
        serve_connection(stream, handler, timeouts, (), &tracker, cancel.clone());
    };
    accept_loop("admin port", accept, serve, cancel.clone()).await;
}

fn route(shared: &Sidecar, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path();
    if req.method() == Method::DELETE && path.starts_with(calls::PATH) {
        if !shared.server.admin_mutations {
            return calls::read_only();
        }
        return calls::cancel(shared, &path[calls::PATH.len()..], None);
    }
    if req.method() != Method::GET {
        return respond(
            405,
            "text/plain",
            "only GET is served here (and DELETE /v1/calls/ID)\n",
        );
    }
    match path {
        "/v1/calls" => calls::list(shared),
        "/metrics" => {
            shared.refresh_gauges();
            respond(200, "text/plain; version=0.0.4", shared.metrics.render())
        }
        "/livez" => respond(200, "text/plain", "ok\n"),
        "/readyz" if shared.is_draining() => respond(503, "text/plain", "draining\n"),
        "/readyz" => respond(200, "text/plain", "ready\n"),
        "/v1/health" => json(200, &shared.health_json()),
        "/" => respond(200, "text/html; charset=utf-8", status_page::render(shared)),
        _ => respond(404, "text/plain", "not found\n"),
    }
}

//! The calls in flight over HTTP, for the socket and the admin port alike (docs/rpc.md,
//! "Calls in flight"): `GET /v1/calls` lists them, `DELETE /v1/calls/{request_id}` cancels
//! every cancellable call with that id, counts it and logs it once with who cancelled.

use hyper::Response;
use serde::Serialize;

use super::answer;
use crate::call::registry::{Cancelled, State};
use crate::error::Error;
use crate::http::{Body, respond};
use crate::sidecar::Sidecar;

/// The prefix of a cancel's path; the request id follows it.
pub const PATH: &str = "/v1/calls/";

/// `GET /v1/calls`: the oldest calls in flight, bounded, with the total.
pub fn list(sidecar: &Sidecar) -> Response<Body> {
    ok(&sidecar.calls.list())
}

#[derive(Serialize)]
struct CancelAnswer {
    cancelled: Vec<Cancelled>,
}

/// `DELETE /v1/calls/{request_id}`; `by_uid` is the canceller on the socket, None for the
/// admin port.
pub fn cancel(sidecar: &Sidecar, request_id: &str, by_uid: Option<u32>) -> Response<Body> {
    let cancelled = sidecar.calls.cancel(request_id);
    if cancelled.is_empty() {
        let e = Error::NotFound(format!(
            "no call with request_id {request_id:?} is in flight and still cancellable (already answered, cancelled or never there); `tether calls` lists them"
        ));
        return answer::error(&e, false, Some(request_id));
    }
    for call in &cancelled {
        let stage = match call.state_before {
            State::Queued => "queued",
            _ => "running",
        };
        sidecar.metrics.cancelled(&call.target, &call.verb, stage);
        tracing::info!(
            request_id = call.request_id,
            target = call.target,
            verb = call.verb,
            state_before = call.state_before.as_str(),
            sent = call.sent,
            canceller_uid = by_uid,
            via = if by_uid.is_some() {
                "socket"
            } else {
                "admin port"
            },
            "call cancelled by an operator"
        );
    }
    ok(&CancelAnswer { cancelled })
}

/// The admin port's refusal of a cancel while `server.admin_mutations` is off.
pub fn read_only() -> Response<Body> {
    answer::error(&Error::AdminReadOnly, false, None)
}

fn ok(body: &impl Serialize) -> Response<Body> {
    let body = serde_json::to_vec(body).expect("serializable");
    respond(200, "application/json", body)
}

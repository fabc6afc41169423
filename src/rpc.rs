//! The RPC on the Unix socket: `POST /v1/call` and `GET /v1/health`, the error envelope, and
//! the socket's life (stale file replaced, a live one refused, mode applied, uid checked).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response};
use serde::Deserialize;
use tokio::net::UnixListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::error::Error;
use crate::http::{BODY_READ_TIMEOUT, Body, accept_loop, json, respond, serve_connection};
use crate::sidecar::Sidecar;
use crate::target::{Call, CallResult};
use crate::args::command_line;

/// Longest request id accepted from a caller.
const MAX_REQUEST_ID: usize = 128;

/// The body of `POST /v1/call`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CallRequest {
    target: Option<String>,
    verb: String,
    #[serde(default)]
    args: Vec<String>,
    stdin: Option<String>,
    stdin_base64: Option<String>,
    timeout_ms: Option<u64>,
    request_id: Option<String>,
}

/// Binds the socket: a stale file nobody listens on is replaced; a live one means another
/// tether runs there, and starting is refused.
pub fn bind(path: &Path, mode: u32) -> Result<UnixListener, String> {
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(format!(
                "another process (probably another tether) is listening on {}; refusing to start",
                path.display()
            ));
        }
        std::fs::remove_file(path)
            .map_err(|e| format!("cannot remove the stale socket {}: {e}", path.display()))?;
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    let listener =
        UnixListener::bind(path).map_err(|e| format!("cannot bind {}: {e}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| format!("cannot chmod {:o} {}: {e}", mode, path.display()))?;
    Ok(listener)
}

/// Accepts RPC connections until `cancel` fires. Callers outside `server.allowed_uids`
/// (SO_PEERCRED) get `forbidden` for every request.
pub async fn serve(
    listener: UnixListener,
    shared: Arc<Sidecar>,
    tracker: TaskTracker,
    cancel: CancellationToken,
) {
    let accept = || async { listener.accept().await.map(|(stream, _)| stream) };
    let serve = |stream: tokio::net::UnixStream| {
        let uid = stream.peer_cred().map(|c| c.uid()).ok();
        let allowed = shared.server.allowed_uids.is_empty()
            || uid.is_some_and(|uid| shared.server.allowed_uids.contains(&uid));
        let shared = shared.clone();
        let handler = move |req| {
            let shared = shared.clone();
            async move {
                if !allowed {
                    return error_response(&Error::Forbidden(uid.unwrap_or(u32::MAX)), false, None);
                }
                route(shared, req).await
            }
        };
        serve_connection(stream, handler, &tracker, cancel.clone());
    };
    accept_loop("RPC socket", accept, serve, cancel.clone()).await;
}

async fn route(shared: Arc<Sidecar>, req: Request<Incoming>) -> Response<Body> {
    match (req.method(), req.uri().path()) {
        (&Method::POST, "/v1/call") => {
            let tracked = shared.calls.track_future(call(shared.clone(), req));
            tracked.await
        }
        (&Method::GET, "/v1/health") => json(200, &shared.health_json()),
        (&Method::GET, "/livez") => respond(200, "text/plain", "ok\n"),
        (&Method::GET, "/readyz") if shared.is_draining() => {
            respond(503, "text/plain", "draining\n")
        }
        (&Method::GET, "/readyz") => respond(200, "text/plain", "ready\n"),
        (_, "/v1/call" | "/v1/health") => error_response(
            &Error::BadRequest("method not allowed here".into()),
            false,
            None,
        ),
        (_, path) => error_response(
            &Error::BadRequest(format!("no endpoint {path}")),
            false,
            None,
        ),
    }
}

async fn call(shared: Arc<Sidecar>, req: Request<Incoming>) -> Response<Body> {
    let started = Instant::now();
    let mut request_id = None;
    let mut labels = None;
    let result = async {
        if shared.is_draining() {
            return Err(Error::ShuttingDown);
        }
        let body = read_body(req, shared.server.max_request_bytes).await?;
        let call: CallRequest = serde_json::from_slice(&body)
            .map_err(|e| Error::BadRequest(format!("the body is not a valid call: {e}")))?;
        request_id = Some(checked_request_id(call.request_id.clone())?);
        let target = shared.target(call.target.as_deref())?;
        let verb_config = shared.verbs.get(&call.verb);
        labels = Some((
            target.clone(),
            verb_config
                .map_or("other", |_| call.verb.as_str())
                .to_string(),
        ));
        let verb_config = verb_config.ok_or_else(|| Error::VerbNotAllowed(call.verb.clone()))?;
        let stdin = stdin_bytes(&call)?;
        let timeout = match call.timeout_ms {
            Some(0) => return Err(Error::BadRequest("timeout_ms must be at least 1".into())),
            Some(ms) => verb_config
                .timeout
                .min(std::time::Duration::from_millis(ms)),
            None => verb_config.timeout,
        };
        let line = command_line(&call.verb, &call.args)?;
        // Whatever the call path logs (a connection attempt, a stuck channel) names the call.
        let span = tracing::info_span!("call", request_id = request_id.as_deref(), target = %target.name, verb = %call.verb);
        let run = Box::pin(
            target
                .call(Call {
                    verb: &call.verb,
                    verb_config,
                    line,
                    args: &call.args,
                    stdin,
                    timeout,
                })
                .instrument(span),
        );
        let (result, cached): (CallResult, bool) = tokio::select! {
            done = run => done,
            _ = shared.hard_stop.cancelled() => (Err(Error::ShuttingDown), false),
        };
        result.map(|out| (out, cached, call, verb_config.idempotent))
    }
    .await;
    let request_id = request_id.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let elapsed = started.elapsed();
    let code = result.as_ref().map_or_else(|e| e.code(), |_| "ok");
    let (target_name, verb) = labels
        .as_ref()
        .map(|(t, v)| (t.name.as_str(), v.as_str()))
        .unwrap_or(("", ""));
    if let Some((target, verb)) = &labels {
        target.metrics.call(verb, code, elapsed.as_secs_f64());
        if let Err(e @ (Error::HostKeyMismatch { .. } | Error::UpstreamAuthFailed { .. })) = &result
        {
            target.health.note_error(e);
        }
    }
    let duration_ms = crate::health::millis(elapsed);
    match result {
        Ok((out, cached, call, _)) => {
            tracing::info!(
                request_id,
                target = target_name,
                verb,
                code,
                duration_ms,
                cached,
                exit_status = out.exit_status,
                "call"
            );
            json(
                200,
                &serde_json::json!({
                    "request_id": request_id,
                    "target": target_name,
                    "verb": call.verb,
                    "exit_status": out.exit_status,
                    "exit_signal": out.exit_signal,
                    "stdout": out.stdout.text(),
                    "stderr": out.stderr.text(),
                    "stdout_truncated": out.stdout.truncated(),
                    "stderr_truncated": out.stderr.truncated(),
                    "duration_ms": duration_ms,
                    "cached": cached,
                }),
            )
        }
        Err(e) => {
            tracing::info!(request_id, target = target_name, verb, code, duration_ms, error = %e, "call");
            let idempotent = labels
                .as_ref()
                .and_then(|_| shared.verbs.get(verb))
                .is_some_and(|v| v.idempotent);
            error_response(&e, idempotent, Some(&request_id))
        }
    }
}

async fn read_body(req: Request<Incoming>, limit: usize) -> Result<Bytes, Error> {
    let read = Limited::new(req.into_body(), limit).collect();
    let Ok(read) = tokio::time::timeout(BODY_READ_TIMEOUT, read).await else {
        return Err(Error::BadRequest(format!(
            "the request body did not arrive within {BODY_READ_TIMEOUT:?}"
        )));
    };
    match read {
        Ok(body) => Ok(body.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(Error::PayloadTooLarge(
            format!("the request body is over server.max_request_bytes ({limit} bytes)"),
        )),
        Err(e) => Err(Error::BadRequest(format!(
            "could not read the request body: {e}"
        ))),
    }
}

fn checked_request_id(given: Option<String>) -> Result<String, Error> {
    let Some(id) = given else {
        return Ok(uuid::Uuid::new_v4().to_string());
    };
    let printable = id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b));
    if id.is_empty() || id.len() > MAX_REQUEST_ID || !printable {
        return Err(Error::BadRequest(format!(
            "request_id is 1 to {MAX_REQUEST_ID} of [A-Za-z0-9._:-]"
        )));
    }
    Ok(id)
}

fn stdin_bytes(call: &CallRequest) -> Result<Option<Bytes>, Error> {
    match (&call.stdin, &call.stdin_base64) {
        (Some(_), Some(_)) => Err(Error::BadRequest(
            "give stdin or stdin_base64, not both".into(),
        )),
        (Some(text), None) => Ok(Some(Bytes::from(text.clone()))),
        (None, Some(b64)) => base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map(|b| Some(Bytes::from(b)))
            .map_err(|e| Error::BadRequest(format!("stdin_base64 is not base64: {e}"))),
        (None, None) => Ok(None),
    }
}

/// The SPEC's error envelope.
pub fn error_response(e: &Error, idempotent: bool, request_id: Option<&str>) -> Response<Body> {
    json(
        e.http_status(),
        &serde_json::json!({
            "error": { "code": e.code(), "message": e.to_string(), "retryable": e.retryable(idempotent) },
            "request_id": request_id,
        }),
    )
}

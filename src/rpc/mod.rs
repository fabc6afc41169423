//! The RPC on the Unix socket (docs/rpc.md): `POST /v1/call`, `GET /v1/health`, the calls in
//! flight (`GET /v1/calls`, `DELETE /v1/calls/{id}`, in [`calls`]), and the
//! socket's life (stale file replaced, a live one refused, created with its final mode, uid
//! checked, connections capped by [`admission`]). A call is validated here, then started as
//! a task (see [`crate::call`]) that the handler only subscribes to: a caller that hangs up
//! cancels nothing that was sent.

pub mod admission;
mod answer;
mod body;
pub mod calls;

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use bytes::Bytes;
use hyper::body::Incoming;
use hyper::{Method, Request, Response};
use serde::Deserialize;
use tokio::net::UnixListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::call::{Call, Piece, task};
use crate::config::MAX_SOCKET_PATH;
use crate::config::VerbConfig;
use crate::error::Error;
use crate::http::clock::Timeouts;
use crate::http::{Body, accept_loop, json, respond, serve_connection};
use crate::sidecar::Sidecar;
use crate::target::Target;
use crate::trace::Trace;
use crate::wire::in_band::{Credentials, InBand, Unchecked};
use crate::{transport, wire};

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
    #[serde(default)]
    stream: bool,
    /// A W3C traceparent, for clients that cannot set the header.
    trace: Option<String>,
    /// For the verb program on the laptop only (docs/rpc.md, "Credentials").
    credentials: Option<Unchecked>,
}

/// Binds the socket: a stale file nobody listens on is replaced; a live one means another
/// tether runs there, and starting is refused. The socket appears at `path` with its final
/// `mode` already set: it is bound and chmod-ed inside a private (0700) directory next to
/// it, then renamed into place (the umask is process-wide, so setting it around bind would
/// race with other threads).
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
    let staging = staging_dir(path)?;
    let bound = bind_privately(&staging.join("s"), path, mode);
    let _ = std::fs::remove_dir_all(&staging);
    bound
}

/// A fresh private directory beside `path`, short enough that a socket inside it fits.
fn staging_dir(path: &Path) -> Result<PathBuf, String> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let staging = dir.join(format!(".tether-bind-{}", std::process::id()));
    let needed = staging.as_os_str().len() + 2;
    if needed > MAX_SOCKET_PATH {
        return Err(format!(
            "cannot bind {} safely: its directory's path is too long to bind inside it ({needed} of {MAX_SOCKET_PATH} bytes); use a shorter server.socket",
            path.display()
        ));
    }
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&staging)
        .map_err(|e| format!("cannot create {}: {e}", staging.display()))?;
    Ok(staging)
}

fn bind_privately(inside: &Path, path: &Path, mode: u32) -> Result<UnixListener, String> {
    let listener =
        UnixListener::bind(inside).map_err(|e| format!("cannot bind {}: {e}", path.display()))?;
    std::fs::set_permissions(inside, std::fs::Permissions::from_mode(mode))
        .map_err(|e| format!("cannot chmod {:o} {}: {e}", mode, path.display()))?;
    std::fs::rename(inside, path)
        .map_err(|e| format!("cannot move the socket to {}: {e}", path.display()))?;
    Ok(listener)
}

/// Accepts RPC connections until `cancel` fires. A connection over a cap is closed at once.
/// Callers outside `server.allowed_uids` (SO_PEERCRED) get `forbidden`, and their connection
/// is closed after that answer and kept idle no longer than `server.request_timeout`.
pub async fn serve(
    listener: UnixListener,
    shared: Arc<Sidecar>,
    tracker: TaskTracker,
    cancel: CancellationToken,
) {
    let accept = || async { listener.accept().await.map(|(stream, _)| stream) };
    let server = &shared.server;
    let admission = admission::Admission::new(
        server.max_connections,
        server.max_connections_per_uid,
        admission::open_files_limit(),
        shared.metrics.rpc_connections.clone(),
    );
    let serve = |stream: tokio::net::UnixStream| {
        let uid = stream.peer_cred().map(|c| c.uid()).unwrap_or(u32::MAX);
        let admitted = match admission.admit(uid) {
            Ok(admitted) => admitted,
            Err(refused) => {
                shared.metrics.rpc_connection_refused(refused.reason());
                tracing::debug!(uid, reason = refused.reason(), "RPC connection refused");
                return;
            }
        };
        let allowed = server.allowed_uids.is_empty() || server.allowed_uids.contains(&uid);
        let timeouts = match allowed {
            true => server.timeouts(),
            false => Timeouts {
                idle: server.request_timeout.min(server.idle_timeout),
                request: server.request_timeout,
            },
        };
        let shared = shared.clone();
        let handler = move |req: Request<Incoming>| {
            let shared = shared.clone();
            async move {
                if !allowed {
                    return forbidden(&shared, uid, req);
                }
                route(shared, req, uid).await
            }
        };
        serve_connection(
            stream,
            handler,
            timeouts,
            admitted,
            &tracker,
            cancel.clone(),
        );
    };
    accept_loop("RPC socket", accept, serve, cancel.clone()).await;
}

/// `forbidden`, and the connection closes after it: a caller that may not call gets no
/// kept-alive connection to hold.
fn forbidden(shared: &Sidecar, uid: u32, req: Request<Incoming>) -> Response<Body> {
    // Read what the caller still sends, so that it reads the answer.
    let max = shared.server.max_request_bytes.saturating_mul(2);
    shared
        .runtime
        .calls
        .spawn(body::linger(req.into_body(), max));
    let mut answer = answer::error(&Error::Forbidden(uid), false, None);
    answer.headers_mut().insert(
        hyper::header::CONNECTION,
        hyper::header::HeaderValue::from_static("close"),
    );
    answer
}

async fn route(sidecar: Arc<Sidecar>, req: Request<Incoming>, uid: u32) -> Response<Body> {
    match (req.method(), req.uri().path()) {
        (&Method::POST, "/v1/call") => call(&sidecar, req, uid).await,
        (&Method::GET, "/v1/calls") => calls::list(&sidecar),
        (&Method::DELETE, path) if path.starts_with(calls::PATH) => {
            calls::cancel(&sidecar, &path[calls::PATH.len()..], Some(uid))
        }
        (&Method::GET, "/v1/health") => json(200, &sidecar.health_json()),
        (&Method::GET, "/livez") => respond(200, "text/plain", "ok\n"),
        (&Method::GET, "/readyz") if sidecar.is_draining() => {
            respond(503, "text/plain", "draining\n")
        }
        (&Method::GET, "/readyz") => respond(200, "text/plain", "ready\n"),
        (_, "/v1/call" | "/v1/health" | "/v1/calls") => answer::error(
            &Error::BadRequest("method not allowed here".into()),
            false,
            None,
        ),
        (_, path) => answer::error(
            &Error::BadRequest(format!("no endpoint {path}")),
            false,
            None,
        ),
    }
}

/// A call refused before it started, and what is known of it by then.
struct Refused {
    error: Error,
    request_id: Option<String>,
    /// The target and the verb's metric label, once known.
    labels: Option<(Arc<Target>, String)>,
}

async fn call(sidecar: &Sidecar, req: Request<Incoming>, uid: u32) -> Response<Body> {
    let started = Instant::now();
    let (target, call, stream) = match accept(sidecar, req, uid).await {
        Ok(accepted) => accepted,
        Err(refused) => return refuse(refused, started.elapsed()),
    };
    if stream {
        let (reply, mut pieces) = task::streamed();
        task::start(&target, &sidecar.results, &sidecar.calls, call, reply);
        match pieces.recv().await {
            Some(Piece::Started) => answer::streamed(pieces),
            Some(Piece::End(meta, Err(e))) => answer::call_error(&e, &meta),
            other => internal(format!("a streamed call began with {other:?}")),
        }
    } else {
        let (reply, mut answered) = task::buffered();
        task::start(&target, &sidecar.results, &sidecar.calls, call, reply);
        match answered.recv().await {
            Some(answer) => answer::buffered(answer),
            None => internal("a call task ended without an answer".into()),
        }
    }
}

fn internal(message: String) -> Response<Body> {
    answer::error(&Error::Internal(message), false, None)
}

/// Reads and validates a call; what it returns is ready to run.
async fn accept(
    sidecar: &Sidecar,
    req: Request<Incoming>,
    uid: u32,
) -> Result<(Arc<Target>, Call, bool), Refused> {
    let refused = |error, request_id: Option<&str>, labels: Option<(&Arc<Target>, &str)>| Refused {
        error,
        request_id: request_id.map(str::to_string),
        labels: labels.map(|(target, verb)| (target.clone(), verb.to_string())),
    };
    let server = &sidecar.server;
    let header = |name| {
        let value = req.headers().get(name)?;
        value.to_str().ok().map(str::to_string)
    };
    let (traceparent, tracestate) = (header("traceparent"), header("tracestate"));
    let body = match body::read(req, server.max_request_bytes, server.request_timeout).await {
        Ok(body) => body,
        Err((e, rest)) => {
            let max = server.max_request_bytes.saturating_mul(2);
            sidecar.runtime.calls.spawn(body::linger(rest, max));
            return Err(refused(e, None, None));
        }
    };
    let mut request: CallRequest = serde_json::from_slice(&body).map_err(|e| {
        let e = Error::BadRequest(format!("the body is not a valid call: {}", unechoed(&e)));
        refused(e, None, None)
    })?;
    drop(body);
    // Checked once the request is read: a caller that is still writing its body when
    // tether answers would get a broken pipe instead of `shutting_down`.
    if sidecar.is_draining() {
        return Err(refused(Error::ShuttingDown, None, None));
    }
    let request_id =
        checked_request_id(request.request_id.clone()).map_err(|e| refused(e, None, None))?;
    let id = Some(request_id.as_str());
    let target = sidecar
        .target(request.target.as_deref())
        .map_err(|e| refused(e, id, None))?
        .clone();
    let verb_config = sidecar.verbs.get(&request.verb);
    let labels = Some((
        &target,
        verb_config.map_or("other", |_| request.verb.as_str()),
    ));
    let verb_config = verb_config
        .ok_or_else(|| refused(Error::VerbNotAllowed(request.verb.clone()), id, labels))?;
    let stdin = stdin_bytes(&request).map_err(|e| refused(e, id, labels))?;
    let timeout = match request.timeout_ms {
        Some(0) => {
            let e = Error::BadRequest("timeout_ms must be at least 1".into());
            return Err(refused(e, id, labels));
        }
        Some(ms) => verb_config.timeout.min(Duration::from_millis(ms)),
        None => verb_config.timeout,
    };
    let line = wire::encode(&request.verb, &request.args).map_err(|e| refused(e, id, labels))?;
    let credentials = request.credentials.take().unwrap_or_default();
    let credentials = checked_credentials(credentials, &request.verb, verb_config)
        .map_err(|e| refused(e, id, labels))?;
    let trace = Trace::continue_or_start(
        traceparent.or(request.trace).as_deref(),
        tracestate.as_deref(),
    );
    let in_band = InBand {
        traceparent: Some(trace.downstream()),
        tracestate: trace.state.clone(),
        credentials,
    };
    let call = Call {
        request_id,
        verb: request.verb,
        verb_config: verb_config.clone(),
        request: transport::Request {
            line,
            stdin,
            in_band: Some(Arc::new(in_band)),
        },
        timeout,
        caller_uid: Some(uid),
        trace,
    };
    Ok((target, call, request.stream))
}

/// The call's credentials once checked: names and sizes (docs/rpc.md, "Credentials"), and
/// none for a cached verb, whose shared result cannot depend on a secret.
fn checked_credentials(
    given: Unchecked,
    verb: &str,
    verb_config: &VerbConfig,
) -> Result<Credentials, Error> {
    let credentials = given.check().map_err(|e| match e.is_too_large() {
        true => Error::PayloadTooLarge(e.to_string()),
        false => Error::BadRequest(e.to_string()),
    })?;
    if !credentials.is_empty() && !verb_config.cache_ttl.is_zero() {
        return Err(Error::BadRequest(format!(
            "verb {verb} has a cache_ttl, so callers share its result, which cannot depend on \
             a credential; send credentials only to verbs without a cache"
        )));
    }
    Ok(credentials)
}

/// A body's parse error without the text serde quotes from it (`invalid type: string "…"`):
/// a string in the wrong place may be a credential.
fn unechoed(e: &serde_json::Error) -> String {
    let message = e.to_string();
    let Some(start) = message.find("string \"") else {
        return message;
    };
    let open = start + "string \"".len();
    match message[open..].rfind('"') {
        Some(close) => format!("{}…{}", &message[..open], &message[open + close..]),
        None => message,
    }
}

/// Answers, logs and counts a call refused before it started.
fn refuse(refused: Refused, took: Duration) -> Response<Body> {
    let Refused {
        error,
        request_id,
        labels,
    } = refused;
    let request_id = request_id.unwrap_or_else(new_request_id);
    let (target, verb) = match &labels {
        Some((target, verb)) => {
            target.record_call(verb, Some(&error), took, None);
            (target.name.as_str(), verb.as_str())
        }
        None => ("", ""),
    };
    let duration_ms = crate::health::millis(took);
    tracing::info!(request_id, target, verb, code = error.code(), duration_ms, error = %error, "call");
    answer::error(&error, false, Some(&request_id))
}

/// The caller's request id when it is valid, else a fresh one when it gave none.
fn checked_request_id(given: Option<String>) -> Result<String, Error> {
    let Some(id) = given else {
        return Ok(new_request_id());
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

/// The one place a request id is made: for a call that gave none, or a refusal before its
/// own was read.
fn new_request_id() -> String {
    uuid::Uuid::new_v4().to_string()
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

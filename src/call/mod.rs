//! A call is a task. Once the RPC has accepted a call, [`task::start`] runs it in a task of its
//! own, which owns the slot and the channel until the server has freed them; the HTTP handler
//! only subscribes to its [`Reply`]. A caller that hangs up drops its subscription: a call
//! still queued is then dropped, never sent; one already sent runs to its end or deadline.
//! Either way it is logged and counted as abandoned. See docs/rpc.md ("When the caller
//! hangs up").
//!
//! - [`buffer`]: output held for a buffered answer, within the shared memory budget.
//! - [`stream`]: output handed on as it arrives, for a streamed answer.
//! - [`cache`]: single-flight over call tasks for verbs with a `cache_ttl`.
//! - [`refusal`]: the shim's "busy" refusal, answered as tether's own `busy`.
//! - [`task`]: the task itself: run, answer, log and count, then release.
//! - [`registry`]: the calls in flight, for `GET /v1/calls` and cancel.

pub mod buffer;
pub mod cache;
pub mod refusal;
pub mod registry;
pub mod stream;
pub mod task;
#[cfg(test)]
mod tests;

use std::time::Duration;

use tokio::sync::mpsc;

use crate::config::VerbConfig;
use crate::error::Error;
use crate::trace::Trace;
use crate::transport::{Exit, Request};

pub use buffer::Output;
pub use stream::Piece;

/// A call as the RPC hands it over, already validated.
#[derive(Clone)]
pub struct Call {
    pub request_id: String,
    pub verb: String,
    pub verb_config: VerbConfig,
    /// What is sent to the remote: the command line (the verb and its arguments) and stdin.
    pub request: Request,
    /// The call's deadline, counted from its start: the verb's timeout or less.
    pub timeout: Duration,
    /// The caller's uid (SO_PEERCRED), for `/v1/calls`.
    pub caller_uid: Option<u32>,
    /// The call's trace context; [`Trace::downstream`] is what goes on to the shim.
    pub trace: Trace,
}

/// What every answer says about its call besides the result.
#[derive(Debug, Clone)]
pub struct Meta {
    pub request_id: String,
    pub target: String,
    pub verb: String,
    pub duration: Duration,
    pub cached: bool,
    pub idempotent: bool,
    pub trace_id: String,
}

/// How a caller subscribes to its call.
pub enum Reply {
    /// The whole answer at once, when the call has ended (one message).
    Buffered(mpsc::Sender<Answer>),
    /// [`Piece`]s as the output arrives.
    Streamed(mpsc::Sender<Piece>),
}

/// A buffered call's answer.
pub struct Answer {
    pub meta: Meta,
    pub result: Result<std::sync::Arc<Output>, Error>,
}

/// How a streamed call ended.
#[derive(Debug, Clone)]
pub struct Ending {
    pub exit: Exit,
    pub stdout_truncated: bool,
    pub stderr_truncated: bool,
}

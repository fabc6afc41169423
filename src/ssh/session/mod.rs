//! The resident shim session on tether's side (docs/shim.md, "Session mode"): when the
//! forced command is a `tether shim` with session mode, each connection runs it once, with
//! the command line `@session`, and sends its calls there as frames ([`crate::wire::session`]):
//! one round trip per call, no channel, no login shell and no new process for the shim.
//!
//! - [`open`]: asking for the session and the hellos; a forced command without session mode
//!   refuses it, and the connection then runs one exec per call (logged once per target).
//! - [`live`]: a session that is up: the one writer of its channel, the reader that routes
//!   each frame to its request, the heartbeat.
//! - [`request`]: one request on it, with the meaning exec gives a deadline, a hang-up, a
//!   cancel and a lost channel.
//!
//! Per connection, the session is asked for once, by a task of its own, as soon as the
//! connection is first used (the probe's first round trip, or a call); no call ever waits
//! for the answer: until the session is up, calls go out as execs. A session that ended is
//! asked for again, one refused is not.

pub mod live;
pub mod open;
pub mod request;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use prometheus::IntGauge;
use tokio_util::task::TaskTracker;

use super::connection::Connection;
pub use live::Live;
use open::Declined;

/// Whether a target runs its calls on a resident `tether shim` session
/// (`targets.NAME.shim_session`): `Auto` when the forced command has session mode, else exec
/// per call; `Off` always exec.
pub use super::Ask as Mode;

/// A target's way of asking its connections for sessions.
#[derive(Clone)]
pub struct Plan {
    pub mode: Mode,
    pub tracker: TaskTracker,
    /// Set once a refusal was logged for the target, so it is logged once.
    pub told: Arc<AtomicBool>,
    /// Sessions up now (`tether_shim_sessions`).
    pub up: IntGauge,
}

/// One connection's session: not asked yet, being asked for, up, or refused.
#[derive(Default)]
pub struct Slot {
    state: Mutex<State>,
}

#[derive(Default)]
enum State {
    #[default]
    Unasked,
    Opening,
    Up(Arc<Live>),
    Refused,
}

/// The session of `conn` to run a call on, when one is up; `None` runs the call as an exec.
/// It never waits: a connection not asked yet (or whose session ended) is asked now, in the
/// background, and its calls meanwhile go out as execs (the first call on a connection costs
/// what it costs without sessions, never a wait on a forced command that does not answer).
pub fn ready(conn: &Arc<Connection>, plan: &Plan) -> Option<Arc<Live>> {
    if plan.mode == Mode::Off {
        return None;
    }
    let mut state = conn.session.state.lock().expect("poisoned");
    match &*state {
        State::Up(live) if live.is_up() => Some(live.clone()),
        State::Refused | State::Opening => None,
        State::Up(_) | State::Unasked => {
            *state = State::Opening;
            let (conn, plan) = (conn.clone(), plan.clone());
            plan.tracker
                .clone()
                .spawn(async move { ask(&conn, &plan).await });
            None
        }
    }
}

/// Asks `conn` for its session and records the answer for every call waiting on it.
async fn ask(conn: &Arc<Connection>, plan: &Plan) {
    let state = match open::open(conn, &plan.tracker, &plan.up).await {
        Ok(live) => State::Up(live),
        Err(declined) => {
            tell(conn, plan, &declined);
            State::Refused
        }
    };
    *conn.session.state.lock().expect("poisoned") = state;
}

fn tell(conn: &Connection, plan: &Plan, declined: &Declined) {
    match declined {
        Declined::Refused(why) if !plan.told.swap(true, Ordering::SeqCst) => tracing::info!(
            conn = conn.id,
            "the remote's forced command has no session mode ({why}): calls run one exec each (docs/shim.md, \"Session mode\")"
        ),
        Declined::Refused(why) => tracing::debug!(conn = conn.id, "no session mode: {why}"),
        Declined::Failed(why) => tracing::warn!(
            conn = conn.id,
            "the shim session could not be opened ({why}): this connection runs one exec per call"
        ),
    }
}

/// Ends `conn`'s session, if it has one up (the connection is closing).
pub fn end(conn: &Connection) {
    if let State::Up(live) = &*conn.session.state.lock().expect("poisoned") {
        live.end();
    }
}

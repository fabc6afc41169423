//! The cached health of one target: what the probes found, kept in memory so that reading
//! it never touches the network. Serialises to the `/v1/health` shape of docs/rpc.md. What
//! the observations mean is [`policy`]'s to judge.

pub mod policy;

use std::collections::VecDeque;
use std::sync::RwLock;
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;

use crate::error::Error;
pub use policy::Policy;
use policy::Seen;

/// Probe points kept for the status page's chart: ~5 minutes at the default 2 s interval.
const HISTORY: usize = 150;
/// Recent errors kept for the status page.
const RECENT_ERRORS: usize = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Up,
    Unknown,
    Degraded,
    Down,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Up => "up",
            Status::Unknown => "unknown",
            Status::Degraded => "degraded",
            Status::Down => "down",
        }
    }
}

/// One probe's outcome.
#[derive(Debug, Clone)]
pub struct ProbeResult {
    pub ok: bool,
    pub latency: Duration,
    pub at: SystemTime,
    pub instant: Instant,
}

/// An error as the health JSON shows it.
#[derive(Debug, Clone, Serialize)]
pub struct LastError {
    pub code: String,
    pub message: String,
    pub at: String,
}

/// Everything the probes learnt about one target.
#[derive(Debug)]
struct State {
    status: Status,
    transport: Option<ProbeResult>,
    shim: Option<ProbeResult>,
    consecutive_failures: u32,
    last_ok_at: Option<SystemTime>,
    last_error: Option<LastError>,
    history: VecDeque<(SystemTime, Option<Duration>)>,
    errors: VecDeque<LastError>,
}

/// Shared, cheaply readable health of one target.
#[derive(Debug)]
pub struct Health {
    policy: Policy,
    state: RwLock<State>,
}

/// Live pool numbers, read at the moment of the query.
pub struct PoolNumbers {
    pub connections: usize,
    pub channels_in_use: usize,
    pub channels_capacity: usize,
    pub waiting: usize,
}

impl Health {
    pub fn new(policy: Policy) -> Self {
        Health {
            policy,
            state: RwLock::new(State {
                status: Status::Unknown,
                transport: None,
                shim: None,
                consecutive_failures: 0,
                last_ok_at: None,
                last_error: None,
                history: VecDeque::with_capacity(HISTORY),
                errors: VecDeque::with_capacity(RECENT_ERRORS),
            }),
        }
    }

    pub fn status(&self) -> Status {
        self.state.read().expect("poisoned").status
    }

    /// The judgments made from this target's probes.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Records a transport probe and returns the new status.
    pub fn transport(&self, result: Result<Duration, &Error>) -> Status {
        let mut s = self.state.write().expect("poisoned");
        let now = SystemTime::now();
        let latency = result.as_ref().ok().copied();
        if s.history.len() == HISTORY {
            s.history.pop_front();
        }
        s.history.push_back((now, latency));
        s.transport = Some(ProbeResult {
            ok: latency.is_some(),
            latency: latency.unwrap_or_default(),
            at: now,
            instant: Instant::now(),
        });
        match result {
            Ok(_) => {
                s.consecutive_failures = 0;
                s.last_ok_at = Some(now);
            }
            Err(e) => {
                s.consecutive_failures += 1;
                record_error(&mut s, e);
            }
        }
        s.status = self.derive(&s);
        s.status
    }

    /// Records a shim probe and returns the new status.
    pub fn shim(&self, result: Result<Duration, &Error>) -> Status {
        let mut s = self.state.write().expect("poisoned");
        s.shim = Some(ProbeResult {
            ok: result.is_ok(),
            latency: result.as_ref().ok().copied().unwrap_or_default(),
            at: SystemTime::now(),
            instant: Instant::now(),
        });
        if let Err(e) = result {
            record_error(&mut s, e);
        }
        s.status = self.derive(&s);
        s.status
    }

    /// Notes a call's upstream failure (host key, auth) so operators see it.
    pub fn note_error(&self, e: &Error) {
        record_error(&mut self.state.write().expect("poisoned"), e);
    }

    /// The per-target object of `/v1/health` (docs/rpc.md).
    pub fn to_json(&self, pool: PoolNumbers) -> serde_json::Value {
        let s = self.state.read().expect("poisoned");
        serde_json::json!({
            "status": s.status,
            "connections": pool.connections,
            "channels_in_use": pool.channels_in_use,
            "channels_capacity": pool.channels_capacity,
            "waiting": pool.waiting,
            "transport": s.transport.as_ref().map(probe_json),
            "shim": s.shim.as_ref().map(probe_json),
            "consecutive_failures": s.consecutive_failures,
            "last_ok_at": s.last_ok_at.map(rfc3339),
            "last_error": s.last_error,
        })
    }

    /// Probe latencies over the last minutes (`None` for a failed probe), oldest first.
    pub fn history(&self) -> Vec<(SystemTime, Option<Duration>)> {
        self.state
            .read()
            .expect("poisoned")
            .history
            .iter()
            .copied()
            .collect()
    }

    /// The most recent errors, newest first.
    pub fn recent_errors(&self) -> Vec<LastError> {
        self.state
            .read()
            .expect("poisoned")
            .errors
            .iter()
            .rev()
            .cloned()
            .collect()
    }
}

impl Health {
    fn derive(&self, s: &State) -> Status {
        let seen = Seen {
            transport_ok: s.transport.as_ref().map(|p| p.ok),
            consecutive_failures: s.consecutive_failures,
            shim_ok: s.shim.as_ref().map(|p| p.ok),
        };
        self.policy.status(&seen, s.status)
    }
}

fn record_error(s: &mut State, e: &Error) {
    let err = LastError {
        code: e.code().to_string(),
        message: e.to_string(),
        at: rfc3339(SystemTime::now()),
    };
    if s.errors.len() == RECENT_ERRORS {
        s.errors.pop_front();
    }
    s.errors.push_back(err.clone());
    s.last_error = Some(err);
}

fn probe_json(p: &ProbeResult) -> serde_json::Value {
    serde_json::json!({
        "ok": p.ok,
        "latency_ms": millis(p.latency),
        "checked_at": rfc3339(p.at),
        "age_ms": p.instant.elapsed().as_millis() as u64,
    })
}

/// Milliseconds with a tenth of a microsecond's precision kept.
pub fn millis(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e7).round() / 1e4
}

/// `2026-11-21T10:00:00.123Z`.
pub fn rfc3339(t: SystemTime) -> String {
    let t: time::OffsetDateTime = t.into();
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_then_up_then_down_after_threshold_then_up() {
        let probe = crate::config::ProbeConfig {
            fail_threshold: 2,
            shim_verb: "health".into(),
            ..Default::default()
        };
        let h = Health::new(Policy::new(&probe));
        assert_eq!(h.status(), Status::Unknown);
        let err = Error::UpstreamUnreachable("x".into());
        assert_eq!(h.transport(Ok(Duration::from_millis(1))), Status::Up);
        assert_eq!(h.transport(Err(&err)), Status::Up);
        assert_eq!(h.transport(Err(&err)), Status::Down);
        assert_eq!(h.transport(Ok(Duration::from_millis(1))), Status::Up);
        assert_eq!(h.shim(Err(&err)), Status::Degraded);
        assert_eq!(h.shim(Ok(Duration::from_millis(3))), Status::Up);
        let json = h.to_json(PoolNumbers {
            connections: 1,
            channels_in_use: 0,
            channels_capacity: 16,
            waiting: 0,
        });
        assert_eq!(json["last_error"]["code"], "upstream_unreachable");
        assert_eq!(json["consecutive_failures"], 0);
    }

    #[test]
    fn worst_status_orders_as_the_spec_says() {
        let worst = [Status::Up, Status::Degraded, Status::Unknown]
            .into_iter()
            .max();
        assert_eq!(worst, Some(Status::Degraded));
        assert!(Status::Down > Status::Degraded);
    }
}

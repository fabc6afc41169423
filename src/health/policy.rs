//! Every judgment made from a target's probes, in one place, built from its probe config:
//! what its status is, when a call must first prove the target reachable, how long
//! connection attempts back off, and when the shim is probed again. The probe loop
//! ([`crate::probe`]) only collects observations.

use std::time::Duration;

use tokio::time::Instant;

use super::Status;
use crate::config::ProbeConfig;

/// What a target's probe config decides.
#[derive(Debug, Clone)]
pub struct Policy {
    fail_threshold: u32,
    shim_enabled: bool,
    interval: Duration,
    shim_interval: Duration,
}

/// What the probes last saw, as [`Policy::status`] weighs it.
pub struct Seen {
    /// The last transport probe: None before the first.
    pub transport_ok: Option<bool>,
    pub consecutive_failures: u32,
    /// The last shim probe: None before the first.
    pub shim_ok: Option<bool>,
}

impl Policy {
    pub fn new(probe: &ProbeConfig) -> Policy {
        Policy {
            fail_threshold: probe.fail_threshold,
            shim_enabled: !probe.shim_verb.is_empty(),
            interval: probe.interval,
            shim_interval: probe.shim_interval,
        }
    }

    pub fn shim_enabled(&self) -> bool {
        self.shim_enabled
    }

    /// The status that what was seen adds up to: `unknown` before the first probe, `down`
    /// only after fail_threshold failures in a row (until then the status holds), `degraded`
    /// while the transport works and the shim's last probe failed.
    pub fn status(&self, seen: &Seen, before: Status) -> Status {
        match seen.transport_ok {
            None => Status::Unknown,
            Some(true) if self.shim_enabled && seen.shim_ok == Some(false) => Status::Degraded,
            Some(true) => Status::Up,
            Some(false) if seen.consecutive_failures >= self.fail_threshold => Status::Down,
            Some(false) => before,
        }
    }

    /// Whether a call must first prove the target reachable (one bounded connect attempt)
    /// rather than wait for its whole timeout: when it is known down and nothing is connected.
    pub fn must_check_first(&self, status: Status, connected: bool) -> bool {
        status == Status::Down && !connected
    }

    /// The longest pause between failed connection attempts: under one probe interval, so
    /// that every probe of a sleeping laptop finds an attempt it may make.
    pub fn backoff_cap(&self) -> Duration {
        self.interval.mul_f64(0.9)
    }

    /// The shim probe's schedule, starting with a probe at `start`.
    pub fn shim_schedule(&self, start: Instant) -> ShimSchedule {
        ShimSchedule {
            next: start,
            rechecking: false,
            interval: self.interval,
            shim_interval: self.shim_interval,
            enabled: self.shim_enabled,
        }
    }
}

/// When the shim is probed next.
#[derive(Debug)]
pub struct ShimSchedule {
    next: Instant,
    /// The next probe looks again after one failure.
    rechecking: bool,
    interval: Duration,
    shim_interval: Duration,
    enabled: bool,
}

impl ShimSchedule {
    /// Whether the transport probe of `tick` is followed by a shim probe.
    pub fn due(&self, tick: Instant) -> bool {
        self.enabled && tick >= self.next
    }

    /// The transport failed: whatever the shim said is stale (a shim probe cut off by the
    /// outage would otherwise hold `degraded` for up to shim_interval after it is back), so
    /// it is checked again at the first success.
    pub fn transport_failed(&mut self, now: Instant) {
        self.next = now;
    }

    /// The shim probe of `tick` ended. Counted from the tick, not from the probe's end (a
    /// shim_interval that is a multiple of interval would slip a tick at random). One
    /// failure may be a passing hiccup: it is looked at again at the next tick before
    /// `degraded` is held for a whole shim_interval.
    pub fn probed(&mut self, tick: Instant, ok: bool) {
        let recheck = !ok && !self.rechecking;
        self.next = tick
            + if recheck {
                self.interval
            } else {
                self.shim_interval
            };
        self.rechecking = recheck;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy::new(&ProbeConfig {
            fail_threshold: 2,
            shim_verb: "health".into(),
            interval: Duration::from_secs(2),
            shim_interval: Duration::from_secs(30),
            ..ProbeConfig::default()
        })
    }

    #[test]
    fn down_only_after_the_threshold_and_degraded_only_while_the_transport_works() {
        let p = policy();
        let seen = |transport_ok, consecutive_failures, shim_ok| Seen {
            transport_ok,
            consecutive_failures,
            shim_ok,
        };
        assert_eq!(p.status(&seen(None, 0, None), Status::Up), Status::Unknown);
        assert_eq!(
            p.status(&seen(Some(false), 1, None), Status::Up),
            Status::Up
        );
        assert_eq!(
            p.status(&seen(Some(false), 2, None), Status::Up),
            Status::Down
        );
        assert_eq!(
            p.status(&seen(Some(false), 2, Some(false)), Status::Up),
            Status::Down
        );
        let degraded = seen(Some(true), 0, Some(false));
        assert_eq!(p.status(&degraded, Status::Down), Status::Degraded);
        assert!(p.must_check_first(Status::Down, false));
        assert!(!p.must_check_first(Status::Down, true));
        assert!(!p.must_check_first(Status::Degraded, false));
        assert!(p.backoff_cap() < Duration::from_secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_shim_probe_is_looked_at_again_once_at_the_next_tick() {
        let p = policy();
        let t0 = Instant::now();
        let mut s = p.shim_schedule(t0);
        assert!(s.due(t0));
        s.probed(t0, false);
        let tick = t0 + Duration::from_secs(2);
        assert!(s.due(tick), "a recheck at the next tick");
        s.probed(tick, false);
        assert!(!s.due(tick + Duration::from_secs(2)), "then shim_interval");
        assert!(s.due(tick + Duration::from_secs(30)));
        s.transport_failed(tick + Duration::from_secs(4));
        assert!(
            s.due(tick + Duration::from_secs(4)),
            "stale after an outage"
        );
    }
}

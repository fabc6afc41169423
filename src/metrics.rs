//! Every metric of docs/metrics.md, registered once on tether's own registry. Labels come only from
//! config (target, verb) and the fixed error codes, so their number is bounded.

use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Buckets for probe, queue and call durations, in seconds: 0.5 ms to 2 minutes.
const BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 120.0,
];

/// The registry and its metric families.
pub struct Metrics {
    registry: Registry,
    target_up: IntGaugeVec,
    shim_up: IntGaugeVec,
    last_ok: GaugeVec,
    probe_duration: HistogramVec,
    probes: IntCounterVec,
    connections: IntGaugeVec,
    connects: IntCounterVec,
    channels_in_use: IntGaugeVec,
    channels_capacity: IntGaugeVec,
    warm_channels: IntGaugeVec,
    shim_sessions: IntGaugeVec,
    waiting: IntGaugeVec,
    queue_wait: HistogramVec,
    calls: IntCounterVec,
    call_duration: HistogramVec,
    calls_abandoned: IntCounterVec,
    calls_cancelled: IntCounterVec,
    /// Output held in memory by buffered calls in flight (and cached results).
    pub call_buffered_bytes: IntGauge,
    /// Open connections on the RPC socket.
    pub rpc_connections: IntGauge,
    /// RPC connections closed at accept, by the cap they hit.
    rpc_connections_refused: IntCounterVec,
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let build = IntGaugeVec::new(
            Opts::new("tether_build_info", "tether's version; always 1"),
            &["version"],
        )
        .expect("valid metric");
        build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        registry.register(Box::new(build)).expect("registered once");
        Metrics {
            target_up: gauge(
                &registry,
                "tether_target_up",
                "1 when the target's transport probe passes",
                &["target"],
            ),
            shim_up: gauge(
                &registry,
                "tether_target_shim_up",
                "1 when the target's shim probe passes",
                &["target"],
            ),
            last_ok: float_gauge(
                &registry,
                "tether_target_last_ok_timestamp_seconds",
                "Unix time of the last successful transport probe",
                &["target"],
            ),
            probe_duration: histogram(
                &registry,
                "tether_probe_duration_seconds",
                "Probe round-trip time",
                &["target", "kind"],
            ),
            probes: counter(
                &registry,
                "tether_probes_total",
                "Probes by kind and result",
                &["target", "kind", "result"],
            ),
            connections: gauge(
                &registry,
                "tether_connections",
                "Live SSH connections",
                &["target"],
            ),
            connects: counter(
                &registry,
                "tether_connects_total",
                "SSH connection attempts by result",
                &["target", "result"],
            ),
            channels_in_use: gauge(
                &registry,
                "tether_channels_in_use",
                "Channel slots held by calls",
                &["target"],
            ),
            channels_capacity: gauge(
                &registry,
                "tether_channels_capacity",
                "Channel slots for calls",
                &["target"],
            ),
            warm_channels: gauge(
                &registry,
                "tether_warm_channels",
                "Session channels opened ahead of demand, ready for a call",
                &["target"],
            ),
            shim_sessions: gauge(
                &registry,
                "tether_shim_sessions",
                "Connections whose calls run on a resident tether shim session",
                &["target"],
            ),
            waiting: gauge(
                &registry,
                "tether_call_queue_waiting",
                "Calls waiting for a channel slot",
                &["target"],
            ),
            queue_wait: histogram(
                &registry,
                "tether_call_queue_wait_seconds",
                "Time calls waited for a channel slot",
                &["target"],
            ),
            calls: counter(
                &registry,
                "tether_calls_total",
                "Calls by verb and result code",
                &["target", "verb", "code"],
            ),
            call_duration: histogram(
                &registry,
                "tether_call_duration_seconds",
                "Call duration, queueing included",
                &["target", "verb"],
            ),
            calls_abandoned: counter(
                &registry,
                "tether_calls_abandoned_total",
                "Calls whose caller hung up before the answer: dropped unsent (queued) or run on to their end (running)",
                &["target", "verb", "stage"],
            ),
            calls_cancelled: counter(
                &registry,
                "tether_calls_cancelled_total",
                "Calls an operator cancelled (DELETE /v1/calls): before the send (queued) or after it (running)",
                &["target", "verb", "stage"],
            ),
            call_buffered_bytes: plain_gauge(
                &registry,
                "tether_call_buffered_bytes",
                "Output held in memory for calls in flight",
            ),
            rpc_connections: plain_gauge(
                &registry,
                "tether_rpc_connections",
                "Open connections on the RPC socket",
            ),
            rpc_connections_refused: {
                let refused = counter(
                    &registry,
                    "tether_rpc_connections_refused_total",
                    "RPC connections closed at accept because a connection cap was reached",
                    &["reason"],
                );
                for reason in ["total", "per_uid"] {
                    refused.with_label_values(&[reason]);
                }
                refused
            },
            registry,
        }
    }

    /// The handles of one target's metrics.
    pub fn target(&self, name: &str) -> TargetMetrics {
        TargetMetrics {
            name: name.to_string(),
            up: self.target_up.with_label_values(&[name]),
            shim_up: self.shim_up.with_label_values(&[name]),
            last_ok: self.last_ok.with_label_values(&[name]),
            probe_duration: self.probe_duration.clone(),
            probes: self.probes.clone(),
            connections: self.connections.with_label_values(&[name]),
            connects: self.connects.clone(),
            channels_in_use: self.channels_in_use.with_label_values(&[name]),
            channels_capacity: self.channels_capacity.with_label_values(&[name]),
            warm_channels: self.warm_channels.with_label_values(&[name]),
            shim_sessions: self.shim_sessions.with_label_values(&[name]),
            waiting: self.waiting.with_label_values(&[name]),
            queue_wait: self.queue_wait.with_label_values(&[name]),
            calls: self.calls.clone(),
            call_duration: self.call_duration.clone(),
            calls_abandoned: self.calls_abandoned.clone(),
        }
    }

    /// Counts a call an operator cancelled; `stage` is `queued` (never sent) or `running`.
    pub fn cancelled(&self, target: &str, verb: &str, stage: &str) {
        self.calls_cancelled
            .with_label_values(&[target, verb, stage])
            .inc();
    }

    /// Counts an RPC connection closed at accept; `reason` is `total` or `per_uid`.
    pub fn rpc_connection_refused(&self, reason: &str) {
        self.rpc_connections_refused
            .with_label_values(&[reason])
            .inc();
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("text encoding cannot fail");
        String::from_utf8(out).expect("exposition is UTF-8")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// One target's metric handles, cheap to clone and pass down.
#[derive(Clone)]
pub struct TargetMetrics {
    name: String,
    pub up: IntGauge,
    pub shim_up: IntGauge,
    pub last_ok: Gauge,
    probe_duration: HistogramVec,
    probes: IntCounterVec,
    pub connections: IntGauge,
    connects: IntCounterVec,
    pub channels_in_use: IntGauge,
    pub channels_capacity: IntGauge,
    pub warm_channels: IntGauge,
    pub shim_sessions: IntGauge,
    pub waiting: IntGauge,
    pub queue_wait: Histogram,
    calls: IntCounterVec,
    call_duration: HistogramVec,
    calls_abandoned: IntCounterVec,
}

impl TargetMetrics {
    /// Counts a connection attempt; `result` is "ok" or an error code.
    pub fn connect(&self, result: &str) {
        self.connects.with_label_values(&[&self.name, result]).inc();
    }

    /// Records one probe of `kind` ("transport" or "shim").
    pub fn probe(&self, kind: &str, ok: bool, seconds: f64) {
        let result = if ok { "ok" } else { "fail" };
        self.probes
            .with_label_values(&[&self.name, kind, result])
            .inc();
        if ok {
            self.probe_duration
                .with_label_values(&[&self.name, kind])
                .observe(seconds);
        }
    }

    /// Records one finished call; `code` is "ok" or an error code.
    pub fn call(&self, verb: &str, code: &str, seconds: f64) {
        self.calls
            .with_label_values(&[&self.name, verb, code])
            .inc();
        self.call_duration
            .with_label_values(&[&self.name, verb])
            .observe(seconds);
    }

    /// Counts a call whose caller hung up before its answer; `stage` is `queued` (dropped,
    /// never sent) or `running` (sent, ran on).
    pub fn abandoned(&self, verb: &str, stage: &str) {
        self.calls_abandoned
            .with_label_values(&[&self.name, verb, stage])
            .inc();
    }

    /// Calls so far by (verb, code), for the status page.
    pub fn calls_by_verb(&self) -> Vec<(String, String, u64)> {
        let mut rows = Vec::new();
        for family in prometheus::core::Collector::collect(&self.calls) {
            for m in family.get_metric() {
                let label = |n: &str| {
                    m.get_label()
                        .iter()
                        .find(|l| l.name() == n)
                        .map(|l| l.value().to_string())
                        .unwrap_or_default()
                };
                if label("target") == self.name {
                    rows.push((
                        label("verb"),
                        label("code"),
                        m.get_counter().get_value() as u64,
                    ));
                }
            }
        }
        rows
    }
}

fn gauge(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let m = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
    r.register(Box::new(m.clone())).expect("registered once");
    m
}

fn plain_gauge(r: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).expect("valid metric");
    r.register(Box::new(g.clone())).expect("registered once");
    g
}

fn float_gauge(r: &Registry, name: &str, help: &str, labels: &[&str]) -> GaugeVec {
    let m = GaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
    r.register(Box::new(m.clone())).expect("registered once");
    m
}

fn counter(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let m = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    r.register(Box::new(m.clone())).expect("registered once");
    m
}

fn histogram(r: &Registry, name: &str, help: &str, labels: &[&str]) -> HistogramVec {
    let opts = HistogramOpts::new(name, help).buckets(BUCKETS.to_vec());
    let m = HistogramVec::new(opts, labels).expect("valid metric");
    r.register(Box::new(m.clone())).expect("registered once");
    m
}

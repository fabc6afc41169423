//! `/metrics` after a few calls: every SPEC metric with its type and exact label set, the
//! values that the state implies, and `promtool check metrics` on the scrape.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

use common::sshd::Sshd;
use common::tether::{TARGET, TetherConfig};
use common::wait_until;
use serde_json::json;

const PROMTOOL: &str = "/usr/bin/promtool";

/// (name, type, labels) as SPEC.md lists them.
const SPEC: &[(&str, &str, &[&str])] = &[
    ("tether_build_info", "gauge", &["version"]),
    ("tether_target_up", "gauge", &["target"]),
    ("tether_target_shim_up", "gauge", &["target"]),
    (
        "tether_target_last_ok_timestamp_seconds",
        "gauge",
        &["target"],
    ),
    (
        "tether_probe_duration_seconds",
        "histogram",
        &["target", "kind"],
    ),
    (
        "tether_probes_total",
        "counter",
        &["target", "kind", "result"],
    ),
    ("tether_connections", "gauge", &["target"]),
    ("tether_connects_total", "counter", &["target", "result"]),
    ("tether_channels_in_use", "gauge", &["target"]),
    ("tether_channels_capacity", "gauge", &["target"]),
    ("tether_call_queue_waiting", "gauge", &["target"]),
    ("tether_call_queue_wait_seconds", "histogram", &["target"]),
    ("tether_calls_total", "counter", &["target", "verb", "code"]),
    ("tether_call_buffered_bytes", "gauge", &[]),
    (
        "tether_call_duration_seconds",
        "histogram",
        &["target", "verb"],
    ),
];

/// One sample line of the text exposition.
#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

struct Exposition {
    types: BTreeMap<String, String>,
    samples: Vec<Sample>,
}

impl Exposition {
    fn parse(text: &str) -> Exposition {
        let mut types = BTreeMap::new();
        let mut samples = Vec::new();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').expect("TYPE line");
                types.insert(name.to_string(), kind.to_string());
                continue;
            }
            if line.starts_with('#') {
                continue;
            }
            let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("{line}"));
            let value: f64 = value.parse().unwrap_or_else(|_| panic!("value in {line}"));
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => (name, parse_labels(rest.strip_suffix('}').unwrap())),
                None => (series, BTreeMap::new()),
            };
            samples.push(Sample {
                name: name.to_string(),
                labels,
                value,
            });
        }
        Exposition { types, samples }
    }

    /// Samples of `name` whose labels include every pair of `with`.
    fn find(&self, name: &str, with: &[(&str, &str)]) -> Vec<&Sample> {
        self.samples
            .iter()
            .filter(|s| s.name == name)
            .filter(|s| {
                with.iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .collect()
    }

    fn value(&self, name: &str, with: &[(&str, &str)]) -> f64 {
        let found = self.find(name, with);
        assert_eq!(found.len(), 1, "{name} {with:?}: {found:?}");
        found[0].value
    }
}

/// `a="x",b="y"` (values without escapes, as tether's labels come from config and codes).
fn parse_labels(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut rest = text;
    while !rest.is_empty() {
        let (key, after) = rest.split_once("=\"").expect("label");
        let end = after.find('"').expect("label value end");
        assert!(
            !after[..end].contains('\\'),
            "escaped label value in {text}"
        );
        out.insert(key.to_string(), after[..end].to_string());
        rest = after[end + 1..]
            .strip_prefix(',')
            .unwrap_or(&after[end + 1..]);
    }
    out
}

#[test]
fn every_spec_metric_is_exposed_with_its_labels() {
    let sshd = Sshd::start();
    let tether = TetherConfig::for_sshd(&sshd)
        .set("targets.laptop.probe.interval", "200ms")
        .set("targets.laptop.probe.shim_interval", "1h")
        .spawn();
    assert!(wait_until(Duration::from_secs(10), || {
        let t = &tether.health().1["targets"][TARGET];
        t["status"] == "up" && t["shim"].is_object()
    }));
    let ok = tether.call(&json!({"verb": "health", "args": ["s1"]}));
    assert_eq!(ok.0, 200, "{}", ok.1);
    let cached = tether.call(&json!({"verb": "health", "args": ["s1"]}));
    assert_eq!(cached.1["cached"], true, "{}", cached.1);
    let refused = tether.call(&json!({"verb": "rm", "args": ["-rf"]}));
    assert_eq!(
        refused.1["error"]["code"], "verb_not_allowed",
        "{}",
        refused.1
    );
    let failed = tether.call(&json!({"verb": "reset", "args": ["a b"]}));
    assert_eq!(failed.1["error"]["code"], "bad_request", "{}", failed.1);

    // A slot is held until one round trip after the channel's close: it comes back shortly.
    assert!(
        wait_until(Duration::from_secs(5), || {
            tether.health().1["targets"][TARGET]["channels_in_use"] == 0
        }),
        "a channel slot leaked: {:#}",
        tether.health().1
    );
    let scrape = tether.admin_get("/metrics");
    assert_eq!(scrape.status, 200);
    assert!(
        scrape
            .header("content-type")
            .is_some_and(|c| c.starts_with("text/plain")),
        "{:?}",
        scrape.headers
    );
    let text = scrape.text();
    let m = Exposition::parse(&text);

    for (name, kind, labels) in SPEC {
        assert_eq!(
            m.types.get(*name).map(String::as_str),
            Some(*kind),
            "TYPE of {name}"
        );
        let series: Vec<String> = if *kind == "histogram" {
            vec![
                format!("{name}_bucket"),
                format!("{name}_sum"),
                format!("{name}_count"),
            ]
        } else {
            vec![name.to_string()]
        };
        for s in &series {
            let found = m.find(s, &[]);
            assert!(!found.is_empty(), "no samples of {s}:\n{text}");
            let mut want: BTreeSet<&str> = labels.iter().copied().collect();
            if s.ends_with("_bucket") {
                want.insert("le");
            }
            for sample in found {
                let got: BTreeSet<&str> = sample.labels.keys().map(String::as_str).collect();
                assert_eq!(got, want, "labels of {sample:?}");
                if let Some(t) = sample.labels.get("target") {
                    assert_eq!(t, TARGET, "{sample:?}");
                }
            }
        }
    }
    // Nothing beyond the SPEC's families under tether_.
    let extra: Vec<&String> = m
        .types
        .keys()
        .filter(|n| !SPEC.iter().any(|(s, _, _)| s == n))
        .collect();
    assert!(extra.is_empty(), "metrics not in the SPEC: {extra:?}");

    let target = [("target", TARGET)];
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(m.value("tether_build_info", &[("version", version)]), 1.0);
    assert_eq!(m.value("tether_target_up", &target), 1.0);
    assert_eq!(m.value("tether_target_shim_up", &target), 1.0);
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let last_ok = m.value("tether_target_last_ok_timestamp_seconds", &target);
    assert!((now - last_ok).abs() < 30.0, "last ok {last_ok}, now {now}");
    assert!(m.value("tether_connections", &target) >= 1.0);
    assert_eq!(m.value("tether_channels_capacity", &target), 16.0);
    assert_eq!(m.value("tether_channels_in_use", &target), 0.0);
    assert_eq!(m.value("tether_call_queue_waiting", &target), 0.0);
    assert!(m.value("tether_connects_total", &[("result", "ok")]) >= 1.0);
    for kind in ["transport", "shim"] {
        assert!(m.value("tether_probes_total", &[("kind", kind), ("result", "ok")]) >= 1.0);
        let count = m.value("tether_probe_duration_seconds_count", &[("kind", kind)]);
        assert!(count >= 1.0, "{kind}: {count}");
    }
    let calls =
        |verb: &str, code: &str| m.value("tether_calls_total", &[("verb", verb), ("code", code)]);
    assert_eq!(calls("health", "ok"), 2.0, "one run and one cached copy");
    // A verb outside the allowlist is not a label value: the label set stays bounded.
    assert_eq!(calls("other", "verb_not_allowed"), 1.0);
    assert!(m.find("tether_calls_total", &[("verb", "rm")]).is_empty());
    assert_eq!(calls("reset", "bad_request"), 1.0);
    assert_eq!(
        m.value("tether_call_duration_seconds_count", &[("verb", "health")]),
        2.0
    );
    let queued = m.value("tether_call_queue_wait_seconds_count", &target);
    assert!(
        queued >= 1.0,
        "the one executed call queued for a slot: {queued}"
    );

    promtool_check(&text);
}

/// `promtool check metrics` reads the exposition on stdin and lints it.
fn promtool_check(text: &str) {
    assert!(
        std::path::Path::new(PROMTOOL).exists(),
        "{PROMTOOL} is missing: run `make test-deps` (Debian package prometheus)"
    );
    let mut child = Command::new(PROMTOOL)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

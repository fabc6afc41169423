//! `/metrics` after a few calls: every metric of the table in docs/metrics.md with its type
//! and exact label set, the values that the state implies, and `promtool check metrics` on
//! the scrape.

mod common;

use std::collections::BTreeSet;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

use common::http;
use common::metrics::Exposition;
use common::sshd::Sshd;
use common::tether::{TARGET, TetherConfig};
use common::wait_until;
use serde_json::json;

const PROMTOOL: &str = "/usr/bin/promtool";
const METRICS_DOC: &str = include_str!("../docs/metrics.md");

/// (name, type, label names) from the table under "## Metrics" in docs/metrics.md:
/// `| tether_probes_total | counter | target, kind, result=ok/fail |`.
fn documented() -> Vec<(String, String, BTreeSet<String>)> {
    let table = METRICS_DOC
        .split("\n## Metrics\n")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .expect("docs/metrics.md has a '## Metrics' section");
    let rows: Vec<_> = table
        .lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line
                .trim()
                .strip_prefix('|')?
                .strip_suffix('|')?
                .split('|')
                .map(str::trim)
                .collect();
            let [name, kind, labels] = cells[..] else {
                return None;
            };
            name.starts_with("tether_").then(|| {
                let labels = labels
                    .split(',')
                    .map(|l| l.split('=').next().unwrap().trim().to_string())
                    .filter(|l| !l.is_empty())
                    .collect();
                (
                    name.to_string(),
                    kind.split(' ').next().unwrap().to_string(),
                    labels,
                )
            })
        })
        .collect();
    assert!(
        rows.len() >= 10,
        "the metrics table changed shape: {rows:?}"
    );
    rows
}

#[test]
fn every_documented_metric_is_exposed_with_its_labels() {
    let sshd = Sshd::start();
    let tether = TetherConfig::for_sshd(&sshd)
        .test_verbs()
        .set("targets.laptop.probe.interval", "200ms")
        .set("targets.laptop.probe.shim_interval", "1h")
        .spawn();
    tether.wait_target(Duration::from_secs(10), |t| {
        t["status"] == "up" && t["shim"].is_object()
    });
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
    // A caller that hangs up while its command runs: counted once the call ends.
    http::hang_up(
        tether.socket_path(),
        &json!({"verb": "sleep", "args": ["0.3"]}),
        Duration::from_millis(100),
    );
    let abandoned =
        "tether_calls_abandoned_total{target=\"laptop\",verb=\"sleep\",stage=\"running\"}";
    assert!(wait_until(Duration::from_secs(5), || tether
        .metric(abandoned)
        == 1.0));

    // An operator cancels a running call (DELETE /v1/calls/{id}).
    let running = tether
        .call_in_background(json!({"verb": "sleep", "args": ["5"], "request_id": "to-cancel"}));
    assert!(wait_until(Duration::from_secs(5), || {
        http::get_json(tether.socket_path(), "/v1/calls").1["calls"][0]["state"] == "running"
    }));
    let cancel = http::unix(tether.socket_path(), "DELETE", "/v1/calls/to-cancel", None).unwrap();
    assert_eq!(cancel.status, 200, "{}", cancel.text());
    assert_eq!(running.join().unwrap().0, 409);

    // A slot is held until one round trip after the channel's close: it comes back shortly.
    assert!(
        wait_until(Duration::from_secs(5), || tether.channels_idle()),
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

    let documented = documented();
    for (name, kind, labels) in &documented {
        assert_eq!(
            m.types.get(name).map(String::as_str),
            Some(kind.as_str()),
            "TYPE of {name}"
        );
        let series: Vec<String> = if kind == "histogram" {
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
            let mut want: BTreeSet<&str> = labels.iter().map(String::as_str).collect();
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
    // Nothing beyond the documented families under tether_.
    let extra: Vec<&String> = m
        .types
        .keys()
        .filter(|n| !documented.iter().any(|(d, _, _)| d == *n))
        .collect();
    assert!(
        extra.is_empty(),
        "metrics not in docs/metrics.md: {extra:?}"
    );

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

#[test]
fn the_exposition_parser_reads_labels_histograms_and_infinity() {
    let m = Exposition::parse(
        "# HELP tether_x_seconds x\n\
         # TYPE tether_x_seconds histogram\n\
         tether_x_seconds_bucket{le=\"0.5\",target=\"a\"} 1\n\
         tether_x_seconds_bucket{le=\"+Inf\",target=\"a\"} 3\n\
         tether_x_seconds_sum{target=\"a\"} 1.25\n\
         tether_up 1\n",
    );
    assert_eq!(m.types["tether_x_seconds"], "histogram");
    assert_eq!(
        m.find("tether_x_seconds_bucket", &[("target", "a")]).len(),
        2
    );
    assert_eq!(m.value("tether_x_seconds_bucket", &[("le", "+Inf")]), 3.0);
    assert_eq!(m.sum("tether_x_seconds_bucket", &[]), 4.0);
    assert_eq!(m.get("tether_x_seconds_sum{target=\"a\"}"), Some(1.25));
    assert_eq!(
        m.get("tether_x_seconds_sum"),
        None,
        "labels must match exactly"
    );
    assert_eq!(m.get("tether_up"), Some(1.0));
    let inf = Exposition::parse("tether_y{a=\"b\"} +Inf\n");
    assert_eq!(inf.value("tether_y", &[]), f64::INFINITY);
}

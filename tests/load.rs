//! Many more callers than channels: every caller gets a result or `busy` after queue_timeout
//! (docs/rpc.md, "Deadlines"), nothing panics, memory stays bounded.

mod common;

use std::time::Duration;

use common::sshd::Sshd;
use common::tether::TetherConfig;
use serde_json::json;

#[test]
fn five_hundred_callers_on_16_channels_get_results_or_busy_and_memory_stays_bounded() {
    const QUEUE_TIMEOUT: Duration = Duration::from_millis(300);
    const RSS_BOUND_KIB: u64 = 64 * 1024;
    let sshd = Sshd::start();
    let tether = TetherConfig::for_sshd(&sshd)
        .test_verbs()
        .set("targets.laptop.queue_timeout", "300ms")
        .spawn();
    tether.wait_status("up");
    let before = tether.peak_rss_kib();
    // Half hold a channel for a second, half are quick: some queued callers get a channel in
    // time, the rest are told busy.
    let bodies = (0..500)
        .map(|i| match i % 2 {
            0 => json!({"verb": "sleep", "args": ["1"]}),
            _ => json!({"verb": "reset", "args": [format!("s{i}")]}),
        })
        .collect();
    let answers = tether.calls_at_once(bodies);
    let peak = tether.peak_rss_kib();
    let ok = answers.iter().filter(|a| a.0 == 200).count();
    let busy: Vec<Duration> = answers
        .iter()
        .filter(|a| a.0 == 429 && a.1["error"]["code"] == "busy")
        .map(|a| a.2)
        .collect();
    eprintln!(
        "500 callers on 16 channels: {ok} results, {} busy after {:?} to {:?} \
         (queue_timeout {QUEUE_TIMEOUT:?}); peak RSS {} KiB (before the burst {before} KiB, \
         bound {RSS_BOUND_KIB} KiB)",
        busy.len(),
        busy.iter().min().unwrap(),
        busy.iter().max().unwrap(),
        peak,
    );
    for (status, body, _) in &answers {
        assert!(
            *status == 200 || (*status == 429 && body["error"]["code"] == "busy"),
            "{status} {body}"
        );
    }
    assert_eq!(ok + busy.len(), 500);
    assert!(ok >= 16 && !busy.is_empty(), "{ok} ok");
    assert!(*busy.iter().min().unwrap() >= QUEUE_TIMEOUT - Duration::from_millis(5));
    assert!(*busy.iter().max().unwrap() <= QUEUE_TIMEOUT + Duration::from_secs(1));
    assert!(peak <= RSS_BOUND_KIB, "peak RSS {peak} KiB");
    let logs = tether.logs();
    assert!(!logs.contains("panicked"), "{logs}");
    assert!(common::wait_until(Duration::from_secs(5), || {
        tether.channels_idle()
    }));
    let (status, body) = tether.call(&json!({"verb": "reset", "args": ["s"]}));
    assert_eq!(status, 200, "{body}");
}

//! Memory follows the configuration, not the remote (docs/cli.md, "Memory"): 8 calls of
//! 16 MiB each at once, buffered or streamed, keep tether's peak RSS under 100 MiB; buffered
//! output beyond `server.max_buffered_bytes` is cut and flagged, never held.

mod common;

use std::sync::Mutex;
use std::time::Duration;

use common::http::{self, Streamed};
use common::sshd::Sshd;
use common::tether::{Tether, TetherConfig};
use common::wait_until;
use serde_json::json;

const SIXTEEN_MIB: usize = 16 << 20;
const CALLS: usize = 8;
const PEAK_LIMIT_KIB: u64 = 100 * 1024;

/// One test at a time: each moves 128 MiB through SSH, and a debug build on two shared
/// cores needs its time for that.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn tether(sshd: &Sshd) -> Tether {
    let tether = TetherConfig::for_sshd(sshd)
        .test_verbs()
        .merge("[verbs.big]\ntimeout = \"120s\"\n")
        .spawn();
    tether.wait_status("up");
    tether
}

fn big() -> serde_json::Value {
    json!({"verb": "big", "args": [SIXTEEN_MIB.to_string()]})
}

#[test]
fn eight_buffered_16_mib_answers_at_once_stay_under_100_mib() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let sshd = Sshd::start();
    let tether = tether(&sshd);
    let answers = tether.calls_at_once(vec![big(); CALLS]);
    let mut held = 0;
    for (status, answer, _) in &answers {
        assert_eq!(
            *status,
            200,
            "{}",
            &answer.to_string()[..200.min(answer.to_string().len())]
        );
        let stdout = answer["stdout"].as_str().unwrap();
        assert!(stdout.bytes().all(|b| b == b'x'));
        assert_eq!(answer["stdout_truncated"], stdout.len() < SIXTEEN_MIB);
        held += stdout.len();
    }
    // The default budget (64 MiB) holds half of what was asked; the rest is cut and flagged.
    assert!(held <= 64 << 20, "{held} bytes held at once");
    assert!(
        answers
            .iter()
            .any(|(_, a, _)| a["stdout_truncated"] == true)
    );
    let peak = tether.peak_rss_kib();
    eprintln!("buffered: {CALLS} x 16 MiB, peak RSS {} MiB", peak / 1024);
    assert!(peak < PEAK_LIMIT_KIB, "peak RSS {peak} KiB");
    assert!(wait_until(Duration::from_secs(5), || {
        tether.metric("tether_call_buffered_bytes") == 0.0
    }));
}

#[test]
fn eight_streamed_16_mib_answers_at_once_stay_under_100_mib_and_arrive_whole() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let sshd = Sshd::start();
    let tether = tether(&sshd);
    let socket = tether.socket_path().to_path_buf();
    let readers: Vec<_> = (0..CALLS)
        .map(|_| {
            let socket = socket.clone();
            std::thread::spawn(move || {
                let mut body = big();
                body["stream"] = json!(true);
                let mut answer = Streamed::start(&socket, &body);
                let (mut bytes, mut last) = (0, serde_json::Value::Null);
                while let Some((_, event)) = answer.next_event() {
                    match event["event"].as_str() {
                        Some("stdout") => {
                            let data = event["data"].as_str().unwrap();
                            assert!(data.bytes().all(|b| b == b'x'));
                            bytes += data.len();
                        }
                        _ => last = event,
                    }
                }
                (bytes, last)
            })
        })
        .collect();
    for reader in readers {
        let (bytes, last) = reader.join().unwrap();
        assert_eq!(bytes, SIXTEEN_MIB, "every byte arrived");
        assert_eq!(
            (last["event"].as_str(), last["stdout_truncated"].as_bool()),
            (Some("exit"), Some(false))
        );
    }
    let peak = tether.peak_rss_kib();
    eprintln!("streamed: {CALLS} x 16 MiB, peak RSS {} MiB", peak / 1024);
    assert!(peak < PEAK_LIMIT_KIB, "peak RSS {peak} KiB");
    let _ = http::get_json(tether.socket_path(), "/v1/health");
}

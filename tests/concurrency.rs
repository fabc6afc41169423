//! Many callers at once against OpenSSH's default MaxSessions 10 (docs/config.md, "Sizing the
//! pool"): every turn runs exactly once, none is refused, and the pool ends empty.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use common::http;
use common::sshd::Sshd;
use common::tether::TetherConfig;
use serde_json::json;

const CALLERS: usize = 200;

#[test]
fn two_hundred_concurrent_turns_each_run_exactly_once() {
    let sshd = Sshd::start();
    let tether = TetherConfig::for_sshd(&sshd).spawn();
    let threads: Vec<_> = (0..CALLERS)
        .map(|i| {
            let socket = tether.socket_path().to_path_buf();
            std::thread::spawn(move || {
                let uuid = format!("6f1c2d3e-0000-4000-8000-{i:012}");
                let msg = B64.encode(format!("Nachricht Nr. {i} – grüß dich"));
                let answer = http::post_json(
                    &socket,
                    "/v1/call",
                    &json!({"verb": "run-turn", "args": ["s1", uuid, msg]}),
                );
                (i, answer)
            })
        })
        .collect();
    for t in threads {
        let (i, (status, body)) = t.join().unwrap();
        assert_eq!(status, 200, "call {i}: {body}");
        assert_eq!(
            body["stdout"],
            format!("reply: Nachricht Nr. {i} – grüß dich\n")
        );
    }
    let turns: Vec<String> = sshd
        .invocations()
        .into_iter()
        .filter(|line| line.starts_with("run-turn "))
        .collect();
    let unique: HashSet<&String> = turns.iter().collect();
    assert_eq!(
        (turns.len(), unique.len()),
        (CALLERS, CALLERS),
        "each turn exactly once"
    );
    let sessions_refused = sshd.log().matches("no more sessions").count();
    eprintln!("sshd refused {sessions_refused} channel opens (retried by tether)");
    assert!(common::wait_until(Duration::from_secs(5), || tether.channels_idle()));
    let busy = tether
        .metrics()
        .sum("tether_calls_total", &[("code", "busy")]);
    assert_eq!(busy, 0.0, "no caller was told busy");
}

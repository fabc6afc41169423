//! The real world: a server with fewer sessions than configured, and more to come (issue 4).

mod common;

use std::time::Duration;

use common::http;
use common::sshd::Sshd;
use common::tether::TetherConfig;
use serde_json::json;

#[test]
fn a_server_with_max_sessions_2_still_serves_100_concurrent_calls() {
    let sshd = Sshd::builder().max_sessions(2).start();
    let tether = TetherConfig::for_sshd(&sshd).test_verbs().spawn();
    let threads: Vec<_> = (0..100)
        .map(|i| {
            let socket = tether.socket_path().to_path_buf();
            std::thread::spawn(move || {
                http::post_json(
                    &socket,
                    "/v1/call",
                    &json!({"verb": "reset", "args": [format!("s{i}")]}),
                )
            })
        })
        .collect();
    for (i, t) in threads.into_iter().enumerate() {
        let (status, body) = t.join().unwrap();
        assert_eq!(status, 200, "call {i}: {body}");
    }
    assert_eq!(
        sshd.invocations()
            .iter()
            .filter(|l| l.starts_with("reset "))
            .count(),
        100
    );
    let refused = sshd.log().matches("no more sessions").count();
    eprintln!("sshd refused {refused} channel opens; tether learned the limit and retried");
    assert!(refused > 0, "the test must make sshd refuse channels");
    assert!(
        tether.logs().contains("the server refused a channel"),
        "{}",
        tether.logs()
    );
    assert!(common::wait_until(Duration::from_secs(5), || {
        tether
            .admin_get("/metrics")
            .text()
            .contains("tether_channels_in_use{target=\"laptop\"} 0")
    }));
}

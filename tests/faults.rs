//! Servers as they are in the field: one that allows fewer sessions than configured (tether
//! learns the real limit, docs/config.md "Sizing the pool"), and one that drops new
//! connections while its unauthenticated slots are taken (sshd's MaxStartups: tried again
//! within connect_timeout).

mod common;

use std::net::TcpStream;
use std::time::{Duration, Instant};

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
    assert!(common::wait_until(Duration::from_secs(5), || tether.channels_idle()));
}

#[test]
fn max_startups_refusals_are_retried_with_backoff_within_connect_timeout() {
    let sshd = Sshd::builder().max_startups("1").start();
    // A client that connects and says nothing holds the only unauthenticated slot: sshd drops
    // every other new connection until it leaves.
    let blocker = TcpStream::connect(sshd.addr()).unwrap();
    assert!(common::wait_until(Duration::from_secs(5), || sshd
        .connection_count()
        == 1));
    let tether = TetherConfig::for_sshd(&sshd)
        .test_verbs()
        .set("targets.laptop.connect_timeout", "4s")
        .spawn();
    let socket = tether.socket_path().to_path_buf();
    let started = Instant::now();
    let call = std::thread::spawn(move || {
        http::post_json(
            &socket,
            "/v1/call",
            &json!({"verb": "reset", "args": ["s1"]}),
        )
    });
    let drops = || sshd.log().matches("past MaxStartups").count();
    assert!(
        common::wait_until(Duration::from_secs(3), || drops() >= 6),
        "{}",
        sshd.log()
    );
    let blocked_for = started.elapsed();
    let dropped = drops();
    drop(blocker);
    let released = Instant::now();
    let (status, body) = call.join().unwrap();
    let after_release = released.elapsed();
    eprintln!(
        "sshd dropped {dropped} handshakes in {blocked_for:?}; the call succeeded \
         {after_release:?} after the blocker left, {:?} after it was made (connect_timeout 4s)",
        started.elapsed()
    );
    assert_eq!(status, 200, "{body}\n{}", tether.logs());
    assert!(started.elapsed() < Duration::from_secs(4));
    // Back-off: at most 1 + log2(400 ms / 20 ms) quick retries, then one per <= 400 ms.
    assert!(
        dropped as f64 <= 6.0 + blocked_for.as_secs_f64() / 0.2,
        "{dropped} drops in {blocked_for:?}"
    );
    assert_eq!(sshd.count("reset", &["s1"]), 1);
}

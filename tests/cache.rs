//! The verb result cache (docs/rpc.md, "Caching"): identical calls within a verb's cache_ttl
//! share one execution, single-flight, and the laptop sees one process for them.

mod common;

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use common::sshd::Sshd;
use common::tether::TetherConfig;
use common::wait_until;
use serde_json::json;

const CALLERS: usize = 50;

#[test]
fn fifty_concurrent_health_calls_cost_the_laptop_one_process() {
    let sshd = Sshd::start();
    // Seed verbs: health has cache_ttl 2s. The shim probe runs `health` without arguments
    // once at start, so it never counts as `health s1`.
    let tether = Arc::new(
        TetherConfig::for_sshd(&sshd)
            .set("targets.laptop.probe.interval", "200ms")
            .set("targets.laptop.probe.shim_interval", "1h")
            .spawn(),
    );
    tether.wait_status("up");

    let barrier = Arc::new(Barrier::new(CALLERS));
    let started = Instant::now();
    let threads: Vec<_> = (0..CALLERS)
        .map(|_| {
            let (tether, barrier) = (tether.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                tether.call(&json!({"verb": "health", "args": ["s1"]}))
            })
        })
        .collect();
    let answers: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    eprintln!("{CALLERS} concurrent calls took {:?}", started.elapsed());
    for (code, body) in &answers {
        assert_eq!(*code, 200, "{body}");
        assert_eq!(body["stdout"], "ok\n", "{body}");
        assert_eq!(body["exit_status"], 0, "{body}");
    }
    let fresh = answers.iter().filter(|(_, b)| b["cached"] == false).count();
    let shared = answers.iter().filter(|(_, b)| b["cached"] == true).count();
    assert_eq!((fresh, shared), (1, CALLERS - 1));
    assert_eq!(sshd.count("health", &["s1"]), 1, "{:?}", sshd.invocations());

    // Other arguments are another call.
    let (_, other) = tether.call(&json!({"verb": "health", "args": ["s2"]}));
    assert_eq!(other["cached"], false, "{other}");
    assert_eq!(sshd.count("health", &["s2"]), 1);

    // Within the ttl, copies; after it, the laptop is asked again.
    let mut fresh_after = None;
    let ran_again = wait_until(Duration::from_secs(6), || {
        let (code, body) = tether.call(&json!({"verb": "health", "args": ["s1"]}));
        assert_eq!(code, 200, "{body}");
        if body["cached"] == false {
            fresh_after = Some(started.elapsed());
        }
        fresh_after.is_some()
    });
    assert!(ran_again, "health s1 still cached 6 s later");
    let after = fresh_after.unwrap();
    assert!(
        after >= Duration::from_millis(1900),
        "ran again after {after:?}, within the 2 s ttl"
    );
    assert_eq!(sshd.count("health", &["s1"]), 2, "{:?}", sshd.invocations());
    eprintln!("health s1 ran again {after:?} after the burst started");
}

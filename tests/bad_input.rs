//! Bad input on every surface: random call bodies and arguments (property tests), garbage and
//! half-written HTTP, and a host key that changes while tether runs. (Clients that stall are
//! in http_timeouts.rs, peers on the SSH port that are not SSH servers in connect.rs, and
//! 10,000 idle socket connections have a binary of their own, idle_flood.rs.)

mod common;

use std::io::{Read, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use common::sshd::Sshd;
use common::tether::{Tether, TetherConfig};
use common::wait_until;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{Value, json};

/// The argument charset (docs/rpc.md, "Argument rules"), plus the space that separates
/// arguments.
fn allowed_on_the_wire(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"._:,=+/@%- ".contains(&b)
}

/// An argument: mostly from the allowed set, often with something a shell would interpret.
fn arg() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[A-Za-z0-9._:,=+/@%-]{1,12}",
        1 => "[A-Za-z0-9 ;|&$`'\"\\\\(){}<>*?~!#\n\t\r\u{0}-]{0,12}",
        1 => any::<String>(),
    ]
}

#[test]
fn the_argument_validator_lets_nothing_else_through() {
    let mut runner = TestRunner::new(Config::with_cases(5000));
    runner
        .run(
            &("[a-z-]{1,8}", proptest::collection::vec(arg(), 0..6)),
            |(verb, args)| {
                if let Ok(line) = tether::wire::encode(&verb, &args) {
                    prop_assert!(line.bytes().all(allowed_on_the_wire), "{line:?}");
                    prop_assert_eq!(line.split(' ').count(), args.len() + 1);
                }
                Ok(())
            },
        )
        .unwrap();
}

/// A call body: any JSON object built from plausible and implausible fields.
fn body() -> impl Strategy<Value = Value> {
    let verb = prop_oneof![
        4 => prop_oneof![Just("reset"), Just("stderr"), Just("fail"), Just("cat")].prop_map(Value::from),
        1 => prop_oneof![Just(json!("nope")), Just(json!("")), Just(json!(42)), Just(Value::Null)],
        1 => any::<String>().prop_map(Value::from),
    ];
    let args = prop_oneof![
        4 => proptest::collection::vec(arg(), 0..4).prop_map(|a| json!(a)),
        1 => Just(json!("not a list")),
        1 => Just(json!([1, null, {"a": 1}])),
    ];
    let timeout = prop_oneof![
        4 => Just(Value::Null),
        1 => prop_oneof![Just(json!(0)), Just(json!(-1)), Just(json!(1.5)), Just(json!(u64::MAX))],
        1 => (1000u64..10_000).prop_map(Value::from),
    ];
    let text = prop_oneof![4 => Just(Value::Null), 1 => any::<String>().prop_map(Value::from)];
    (
        verb,
        args,
        timeout,
        text.clone(),
        text.clone(),
        text,
        any::<bool>(),
    )
        .prop_map(|(verb, args, timeout, stdin, stdin_b64, id, extra)| {
            let mut b = json!({"verb": verb, "args": args});
            for (k, v) in [
                ("timeout_ms", timeout),
                ("stdin", stdin),
                ("stdin_base64", stdin_b64),
                ("request_id", id),
            ] {
                if !v.is_null() {
                    b[k] = v;
                }
            }
            if extra {
                b["target"] = json!("laptop");
            }
            b
        })
}

#[test]
fn random_call_bodies_never_cause_a_5xx_and_no_metacharacter_reaches_the_laptop() {
    let sshd = Sshd::start();
    let tether = TetherConfig::for_sshd(&sshd).test_verbs().spawn();
    let mut runner = TestRunner::new(Config::with_cases(300));
    runner
        .run(&body(), |body| {
            let (status, answer) = tether.call(&body);
            prop_assert!(status < 500, "{status} for {body}: {answer}");
            Ok(())
        })
        .unwrap();
    let raw = sshd.raw_commands();
    eprintln!("300 random bodies, {} reached the laptop", raw.len());
    assert!(raw.len() > 10, "the generator must produce valid calls too");
    for cmd in raw {
        assert!(
            cmd.iter().copied().all(allowed_on_the_wire),
            "reached the laptop: {:?}",
            String::from_utf8_lossy(&cmd)
        );
    }
    assert!(!tether.logs().contains("panicked"));
}

/// Sends `bytes`, closes the write half, and returns what came back (to EOF, at most 5 s).
fn exchange(socket: &Path, bytes: &[u8]) -> String {
    let mut s = UnixStream::connect(socket).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = s.write_all(bytes);
    let _ = s.shutdown(Shutdown::Write);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// A call that reaches the laptop (`reset` is not cached): proof that tether still serves.
fn reset_call(tether: &Tether) -> (u16, Value) {
    tether.call(&json!({"verb": "reset", "args": ["s"]}))
}

#[test]
fn garbage_and_half_written_http_get_a_4xx_or_a_close_never_a_5xx() {
    let sshd = Sshd::start();
    let tether = TetherConfig::for_sshd(&sshd).test_verbs().spawn();
    let long_header = format!(
        "GET /v1/health HTTP/1.1\r\nX: {}\r\n\r\n",
        "a".repeat(1 << 20)
    );
    let cases: Vec<&[u8]> = vec![
        b"\x00\xff\xfe garbage \r\n\r\n",
        b"hello\r\n\r\n",
        b"GET / HTTP/1.1\r\n",
        b"GET /v1/health HTTP/1.1\r\nHost: tether\r\n",
        b"POST /v1/call HTTP/1.1\r\nContent-Length: 100\r\n\r\n{\"verb\": \"reset\"",
        b"POST /v1/call HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"POST /v1/call HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
        b"POST /v1/call HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
        b"POST /v1/call HTTP/9.9\r\n\r\n",
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        b"POST /v1/call HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}",
        long_header.as_bytes(),
    ];
    for bytes in cases {
        let answer = exchange(tether.socket_path(), bytes);
        let status: Option<u16> = answer.split(' ').nth(1).and_then(|s| s.parse().ok());
        let shown = String::from_utf8_lossy(&bytes[..bytes.len().min(60)]).into_owned();
        eprintln!("{shown:?} -> {:?}", answer.lines().next());
        assert!(
            answer.is_empty() || status.is_some_and(|s| (400..500).contains(&s)),
            "{shown:?} -> {answer}"
        );
        assert_eq!(reset_call(&tether).0, 200, "still serving after {shown:?}");
    }
    assert!(!tether.logs().contains("panicked"));
}

#[test]
fn a_host_key_that_changes_mid_life_is_refused_loudly_and_counted() {
    let mut sshd = Sshd::start();
    let tether = TetherConfig::for_sshd(&sshd)
        .test_verbs()
        .set("targets.laptop.probe.interval", "300ms")
        .set("targets.laptop.probe.timeout", "300ms")
        .spawn();
    assert_eq!(reset_call(&tether).0, 200);
    sshd.restart_with_new_host_key();
    let before = sshd.raw_commands().len();
    let mut answer = (0, Value::Null);
    assert!(
        wait_until(Duration::from_secs(5), || {
            answer = reset_call(&tether);
            answer.1["error"]["code"] == "host_key_mismatch"
        }),
        "{answer:?}"
    );
    let (status, body) = answer;
    assert_eq!(status, 502, "{body}");
    assert_eq!(body["error"]["retryable"], false);
    assert_eq!(reset_call(&tether).1["error"]["code"], "host_key_mismatch");
    tether.wait_target(Duration::from_secs(5), |t| {
        t["last_error"]["code"] == "host_key_mismatch"
    });
    let counted =
        tether.metric("tether_connects_total{result=\"host_key_mismatch\",target=\"laptop\"}");
    let logs = tether.logs();
    let loud = logs
        .lines()
        .filter(|l| l.contains("ERROR") && l.contains("host_key_mismatch"))
        .count();
    eprintln!("changed host key: {counted} refused connects counted, {loud} error log lines");
    assert!(counted >= 1.0);
    assert!(loud >= 1, "{logs}");
    assert_eq!(
        sshd.raw_commands().len(),
        before,
        "nothing ran on the impostor"
    );
}

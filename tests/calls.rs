//! The calls in flight (docs/rpc.md, "Calls in flight"): `GET /v1/calls` lists them with their
//! states and never what they carry; `DELETE /v1/calls/{id}` (and `tether cancel`) drops a
//! queued call unsent and closes a running one's channel, its caller getting `cancelled`; the
//! admin port lists, and cancels only with `server.admin_mutations`; a caller's W3C
//! `traceparent` is carried into the answer, `/v1/calls` and tether's log line.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::http::{self, Streamed};
use common::sshd::Sshd;
use common::tether::{Tether, TetherConfig};
use common::wait_until;
use serde_json::{Value, json};

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

fn tether_with(sshd: &Sshd, connections: u32, channels: u32) -> TetherConfig {
    TetherConfig::for_sshd(sshd)
        .test_verbs()
        .set("targets.laptop.max_connections", connections)
        .set("targets.laptop.channels_per_connection", channels)
        .set("targets.laptop.queue_timeout", "19s")
        .set("targets.laptop.probe.shim_verb", "")
}

fn list(tether: &Tether) -> Value {
    let (status, doc) = http::get_json(tether.socket_path(), "/v1/calls");
    assert_eq!(status, 200, "{doc}");
    doc
}

/// The listed call with `request_id`'s state, if it is listed.
fn state_of(tether: &Tether, request_id: &str) -> Option<String> {
    list(tether)["calls"]
        .as_array()?
        .iter()
        .find(|c| c["request_id"] == request_id)
        .map(|c| c["state"].as_str().unwrap_or_default().to_string())
}

fn wait_state(tether: &Tether, request_id: &str, want: &str) {
    assert!(
        wait_until(Duration::from_secs(10), || state_of(tether, request_id)
            .as_deref()
            == Some(want)),
        "{request_id} never became {want}: {}",
        list(tether)
    );
}

fn delete(socket: &Path, request_id: &str) -> (u16, Value) {
    let path = format!("/v1/calls/{request_id}");
    let resp = http::unix(socket, "DELETE", &path, None).expect("DELETE");
    (resp.status, resp.json())
}

fn sleep_call(request_id: &str, seconds: &str) -> Value {
    json!({"verb": "sleep", "args": [seconds], "request_id": request_id})
}

fn assert_cancelled(answer: (u16, Value), says: &str) {
    let (status, body) = answer;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "cancelled", "{body}");
    assert_eq!(body["error"]["retryable"], false, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains(says), "{message:?} should say {says:?}");
}

#[test]
fn queued_and_running_calls_are_cancelled_by_the_socket_the_cli_and_the_admin_port() {
    let sshd = Sshd::start();
    let tether = tether_with(&sshd, 1, 2)
        .set("server.admin_mutations", true)
        .spawn();
    tether.wait_status("up");
    let socket = tether.socket_path();
    // Two calls take both channels; three more queue behind them.
    let running: Vec<_> = ["run-1", "run-2"]
        .map(|id| tether.call_in_background(sleep_call(id, "8")))
        .into();
    wait_state(&tether, "run-1", "running");
    wait_state(&tether, "run-2", "running");
    let queued: Vec<_> = [("queued-1", "1"), ("queued-2", "2"), ("queued-3", "3")]
        .map(|(id, s)| tether.call_in_background(sleep_call(id, s)))
        .into();
    for id in ["queued-1", "queued-2", "queued-3"] {
        wait_state(&tether, id, "queued");
    }
    let started = Instant::now();

    let (status, answer) = delete(socket, "queued-1");
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer["cancelled"],
        json!([{"request_id": "queued-1", "target": "laptop", "verb": "sleep", "state_before": "queued", "sent": false}])
    );
    let by_cli = tether.cli("cancel", &["queued-2"]);
    assert_eq!(by_cli.code, Some(0), "{by_cli:?}");
    assert!(by_cli.stdout.contains("cancelled queued-2") && by_cli.stdout.contains("never sent"));
    let addr = tether.admin_addr().unwrap();
    let by_admin = http::tcp(addr, "DELETE", "/v1/calls/queued-3", None).unwrap();
    assert_eq!(by_admin.status, 200, "{}", by_admin.text());
    for caller in queued {
        assert_cancelled(caller.join().unwrap(), "never sent");
    }

    let (status, answer) = delete(socket, "run-1");
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["cancelled"][0]["state_before"], "running");
    assert_eq!(answer["cancelled"][0]["sent"], true);
    let by_cli = tether.cli("cancel", &["run-2"]);
    assert_eq!(by_cli.code, Some(0), "{by_cli:?}");
    assert!(by_cli.stdout.contains("may have run"), "{by_cli:?}");
    for caller in running {
        let answer = caller.join().unwrap();
        assert_cancelled(answer.clone(), "may have run");
        assert!(
            answer.1["error"]["message"]
                .as_str()
                .unwrap()
                .contains("reset")
        );
    }
    let took = started.elapsed();
    assert!(took < Duration::from_secs(7), "cancels took {took:?}");

    // Nothing matches any more: 404 on the socket, exit 1 from the CLI.
    let (status, answer) = delete(socket, "run-1");
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
    let again = tether.cli("cancel", &["run-1"]);
    assert_eq!(again.code, Some(1), "{again:?}");
    assert!(again.stderr.contains("not_found"), "{again:?}");

    // The queued calls never reached the laptop; the running ones did.
    for seconds in ["1", "2", "3"] {
        assert_eq!(
            sshd.count("sleep", &[seconds]),
            0,
            "{}",
            sshd.invocation_log()
        );
    }
    assert_eq!(sshd.count("sleep", &["8"]), 2);
    // The running calls' channels came back: two calls at once run side by side.
    assert!(wait_until(Duration::from_secs(10), || tether.channels_idle()));
    assert!(wait_until(
        Duration::from_secs(10),
        || list(&tether)["total"] == 0
    ));
    let answers = tether.calls_at_once(vec![json!({"verb": "sleep", "args": ["1"]}); 2]);
    for (status, body, took) in &answers {
        assert_eq!(*status, 200, "{body}");
        assert!(
            *took < Duration::from_millis(1900),
            "queued behind a leaked channel: {took:?}"
        );
    }
    let cancelled = |stage: &str| {
        tether.metric(&format!(
            "tether_calls_cancelled_total{{target=\"laptop\",verb=\"sleep\",stage=\"{stage}\"}}"
        ))
    };
    assert_eq!((cancelled("queued"), cancelled("running")), (3.0, 2.0));
    let logs = tether.logs();
    let logged = logs
        .lines()
        .filter(|l| l.contains("call cancelled by an operator"))
        .collect::<Vec<_>>();
    assert_eq!(logged.len(), 5, "{logs}");
    let uid = nix::unistd::getuid().as_raw();
    assert!(
        logged
            .iter()
            .any(|l| l.contains(&format!("canceller_uid={uid}")))
    );
    assert!(logged.iter().any(|l| l.contains("admin port")));
}

#[test]
fn sixty_four_calls_in_flight_are_all_listed_with_their_states_and_nothing_they_carry() {
    let sshd = Sshd::start();
    let tether = tether_with(&sshd, 2, 8).spawn();
    tether.wait_status("up");
    let socket = tether.socket_path().to_path_buf();
    // A streamed call that has sent output is `streaming`.
    let mut streamed = Streamed::start(
        &socket,
        &json!({"verb": "drip", "args": ["40", "0.25"], "stream": true, "request_id": "drip-1"}),
    );
    assert_eq!(streamed.status, 200);
    streamed.next_event().expect("a first line");
    wait_state(&tether, "drip-1", "streaming");
    // 64 more calls: 15 take the other channels, 49 queue.
    let callers: Vec<_> = (0..64)
        .map(|i| {
            tether.call_in_background(json!({"verb": "sleep", "request_id": format!("c-{i}"),
                "args": ["2", "argument-marker"], "stdin": "secret-stdin"}))
        })
        .collect();
    let counts = |doc: &Value, state: &str| {
        doc["calls"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["state"] == state && c["verb"] == "sleep")
            .count()
    };
    let mut seen = Value::Null;
    assert!(
        wait_until(Duration::from_secs(10), || {
            seen = list(&tether);
            seen["total"] == 65 && counts(&seen, "running") == 15 && counts(&seen, "queued") == 49
        }),
        "{seen}"
    );
    assert_eq!(seen["shown"], 65);
    let calls = seen["calls"].as_array().unwrap();
    assert_eq!(calls[0]["request_id"], "drip-1", "oldest first");
    let ages: Vec<u64> = calls
        .iter()
        .map(|c| c["age_ms"].as_u64().unwrap())
        .collect();
    assert!(
        ages.windows(2).all(|w| w[0] >= w[1]),
        "oldest first: {ages:?}"
    );
    let uid = nix::unistd::getuid().as_raw();
    for call in calls {
        assert_eq!(call["caller_uid"], uid, "{call}");
        assert_eq!(call["abandoned"], false, "{call}");
        assert_eq!(call["trace_id"].as_str().unwrap().len(), 32, "{call}");
        assert!(call["queued_ms"].as_u64().unwrap() <= call["age_ms"].as_u64().unwrap());
    }
    let text = seen.to_string();
    assert!(
        !text.contains("argument-marker") && !text.contains("secret-stdin"),
        "{text}"
    );
    // The admin port lists the same calls; `tether calls` prints one row each.
    let admin = tether.admin_get("/v1/calls").json();
    assert_eq!(admin["total"], 65);
    let table = tether.cli("calls", &[]);
    assert_eq!(table.code, Some(0), "{table:?}");
    assert_eq!(table.stdout.lines().count(), 1 + 65 + 1, "{}", table.stdout);
    assert!(table.stdout.contains("65 of 65 calls in flight shown"));
    let json_out = tether.cli("calls", &["--json"]);
    let doc: Value = serde_json::from_str(&json_out.stdout).expect("--json prints JSON");
    assert_eq!(doc["total"], 65);
    // The status page shows them live, oldest first, and nothing they carry.
    let page = tether.admin_get("/").text();
    assert!(
        page.contains("Calls in flight <span class=\"muted\">(65)</span>"),
        "{page}"
    );
    let at = |text: &str| {
        page.find(text)
            .unwrap_or_else(|| panic!("{text} not on the page"))
    };
    assert!(at("drip-1") < at("c-0") && page.contains("streaming"));
    assert!(!page.contains("argument-marker") && !page.contains("secret-stdin"));
    // The admin port does not cancel without server.admin_mutations.
    let refused = http::tcp(
        tether.admin_addr().unwrap(),
        "DELETE",
        "/v1/calls/c-1",
        None,
    )
    .unwrap();
    assert_eq!(refused.status, 403, "{}", refused.text());
    assert_eq!(refused.json()["error"]["code"], "forbidden");
    assert!(refused.text().contains("server.admin_mutations = true"));
    // How long a listing takes while the calls run (measured, reported; not asserted).
    let mut took: Vec<Duration> = (0..200)
        .map(|_| {
            let t = Instant::now();
            list(&tether);
            t.elapsed()
        })
        .collect();
    took.sort();
    eprintln!(
        "GET /v1/calls with 65 calls in flight: p50 {:?}, p99 {:?}, max {:?} (200 requests)",
        took[100], took[197], took[199]
    );
    for caller in callers {
        let (status, body) = caller.join().unwrap();
        assert_eq!(status, 200, "{body}");
    }
    drop(streamed);
}

/// POST /v1/call with extra header lines; returns (status, body).
fn call_with_headers(socket: &Path, body: &Value, headers: &str) -> (u16, Value) {
    let body = serde_json::to_vec(body).unwrap();
    let mut request = format!(
        "POST /v1/call HTTP/1.1\r\nHost: tether\r\nConnection: close\r\nContent-Type: application/json\r\n{headers}Content-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(&body);
    let resp = http::raw_unix(socket, &request).expect("call");
    (resp.status, resp.json())
}

#[test]
fn a_callers_traceparent_is_in_the_answer_the_listing_and_the_log_line() {
    let sshd = Sshd::start();
    let tether = tether_with(&sshd, 1, 4).spawn();
    tether.wait_status("up");
    let socket = tether.socket_path().to_path_buf();
    let trace_id = &TRACEPARENT[3..35];
    let traced = {
        let socket = socket.clone();
        std::thread::spawn(move || {
            call_with_headers(
                &socket,
                &sleep_call("traced-1", "1"),
                &format!("traceparent: {TRACEPARENT}\r\ntracestate: vendor=abc\r\n"),
            )
        })
    };
    assert!(wait_until(Duration::from_secs(10), || {
        list(&tether)["calls"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["request_id"] == "traced-1" && c["trace_id"] == trace_id)
    }));
    let (status, answer) = traced.join().unwrap();
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["trace_id"], trace_id);
    let logs = tether.logs();
    assert!(
        logs.lines().any(|l| l.contains(" call request_id=")
            && l.contains("traced-1")
            && l.contains(trace_id)),
        "{logs}"
    );

    // The body's "trace" field, for clients that cannot set headers; a streamed exit event.
    let other = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let mut streamed = Streamed::start(
        &socket,
        &json!({"verb": "health", "stream": true, "trace": other}),
    );
    let events = streamed.events();
    let exit = events.last().unwrap();
    assert_eq!(exit["event"], "exit", "{events:?}");
    assert_eq!(exit["trace_id"], "0af7651916cd43dd8448eb211c80319c");
    // A buffered answer of a command that failed carries it too.
    let (status, answer) = call_with_headers(
        &socket,
        &json!({"verb": "fail", "args": ["3"], "trace": other}),
        "",
    );
    assert_eq!(
        status, 200,
        "a failing command is still an answer: {answer}"
    );
    assert_eq!(answer["trace_id"], "0af7651916cd43dd8448eb211c80319c");

    // An invalid one is ignored, never an error: a fresh trace each time.
    let bad = "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01";
    let fresh: Vec<String> = (0..2)
        .map(|_| {
            let (status, answer) = call_with_headers(
                &socket,
                &json!({"verb": "health"}),
                &format!("traceparent: {bad}\r\n"),
            );
            assert_eq!(status, 200, "{answer}");
            answer["trace_id"].as_str().unwrap().to_string()
        })
        .collect();
    for id in &fresh {
        assert_eq!(id.len(), 32);
        assert!(
            id.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        assert_ne!(id, &bad[3..35].to_ascii_lowercase());
    }
    assert_ne!(fresh[0], fresh[1]);
}

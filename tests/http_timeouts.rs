//! The socket's HTTP connections (docs/rpc.md, "HTTP connections"): an idle keep-alive
//! connection stays open for `server.idle_timeout` (so a client's pool never races tether's
//! close), a request that has started must arrive within `server.request_timeout`, and a
//! client that writes a whole over-limit body before reading still reads the 413.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use common::sshd::Sshd;
use common::tether::{Tether, TetherConfig};

const IDLE: Duration = Duration::from_secs(3);
const REQUEST: Duration = Duration::from_millis(800);

fn tether(sshd: &Sshd) -> Tether {
    TetherConfig::for_sshd(sshd)
        .test_verbs()
        .set("server.idle_timeout", "3s")
        .set("server.request_timeout", "800ms")
        .spawn()
}

/// Sends one keep-alive `GET /v1/health` and reads its answer; the status.
fn health_on(conn: &mut BufReader<UnixStream>) -> u16 {
    conn.get_mut()
        .write_all(b"GET /v1/health HTTP/1.1\r\nHost: tether\r\n\r\n")
        .unwrap();
    let mut status = String::new();
    conn.read_line(&mut status).unwrap();
    let mut length = 0;
    loop {
        let mut line = String::new();
        conn.read_line(&mut line).unwrap();
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = v.trim().parse().unwrap();
        }
        if line == "\r\n" {
            break;
        }
    }
    let mut body = vec![0; length];
    conn.read_exact(&mut body).unwrap();
    status.split(' ').nth(1).unwrap().parse().unwrap()
}

/// How long until the server closes `conn` (reads to EOF), and what it said before.
fn closed_after(mut conn: UnixStream, since: Instant) -> (Duration, String) {
    conn.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut out = Vec::new();
    conn.read_to_end(&mut out)
        .expect("the server closes the connection");
    (since.elapsed(), String::from_utf8_lossy(&out).into_owned())
}

#[test]
fn an_idle_keep_alive_connection_outlives_the_request_timeout_until_the_idle_timeout() {
    let sshd = Sshd::start();
    let tether = tether(&sshd);
    let mut conn = BufReader::new(UnixStream::connect(tether.socket_path()).unwrap());
    assert_eq!(health_on(&mut conn), 200);
    std::thread::sleep(REQUEST * 2);
    // tether's idle time starts once it has written the answer, which is after this and
    // before the test has read it: measured from here, the close comes IDLE or later.
    let asked = Instant::now();
    assert_eq!(
        health_on(&mut conn),
        200,
        "still open after twice the request timeout"
    );
    let (after, said) = closed_after(conn.into_inner(), asked);
    assert_eq!(said, "");
    assert!(after >= IDLE && after < IDLE * 2, "closed after {after:?}");
}

#[test]
fn requests_that_stall_are_closed_after_the_request_timeout_while_others_are_served() {
    let sshd = Sshd::start();
    let tether = tether(&sshd);
    let stall = |bytes: &[u8]| {
        let mut s = UnixStream::connect(tether.socket_path()).unwrap();
        s.write_all(bytes).unwrap();
        s
    };
    let started = Instant::now();
    let mid_head = stall(b"POST /v1/call HTTP/1.1\r\nContent-Le");
    let mid_body = stall(b"POST /v1/call HTTP/1.1\r\nContent-Length: 100\r\n\r\n{\"verb\"");
    for _ in 0..3 {
        assert_eq!(tether.health().0, 200);
    }
    let (after, said) = closed_after(mid_head, started);
    assert_eq!(said, "", "a stalled head is simply closed");
    assert!(
        after >= REQUEST && after < REQUEST + IDLE,
        "mid-head closed after {after:?}"
    );
    let (after, said) = closed_after(mid_body, started);
    assert!(said.starts_with("HTTP/1.1 400"), "{said}");
    assert!(said.contains("server.request_timeout"), "{said}");
    assert!(
        after >= REQUEST && after < REQUEST + IDLE,
        "mid-body closed after {after:?}"
    );
}

#[test]
fn a_client_that_writes_a_whole_over_limit_body_first_still_reads_the_413() {
    let sshd = Sshd::start();
    let tether = tether(&sshd);
    let body = vec![b'x'; 1536 * 1024];
    for announced in [true, false] {
        let mut s = UnixStream::connect(tether.socket_path()).unwrap();
        s.set_write_timeout(Some(Duration::from_secs(20))).unwrap();
        let head = if announced {
            format!(
                "POST /v1/call HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
                body.len()
            )
        } else {
            "POST /v1/call HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n".to_string()
        };
        s.write_all(head.as_bytes()).unwrap();
        if announced {
            s.write_all(&body)
                .expect("the whole body is read, not refused mid-way");
        } else {
            for piece in body.chunks(64 * 1024) {
                s.write_all(format!("{:x}\r\n", piece.len()).as_bytes())
                    .unwrap();
                s.write_all(piece)
                    .expect("the whole body is read, not refused mid-way");
                s.write_all(b"\r\n").unwrap();
            }
            s.write_all(b"0\r\n\r\n").unwrap();
        }
        let (_, said) = closed_after(s, Instant::now());
        assert!(said.starts_with("HTTP/1.1 413"), "{said}");
        assert!(said.contains("payload_too_large"), "{said}");
    }
}

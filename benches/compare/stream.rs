//! The streamed row: how long a line takes from the remote writing it to the app reading it,
//! (c) through a streamed call (NDJSON over tether's socket, read frame by frame as it
//! arrives) and (e) through the floor (a raw russh exec, reading the channel's data). The
//! shim's `drip` stamps each line with `date +%s.%N` as it writes it; on the same machine the
//! bench reads the same clock when it has parsed the line.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::Method;

use crate::callers::{Floor, HttpClient};
use crate::report::{LatencyRow, Mode};
use crate::stats::Samples;

/// The streaming tether's allowlist: `drip`, and `health` as seeded for the shim probe.
pub const VERBS: &str = r#"
[verbs.health]
timeout = "5s"
cache_ttl = "2s"
idempotent = true
[verbs.drip]
timeout = "20s"
"#;
/// Each run is `drip LINES_PER_RUN INTERVAL`: lines that many seconds apart.
pub const LINES_PER_RUN: usize = 50;
pub const INTERVAL: &str = "0.02";

/// Stdout as it arrives, cut into lines; each complete line's age is recorded when it is read.
#[derive(Default)]
struct Lines {
    partial: String,
    ages: Samples,
}

impl Lines {
    fn feed(&mut self, text: &str) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock after 1970")
            .as_secs_f64();
        self.partial.push_str(text);
        while let Some(end) = self.partial.find('\n') {
            let line: String = self.partial.drain(..=end).collect();
            // "line I UNIXTIME"
            let age = line
                .split_whitespace()
                .nth(2)
                .and_then(|stamp| stamp.parse::<f64>().ok())
                .and_then(|stamp| Duration::try_from_secs_f64(now - stamp).ok());
            match age {
                Some(age) => self.ages.push(age),
                None => self.ages.errors += 1,
            }
        }
    }
}

fn drip_body() -> Bytes {
    Bytes::from(
        serde_json::json!({
            "verb": "drip",
            "args": [LINES_PER_RUN.to_string(), INTERVAL],
            "stream": true,
        })
        .to_string(),
    )
}

/// One streamed call on `client`'s kept-alive connection, each stdout event fed to `lines`
/// as soon as its NDJSON line is parsed.
async fn through_tether(client: &mut HttpClient, lines: &mut Lines) -> Result<(), String> {
    let resp = client.send(Method::POST, "/v1/call", drip_body()).await?;
    let status = resp.status();
    let mut body = resp.into_body();
    let mut pending = Vec::new();
    let mut exit = None;
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.map_err(|e| e.to_string())?.into_data() else {
            continue;
        };
        pending.extend_from_slice(&data);
        while let Some(end) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            let event: serde_json::Value = serde_json::from_slice(&line)
                .map_err(|e| format!("status {status}, a line not JSON: {e}"))?;
            match event["event"].as_str() {
                Some("stdout") => lines.feed(event["data"].as_str().unwrap_or_default()),
                Some("exit") => exit = Some(event),
                _ => return Err(format!("status {status}: {event}")),
            }
        }
    }
    match exit {
        Some(exit) if exit["exit_status"] == 0 => Ok(()),
        exit => Err(format!("status {status}, ended with {exit:?}")),
    }
}

/// The same command on the floor's connection, each channel data message fed to `lines`.
async fn through_floor(floor: &Floor, lines: &mut Lines) -> Result<(), String> {
    let line = format!("drip {LINES_PER_RUN} {INTERVAL}");
    let status = floor
        .exec_with(&line, |data| lines.feed(&String::from_utf8_lossy(data)))
        .await?;
    match status {
        Some(0) => Ok(()),
        other => Err(format!("exit {other:?}")),
    }
}

/// Runs (c) and (e) in turn, the order swapped each round, until each has read `total` lines
/// (in whole runs), after one unrecorded run each; the first failure of each goes to `errors`.
pub async fn measure(
    client: &mut HttpClient,
    floor: &Floor,
    total: usize,
    errors: &mut Vec<(String, String)>,
) -> Vec<LatencyRow> {
    let (mut c, mut e) = (Lines::default(), Lines::default());
    through_tether(client, &mut Lines::default())
        .await
        .expect("warm-up streamed call through tether");
    through_floor(floor, &mut Lines::default())
        .await
        .expect("warm-up streamed exec on the floor");
    let mut failed = |mode: Mode, result: Result<(), String>| {
        if let Err(err) = result {
            eprintln!("streamed {mode:?}: {err}");
            let phase = format!("streamed {mode:?}");
            if !errors.iter().any(|(p, _)| *p == phase) {
                errors.push((phase, err));
            }
        }
    };
    let runs = total.div_ceil(LINES_PER_RUN).max(1);
    for run in 0..runs {
        if run % 2 == 0 {
            failed(Mode::C, through_tether(client, &mut c).await);
            failed(Mode::E, through_floor(floor, &mut e).await);
        } else {
            failed(Mode::E, through_floor(floor, &mut e).await);
            failed(Mode::C, through_tether(client, &mut c).await);
        }
        eprintln!(
            "streamed: run {}/{runs}: C p50 {:.3} ms, E p50 {:.3} ms",
            run + 1,
            c.ages.summary().p50_ms,
            e.ages.summary().p50_ms
        );
    }
    vec![
        LatencyRow {
            mode: Mode::C,
            label: "(c) tether, streamed call (NDJSON on the socket)",
            latency: c.ages.summary(),
        },
        LatencyRow {
            mode: Mode::E,
            label: "(e) floor: russh exec, reading the channel's data",
            latency: e.ages.summary(),
        },
    ]
}

//! `tether calls` (the calls in flight, as a table or `--json`) and `tether cancel ID` (cancel
//! every call with that request id; exit 1 when none matched), over the socket.

use std::path::PathBuf;
use std::time::Duration;

use hyper::Method;
use serde_json::Value;

use super::client::request;
use crate::config::DEFAULT_SOCKET;

/// How long one request may take.
const REQUEST_BOUND: Duration = Duration::from_secs(5);
/// Exit status when the sidecar does not answer (as `tether check`).
const NO_ANSWER: i32 = 2;

/// `tether calls [--socket S] [--json]`
#[derive(clap::Args)]
pub struct CallsArgs {
    #[arg(long, env = "TETHER_SERVER__SOCKET", default_value = DEFAULT_SOCKET)]
    pub socket: PathBuf,
    /// Print the `/v1/calls` document as it is.
    #[arg(long)]
    pub json: bool,
}

/// `tether cancel [--socket S] REQUEST_ID`
#[derive(clap::Args)]
pub struct CancelArgs {
    #[arg(long, env = "TETHER_SERVER__SOCKET", default_value = DEFAULT_SOCKET)]
    pub socket: PathBuf,
    /// The request id of the call(s) to cancel, as `tether calls` shows it.
    pub request_id: String,
}

/// `tether calls`; returns the exit status.
pub async fn list(a: CallsArgs) -> i32 {
    let Some((_, doc)) = ask(&a.socket, Method::GET, "/v1/calls").await else {
        return NO_ANSWER;
    };
    if a.json {
        println!("{doc}");
        return 0;
    }
    print!("{}", table(&doc));
    0
}

/// `tether cancel ID`; returns the exit status: 0 when something was cancelled.
pub async fn cancel(a: CancelArgs) -> i32 {
    let path = format!("/v1/calls/{}", a.request_id);
    let Some((status, doc)) = ask(&a.socket, Method::DELETE, &path).await else {
        return NO_ANSWER;
    };
    if status != 200 {
        let code = doc["error"]["code"].as_str().unwrap_or("unknown");
        let message = doc["error"]["message"].as_str().unwrap_or("");
        eprintln!("tether: {code}: {message}");
        return 1;
    }
    for c in doc["cancelled"].as_array().into_iter().flatten() {
        let sent = match c["sent"].as_bool() {
            Some(true) => "it had been sent: it may have run",
            _ => "it was never sent",
        };
        println!(
            "cancelled {} ({} on {}, was {}): {sent}",
            text(&c["request_id"]),
            text(&c["verb"]),
            text(&c["target"]),
            text(&c["state_before"]),
        );
    }
    0
}

async fn ask(socket: &std::path::Path, method: Method, path: &str) -> Option<(u16, Value)> {
    match request(socket, method, path, None, REQUEST_BOUND).await {
        Ok((status, body)) => match serde_json::from_slice(&body) {
            Ok(doc) => Some((status, doc)),
            Err(_) => {
                eprintln!("tether: {path} did not answer JSON (status {status})");
                None
            }
        },
        Err(e) => {
            eprintln!("tether: no answer on {}: {e}", socket.display());
            None
        }
    }
}

/// The listing as a table, oldest first, and a line saying how many there are.
fn table(doc: &Value) -> String {
    let header = [
        "REQUEST ID",
        "TARGET",
        "VERB",
        "STATE",
        "AGE",
        "QUEUED",
        "UID",
        "TRACE ID",
    ];
    let mut rows = vec![header.map(String::from).to_vec()];
    for c in doc["calls"].as_array().into_iter().flatten() {
        let mut state = text(&c["state"]);
        if c["abandoned"].as_bool() == Some(true) {
            state.push_str(" (caller gone)");
        }
        rows.push(vec![
            text(&c["request_id"]),
            text(&c["target"]),
            text(&c["verb"]),
            state,
            seconds(&c["age_ms"]),
            seconds(&c["queued_ms"]),
            text(&c["caller_uid"]),
            text(&c["trace_id"]),
        ]);
    }
    let widths: Vec<usize> = (0..header.len())
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in &rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    let (shown, total) = (&doc["shown"], &doc["total"]);
    out.push_str(&format!(
        "{} of {} calls in flight shown\n",
        text(shown),
        text(total)
    ));
    out
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

fn seconds(ms: &Value) -> String {
    match ms.as_u64() {
        Some(ms) => format!("{:.1}s", ms as f64 / 1000.0),
        None => "-".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_has_a_row_per_call_and_the_counts() {
        let doc = serde_json::json!({"calls": [{"request_id": "r1", "target": "t", "verb": "sleep",
            "state": "running", "age_ms": 1500, "queued_ms": 2, "caller_uid": 1000, "stream": false,
            "abandoned": true, "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736"}], "total": 1, "shown": 1});
        let out = table(&doc);
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines[0].starts_with("REQUEST ID"));
        assert!(lines[1].starts_with("r1 "));
        assert!(lines[1].contains("running (caller gone)") && lines[1].contains("1.5s"));
        assert!(lines[1].ends_with("4bf92f3577b34da6a3ce929d0e0e4736"));
        assert_eq!(lines[2], "1 of 1 calls in flight shown");
    }
}

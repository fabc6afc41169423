//! `tether call`: runs a verb through the sidecar and behaves like `ssh host verb args`:
//! remote output passes through as the remote writes it (a streamed call, docs/rpc.md), the
//! exit status is the remote's, and a tether error prints `tether: CODE: message` and exits
//! 255 (docs/cli.md).

use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::Duration;

use base64::Engine;
use hyper::Method;

use http_body_util::BodyExt;

use super::client::send;
use crate::config::DEFAULT_SOCKET;

/// What ssh exits with when it, not the remote command, failed.
pub const TETHER_FAILED: i32 = 255;
/// Extra time the client waits beyond the call's own deadline.
const CLIENT_SLACK: Duration = Duration::from_secs(5);
/// Longest any call may take when no --timeout is given (the server caps it per verb).
const NO_TIMEOUT_BOUND: Duration = Duration::from_secs(24 * 3600);

/// `tether call [--socket S] [--target T] [--timeout D] [--stdin-file F|-] VERB [ARG…]`
#[derive(clap::Args)]
pub struct CallArgs {
    #[arg(long, env = "TETHER_SERVER__SOCKET", default_value = DEFAULT_SOCKET)]
    pub socket: PathBuf,
    #[arg(long)]
    pub target: Option<String>,
    /// The call's deadline, e.g. "30s" (capped by the verb's timeout).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub timeout: Option<Duration>,
    /// Send this file (or "-" for standard input) as the command's stdin.
    #[arg(long)]
    pub stdin_file: Option<String>,
    pub verb: String,
    /// Arguments, passed as they are (`-rf` is an argument, not an option).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
}

/// Runs the call and returns the process exit code.
pub async fn run(a: CallArgs) -> i32 {
    let stdin = match &a.stdin_file {
        None => None,
        Some(path) => match read_stdin(path) {
            Ok(bytes) => Some(base64::engine::general_purpose::STANDARD.encode(bytes)),
            Err(e) => return fail("bad_request", &format!("cannot read {path}: {e}")),
        },
    };
    let body = serde_json::json!({
        "target": a.target,
        "verb": a.verb,
        "args": a.args,
        "stdin_base64": stdin,
        "timeout_ms": a.timeout.map(|t| t.as_millis() as u64),
        "stream": true,
    });
    let bound = a.timeout.map_or(NO_TIMEOUT_BOUND, |t| t + CLIENT_SLACK);
    let sent = send(
        &a.socket,
        Method::POST,
        "/v1/call",
        Some(body.to_string().into_bytes()),
        bound,
    );
    let response = match sent.await {
        Ok(response) => response,
        Err(e) => {
            return fail(
                "upstream_unreachable",
                &format!("tether does not answer on {}: {e}", a.socket.display()),
            );
        }
    };
    let status = response.status().as_u16();
    let mut body = response.into_body();
    if status != 200 {
        let whole = body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let reply: serde_json::Value = serde_json::from_slice(&whole).unwrap_or_default();
        let code = reply["error"]["code"].as_str().unwrap_or("internal");
        let message = reply["error"]["message"]
            .as_str()
            .map_or_else(|| format!("tether answered HTTP {status}"), str::to_string);
        return fail(code, &message);
    }
    let mut pending = Vec::new();
    loop {
        let frame = match tokio::time::timeout(bound, body.frame()).await {
            Ok(Some(Ok(frame))) => frame,
            Ok(Some(Err(e))) => {
                return fail("connection_lost", &format!("the answer broke off: {e}"));
            }
            Ok(None) => return fail("connection_lost", "the answer ended without an exit event"),
            Err(_) => return fail("timeout", "tether stopped answering"),
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        pending.extend_from_slice(&data);
        while let Some(end) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            if let Some(code) = event(&line) {
                return code;
            }
        }
    }
}

/// Acts on one NDJSON event; the exit code once the call has ended.
fn event(line: &[u8]) -> Option<i32> {
    let Ok(event) = serde_json::from_slice::<serde_json::Value>(line) else {
        return Some(fail("internal", "tether sent a line that is not JSON"));
    };
    let data = event["data"].as_str().unwrap_or_default().as_bytes();
    match event["event"].as_str() {
        Some("stdout") => {
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(data).and_then(|_| out.flush());
            None
        }
        Some("stderr") => {
            let _ = std::io::stderr().write_all(data);
            None
        }
        Some("exit") => {
            for stream in ["stdout", "stderr"] {
                if event[format!("{stream}_truncated")].as_bool() == Some(true) {
                    eprintln!(
                        "tether: the remote {stream} was cut at the target's max_output_bytes"
                    );
                }
            }
            Some(
                event["exit_status"]
                    .as_u64()
                    .map_or(TETHER_FAILED, |c| c.min(255) as i32),
            )
        }
        Some("error") => {
            let code = event["error"]["code"].as_str().unwrap_or("internal");
            Some(fail(
                code,
                event["error"]["message"].as_str().unwrap_or("no message"),
            ))
        }
        _ => None,
    }
}

fn read_stdin(path: &str) -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    if path == "-" {
        std::io::stdin().read_to_end(&mut bytes)?;
    } else {
        bytes = std::fs::read(path)?;
    }
    Ok(bytes)
}

fn fail(code: &str, message: &str) -> i32 {
    eprintln!("tether: {code}: {message}");
    TETHER_FAILED
}

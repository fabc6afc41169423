//! `tether check`: exit 0 when the target (or all) is up, 1 when degraded, down or unknown,
//! 2 when the sidecar does not answer. `--ready` asks only whether the sidecar serves and is
//! not draining: the compose healthcheck, independent of the remote.

use std::path::PathBuf;
use std::time::Duration;

use hyper::Method;
use tokio::time::Instant;

use super::client::request;
use crate::config::DEFAULT_SOCKET;

/// How long one health request may take.
const REQUEST_BOUND: Duration = Duration::from_secs(2);
/// Pause between polls with `--wait`.
const POLL: Duration = Duration::from_millis(250);

/// `tether check [--socket S] [--target T] [--wait D]` or `tether check --ready`
#[derive(clap::Args)]
pub struct CheckArgs {
    #[arg(long, env = "TETHER_SERVER__SOCKET", default_value = DEFAULT_SOCKET)]
    pub socket: PathBuf,
    #[arg(long)]
    pub target: Option<String>,
    /// Poll until up or this long has passed, e.g. "30s".
    #[arg(long, value_parser = humantime::parse_duration)]
    pub wait: Option<Duration>,
    /// Only ask whether the sidecar serves and is not draining (the container healthcheck).
    #[arg(long, conflicts_with_all = ["target"])]
    pub ready: bool,
}

/// Returns the process exit code.
pub async fn run(a: CheckArgs) -> i32 {
    let deadline = Instant::now() + a.wait.unwrap_or_default();
    loop {
        let code = once(&a).await;
        if code == 0 || Instant::now() + POLL > deadline {
            return code;
        }
        tokio::time::sleep(POLL).await;
    }
}

async fn once(a: &CheckArgs) -> i32 {
    let path = if a.ready { "/readyz" } else { "/v1/health" };
    let (status, body) = match request(&a.socket, Method::GET, path, None, REQUEST_BOUND).await {
        Ok(answer) => answer,
        Err(e) => {
            eprintln!("tether: no answer on {}: {e}", a.socket.display());
            return 2;
        }
    };
    if a.ready {
        println!("{}", String::from_utf8_lossy(&body).trim());
        return if status == 200 { 0 } else { 1 };
    }
    let Ok(health) = serde_json::from_slice::<serde_json::Value>(&body) else {
        eprintln!("tether: /v1/health did not answer JSON");
        return 2;
    };
    let status = match &a.target {
        Some(t) => match health["targets"].get(t) {
            Some(target) => target["status"].as_str().unwrap_or("unknown").to_string(),
            None => {
                eprintln!("tether: no target named {t:?}");
                return 1;
            }
        },
        None => health["status"].as_str().unwrap_or("unknown").to_string(),
    };
    println!("{status}");
    if status == "up" { 0 } else { 1 }
}

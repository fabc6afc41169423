//! `tether demo`: the real sidecar and the real shim doing their real jobs, with no laptop
//! needed.
//!
//! One process runs a throwaway SSH server on a loopback port ([`server`]) whose forced
//! command is this binary's `tether shim` with a config in a temporary directory ([`laptop`]),
//! running the stand-in [`assistant`] for each verb; in front of it, the same code path as
//! `tether serve` ([`crate::serve`]), pinned to that server's host key. Both keys are generated
//! at start and live only in memory. Once the socket listens, [`banner`] prints commands ready
//! to paste, with the admin address tether really bound.

pub mod assistant;
mod banner;
mod laptop;
mod server;

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use russh::keys::ssh_key::LineEnding;
use russh::keys::{Algorithm, PrivateKey};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{self, Config, Loaded, LogFormat, ProbeConfig, Secret, TargetConfig};
use crate::serve::{self, StartError};

/// The demo's one target.
pub const TARGET: &str = "demo";
/// The session name the examples and the shim probe use.
pub const SESSION: &str = "demo-session";
/// The user tether logs in as (the demo server accepts any user with the demo key).
const USER: &str = "demo";
/// How long the demo's own tasks (the SSH server) get to stop after the sidecar has.
const STOP_FLUSH: Duration = Duration::from_secs(3);

/// `tether demo [--socket PATH] [--admin-addr ADDR]`
#[derive(clap::Args)]
pub struct DemoArgs {
    /// The RPC socket (default: tether.sock in a fresh temporary directory).
    #[arg(long)]
    pub socket: Option<PathBuf>,
    /// The admin server (status page, metrics); port 0 picks a free port, "" disables.
    #[arg(long, default_value = crate::config::DEFAULT_ADMIN_ADDR)]
    pub admin_addr: String,
}

/// Runs the demo until `shutdown` resolves, then drains like `tether serve`.
pub async fn run(args: DemoArgs, shutdown: impl Future<Output = ()>) -> Result<(), StartError> {
    let host_key = fresh_key()?;
    let client_key = fresh_key()?;
    let laptop = laptop::Laptop::create(fresh_dir("laptop")?)?;
    let tracker = TaskTracker::new();
    let cancel = CancellationToken::new();
    let ssh = server::start(
        host_key.clone(),
        client_key.public_key().clone(),
        laptop.forced_command(),
        &tracker,
        cancel.clone(),
    )
    .await
    .map_err(|e| StartError(format!("demo SSH server: cannot listen on 127.0.0.1: {e}")))?;
    let (socket, made_dir) = match args.socket {
        Some(path) => (path, None),
        None => {
            let dir = fresh_dir("sock")?;
            (dir.join("tether.sock"), Some(dir))
        }
    };
    let config = demo_config(ssh, &host_key, &client_key, &socket, &args.admin_addr)?;
    let loaded = config::validate(config)
        .map_err(|e| StartError(format!("the demo's config is invalid (a bug): {e}")))?;
    tracing::info!(ssh = %ssh, shim = %laptop.config.display(), "demo SSH server listening (ephemeral keys, the real shim)");

    let result = serve_with_banner(loaded, &laptop, shutdown).await;

    cancel.cancel();
    tracker.close();
    if tokio::time::timeout(STOP_FLUSH, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!("the demo SSH server did not stop in time");
    }
    if let Some(dir) = made_dir {
        let _ = std::fs::remove_dir(dir);
    }
    laptop.remove();
    result
}

fn fresh_key() -> Result<PrivateKey, StartError> {
    PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519)
        .map_err(|e| StartError(format!("cannot generate an ed25519 key: {e}")))
}

/// A new private directory under the system's temp dir.
fn fresh_dir(what: &str) -> Result<PathBuf, StartError> {
    use std::os::unix::fs::DirBuilderExt;
    let id = uuid::Uuid::new_v4().simple().to_string();
    let dir = std::env::temp_dir().join(format!("tether-demo-{what}-{}", &id[..8]));
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&dir)
        .map_err(|e| StartError(format!("cannot create {}: {e}", dir.display())))?;
    Ok(dir)
}

/// `tether serve`'s build, spawn and drain, with the banner printed once the socket
/// listens, naming the admin address that was bound (port 0 resolved).
async fn serve_with_banner(
    loaded: Loaded,
    laptop: &laptop::Laptop,
    shutdown: impl Future<Output = ()>,
) -> Result<(), StartError> {
    let built = serve::build(loaded).await?;
    let page = banner::Banner::new(built.socket(), built.admin_addr(), laptop);
    let serving = built.spawn();
    println!("{}", page.render());
    shutdown.await;
    serving.drain().await;
    Ok(())
}

/// The config `tether serve` would load for this setup: one target, the seed verbs.
fn demo_config(
    ssh: SocketAddr,
    host_key: &PrivateKey,
    client_key: &PrivateKey,
    socket: &Path,
    admin_addr: &str,
) -> Result<Config, StartError> {
    let keygen = |e: russh::keys::ssh_key::Error| StartError(format!("demo keys: {e}"));
    let host_line = host_key.public_key().to_openssh().map_err(keygen)?;
    let private_key = client_key.to_openssh(LineEnding::LF).map_err(keygen)?;
    let target = TargetConfig {
        host: ssh.ip().to_string(),
        port: ssh.port(),
        user: USER.into(),
        private_key: Some(Secret::new(private_key.as_str())),
        known_hosts: Some(format!("[{}]:{} {host_line}", ssh.ip(), ssh.port())),
        probe: ProbeConfig {
            shim_args: vec![SESSION.into()],
            ..ProbeConfig::default()
        },
        ..TargetConfig::default()
    };
    let mut config = Config::default();
    config.server.socket = socket.to_path_buf();
    config.server.admin_addr = admin_addr.to_string();
    config.server.log_format = LogFormat::Text;
    config.targets.insert(TARGET.into(), target);
    Ok(config)
}

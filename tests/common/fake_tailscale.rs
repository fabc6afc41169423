//! A stand-in for Tailscale SSH on a loopback port, run in the test process with russh's
//! server side: it announces `SSH-2.0-Tailscale`, lets any key in (and "none" auth), and
//! runs every exec request with `/bin/sh -c`, the way Tailscale SSH runs the raw command in
//! the login shell and never looks at authorized_keys. Every command line it receives is
//! appended to a log before it runs, so a test can prove that none reached it.
//!
//! ```ignore
//! let fake = FakeTailscale::start();
//! // ... point tether at 127.0.0.1:fake.port(), pinning fake.known_hosts_line() ...
//! assert!(fake.commands().is_empty());
//! ```

use std::fs;
use std::io::Write;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use russh::keys::{Algorithm, PrivateKey};
use russh::server::{Auth, Config, Handler, Msg, PublicKeyOffer, Session, VerifiedPublicKey};
use russh::{Channel, ChannelId, MethodKind, MethodSet, SshId};
use tempfile::TempDir;
use tokio::net::TcpListener;

/// Tailscale SSH's identification string.
pub const TAILSCALE_ID: &str = "SSH-2.0-Tailscale";

/// A running stand-in; dropping it stops the server.
pub struct FakeTailscale {
    runtime: Option<tokio::runtime::Runtime>,
    port: u16,
    host_key: String,
    log: PathBuf,
    connections: Arc<AtomicUsize>,
    _dir: TempDir,
}

impl FakeTailscale {
    pub fn start() -> FakeTailscale {
        let dir = tempfile::Builder::new()
            .prefix("fake-tailscale-")
            .tempdir()
            .expect("tempdir");
        let log = dir.path().join("commands.log");
        fs::write(&log, "").expect("create command log");
        let key = PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519).expect("host key");
        let host_key = key.public_key().to_openssh().expect("encode host key");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let listener = runtime
            .block_on(TcpListener::bind(("127.0.0.1", 0)))
            .expect("bind");
        let port = listener.local_addr().expect("local addr").port();
        let config = Arc::new(Config {
            server_id: SshId::Standard(TAILSCALE_ID.into()),
            keys: vec![key],
            methods: MethodSet::from(&[MethodKind::None, MethodKind::PublicKey][..]),
            nodelay: true,
            inactivity_timeout: None,
            ..Default::default()
        });
        let connections = Arc::new(AtomicUsize::new(0));
        let counted = connections.clone();
        let commands = log.clone();
        runtime.spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                let handler = Shell {
                    log: commands.clone(),
                };
                let config = config.clone();
                tokio::spawn(async move {
                    if let Ok(session) = russh::server::run_stream(config, tcp, handler).await {
                        let _ = session.await;
                    }
                });
            }
        });
        FakeTailscale {
            runtime: Some(runtime),
            port,
            host_key,
            log,
            connections,
            _dir: dir,
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The pin for this server: `[127.0.0.1]:PORT ssh-ed25519 AAAA…`.
    pub fn known_hosts_line(&self) -> String {
        format!("[127.0.0.1]:{} {}", self.port, self.host_key)
    }

    /// Every command line received, in order.
    pub fn commands(&self) -> Vec<String> {
        fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

impl Drop for FakeTailscale {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// One client connection: anyone gets in, every exec runs in a shell.
struct Shell {
    log: PathBuf,
}

impl Handler for Shell {
    type Error = russh::Error;

    async fn auth_none(&mut self, _user: &str) -> Result<Auth, Self::Error> {
        Ok(Auth::Accept)
    }

    async fn auth_publickey_offered(
        &mut self,
        _user: &str,
        _offer: PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        Ok(Auth::Accept)
    }

    async fn auth_publickey(
        &mut self,
        _user: &str,
        _key: VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        Ok(Auth::Accept)
    }

    async fn channel_open_session(
        &mut self,
        _channel: Channel<Msg>,
        reply: russh::server::ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        reply.accept().await;
        Ok(())
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let line = String::from_utf8_lossy(data).into_owned();
        fs::OpenOptions::new()
            .append(true)
            .open(&self.log)
            .and_then(|mut f| writeln!(f, "{line}"))
            .expect("log the command");
        session.channel_success(channel)?;
        let handle = session.handle();
        tokio::spawn(async move {
            let ran = tokio::process::Command::new("/bin/sh")
                .arg("-c")
                .arg(&line)
                .stdin(Stdio::null())
                .output()
                .await;
            let status = match ran {
                Ok(out) => {
                    let _ = handle.data(channel, out.stdout).await;
                    let _ = handle.extended_data(channel, 1, out.stderr).await;
                    out.status.code().unwrap_or(255) as u32
                }
                Err(_) => 255,
            };
            let _ = handle.exit_status_request(channel, status).await;
            let _ = handle.eof(channel).await;
            let _ = handle.close(channel).await;
        });
        Ok(())
    }
}

//! The demo's SSH server (russh's server side) on a loopback port. It behaves like the
//! laptop's `authorized_keys` line with a forced command: one client key only, session
//! channels only, exec requests only (no pty, shell, subsystem, env or forwarding), each run
//! as sshd runs a forced command: the [`ForcedCommand`] (the real `tether shim`) with the
//! request in `SSH_ORIGINAL_COMMAND`.
//!
//! A command starts at its exec request; its stdin is passed on as it arrives and closed at
//! the channel's EOF (so a resident `tether shim` session works here as under sshd), and its
//! output is passed on as it comes, then its exit status, EOF and close, through the session
//! [`Handle`] from a tracked task, so one connection serves many channels at once.

use std::collections::HashMap;
use std::ffi::OsString;
use std::net::SocketAddr;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use russh::keys::{PrivateKey, PublicKey};
use russh::server::{
    Auth, Config, Handle, Handler, Msg, PublicKeyOffer, Session, VerifiedPublicKey,
};
use russh::{Channel, ChannelId, ChannelOpenFailure, MethodKind, MethodSet};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

/// Channels one connection may have open at once (OpenSSH's MaxSessions is 10).
const MAX_CHANNELS: usize = 64;
/// Stdin kept per command; the seed verbs take none, so this only bounds memory.
const MAX_STDIN: usize = 1 << 20;
/// Output is passed on in chunks of at most this many bytes.
const CHUNK: usize = 32 * 1024;

/// What runs every exec request, as an `authorized_keys` `command="…"` would.
#[derive(Debug, Clone)]
pub struct ForcedCommand {
    pub program: PathBuf,
    pub args: Vec<OsString>,
}
/// How long a session gets to say goodbye when the server stops.
const DISCONNECT_GRACE: Duration = Duration::from_secs(2);

/// Binds 127.0.0.1 on a free port and serves SSH there until `cancel` fires. Only
/// `client_key` may log in (as any user); the server presents `host_key`; every exec request
/// runs `forced`.
pub async fn start(
    host_key: PrivateKey,
    client_key: PublicKey,
    forced: ForcedCommand,
    tracker: &TaskTracker,
    cancel: CancellationToken,
) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
    let addr = listener.local_addr()?;
    let config = Arc::new(Config {
        keys: vec![host_key],
        methods: MethodSet::from(&[MethodKind::PublicKey][..]),
        nodelay: true,
        auth_rejection_time: Duration::from_millis(200),
        auth_rejection_time_initial: Some(Duration::ZERO),
        // tether owns the connection's life; it sends keepalives and closes politely.
        inactivity_timeout: None,
        ..Default::default()
    });
    let accept = accept_loop(
        listener,
        config,
        Arc::new(client_key),
        Arc::new(forced),
        tracker.clone(),
        cancel,
    );
    tracker.spawn(accept.instrument(tracing::info_span!("demo_sshd", %addr)));
    Ok(addr)
}

async fn accept_loop(
    listener: TcpListener,
    config: Arc<Config>,
    client_key: Arc<PublicKey>,
    forced: Arc<ForcedCommand>,
    tracker: TaskTracker,
    cancel: CancellationToken,
) {
    let local_port = listener.local_addr().map_or(0, |a| a.port());
    loop {
        let (tcp, peer) = tokio::select! {
            _ = cancel.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "demo SSH server: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let handler = Connection {
            client_key: client_key.clone(),
            forced: forced.clone(),
            ssh_client: format!("{} {} {local_port}", peer.ip(), peer.port()),
            channels: HashMap::new(),
            tracker: tracker.clone(),
            cancel: cancel.clone(),
        };
        let session = serve(config.clone(), tcp, handler, cancel.clone());
        tracker.spawn(session.instrument(tracing::debug_span!("demo_ssh_session", %peer)));
    }
}

/// Runs one SSH session until the client leaves or the server stops.
async fn serve(
    config: Arc<Config>,
    tcp: TcpStream,
    handler: Connection,
    cancel: CancellationToken,
) {
    let _ = tcp.set_nodelay(true);
    // The handshake waits for the client's banner: do not let a silent peer outlive shutdown.
    let session = tokio::select! {
        _ = cancel.cancelled() => return,
        started = russh::server::run_stream(config, tcp, handler) => match started {
            Ok(session) => session,
            Err(e) => {
                tracing::debug!(error = %e, "demo SSH session did not start");
                return;
            }
        },
    };
    let handle = session.handle();
    tokio::pin!(session);
    tokio::select! {
        ended = &mut session => {
            if let Err(e) = ended {
                tracing::debug!(error = %e, "demo SSH session ended");
            }
        }
        _ = cancel.cancelled() => {
            let _ = handle
                .disconnect(russh::Disconnect::ByApplication, "demo server stopping".into(), "en".into())
                .await;
            let _ = tokio::time::timeout(DISCONNECT_GRACE, session).await;
        }
    }
}

/// One client connection: its login check and the channels it has open.
struct Connection {
    client_key: Arc<PublicKey>,
    forced: Arc<ForcedCommand>,
    /// `SSH_CLIENT` for the forced command: "ADDRESS PORT LOCAL_PORT".
    ssh_client: String,
    channels: HashMap<ChannelId, Pending>,
    tracker: TaskTracker,
    cancel: CancellationToken,
}

/// A session channel: its stdin before the exec request came, then where its stdin goes
/// while the command runs (closed at the channel's EOF).
#[derive(Default)]
struct Pending {
    started: bool,
    early: Vec<u8>,
    eof: bool,
    stdin: Option<mpsc::UnboundedSender<Vec<u8>>>,
}

impl Connection {
    fn is_ours(&self, key: &PublicKey) -> Auth {
        // Compare key data only: PublicKey equality also compares the comment.
        if key.key_data() == self.client_key.key_data() {
            Auth::Accept
        } else {
            Auth::reject()
        }
    }

    /// Starts the command at its exec request, with its stdin passed on as it arrives (a
    /// resident `tether shim` session reads frames from it for the channel's whole life).
    fn start(&mut self, channel: ChannelId, line: String, session: &Session) {
        let Some(p) = self.channels.get_mut(&channel) else {
            return;
        };
        p.started = true;
        let (stdin, chunks) = mpsc::unbounded_channel();
        if !p.early.is_empty() {
            let _ = stdin.send(std::mem::take(&mut p.early));
        }
        if !p.eof {
            p.stdin = Some(stdin);
        }
        let run = Run {
            handle: session.handle(),
            channel,
            forced: self.forced.clone(),
            ssh_client: self.ssh_client.clone(),
        };
        let cancel = self.cancel.clone();
        self.tracker.spawn(async move {
            tokio::select! {
                _ = cancel.cancelled() => {}
                _ = run.execute(line, chunks) => {}
            }
        });
    }

    /// Answers a channel request the demo does not support.
    fn refuse(
        &self,
        channel: ChannelId,
        what: &str,
        session: &mut Session,
    ) -> Result<(), russh::Error> {
        tracing::debug!(?channel, "demo SSH server refused a {what} request");
        session.channel_failure(channel)
    }
}

/// One exec request on its way: where its output goes and what runs it.
struct Run {
    handle: Handle,
    channel: ChannelId,
    forced: Arc<ForcedCommand>,
    ssh_client: String,
}

impl Run {
    /// Runs the forced command with `line` as `SSH_ORIGINAL_COMMAND` and sends what it writes
    /// as it comes, then its exit status, EOF and close, like sshd. Send errors mean the
    /// client went away: the command then sees its pipes close, as on a dropped SSH channel.
    async fn execute(self, line: String, mut stdin: mpsc::UnboundedReceiver<Vec<u8>>) {
        let spawned = tokio::process::Command::new(&self.forced.program)
            .args(&self.forced.args)
            .env("SSH_ORIGINAL_COMMAND", &line)
            .env("SSH_CLIENT", &self.ssh_client)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn();
        let mut child = match spawned {
            Ok(child) => child,
            Err(e) => {
                let message = format!("demo server: cannot run the shim: {e}\n");
                let _ = self.handle.extended_data(self.channel, 1, message).await;
                return self.end(127).await;
            }
        };
        let feed = async {
            if let Some(mut pipe) = child.stdin.take() {
                while let Some(chunk) = stdin.recv().await {
                    if pipe.write_all(&chunk).await.is_err() {
                        break;
                    }
                }
            }
        };
        let out = self.forward(child.stdout.take(), None);
        let err = self.forward(child.stderr.take(), Some(1));
        tokio::join!(feed, out, err);
        let status = match child.wait().await {
            Ok(status) => status
                .code()
                .or_else(|| status.signal().map(|s| 128 + s))
                .unwrap_or(255),
            Err(_) => 255,
        };
        let verb = line.split(' ').next().unwrap_or_default();
        tracing::debug!(verb, status, "demo shim ran");
        self.end(u32::try_from(status).unwrap_or(255)).await;
    }

    /// Passes one of the command's outputs on: stdout, or extended data `ext` (1 is stderr).
    async fn forward(&self, pipe: Option<impl AsyncRead + Unpin>, ext: Option<u32>) {
        let Some(mut pipe) = pipe else { return };
        let mut buf = vec![0; CHUNK];
        while let Ok(n @ 1..) = pipe.read(&mut buf).await {
            let chunk = buf[..n].to_vec();
            let sent = match ext {
                None => self.handle.data(self.channel, chunk).await,
                Some(ext) => self.handle.extended_data(self.channel, ext, chunk).await,
            };
            if sent.is_err() {
                return;
            }
        }
    }

    async fn end(&self, status: u32) {
        let _ = self.handle.exit_status_request(self.channel, status).await;
        let _ = self.handle.eof(self.channel).await;
        let _ = self.handle.close(self.channel).await;
    }
}

impl Handler for Connection {
    type Error = russh::Error;

    async fn auth_publickey_offered(
        &mut self,
        _user: &str,
        offer: PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        Ok(self.is_ours(offer.public_key))
    }

    async fn auth_publickey(
        &mut self,
        _user: &str,
        key: VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        Ok(self.is_ours(key.public_key))
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: russh::server::ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if self.channels.len() >= MAX_CHANNELS {
            reply.reject(ChannelOpenFailure::ResourceShortage).await;
            return Ok(());
        }
        // Everything arrives through the handler callbacks; the Channel object is not needed.
        self.channels.insert(channel.id(), Pending::default());
        reply.accept().await;
        Ok(())
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        if self.channels.get(&channel).is_none_or(|p| p.started) {
            return self.refuse(channel, "second exec", session);
        }
        session.channel_success(channel)?;
        self.start(channel, String::from_utf8_lossy(data).into_owned(), session);
        Ok(())
    }

    async fn data(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        match self.channels.get_mut(&channel) {
            Some(Pending {
                stdin: Some(stdin), ..
            }) => {
                let _ = stdin.send(data.to_vec());
            }
            Some(p) if !p.started => {
                let room = MAX_STDIN.saturating_sub(p.early.len());
                p.early.extend_from_slice(&data[..data.len().min(room)]);
            }
            _ => {}
        }
        Ok(())
    }

    async fn channel_eof(
        &mut self,
        channel: ChannelId,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if let Some(p) = self.channels.get_mut(&channel) {
            p.eof = true;
            p.stdin = None;
        }
        Ok(())
    }

    async fn channel_close(
        &mut self,
        channel: ChannelId,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.channels.remove(&channel);
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn pty_request(
        &mut self,
        channel: ChannelId,
        _term: &str,
        _col_width: u32,
        _row_height: u32,
        _pix_width: u32,
        _pix_height: u32,
        _modes: &[(russh::Pty, u32)],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.refuse(channel, "pty", session)
    }

    async fn shell_request(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.refuse(channel, "shell", session)
    }

    async fn subsystem_request(
        &mut self,
        channel: ChannelId,
        _name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.refuse(channel, "subsystem", session)
    }

    async fn env_request(
        &mut self,
        channel: ChannelId,
        _name: &str,
        _value: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.refuse(channel, "env", session)
    }

    async fn x11_request(
        &mut self,
        channel: ChannelId,
        _single_connection: bool,
        _protocol: &str,
        _cookie: &str,
        _screen: u32,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.refuse(channel, "x11", session)
    }

    async fn agent_request(
        &mut self,
        channel: ChannelId,
        _session: &mut Session,
    ) -> Result<bool, Self::Error> {
        // russh itself answers failure when this returns false.
        tracing::debug!(
            ?channel,
            "demo SSH server refused an agent forwarding request"
        );
        Ok(false)
    }

    async fn window_change_request(
        &mut self,
        channel: ChannelId,
        _col_width: u32,
        _row_height: u32,
        _pix_width: u32,
        _pix_height: u32,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.refuse(channel, "window-change", session)
    }
    // Channel types other than "session" (direct-tcpip, x11, forwarded…) are refused by
    // russh's defaults, which drop the open handle; tcpip-forward requests answer failure.
}

#[cfg(test)]
mod tests {
    use super::*;
    use russh::ChannelMsg;
    use russh::client;
    use russh::keys::{Algorithm, PrivateKeyWithHashAlg};

    struct AnyHost;

    impl client::Handler for AnyHost {
        type Error = russh::Error;

        async fn check_server_key(
            &mut self,
            _key: &russh::keys::PublicKeyOrCertificate,
        ) -> Result<bool, Self::Error> {
            Ok(true)
        }
    }

    fn key() -> PrivateKey {
        PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519).unwrap()
    }

    async fn login(addr: SocketAddr, key: PrivateKey) -> (client::Handle<AnyHost>, bool) {
        let config = Arc::new(client::Config::default());
        let mut handle = client::connect(config, addr, AnyHost).await.unwrap();
        let auth = handle
            .authenticate_publickey("demo", PrivateKeyWithHashAlg::new(Arc::new(key), None))
            .await
            .unwrap();
        (handle, auth.success())
    }

    /// Everything the server says on a channel until it closes it.
    async fn drain(channel: &mut Channel<client::Msg>) -> Vec<ChannelMsg> {
        let mut seen = Vec::new();
        while let Some(msg) = channel.wait().await {
            let close = matches!(msg, ChannelMsg::Close);
            seen.push(msg);
            if close {
                break;
            }
        }
        seen
    }

    #[tokio::test]
    async fn only_our_key_and_only_exec() {
        let (tracker, cancel) = (TaskTracker::new(), CancellationToken::new());
        let ours = key();
        // A stand-in for the shim: answers `reset s1`, refuses the rest.
        let forced = ForcedCommand {
            program: "/bin/sh".into(),
            args: vec![
                "-c".into(),
                r#"case "$SSH_ORIGINAL_COMMAND" in
                     "reset s1") echo "reset s1" ;;
                     *) echo "unknown verb" >&2; exit 2 ;;
                   esac"#
                    .into(),
            ],
        };
        let addr = start(
            key(),
            ours.public_key().clone(),
            forced,
            &tracker,
            cancel.clone(),
        )
        .await
        .unwrap();

        let (_, accepted) = login(addr, key()).await;
        assert!(!accepted, "a stranger's key got in");
        let (handle, accepted) = login(addr, ours).await;
        assert!(accepted);

        let refused = handle
            .channel_open_direct_tcpip("127.0.0.1", 22, "127.0.0.1", 1)
            .await;
        assert!(refused.is_err(), "port forwarding was allowed");
        let mut channel = handle.channel_open_session().await.unwrap();
        channel
            .request_pty(true, "xterm", 80, 24, 0, 0, &[])
            .await
            .unwrap();
        assert!(matches!(channel.wait().await, Some(ChannelMsg::Failure)));
        channel.request_shell(true).await.unwrap();
        assert!(matches!(channel.wait().await, Some(ChannelMsg::Failure)));

        channel.exec(true, "reset s1").await.unwrap();
        channel.eof().await.unwrap();
        let seen = drain(&mut channel).await;
        assert!(matches!(seen[0], ChannelMsg::Success), "{seen:?}");
        assert!(
            matches!(&seen[1], ChannelMsg::Data { data } if &data[..] == b"reset s1\n"),
            "{seen:?}"
        );
        assert!(
            seen.iter()
                .any(|m| matches!(m, ChannelMsg::ExitStatus { exit_status: 0 })),
            "{seen:?}"
        );

        let mut unknown = handle.channel_open_session().await.unwrap();
        unknown.exec(true, "rm -rf /").await.unwrap();
        unknown.eof().await.unwrap();
        let seen = drain(&mut unknown).await;
        assert!(
            seen.iter().any(|m| matches!(m, ChannelMsg::ExtendedData { ext: 1, data } if data.starts_with(b"unknown verb"))),
            "{seen:?}"
        );
        assert!(
            seen.iter()
                .any(|m| matches!(m, ChannelMsg::ExitStatus { exit_status: 2 })),
            "{seen:?}"
        );

        cancel.cancel();
        tracker.close();
        tokio::time::timeout(Duration::from_secs(5), tracker.wait())
            .await
            .expect("the demo server stops on cancel");
    }
}

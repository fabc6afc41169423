//! One SSH connection to a target: a bounded connect (TCP, banner, key exchange and auth
//! together), the host-key pin, a warm-up round trip, and liveness checks.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use russh::client::{self, Handle};
use russh::keys::{HashAlg, PrivateKeyWithHashAlg, PublicKeyOrCertificate};
use tokio::net::TcpStream;

use super::banner;
use super::credentials::Credentials;
use super::session;
use super::warm::{self, Plan, Stock};
use crate::error::Error;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);
/// First and longest pause before trying again a server that dropped the handshake.
const DROPPED_RETRY_FIRST: Duration = Duration::from_millis(20);
const DROPPED_RETRY_MAX: Duration = Duration::from_millis(400);

/// Messages (up to 32 KiB each) russh holds per channel before its reader takes them. russh
/// widens the server's window as data arrives, not as it is read, so this is what bounds the
/// output in transit per channel (russh's default, 100, allows 3.2 MiB: 25 MiB for 8 big
/// answers at once). Call tasks read continuously, so a smaller queue costs no speed.
const CHANNEL_BUFFER_MESSAGES: usize = 32;

/// Where a target is and how to reach it: what an [`Endpoint`] needs of the target's config.
pub struct Destination {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub connect_timeout: Duration,
    pub keepalive_interval: Duration,
    pub allow_tailscale_ssh: bool,
}

/// `host:port` as people write it (an IPv6 host in brackets), for messages.
pub fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// What a connection attempt needs: where, as whom, and which host keys to trust.
#[derive(Clone)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
    pub user: String,
    /// `host:port` as people write it, for messages.
    pub addr: String,
    pub connect_timeout: Duration,
    pub credentials: Arc<Credentials>,
    pub allow_tailscale_ssh: bool,
    ssh: Arc<client::Config>,
}

impl Endpoint {
    pub fn new(to: Destination, credentials: Arc<Credentials>) -> Self {
        let ssh = client::Config {
            nodelay: true,
            keepalive_interval: Some(to.keepalive_interval),
            keepalive_max: 3,
            inactivity_timeout: None,
            channel_buffer_size: CHANNEL_BUFFER_MESSAGES,
            ..Default::default()
        };
        Endpoint {
            addr: host_port(&to.host, to.port),
            host: to.host,
            port: to.port,
            user: to.user,
            connect_timeout: to.connect_timeout,
            credentials,
            allow_tailscale_ssh: to.allow_tailscale_ssh,
            ssh: Arc::new(ssh),
        }
    }
}

/// A live, authenticated SSH connection. Channel operations take `&self`, so it is shared
/// in an `Arc` by every slot that runs on it.
pub struct Connection {
    pub id: u64,
    handle: Handle<PinnedHost>,
    /// Pool slots currently bound to this connection (see [`Lease`]).
    leases: AtomicUsize,
    /// Channels open on it right now (calls and probes), until the server has freed them.
    open_channels: AtomicUsize,
    /// How many slots it may carry: `channels_per_connection`, lowered when the server
    /// refuses a channel (its MaxSessions is smaller than configured), raised again as
    /// opens succeed.
    capacity: AtomicUsize,
    configured_capacity: usize,
    /// Set when tether gave up on it (probe failure, drain): no new work goes there.
    retired: AtomicBool,
    /// Whether its forced command takes in-band data, once asked ([`super::hello`]).
    pub(super) in_band: tokio::sync::OnceCell<bool>,
    /// Session channels opened ahead of demand ([`super::warm`]).
    warm: Stock,
    /// Its resident shim session, once asked for ([`super::session`]).
    pub(super) session: session::Slot,
}

impl Connection {
    /// Connects, checks the host key, logs in and makes one warm-up round trip, all within
    /// the endpoint's connect_timeout. A server that drops the connection during the
    /// handshake (sshd's MaxStartups) is tried again, with back-off, inside that bound.
    pub async fn open(
        endpoint: &Endpoint,
        capacity: usize,
        warm: &Plan,
    ) -> Result<Connection, Error> {
        let addr = &endpoint.addr;
        let bound = endpoint.connect_timeout;
        let dropped = Mutex::new(None);
        let attempts = async {
            let mut pause = DROPPED_RETRY_FIRST;
            loop {
                match Self::handshake(endpoint, addr, capacity, warm).await {
                    Ok(conn) => return Ok(conn),
                    Err(Handshake::Failed(e)) => return Err(e),
                    Err(Handshake::Dropped(e)) => {
                        *dropped.lock().expect("poisoned") = Some(e);
                        tokio::time::sleep(pause.mul_f64(rand::random_range(0.5..=1.0))).await;
                        pause = (pause * 2).min(DROPPED_RETRY_MAX);
                    }
                }
            }
        };
        match tokio::time::timeout(bound, attempts).await {
            Ok(result) => result,
            Err(_) => Err(match dropped.lock().expect("poisoned").take() {
                Some(e) => Error::UpstreamUnreachable(format!(
                    "{e}, again and again for {bound:?} (connect_timeout): the server is \
                     refusing new connections (sshd MaxStartups?), or is not an SSH server"
                )),
                None => Error::UpstreamUnreachable(format!(
                    "no SSH session with {addr} within {bound:?} (connect_timeout): the remote \
                     accepted nothing or stopped answering; it may be asleep or frozen"
                )),
            }),
        }
    }

    async fn handshake(
        endpoint: &Endpoint,
        addr: &str,
        capacity: usize,
        warm: &Plan,
    ) -> Result<Connection, Handshake> {
        let tcp = TcpStream::connect((endpoint.host.as_str(), endpoint.port))
            .await
            .map_err(|e| {
                Error::UpstreamUnreachable(format!(
                    "cannot reach {addr}: {e}; is the remote awake and on the network?"
                ))
            })?;
        tcp.set_nodelay(true)
            .map_err(|e| Error::Internal(format!("set_nodelay: {e}")))?;
        let received = Arc::new(Mutex::new(None));
        let pin = PinnedHost {
            credentials: endpoint.credentials.clone(),
            received: received.clone(),
        };
        let (server_id, tcp) = banner::read_identification(tcp)
            .await
            .map_err(|e| handshake_error(e, addr, endpoint, &received))?;
        banner::refuse_tailscale(&server_id, addr, endpoint.allow_tailscale_ssh)?;
        let mut handle = client::connect_stream(endpoint.ssh.clone(), tcp, pin)
            .await
            .map_err(|e| handshake_error(e, addr, endpoint, &received))?;
        let key = endpoint.credentials.key.clone();
        let hash = if key.algorithm().is_rsa() {
            // OpenSSH refuses SHA-1 signatures; prefer what the server announced.
            let best = handle
                .best_supported_rsa_hash()
                .await
                .ok()
                .flatten()
                .flatten();
            Some(best.unwrap_or(HashAlg::Sha256))
        } else {
            None
        };
        let auth = handle
            .authenticate_publickey(&endpoint.user, PrivateKeyWithHashAlg::new(key, hash))
            .await
            .map_err(|e| lost_during_handshake(e, addr))?;
        if !auth.success() {
            return Err(Handshake::Failed(Error::UpstreamAuthFailed {
                addr: addr.to_string(),
                user: endpoint.user.clone(),
            }));
        }
        let conn = Connection {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            handle,
            leases: AtomicUsize::new(0),
            open_channels: AtomicUsize::new(0),
            capacity: AtomicUsize::new(capacity),
            configured_capacity: capacity,
            retired: AtomicBool::new(false),
            in_band: tokio::sync::OnceCell::new(),
            warm: Stock::new(warm.clone()),
            session: session::Slot::default(),
        };
        // The first request on a new connection otherwise stalls ~40 ms.
        conn.handle
            .send_ping()
            .await
            .map_err(|e| lost_during_handshake(e, addr))?;
        Ok(conn)
    }

    /// One SSH round trip; fails when it takes longer than `bound` or the connection died.
    pub async fn ping(&self, bound: Duration) -> Result<Duration, Error> {
        let start = Instant::now();
        let answered = tokio::time::timeout(bound, self.handle.send_ping()).await;
        match answered {
            Ok(Ok(())) if !self.is_closed() => Ok(start.elapsed()),
            Ok(_) => Err(Error::ConnectionLost("the SSH connection closed".into())),
            Err(_) => Err(Error::Timeout(bound)),
        }
    }

    /// A lease when the connection has room for one more slot: the check and the count are
    /// one atomic step, so concurrent callers never overcommit it.
    pub fn try_lease(self: &Arc<Self>) -> Option<Lease> {
        self.leases
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < self.capacity()).then_some(n + 1)
            })
            .ok()
            .map(|_| Lease(self.clone()))
    }

    /// A lease whatever the room: its channel opens wait for the server to free one.
    pub fn lease_beyond_capacity(self: &Arc<Self>) -> Lease {
        self.leases.fetch_add(1, Ordering::SeqCst);
        Lease(self.clone())
    }

    /// Slots bound to this connection right now.
    pub fn leased(&self) -> usize {
        self.leases.load(Ordering::SeqCst)
    }

    /// How many slots this connection may carry.
    pub fn capacity(&self) -> usize {
        self.capacity.load(Ordering::SeqCst)
    }

    /// An open succeeded: counted until the guard drops, and the server carries at least
    /// this many channels.
    pub fn opened(self: &Arc<Self>) -> OpenChannel {
        self.count_open();
        self.adopt_open()
    }

    /// Counts a channel that just opened; the server carries at least this many.
    pub(super) fn count_open(&self) {
        let open = self.open_channels.fetch_add(1, Ordering::SeqCst) + 1;
        self.capacity
            .fetch_max(open.min(self.configured_capacity), Ordering::SeqCst);
    }

    /// The guard of a channel already counted by [`Self::count_open`] (a warm one).
    pub(super) fn adopt_open(self: &Arc<Self>) -> OpenChannel {
        OpenChannel(self.clone())
    }

    /// A counted channel the server has freed, that no guard holds.
    pub(super) fn uncount_open(&self) {
        self.open_channels.fetch_sub(1, Ordering::SeqCst);
    }

    /// Channels open on it right now, warm ones included.
    pub(super) fn open_channels(&self) -> usize {
        self.open_channels.load(Ordering::SeqCst)
    }

    /// Its warm channels.
    pub(super) fn warm(&self) -> &Stock {
        &self.warm
    }

    /// The server refused an open: the channels open now are about its real limit.
    pub fn refused(&self) {
        let open = self.open_channels.load(Ordering::SeqCst).max(1);
        let before = self.capacity.fetch_min(open, Ordering::SeqCst);
        if open < before && before == self.configured_capacity {
            tracing::info!(
                conn = self.id,
                limit = open,
                "the server refused a channel: carrying about {open} per connection (its MaxSessions is lower than channels_per_connection)"
            );
        }
    }

    /// True once the connection died or tether retired it.
    pub fn is_closed(&self) -> bool {
        self.retired.load(Ordering::SeqCst) || self.handle.is_closed()
    }

    pub fn handle(&self) -> &Handle<PinnedHost> {
        &self.handle
    }

    /// Retires the connection and says goodbye to the server, waiting at most
    /// [`DISCONNECT_TIMEOUT`] for a frozen one.
    /// Its warm channels are closed first, and one round trip lets the server free them.
    pub async fn close(&self) {
        self.goodbye(true).await;
    }

    /// Like [`Self::close`], for a connection that stopped answering: no round trip is
    /// awaited (its warm channels' CLOSEs still go ahead of the goodbye).
    pub async fn close_unanswered(&self) {
        self.goodbye(false).await;
    }

    async fn goodbye(&self, answered: bool) {
        self.retired.store(true, Ordering::SeqCst);
        session::end(self);
        let goodbye = async {
            if warm::close_all(self).await > 0 && answered {
                let _ = self.handle.send_ping().await;
            }
            self.handle
                .disconnect(
                    russh::Disconnect::ByApplication,
                    "tether is closing this connection",
                    "en",
                )
                .await
        };
        let _ = tokio::time::timeout(DISCONNECT_TIMEOUT, goodbye).await;
    }
}

/// How long a polite goodbye may take before the connection is simply dropped.
const DISCONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// A pool slot's claim on a connection; the count goes back when it drops.
pub struct Lease(Arc<Connection>);

impl Lease {
    pub fn conn(&self) -> &Arc<Connection> {
        &self.0
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.0.leases.fetch_sub(1, Ordering::SeqCst);
    }
}

/// One open channel on a connection; dropping it frees the count.
pub struct OpenChannel(Arc<Connection>);

impl Drop for OpenChannel {
    /// The server has freed the channel: its room goes back, to calls and the warm stock.
    fn drop(&mut self) {
        self.0.uncount_open();
        warm::refill(&self.0);
    }
}

/// The russh handler: it trusts exactly the pinned host keys.
pub struct PinnedHost {
    credentials: Arc<Credentials>,
    /// The fingerprint of a refused server key, for the error message.
    received: Arc<Mutex<Option<String>>>,
}

impl client::Handler for PinnedHost {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let (presented, pinned) = check_pin(&self.credentials.host_keys, key);
        if !pinned {
            *self.received.lock().expect("poisoned") = Some(fingerprint(&presented));
        }
        Ok(pinned)
    }
}

/// The key a server presented, and whether it is one of `pins`. A certificate never is:
/// tether pins keys. Key data only is compared (PublicKey equality also compares comments).
pub fn check_pin(
    pins: &[russh::keys::PublicKey],
    key: &PublicKeyOrCertificate,
) -> (russh::keys::PublicKey, bool) {
    let presented: russh::keys::PublicKey = match key {
        PublicKeyOrCertificate::PublicKey { key, .. } => key.clone(),
        PublicKeyOrCertificate::Certificate(cert) => cert.public_key().clone().into(),
    };
    let pinned = !matches!(key, PublicKeyOrCertificate::Certificate(_))
        && pins.iter().any(|k| k.key_data() == presented.key_data());
    (presented, pinned)
}

/// `SHA256:…` as `ssh-keygen -l` prints it.
pub fn fingerprint(key: &russh::keys::PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

/// Why a handshake did not give a connection.
enum Handshake {
    /// The server closed the connection before the handshake finished: worth another try.
    Dropped(Error),
    Failed(Error),
}

impl From<Error> for Handshake {
    fn from(e: Error) -> Self {
        Handshake::Failed(e)
    }
}

fn handshake_error(
    e: russh::Error,
    addr: &str,
    endpoint: &Endpoint,
    received: &Mutex<Option<String>>,
) -> Handshake {
    match received.lock().expect("poisoned").take() {
        Some(received) => Handshake::Failed(Error::HostKeyMismatch {
            addr: addr.to_string(),
            expected: endpoint
                .credentials
                .host_keys
                .iter()
                .map(fingerprint)
                .collect::<Vec<_>>()
                .join(" or "),
            received,
        }),
        None if closed_early(&e) => Handshake::Dropped(lost_during_handshake(e, addr)),
        None => Handshake::Failed(lost_during_handshake(e, addr)),
    }
}

fn closed_early(e: &russh::Error) -> bool {
    matches!(
        e,
        russh::Error::IO(_) | russh::Error::Disconnect | russh::Error::HUP
    )
}

fn lost_during_handshake(e: russh::Error, addr: &str) -> Error {
    let what = if closed_early(&e) {
        "the server closed the connection during the SSH handshake".to_string()
    } else {
        format!("the SSH handshake failed ({e}); is an SSH server listening there?")
    };
    Error::UpstreamUnreachable(format!("{addr}: {what}"))
}

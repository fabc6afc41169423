//! The configuration: typed keys with their defaults (docs/config.md).
//!
//! [`load`] reads the sources and [`validate`] turns the result into a [`Loaded`] config whose
//! keys and host keys are parsed, reporting every problem at once.

mod load;
mod origins;
mod secret;
mod validate;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::ssh::connection::{self, Destination};
use crate::ssh::{in_band, session};

pub use load::{ConfigErrors, Read, load, read};
pub use origins::Origins;
pub use secret::Secret;
pub use validate::{CredentialParts, Loaded, MAX_SOCKET_PATH, check, credential_parts, validate};

/// Where the RPC socket lives unless configured.
pub const DEFAULT_SOCKET: &str = "/run/tether/tether.sock";
/// The socket file's mode, applied after bind: owner and group may connect.
pub const DEFAULT_SOCKET_MODE: u32 = 0o660;
/// The admin server (metrics, probes, status page); loopback only by default.
pub const DEFAULT_ADMIN_ADDR: &str = "127.0.0.1:9477";
/// The largest request body the RPC accepts.
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 1 << 20;
/// How long SIGTERM waits for calls in flight.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
/// Output that buffered calls in flight may hold in memory together.
pub const DEFAULT_MAX_BUFFERED_BYTES: usize = 64 << 20;
/// An idle keep-alive connection on the socket is closed after this; longer than the idle
/// timeout of common HTTP clients (Go's: 90 s), so they close first and never race our close.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(120);
/// A request whose head or body has started must have fully arrived within this.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Open RPC connections at once, all callers together. Measured: an idle connection costs
/// tether about 10-15 KiB, so 1024 of them stay near 16 MiB, well inside a 128 MiB limit, and
/// 1024 is far above what an app needs (calls in flight are bounded by the channels anyway).
pub const DEFAULT_MAX_CONNECTIONS_TOTAL: usize = 1024;
/// Open RPC connections at once per caller uid: one uid (a flood, allowed or not) can take at
/// most half of [`DEFAULT_MAX_CONNECTIONS_TOTAL`], leaving the other half to other callers.
/// An app bursting 500 calls at once (tests/load.rs) still gets results or `busy`, not
/// connections closed unanswered.
pub const DEFAULT_MAX_CONNECTIONS_PER_UID: usize = 512;
/// The SSH port of the shim on the laptop.
pub const DEFAULT_PORT: u16 = 22022;
/// Bound on TCP connect, banner, key exchange and auth together.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// SSH keepalive period on idle connections.
pub const DEFAULT_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);
/// SSH connections per target.
pub const DEFAULT_MAX_CONNECTIONS: usize = 2;
/// Concurrent channels per connection; keep below the server's MaxSessions (OpenSSH: 10).
pub const DEFAULT_CHANNELS_PER_CONNECTION: usize = 8;
/// Session channels opened ahead of demand per connection: one is enough for a call at a time to
/// skip the channel-open round trip (docs/config.md).
pub const DEFAULT_WARM_CHANNELS: usize = 1;
/// Longest wait for a free channel before `busy`.
pub const DEFAULT_QUEUE_TIMEOUT: Duration = Duration::from_secs(5);
/// Per-stream output cap; beyond it output is cut and flagged.
pub const DEFAULT_MAX_OUTPUT_BYTES: usize = 16 << 20;
/// A command still running this long after its deadline gets its channel closed.
pub const DEFAULT_STUCK_AFTER: Duration = Duration::from_secs(300);
/// A server whose banner says Tailscale SSH is refused: it never runs the forced command.
pub const DEFAULT_ALLOW_TAILSCALE_SSH: bool = false;
/// Transport probe period.
pub const DEFAULT_PROBE_INTERVAL: Duration = Duration::from_secs(2);
/// Transport probe bound.
pub const DEFAULT_PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// Consecutive transport failures before a target turns down.
pub const DEFAULT_FAIL_THRESHOLD: u32 = 2;
/// The verb the deep probe runs through the shim.
pub const DEFAULT_SHIM_VERB: &str = "health";
/// Deep probe period: each one starts a process on the remote.
pub const DEFAULT_SHIM_INTERVAL: Duration = Duration::from_secs(30);
/// A verb's timeout when its table does not set one.
pub const DEFAULT_VERB_TIMEOUT: Duration = Duration::from_secs(30);

/// The whole configuration file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub targets: BTreeMap<String, TargetConfig>,
    /// The allowlist; the seed verbs when no `[verbs]` table is configured.
    pub verbs: BTreeMap<String, VerbConfig>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            server: ServerConfig::default(),
            targets: BTreeMap::new(),
            verbs: seed_verbs(),
        }
    }
}

/// `[server]`: the local side.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    pub socket: PathBuf,
    pub socket_mode: SocketMode,
    pub admin_addr: String,
    pub max_request_bytes: usize,
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    pub log_format: LogFormat,
    pub default_target: String,
    pub allowed_uids: Vec<u32>,
    pub max_buffered_bytes: usize,
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Open RPC connections at once; more are closed at once.
    pub max_connections: usize,
    /// Open RPC connections at once per caller uid; more are closed at once.
    pub max_connections_per_uid: usize,
    /// The admin port may cancel calls (`DELETE /v1/calls/{id}`); else it only reads.
    pub admin_mutations: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            socket: PathBuf::from(DEFAULT_SOCKET),
            socket_mode: SocketMode(DEFAULT_SOCKET_MODE),
            admin_addr: DEFAULT_ADMIN_ADDR.into(),
            max_request_bytes: DEFAULT_MAX_REQUEST_BYTES,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            log_format: LogFormat::Json,
            default_target: String::new(),
            allowed_uids: Vec::new(),
            max_buffered_bytes: DEFAULT_MAX_BUFFERED_BYTES,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS_TOTAL,
            max_connections_per_uid: DEFAULT_MAX_CONNECTIONS_PER_UID,
            admin_mutations: false,
        }
    }
}

impl ServerConfig {
    /// The idle and request timeouts of every HTTP connection.
    pub fn timeouts(&self) -> crate::http::clock::Timeouts {
        crate::http::clock::Timeouts {
            idle: self.idle_timeout,
            request: self.request_timeout,
        }
    }
}

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Json,
    Text,
}

/// A file mode written as an octal string ("0660"); a bare number is read as octal digits too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketMode(pub u32);

impl Serialize for SocketMode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{:04o}", self.0))
    }
}

impl<'de> Deserialize<'de> for SocketMode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            Number(u64),
        }
        let text = match Raw::deserialize(d)? {
            Raw::Text(t) => t,
            Raw::Number(n) => n.to_string(),
        };
        match u32::from_str_radix(&text, 8) {
            Ok(mode) if mode <= 0o777 => Ok(SocketMode(mode)),
            _ => Err(serde::de::Error::custom(format!(
                "{text:?} is not an octal file mode such as \"0660\""
            ))),
        }
    }
}

/// `[targets.NAME]`: one remote machine.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TargetConfig {
    pub host: String,
    pub port: u16,
    pub user: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub private_key: Option<Secret>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub private_key_file: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub known_hosts: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub known_hosts_file: Option<PathBuf>,
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub keepalive_interval: Duration,
    pub max_connections: usize,
    pub channels_per_connection: usize,
    /// Session channels each connection opens ahead of demand (docs/config.md).
    pub warm_channels: usize,
    #[serde(with = "humantime_serde")]
    pub queue_timeout: Duration,
    pub max_output_bytes: usize,
    #[serde(with = "humantime_serde")]
    pub stuck_after: Duration,
    /// Use a server whose banner says Tailscale SSH anyway (docs/config.md).
    pub allow_tailscale_ssh: bool,
    /// Trace context and credentials in-band to a `tether shim` that takes them.
    pub in_band: in_band::Mode,
    /// Calls on a resident `tether shim` session when the laptop has one (docs/config.md).
    pub shim_session: session::Mode,
    pub probe: ProbeConfig,
}

impl Default for TargetConfig {
    fn default() -> Self {
        TargetConfig {
            host: String::new(),
            port: DEFAULT_PORT,
            user: String::new(),
            private_key: None,
            private_key_file: None,
            known_hosts: None,
            known_hosts_file: None,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            keepalive_interval: DEFAULT_KEEPALIVE_INTERVAL,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            channels_per_connection: DEFAULT_CHANNELS_PER_CONNECTION,
            warm_channels: DEFAULT_WARM_CHANNELS,
            queue_timeout: DEFAULT_QUEUE_TIMEOUT,
            max_output_bytes: DEFAULT_MAX_OUTPUT_BYTES,
            stuck_after: DEFAULT_STUCK_AFTER,
            allow_tailscale_ssh: DEFAULT_ALLOW_TAILSCALE_SSH,
            in_band: in_band::Mode::Auto,
            shim_session: session::Mode::Auto,
            probe: ProbeConfig::default(),
        }
    }
}

impl TargetConfig {
    /// `host:port` as people write it, for messages.
    pub fn addr(&self) -> String {
        connection::host_port(&self.host, self.port)
    }

    /// Where the target is and how to reach it, for its connections.
    pub fn destination(&self) -> Destination {
        Destination {
            host: self.host.clone(),
            port: self.port,
            user: self.user.clone(),
            connect_timeout: self.connect_timeout,
            keepalive_interval: self.keepalive_interval,
            allow_tailscale_ssh: self.allow_tailscale_ssh,
        }
    }

    /// All channels this target may have open for calls at once.
    pub fn channels_capacity(&self) -> usize {
        self.max_connections * self.channels_per_connection
    }
}

/// `[targets.NAME.probe]`: how tether watches the remote.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProbeConfig {
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    pub fail_threshold: u32,
    pub shim_verb: String,
    pub shim_args: Vec<String>,
    #[serde(with = "humantime_serde")]
    pub shim_interval: Duration,
}

impl Default for ProbeConfig {
    fn default() -> Self {
        ProbeConfig {
            interval: DEFAULT_PROBE_INTERVAL,
            timeout: DEFAULT_PROBE_TIMEOUT,
            fail_threshold: DEFAULT_FAIL_THRESHOLD,
            shim_verb: DEFAULT_SHIM_VERB.into(),
            shim_args: Vec::new(),
            shim_interval: DEFAULT_SHIM_INTERVAL,
        }
    }
}

/// `[verbs.NAME]`: one allowlisted verb.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VerbConfig {
    /// Default and ceiling for a call's deadline.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// `> 0`: identical calls within the ttl share one result.
    #[serde(with = "humantime_serde")]
    pub cache_ttl: Duration,
    /// May be retried once on a fresh connection when nothing was sent.
    pub idempotent: bool,
}

impl Default for VerbConfig {
    fn default() -> Self {
        VerbConfig {
            timeout: DEFAULT_VERB_TIMEOUT,
            cache_ttl: Duration::ZERO,
            idempotent: false,
        }
    }
}

/// The allowlist used when no `[verbs]` table is configured: the shim's three verbs.
pub fn seed_verbs() -> BTreeMap<String, VerbConfig> {
    let verb = |secs, ttl, idempotent| VerbConfig {
        timeout: Duration::from_secs(secs),
        cache_ttl: Duration::from_secs(ttl),
        idempotent,
    };
    BTreeMap::from([
        ("health".to_string(), verb(5, 2, true)),
        ("run-turn".to_string(), verb(120, 0, false)),
        ("reset".to_string(), verb(15, 0, false)),
    ])
}

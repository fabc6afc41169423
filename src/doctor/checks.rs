//! The checks of one target, in order, each depending only on those before it: config, key,
//! tcp, banner, host_key, auth, then those on the authenticated connection
//! ([`super::remote`]). Nothing here writes anything anywhere.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use russh::client;
use russh::keys::{PublicKey, PublicKeyOrCertificate};
use tokio::net::TcpStream;

use super::key;
use super::remote;
use super::report::TargetReport;
use super::subject::Subject;
use crate::config::{CredentialParts, TargetConfig, credential_parts};
use crate::error::Error;
use crate::ssh::banner::{self, Replay};
use crate::ssh::connection::{Connection, Endpoint, check_pin, fingerprint};
use crate::ssh::credentials::Credentials;
use crate::ssh::warm::Plan;

/// Runs every check of one target.
pub async fn run(s: &Subject<'_>) -> TargetReport {
    let t = s.target;
    let header = format!("target {} ({}@{})", s.name, t.user, t.addr());
    let mut r = TargetReport::new(s.name, header);
    r.ok("config", s.sources());
    let CredentialParts { key, host_keys } = credential_parts(s.name, t);
    let tcp = connect(t).await;
    let ends = tcp
        .as_ref()
        .ok()
        .and_then(|(stream, _)| Some((stream.local_addr().ok()?, stream.peer_addr().ok()?)));
    let from = key::from_address(ends.map(|(local, peer)| (local.ip(), peer.ip())));
    match &key {
        Ok(k) => r.ok("key", key::describe(k, &from)),
        Err(e) => r.fail(
            "key",
            e.clone(),
            format!(
                "set {} to the whole private key file, or to one line made with \
                 `base64 -w0 KEYFILE` (an .env file cannot hold a multi-line value)",
                s.key_source()
            ),
        ),
    }
    let stream = match tcp {
        Ok((stream, took)) => {
            let local = ends.map_or_else(String::new, |(local, _)| format!(" from {local}"));
            r.ok(
                "tcp",
                format!("connected to {} in {}{local}", t.addr(), remote::ms(took)),
            );
            Some(stream)
        }
        Err(e) => {
            r.fail("tcp", e, tcp_fix(s));
            None
        }
    };
    let greeted = match stream {
        Some(stream) => identify(&mut r, s, stream).await,
        None => {
            r.skip("banner", "tcp");
            None
        }
    };
    let pinned_ok = match greeted {
        Some(stream) => host_key(&mut r, s, stream, &host_keys).await,
        None => {
            r.skip("host_key", "banner");
            false
        }
    };
    let conn = match (key, host_keys) {
        (Ok(key), Ok(host_keys)) if pinned_ok => {
            let creds = Arc::new(Credentials { key, host_keys });
            auth(&mut r, s, creds, &from.value).await
        }
        (key, _) => {
            let failed: Vec<&str> = [("key", key.is_ok()), ("host_key", pinned_ok)]
                .into_iter()
                .filter_map(|(check, ok)| (!ok).then_some(check))
                .collect();
            r.skip("auth", &failed.join(" and "));
            None
        }
    };
    match conn {
        Some(conn) => {
            remote::run(&mut r, s, &conn).await;
            conn.close().await;
        }
        None => {
            for check in remote::CHECKS {
                r.skip(check, "auth");
            }
        }
    }
    r
}

/// A TCP connection to the target, and how long it took, within connect_timeout.
async fn connect(t: &TargetConfig) -> Result<(TcpStream, Duration), String> {
    let started = Instant::now();
    let addr = t.addr();
    match tokio::time::timeout(
        t.connect_timeout,
        TcpStream::connect((t.host.as_str(), t.port)),
    )
    .await
    {
        Ok(Ok(stream)) => {
            let _ = stream.set_nodelay(true);
            Ok((stream, started.elapsed()))
        }
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => Err(format!(
            "{addr} refused the connection: nothing listens on port {}",
            t.port
        )),
        Ok(Err(e)) => Err(format!("cannot connect to {addr}: {e}")),
        Err(_) => Err(format!(
            "no TCP connection to {addr} within {:?} (connect_timeout)",
            t.connect_timeout
        )),
    }
}

fn tcp_fix(s: &Subject<'_>) -> String {
    format!(
        "is the laptop awake and on the tailnet (`tailscale status`, `tailscale ping {host}`)? \
         Else check {keys}, and on the laptop what listens where \
         (`sudo ss -ltnp`: a stale sshd Port directive or ssh.socket ListenStream)",
        host = s.target.host,
        keys = s.where_set(&["host", "port"]),
    )
}

/// The `banner` check; the stream to go on with when the server may be used.
async fn identify(
    r: &mut TargetReport,
    s: &Subject<'_>,
    stream: TcpStream,
) -> Option<Replay<TcpStream>> {
    let t = s.target;
    let addr = t.addr();
    let read = tokio::time::timeout(t.connect_timeout, banner::read_identification(stream)).await;
    let (id, stream) = match read {
        Ok(Ok(greeted)) => greeted,
        Ok(Err(russh::Error::Version)) => {
            r.fail(
                "banner",
                format!("{addr} does not speak SSH: no `SSH-2.0-…` identification line"),
                format!("another service holds port {}; {}", t.port, tcp_fix(s)),
            );
            return None;
        }
        Ok(Err(e)) => {
            r.fail(
                "banner",
                format!("{addr} closed the connection before identifying itself ({e})"),
                "sshd on the laptop turned us away before the handshake (MaxStartups, \
                 tcp wrappers, a firewall) or something other than sshd holds the port: \
                 see sshd's log there (`journalctl -u ssh`)",
            );
            return None;
        }
        Err(_) => {
            r.fail(
                "banner",
                format!(
                    "{addr} accepted TCP but sent no identification within {:?} \
                     (connect_timeout)",
                    t.connect_timeout
                ),
                format!(
                    "the laptop may be frozen or asleep, or the port is not SSH; try \
                     `ssh -v -p {} {}` from this host",
                    t.port, t.host
                ),
            );
            return None;
        }
    };
    if !banner::is_tailscale(&id) {
        r.ok("banner", id);
    } else if t.allow_tailscale_ssh {
        r.warn(
            "banner",
            format!(
                "{id}: Tailscale SSH, used because allow_tailscale_ssh = true; it never runs \
                 the authorized_keys forced command"
            ),
            format!(
                "{} and set {}, then remove allow_tailscale_ssh",
                banner::USE_OPENSSH,
                s.assignment("port", "22022")
            ),
        );
    } else {
        r.fail(
            "banner",
            banner::tailscale_problem(&id),
            format!(
                "{} and set {}, or set {} to use Tailscale SSH anyway",
                banner::USE_OPENSSH,
                s.assignment("port", "22022"),
                s.assignment("allow_tailscale_ssh", "true")
            ),
        );
        return None;
    }
    Some(stream)
}

/// The `host_key` check: a key exchange on the stream, the server's key against the pins.
async fn host_key(
    r: &mut TargetReport,
    s: &Subject<'_>,
    stream: Replay<TcpStream>,
    pins: &Result<Vec<PublicKey>, String>,
) -> bool {
    let t = s.target;
    let seen = Arc::new(Mutex::new(None));
    let handler = Recorder {
        pins: pins.clone().unwrap_or_default(),
        seen: seen.clone(),
    };
    let config = Arc::new(client::Config {
        nodelay: true,
        ..Default::default()
    });
    let exchange = client::connect_stream(config, stream, handler);
    let result = tokio::time::timeout(t.connect_timeout, exchange).await;
    let presented = seen.lock().expect("poisoned").take();
    let Some(server_key) = presented else {
        let why = match result {
            Err(_) => format!(
                "no key exchange within {:?} (connect_timeout)",
                t.connect_timeout
            ),
            Ok(Err(e)) => format!("the key exchange failed: {e}"),
            Ok(Ok(_)) => "the server presented no host key".into(),
        };
        r.fail(
            "host_key",
            why,
            "see sshd's log on the laptop (`journalctl -u ssh`)",
        );
        return false;
    };
    let presented_fp = format!(
        "{} {}",
        server_key.algorithm().as_str(),
        fingerprint(&server_key)
    );
    if let Ok(Ok(handle)) = result {
        let _ = handle
            .disconnect(russh::Disconnect::ByApplication, "tether doctor", "en")
            .await;
        r.ok("host_key", format!("{presented_fp} is pinned"));
        return true;
    }
    let problem = match pins {
        Ok(pins) => format!(
            "the server presents {presented_fp}, which is not pinned (pinned: {})",
            pins.iter().map(fingerprint).collect::<Vec<_>>().join(", ")
        ),
        Err(e) => format!("{e}; the server presents {presented_fp}"),
    };
    r.fail(
        "host_key",
        problem,
        format!(
            "check on the laptop that `ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub` prints {}, \
             then pin this line in {}:\n{}",
            fingerprint(&server_key),
            s.known_hosts_source(),
            known_hosts_line(t, &server_key)
        ),
    );
    false
}

/// `[host]:port type AAAA…` (plain `host` for port 22), as ssh-keyscan prints it.
fn known_hosts_line(t: &TargetConfig, key: &PublicKey) -> String {
    let host = match t.port {
        22 => t.host.clone(),
        port => format!("[{}]:{port}", t.host),
    };
    let body = key.to_openssh().unwrap_or_default();
    let body: Vec<&str> = body.split_whitespace().take(2).collect();
    format!("{host} {}", body.join(" "))
}

/// A russh handler that remembers the server's key and accepts it only when pinned.
struct Recorder {
    pins: Vec<PublicKey>,
    seen: Arc<Mutex<Option<PublicKey>>>,
}

impl client::Handler for Recorder {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let (presented, pinned) = check_pin(&self.pins, key);
        *self.seen.lock().expect("poisoned") = Some(presented);
        Ok(pinned)
    }
}

/// The `auth` check: a real connection, made the way `serve` makes it.
async fn auth(
    r: &mut TargetReport,
    s: &Subject<'_>,
    creds: Arc<Credentials>,
    from: &str,
) -> Option<Arc<Connection>> {
    let t = s.target;
    let key_fp = format!(
        "{} {}",
        creds.key.algorithm().as_str(),
        fingerprint(creds.key.public_key())
    );
    let endpoint = Endpoint::new(t.destination(), creds);
    match Connection::open(&endpoint, t.channels_per_connection, &Plan::none()).await {
        Ok(conn) => {
            r.ok(
                "auth",
                format!("publickey {key_fp} accepted for user {:?}", t.user),
            );
            Some(Arc::new(conn))
        }
        Err(Error::UpstreamAuthFailed { addr, user }) => {
            r.fail(
                "auth",
                format!("{addr} refused publickey {key_fp} for user {user:?}"),
                format!(
                    "put the key check's line into ~{user}/.ssh/authorized_keys on the laptop; \
                     its from= must match the address the laptop sees for this host \
                     ({from}; behind Docker NAT that is the Docker host's tailnet address, not \
                     the container's), and {} must be that account. sshd's log on the laptop \
                     says why it refused (`journalctl -u ssh`)",
                    s.where_set(&["user"])
                ),
            );
            None
        }
        Err(e) => {
            r.fail(
                "auth",
                e.to_string(),
                "see the message; run doctor again once it is fixed",
            );
            None
        }
    }
}

//! Checking a loaded config for meaning, and parsing its keys: every problem is reported
//! together, each naming its key, before anything binds.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use russh::keys::{PrivateKey, PublicKey};

use super::{Config, ConfigErrors, TargetConfig};
use crate::ssh::credentials::Credentials;
use crate::ssh::{keys, known_hosts};
use crate::wire::check_arg;
use crate::wire::in_band::is_reserved;

/// The longest Unix socket path the kernel accepts (`sun_path` less its NUL).
pub const MAX_SOCKET_PATH: usize = 107;

/// A valid config with each target's credentials parsed, ready to run.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    pub credentials: BTreeMap<String, Arc<Credentials>>,
}

/// Checks every key of `config` and parses each target's credentials.
pub fn validate(config: Config) -> Result<Loaded, ConfigErrors> {
    let mut errors = check(&config);
    let mut credentials = BTreeMap::new();
    for (name, target) in &config.targets {
        match credential_parts(name, target) {
            CredentialParts {
                key: Ok(key),
                host_keys: Ok(host_keys),
            } => {
                credentials.insert(name.clone(), Arc::new(Credentials { key, host_keys }));
            }
            CredentialParts { key, host_keys } => {
                errors.extend(key.err());
                errors.extend(host_keys.err());
            }
        }
    }
    if errors.is_empty() {
        Ok(Loaded {
            config,
            credentials,
        })
    } else {
        Err(ConfigErrors(errors))
    }
}

/// Every problem of `config` except its targets' credentials, each naming its key.
pub fn check(config: &Config) -> Vec<String> {
    let mut errors = Vec::new();
    check_server(config, &mut errors);
    for (name, target) in &config.targets {
        let at = format!("targets.{name}");
        if !valid_target_name(name) {
            errors.push(format!("{at}: a target name is 1 to 32 of [a-z0-9_-]"));
        }
        check_target(&at, target, config, &mut errors);
    }
    for (name, verb) in &config.verbs {
        if check_arg(name).is_err() {
            errors.push(format!(
                "verbs.{name}: a verb name uses only [A-Za-z0-9._:,=+/@%-]"
            ));
        }
        if is_reserved(name) {
            errors.push(format!(
                "verbs.{name}: names starting with '@' are reserved for tether's own requests"
            ));
        }
        positive(&mut errors, &format!("verbs.{name}.timeout"), verb.timeout);
    }
    errors
}

/// A target's private key and pinned host keys, each read and parsed on its own, so that
/// `tether doctor` can report a problem with one as its own finding. Errors name the key.
pub struct CredentialParts {
    pub key: Result<Arc<PrivateKey>, String>,
    pub host_keys: Result<Vec<PublicKey>, String>,
}

/// Reads and parses target `name`'s credentials.
pub fn credential_parts(name: &str, t: &TargetConfig) -> CredentialParts {
    let at = format!("targets.{name}");
    let inline_key = t.private_key.as_ref().map(|s| s.expose().to_string());
    let key = one_of(&at, "private_key", inline_key, &t.private_key_file).and_then(|text| {
        keys::parse_private_key(&text).map_err(|e| format!("{at}.private_key: {e}"))
    });
    let host_keys = one_of(
        &at,
        "known_hosts",
        t.known_hosts.clone(),
        &t.known_hosts_file,
    )
    .and_then(|text| {
        known_hosts::pinned_keys(&text, &t.host, t.port)
            .map_err(|e| format!("{at}.known_hosts: {e}"))
    });
    CredentialParts { key, host_keys }
}

fn check_server(config: &Config, errors: &mut Vec<String>) {
    let server = &config.server;
    let socket = server.socket.as_os_str().len();
    if socket == 0 || socket > MAX_SOCKET_PATH {
        errors.push(format!(
            "server.socket: a socket path is 1 to {MAX_SOCKET_PATH} bytes"
        ));
    }
    if !server.admin_addr.is_empty() && server.admin_addr.parse::<SocketAddr>().is_err() {
        errors.push(format!(
            "server.admin_addr: {:?} is not IP:PORT (\"\" disables the admin server)",
            server.admin_addr
        ));
    }
    if server.max_request_bytes < 1024 {
        errors.push("server.max_request_bytes: must be at least 1024".into());
    }
    for (key, value) in [
        ("max_connections", server.max_connections),
        ("max_connections_per_uid", server.max_connections_per_uid),
    ] {
        if value == 0 {
            errors.push(format!("server.{key}: must be at least 1"));
        }
    }
    match (server.default_target.as_str(), config.targets.len()) {
        (_, 0) => errors.push(
            "targets: no target is configured; add [targets.NAME] or set PALIADIN_REMOTE_HOST"
                .into(),
        ),
        ("", n) if n > 1 => errors
            .push("server.default_target: required when more than one target is configured".into()),
        ("", _) => {}
        (name, _) if !config.targets.contains_key(name) => {
            errors.push(format!("server.default_target: no target named {name:?}"))
        }
        _ => {}
    }
}

fn check_target(at: &str, t: &TargetConfig, config: &Config, errors: &mut Vec<String>) {
    for (key, value) in [("host", &t.host), ("user", &t.user)] {
        if value.trim().is_empty() {
            errors.push(format!("{at}.{key}: required"));
        }
    }
    if t.port == 0 {
        errors.push(format!("{at}.port: must be 1 to 65535"));
    }
    for (key, value) in [
        ("connect_timeout", t.connect_timeout),
        ("keepalive_interval", t.keepalive_interval),
        ("queue_timeout", t.queue_timeout),
        ("stuck_after", t.stuck_after),
        ("probe.interval", t.probe.interval),
        ("probe.timeout", t.probe.timeout),
        ("probe.shim_interval", t.probe.shim_interval),
    ] {
        positive(errors, &format!("{at}.{key}"), value);
    }
    for (key, value) in [
        ("max_connections", t.max_connections),
        ("channels_per_connection", t.channels_per_connection),
        ("max_output_bytes", t.max_output_bytes),
        ("probe.fail_threshold", t.probe.fail_threshold as usize),
    ] {
        if value == 0 {
            errors.push(format!("{at}.{key}: must be at least 1"));
        }
    }
    if t.warm_channels > t.channels_per_connection {
        errors.push(format!(
            "{at}.warm_channels: {} is more than channels_per_connection ({}); warm channels count against each connection's channels",
            t.warm_channels, t.channels_per_connection
        ));
    }
    let shim = &t.probe.shim_verb;
    if !shim.is_empty() && !config.verbs.contains_key(shim) {
        errors.push(format!(
            "{at}.probe.shim_verb: {shim:?} is not in [verbs] (\"\" disables the shim probe)"
        ));
    }
    if let Some(bad) = t.probe.shim_args.iter().find(|a| check_arg(a).is_err()) {
        errors.push(format!(
            "{at}.probe.shim_args: {bad:?} has characters outside [A-Za-z0-9._:,=+/@%-]"
        ));
    }
}

fn positive(errors: &mut Vec<String>, key: &str, value: Duration) {
    if value.is_zero() {
        errors.push(format!("{key}: must be longer than 0s"));
    }
}

fn valid_target_name(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// Exactly one of `KEY` (inline) and `KEY_file` must be set; returns the text.
fn one_of(
    at: &str,
    key: &str,
    inline: Option<String>,
    file: &Option<std::path::PathBuf>,
) -> Result<String, String> {
    match (inline, file) {
        (Some(text), None) => Ok(text),
        (None, Some(path)) => std::fs::read_to_string(path)
            .map_err(|e| format!("{at}.{key}_file: cannot read {}: {e}", path.display())),
        (Some(_), Some(_)) => Err(format!("{at}: set {key} or {key}_file, not both")),
        (None, None) => Err(format!("{at}.{key}: required (or {key}_file)")),
    }
}

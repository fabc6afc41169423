//! Pinned host keys from OpenSSH `known_hosts` lines: `[host]:port` and plain host patterns,
//! wildcards, negation, hashed names (`|1|salt|hash`) and the `@revoked` marker.

use base64::Engine;
use hmac::{KeyInit, Mac};
use russh::keys::PublicKey;

/// The keys pinned for `host:port`. Lines naming the exact `[host]:port` win; when there are
/// none, lines naming the bare host are accepted for any port (operators often paste those).
pub fn pinned_keys(text: &str, host: &str, port: u16) -> Result<Vec<PublicKey>, String> {
    let bracketed = format!("[{host}]:{port}");
    // OpenSSH writes port 22 as the bare host; `[host]:22` is accepted as well.
    let with_port = if port == 22 { host } else { bracketed.as_str() };
    let mut exact = Vec::new();
    let mut bare = Vec::new();
    let mut revoked = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let entry =
            parse_line(line).map_err(|e| format!("known_hosts line {}: {e}", number + 1))?;
        match entry.marker {
            Some("@revoked") => revoked.push(entry.key),
            Some(_) => {} // @cert-authority: host certificates are not used by the shim setup
            None if matches(entry.hosts, with_port) || matches(entry.hosts, &bracketed) => {
                exact.push(entry.key)
            }
            None if matches(entry.hosts, host) => bare.push(entry.key),
            None => {}
        }
    }
    let mut keys = if exact.is_empty() { bare } else { exact };
    keys.retain(|k| !revoked.iter().any(|r| r.key_data() == k.key_data()));
    if keys.is_empty() {
        return Err(format!(
            "known_hosts has no usable key for {with_port}; add the line that \
             `ssh-keyscan -p {port} {host}` prints"
        ));
    }
    Ok(keys)
}

struct Entry<'a> {
    marker: Option<&'a str>,
    hosts: &'a str,
    key: PublicKey,
}

fn parse_line(line: &str) -> Result<Entry<'_>, String> {
    let mut fields = line.split_whitespace();
    let mut first = fields.next().unwrap_or_default();
    let marker = first.starts_with('@').then_some(first);
    if marker.is_some() {
        first = fields.next().ok_or("a marker with nothing after it")?;
    }
    let (Some(_kind), Some(blob)) = (fields.next(), fields.next()) else {
        return Err("expected `HOSTS KEYTYPE BASE64KEY`".into());
    };
    let key = russh::keys::parse_public_key_base64(blob).map_err(|e| format!("bad key: {e}"))?;
    Ok(Entry {
        marker,
        hosts: first,
        key,
    })
}

/// OpenSSH's rule: some pattern matches and no negated pattern does.
fn matches(patterns: &str, name: &str) -> bool {
    if let Some(hashed) = patterns.strip_prefix("|1|") {
        return hashed_matches(hashed, name);
    }
    let mut hit = false;
    for pattern in patterns.split(',') {
        match pattern.strip_prefix('!') {
            Some(negated) if glob(negated.as_bytes(), name.as_bytes()) => return false,
            Some(_) => {}
            None => hit |= glob(pattern.as_bytes(), name.as_bytes()),
        }
    }
    hit
}

fn hashed_matches(salt_and_hash: &str, name: &str) -> bool {
    let b64 = base64::engine::general_purpose::STANDARD;
    let Some((salt, hash)) = salt_and_hash.split_once('|') else {
        return false;
    };
    let (Ok(salt), Ok(hash)) = (b64.decode(salt), b64.decode(hash)) else {
        return false;
    };
    let Ok(mut mac) = hmac::Hmac::<sha1::Sha1>::new_from_slice(&salt) else {
        return false;
    };
    mac.update(name.as_bytes());
    mac.verify_slice(&hash).is_ok()
}

/// `*` and `?` wildcards, case-insensitive as host names are.
fn glob(pattern: &[u8], name: &[u8]) -> bool {
    match (pattern.first(), name.first()) {
        (None, None) => true,
        (Some(b'*'), _) => {
            glob(&pattern[1..], name) || (!name.is_empty() && glob(pattern, &name[1..]))
        }
        (Some(b'?'), Some(_)) => glob(&pattern[1..], &name[1..]),
        (Some(p), Some(n)) if p.eq_ignore_ascii_case(n) => glob(&pattern[1..], &name[1..]),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY_A: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG7LRLucE/p+uawQCCLmoRLCgc8WzuxZcXUGUSVl5am6";
    const KEY_B: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKNoju+VsdgUbtL62fedNl9y83IKdQNYYvi9AZDRmUga";

    fn fingerprints(keys: &[PublicKey]) -> Vec<String> {
        keys.iter()
            .map(|k| k.fingerprint(Default::default()).to_string())
            .collect()
    }

    #[test]
    fn exact_port_lines_win_over_bare_host_lines() {
        let text = format!("10.0.0.1 {KEY_B}\n[10.0.0.1]:22022 {KEY_A}\n");
        let exact = pinned_keys(&text, "10.0.0.1", 22022).unwrap();
        let only_a = pinned_keys(&format!("x {KEY_A}"), "x", 22).unwrap();
        assert_eq!(fingerprints(&exact), fingerprints(&only_a));
        assert_eq!(pinned_keys(&text, "10.0.0.1", 22).unwrap().len(), 1);
        assert!(pinned_keys(&format!("[h]:22 {KEY_A}"), "h", 22).is_ok());
        assert_eq!(
            pinned_keys(&format!("10.0.0.1 {KEY_B}"), "10.0.0.1", 2222)
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn patterns_negation_markers_and_several_keys() {
        let text =
            format!("# laptop\n10.0.0.*,!10.0.0.9 {KEY_A}\n10.0.0.* {KEY_B}\n@revoked * {KEY_B}\n");
        assert_eq!(pinned_keys(&text, "10.0.0.1", 22).unwrap().len(), 1);
        assert!(pinned_keys(&format!("[h]:22 {KEY_A}"), "h", 22).is_ok());
        assert!(pinned_keys(&format!("10.0.0.*,!10.0.0.9 {KEY_A}"), "10.0.0.9", 22).is_err());
        let two = format!("h {KEY_A}\nh {KEY_B}\n");
        assert_eq!(pinned_keys(&two, "h", 22).unwrap().len(), 2);
    }

    #[test]
    fn hashed_names_match() {
        // `ssh-keygen -H` of "[127.0.0.1]:2222" with a fixed salt.
        let salt = [7u8; 20];
        let mut mac = hmac::Hmac::<sha1::Sha1>::new_from_slice(&salt).unwrap();
        mac.update(b"[127.0.0.1]:2222");
        let b64 = base64::engine::general_purpose::STANDARD;
        let hosts = format!(
            "|1|{}|{}",
            b64.encode(salt),
            b64.encode(mac.finalize().into_bytes())
        );
        let text = format!("{hosts} {KEY_A}");
        assert!(pinned_keys(&text, "127.0.0.1", 2222).is_ok());
        assert!(pinned_keys(&text, "127.0.0.1", 2223).is_err());
    }

    #[test]
    fn garbage_is_an_error_naming_the_line() {
        let err = pinned_keys("h ssh-ed25519 !!!", "h", 22).unwrap_err();
        assert!(err.starts_with("known_hosts line 1"), "{err}");
    }
}

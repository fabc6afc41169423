//! The `key` check: the private key's type and fingerprint, and the complete
//! `authorized_keys` line to paste on the laptop: OpenSSH's `restrict`, the forced command by
//! absolute path, `from=` when tether's address as the laptop sees it is known, and the
//! explicit `no-*` options as well (docs/doctor.md).

use std::net::IpAddr;

use russh::keys::PrivateKey;

use crate::ssh::connection::fingerprint;

/// The restrictions of the laptop's `authorized_keys` line (docs/shim.md): `restrict` turns
/// off everything (and whatever later OpenSSH releases add); the explicit options say the
/// same to a reader.
const RESTRICT: &str = "restrict";
const RESTRICTIONS: &str =
    "no-pty,no-port-forwarding,no-agent-forwarding,no-X11-forwarding,no-user-rc";
/// Where tether is assumed to live on the laptop. doctor cannot know; the line says how to
/// find out. Absolute, so the forced command does not depend on the login shell's PATH.
pub const LAPTOP_TETHER: &str = "/usr/local/bin/tether";

/// `from=` when tether's address as the laptop sees it is not known.
const UNKNOWN_FROM: &str = "<this host's tailnet address>";

/// The address for `from=`, and a note when it is a placeholder.
pub struct FromAddress {
    pub value: String,
    pub note: Option<String>,
}

/// Picks `from=` from the two ends of tether's TCP connection to the target. When the
/// laptop is on the tailnet but tether's end is not, something (Docker's NAT) rewrites the
/// address, and the laptop sees this host's tailnet address instead: then a placeholder with
/// a note.
pub fn from_address(ends: Option<(IpAddr, IpAddr)>) -> FromAddress {
    let Some((local, peer)) = ends else {
        return FromAddress {
            value: UNKNOWN_FROM.into(),
            note: Some(
                "the tcp check failed, so the address tether connects from is unknown: put \
                 this host's tailnet address there (`tailscale ip -4`)"
                    .into(),
            ),
        };
    };
    let local = local.to_canonical();
    if on_tailnet(peer) && !on_tailnet(local) {
        return FromAddress {
            value: UNKNOWN_FROM.into(),
            note: Some(format!(
                "tether connects from {local}, which is not a tailnet address: NAT (Docker) \
                 rewrites it, so the laptop sees this host's tailnet address; `tailscale ip -4` \
                 on the host prints it"
            )),
        };
    }
    FromAddress {
        value: local.to_string(),
        note: None,
    }
}

/// Tailscale's address ranges: 100.64.0.0/10 and fd7a:115c:a1e0::/48.
fn on_tailnet(ip: IpAddr) -> bool {
    match ip.to_canonical() {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            a == 100 && (64..128).contains(&b)
        }
        IpAddr::V6(v6) => v6.segments()[..3] == [0xfd7a, 0x115c, 0xa1e0],
    }
}

/// The finding of a key that parsed: type, fingerprint, and the line for the laptop.
pub fn describe(key: &PrivateKey, from: &FromAddress) -> String {
    let public = key.public_key();
    let openssh = public
        .to_openssh()
        .unwrap_or_else(|e| format!("<cannot encode the public key: {e}>"));
    let mut out = format!(
        "{} {}; its line for the laptop's ~/.ssh/authorized_keys:\n\
         {RESTRICT},command=\"{LAPTOP_TETHER} shim\",from=\"{}\",{RESTRICTIONS} {openssh}\n\
         (command=: {LAPTOP_TETHER} is a guess; `command -v tether` on the laptop prints \
         where tether is: put that absolute path there)",
        public.algorithm().as_str(),
        fingerprint(public),
        from.value
    );
    if let Some(note) = &from.note {
        out.push_str(&format!("\n(from=: {note})"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from(local: &str, peer: &str) -> FromAddress {
        from_address(Some((local.parse().unwrap(), peer.parse().unwrap())))
    }

    #[test]
    fn from_is_the_local_address_unless_nat_hides_it() {
        assert_eq!(from("127.0.0.1", "127.0.0.1").value, "127.0.0.1");
        assert_eq!(from("100.101.1.2", "100.99.98.203").value, "100.101.1.2");
        assert_eq!(
            from("::ffff:100.101.1.2", "100.99.98.203").value,
            "100.101.1.2"
        );
        assert_eq!(
            from("fd7a:115c:a1e0::1", "fd7a:115c:a1e0::2").value,
            "fd7a:115c:a1e0::1"
        );
        let natted = from("172.17.0.2", "100.99.98.203");
        assert_eq!(natted.value, UNKNOWN_FROM);
        assert!(natted.note.unwrap().contains("172.17.0.2"));
        assert_eq!(from("192.168.1.5", "192.168.1.9").value, "192.168.1.5");
        assert!(from_address(None).note.is_some());
    }

    #[test]
    fn the_line_has_the_forced_command_and_every_restriction() {
        let key = PrivateKey::random(&mut rand::rng(), russh::keys::Algorithm::Ed25519).unwrap();
        let text = describe(&key, &from("127.0.0.1", "127.0.0.1"));
        let line = text.lines().nth(1).unwrap();
        assert!(line.starts_with(
            "restrict,command=\"/usr/local/bin/tether shim\",from=\"127.0.0.1\",no-pty,\
             no-port-forwarding,no-agent-forwarding,no-X11-forwarding,no-user-rc ssh-ed25519 AAAA"
        ));
        assert!(text.contains("`command -v tether` on the laptop"));
        assert!(text.starts_with("ssh-ed25519 SHA256:"));
    }
}

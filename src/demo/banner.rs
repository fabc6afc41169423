//! What `tether demo` prints on stdout once its socket listens: where things are, and
//! commands ready to paste (curl on the socket, `tether call`, the same turn sent twice, the
//! shim's journal and audit log, the admin URLs).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use base64::Engine;

use super::SESSION;
use super::laptop::Laptop;

/// The example turn's message: not ASCII, to show it round-trips through base64 intact.
const MESSAGE: &str = "Grüß dich, tether!";

/// The instructions for one demo run.
pub struct Banner {
    socket: PathBuf,
    /// The admin server's bound address; None when it is disabled.
    admin_addr: Option<SocketAddr>,
    shim_config: PathBuf,
    audit_log: PathBuf,
}

impl Banner {
    pub fn new(socket: &Path, admin_addr: Option<SocketAddr>, laptop: &Laptop) -> Self {
        Banner {
            socket: socket.to_path_buf(),
            admin_addr,
            shim_config: laptop.config.clone(),
            audit_log: laptop.audit_log.clone(),
        }
    }

    pub fn render(&self) -> String {
        let sock = sh_quote(&self.socket.to_string_lossy());
        let tether = std::env::current_exe()
            .map(|p| sh_quote(&p.to_string_lossy()))
            .unwrap_or_else(|_| "tether".into());
        let turn = uuid::Uuid::new_v4();
        let msg = base64::engine::general_purpose::STANDARD.encode(MESSAGE);
        let body = format!(r#"{{"verb":"run-turn","args":["{SESSION}","{turn}","{msg}"]}}"#);
        let shim = sh_quote(&self.shim_config.to_string_lossy());
        let audit = sh_quote(&self.audit_log.to_string_lossy());
        let mut out = format!(
            "\n\
             tether demo is running: a throwaway SSH server on loopback whose forced command is\n\
             the real `tether shim`, and the real sidecar in front of it. Ctrl-C stops it.\n\
             \n\
             \x20 socket   {sock}\n\
             \x20 shim     {shim}\n\
             \n\
             A turn over the socket (the message is base64 of \"{MESSAGE}\"):\n\
             \x20 curl -s --unix-socket {sock} http://tether/v1/call -d '{body}'\n\
             \n\
             The same turn again, through the CLI, which stands in for `ssh laptop run-turn …`.\n\
             Same uuid: the shim replays the first answer and the assistant does not run again:\n\
             \x20 {tether} call --socket {sock} run-turn {SESSION} {turn} {msg}\n\
             \x20 {tether} call --socket {sock} health {SESSION}\n\
             \n\
             What the laptop recorded: the turn in the shim's journal, and the audit log\n\
             (\"ran\", then \"replayed\"):\n\
             \x20 {tether} shim --config {shim} --journal {turn}\n\
             \x20 tail -n 4 {audit}\n\
             \n\
             Health, from the cache (never touches the network):\n\
             \x20 curl -s --unix-socket {sock} http://tether/v1/health\n"
        );
        if let Some(admin) = self.admin_addr {
            out.push_str(&format!(
                "\n\
                 Status page  http://{admin}/\n\
                 Metrics      http://{admin}/metrics\n\
                 Health       http://{admin}/v1/health\n"
            ));
        }
        out
    }
}

/// Quotes `s` for a POSIX shell when it needs it.
fn sh_quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-+:,=@%".contains(&b));
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_only_when_needed() {
        assert_eq!(sh_quote("/tmp/x/t.sock"), "/tmp/x/t.sock");
        assert_eq!(sh_quote("/tmp/a b"), "'/tmp/a b'");
        assert_eq!(sh_quote("it's"), r"'it'\''s'");
    }
}

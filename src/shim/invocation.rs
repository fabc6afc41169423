//! One invocation by sshd: load the config (or refuse, audited, when it is unusable), clean up
//! the credentials directories of shims that died, and answer `SSH_ORIGINAL_COMMAND` with the
//! shim's own stdin, stdout and stderr ([`Shim::answer`]), or serve the session it asks for
//! ([`session::serve`]).

use std::path::Path;

use super::call::Shim;
use super::config::{self, AuditConfig, DEFAULT_AUDIT_MAX_BYTES, ShimConfig};
use super::credentials;
use super::gate::{Seen, Start};
use super::io::Io;
use super::report::Report;
use super::request::{self, Asked};
use super::session;

/// Handles the call sshd gave us; the process's exit status.
pub fn run(config_path: &Path) -> u8 {
    let start = Start::now();
    let Ok(io) = Io::inherited() else {
        return crate::exit::SHIM_REFUSED;
    };
    let config = match config::load(config_path) {
        Ok(config) => config,
        Err(problems) => {
            let reason = format!("the shim's config is unusable: {}", problems.join("; "));
            let audit = AuditConfig {
                path: config::audit_log_hint(config_path),
                max_bytes: DEFAULT_AUDIT_MAX_BYTES,
                required: true,
            };
            return start
                .gate(&audit, Seen::default(), &io.stderr)
                .finish(Report::refused(reason));
        }
    };
    remove_abandoned_credentials(&config);
    let shim = Shim {
        config_path,
        config: &config,
    };
    let command = std::env::var_os("SSH_ORIGINAL_COMMAND");
    match request::parse(command.as_deref(), &config) {
        Ok(Asked::Session) => session::serve(&shim, &start, io),
        asked => shim.answer(&start, asked, io),
    }
}

/// Removes the credentials directories of shims and supervisors that died before they could
/// (under both roots a shim may have used).
fn remove_abandoned_credentials(config: &ShimConfig) {
    let root = credentials::root(&config.journal_dir);
    credentials::remove_abandoned(&root);
    let fallback = config.journal_dir.join("credentials");
    if fallback != root {
        credentials::remove_abandoned(&fallback);
    }
}

//! The bench's second laptop: the real `tether shim` (the release binary under test) as the
//! forced command of two more keys on the same sshd, with a plain verb `reset` that prints
//! what the test shim's does. sshd starts one key's shim directly (the quick shell) and the
//! other's behind a login shell that costs 30 ms to start, as a shell rc that sleeps 0.03 s
//! would (the slow shell): an exec per call pays that every call, a shim session once per
//! connection.

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use tempfile::TempDir;

use crate::common::keys::ClientKey;
use crate::common::sshd::Sshd;
use crate::common::tether::BIN;
use crate::report::Shell;

/// What the shim runs for `reset s1` (no shell; `{1}` is the first argument).
pub const VERB_EXEC: &str = "/bin/echo reset {1}";
/// What the slow login shell costs per start.
pub const SLOW_SHELL: Duration = Duration::from_millis(30);

/// `health` is there for tether's shim probe (a bare `health` every 30 s).
const SHIM_TOML: &str = r#"
journal_dir = "{dir}/journal"
audit_log = "{dir}/audit.jsonl"

[verbs.reset]
exec = ["/bin/echo", "reset", "{1}"]
args = 1

[verbs.health]
exec = ["/bin/echo", "ok"]
max_args = 1
"#;

/// The shim's files and the two keys whose forced command it is.
pub struct ShimLaptop {
    quick: ClientKey,
    slow: ClientKey,
    _dir: TempDir,
}

impl ShimLaptop {
    /// Writes shim.toml and authorizes one key per shell on `sshd` (sshd rereads
    /// authorized_keys at every login).
    pub fn install(sshd: &Sshd) -> ShimLaptop {
        let dir = tempfile::Builder::new()
            .prefix("tether-bench-shim-")
            .tempdir()
            .expect("tempdir");
        let config = dir.path().join("shim.toml");
        fs::write(
            &config,
            SHIM_TOML.replace("{dir}", &dir.path().display().to_string()),
        )
        .expect("write shim.toml");
        // The shim refuses a config others may write, whatever the umask.
        fs::set_permissions(&config, fs::Permissions::from_mode(0o600)).expect("chmod shim.toml");
        let shim = format!("{BIN} shim --config {}", config.display());
        let quick = authorize(sshd, dir.path(), "shim_quick", &shim);
        let slow = authorize(sshd, dir.path(), "shim_slow", &slow_command(&shim));
        ShimLaptop {
            quick,
            slow,
            _dir: dir,
        }
    }

    /// The key whose forced command starts the shim through `shell`.
    pub fn key(&self, shell: Shell) -> &ClientKey {
        match shell {
            Shell::Quick => &self.quick,
            Shell::Slow => &self.slow,
        }
    }
}

/// The slow shell's forced command around `shim` (sshd runs it with the account's shell,
/// `$SHELL -c`, which then execs the shim in its own place).
fn slow_command(shim: &str) -> String {
    format!("sleep {}; exec {shim}", SLOW_SHELL.as_secs_f64())
}

/// The slow shell's forced command as the report shows it.
pub fn slow_command_shape() -> String {
    slow_command("tether shim --config …")
}

/// A new key with `command` as its forced command and the fixture's other restrictions.
fn authorize(sshd: &Sshd, dir: &Path, name: &str, command: &str) -> ClientKey {
    let key = ClientKey::generate(dir, name, "ed25519");
    let line = format!(
        "command=\"{command}\",from=\"127.0.0.1\",no-pty,no-port-forwarding,\
         no-agent-forwarding,no-X11-forwarding,no-user-rc {}\n",
        key.public_key
    );
    fs::OpenOptions::new()
        .append(true)
        .open(sshd.dir().join("authorized_keys"))
        .and_then(|mut f| f.write_all(line.as_bytes()))
        .expect("authorize a shim key");
    key
}

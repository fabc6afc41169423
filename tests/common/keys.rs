//! Key pairs made with ssh-keygen for the test sshd: client keys and host keys.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A client key pair made by ssh-keygen.
#[derive(Clone, Debug)]
pub struct ClientKey {
    /// "ed25519" or "rsa".
    pub kind: &'static str,
    /// The private key text, OpenSSH format (`-----BEGIN OPENSSH PRIVATE KEY-----`).
    pub private_key: String,
    /// The `.pub` line: `ssh-ed25519 AAAA… comment`.
    pub public_key: String,
    /// The private key file (mode 0600), usable with `ssh -i`.
    pub path: PathBuf,
}

impl ClientKey {
    pub(crate) fn generate(dir: &Path, name: &str, kind: &'static str) -> ClientKey {
        let path = dir.join(name);
        let mut cmd = Command::new("ssh-keygen");
        cmd.args(["-q", "-t", kind, "-N", "", "-C", name, "-f"])
            .arg(&path);
        if kind == "rsa" {
            cmd.args(["-b", "2048"]);
        }
        run_ok(&mut cmd);
        ClientKey {
            kind,
            private_key: read(&path),
            public_key: read(&path.with_extension("pub")).trim().to_string(),
            path,
        }
    }

    /// The same key in PEM format (`-----BEGIN RSA PRIVATE KEY-----`); RSA keys only.
    pub fn pem(&self) -> String {
        let copy = self.path.with_extension("pem");
        fs::copy(&self.path, &copy).expect("copy key");
        run_ok(
            Command::new("ssh-keygen")
                .args(["-q", "-p", "-P", "", "-N", "", "-m", "PEM", "-f"])
                .arg(&copy),
        );
        read(&copy)
    }
}

pub(crate) fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

pub(crate) fn run_ok(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

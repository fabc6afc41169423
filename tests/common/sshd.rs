//! A real OpenSSH `sshd` for tests: own temp dir, port, host key, client keys and test shim.
//!
//! ```ignore
//! let sshd = Sshd::start();
//! let key = sshd.ed25519_key().private_key.clone();
//! let pin = sshd.known_hosts_line();
//! // ... point tether at 127.0.0.1:sshd.port() as sshd.user() ...
//! assert_eq!(sshd.count("run-turn", &["s1"]), 1);
//! ```

use std::fs;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use tempfile::TempDir;

use super::keys::{ClientKey, read};
use super::ports::free_port;
use super::procs;

const SSHD: &str = "/usr/sbin/sshd";
const SHIM: &str = include_str!("shim.sh");
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// Options for [`Sshd`]; start with [`Sshd::builder`].
#[derive(Clone, Debug, Default)]
pub struct SshdBuilder {
    max_sessions: Option<u32>,
    max_startups: Option<String>,
    forced_command: Option<String>,
    extra: Vec<String>,
}

impl SshdBuilder {
    /// `MaxSessions`: channels per connection (OpenSSH default 10).
    pub fn max_sessions(mut self, n: u32) -> Self {
        self.max_sessions = Some(n);
        self
    }

    /// `MaxStartups`, e.g. "10:30:100" (the OpenSSH default) or "1".
    pub fn max_startups(mut self, spec: &str) -> Self {
        self.max_startups = Some(spec.to_string());
        self
    }

    /// The `command="…"` of every authorized key, instead of the test shim (`shim.sh`).
    pub fn forced_command(mut self, command: &str) -> Self {
        self.forced_command = Some(command.to_string());
        self
    }

    /// Any further sshd_config line, e.g. "ClientAliveInterval 1".
    pub fn config_line(mut self, line: &str) -> Self {
        self.extra.push(line.to_string());
        self
    }

    pub fn start(self) -> Sshd {
        Sshd::launch(self)
    }
}

/// A running sshd (the "laptop"). Dropping it kills sshd and every session.
pub struct Sshd {
    dir: TempDir,
    port: u16,
    user: String,
    options: SshdBuilder,
    child: Option<Child>,
    host_key_line: String,
    wrong_host_key_line: String,
    ed25519: ClientKey,
    /// Made on first use (RSA keygen takes 0.3 s to 3 s here) and then authorized.
    rsa: OnceLock<ClientKey>,
    restrictions: String,
}

impl Sshd {
    /// Starts sshd with the default options; panics (with sshd's log) if it does not come up.
    pub fn start() -> Sshd {
        SshdBuilder::default().start()
    }

    pub fn builder() -> SshdBuilder {
        SshdBuilder::default()
    }

    fn launch(options: SshdBuilder) -> Sshd {
        // sshd insists on its privilege separation directory.
        fs::create_dir_all("/run/sshd").expect("create /run/sshd");
        let dir = tempfile::Builder::new()
            .prefix("tether-sshd-")
            .tempdir()
            .expect("tempdir");
        let d = dir.path();
        let host = ClientKey::generate(d, "host_ed25519", "ed25519");
        let wrong = ClientKey::generate(d, "wrong_host_ed25519", "ed25519");
        let ed25519 = ClientKey::generate(d, "client_ed25519", "ed25519");
        let shim = d.join("shim.sh");
        fs::write(&shim, SHIM).expect("write shim");
        fs::set_permissions(&shim, fs::Permissions::from_mode(0o755)).expect("chmod shim");
        let command = options.forced_command.clone().unwrap_or_else(|| {
            format!("{} {}", shim.display(), d.join("invocations.log").display())
        });
        let restrictions = format!(
            "command=\"{command}\",from=\"127.0.0.1\",no-pty,no-port-forwarding,\
             no-agent-forwarding,no-X11-forwarding,no-user-rc"
        );
        let authorized = format!("{restrictions} {}\n", ed25519.public_key);
        fs::write(d.join("authorized_keys"), authorized).expect("write authorized_keys");
        fs::write(d.join("invocations.log"), "").expect("create invocation log");
        let user = nix::unistd::User::from_uid(nix::unistd::getuid())
            .expect("getpwuid")
            .expect("current user has a passwd entry")
            .name;
        let mut sshd = Sshd {
            port: 0,
            user,
            options,
            child: None,
            host_key_line: pub_key_body(&host.public_key),
            wrong_host_key_line: pub_key_body(&wrong.public_key),
            ed25519,
            rsa: OnceLock::new(),
            restrictions,
            dir,
        };
        // A port picked by the kernel can be taken before sshd binds it: then try another.
        for _ in 0..5 {
            sshd.port = free_port();
            if sshd.spawn() {
                fs::write(
                    sshd.dir.path().join("known_hosts"),
                    sshd.known_hosts_line() + "\n",
                )
                .expect("write known_hosts");
                return sshd;
            }
        }
        panic!("sshd could not bind a port:\n{}", sshd.log());
    }

    fn write_config(&self) -> PathBuf {
        let d = self.dir.path().display();
        let mut cfg = format!(
            "ListenAddress 127.0.0.1:{port}\n\
             HostKey {d}/host_ed25519\n\
             PidFile {d}/sshd.pid\n\
             AuthorizedKeysFile {d}/authorized_keys\n\
             UsePAM no\n\
             PasswordAuthentication no\n\
             KbdInteractiveAuthentication no\n\
             PubkeyAuthentication yes\n\
             PermitRootLogin prohibit-password\n\
             StrictModes no\n\
             UseDNS no\n\
             PrintMotd no\n\
             PrintLastLog no\n\
             Subsystem sftp internal-sftp\n\
             LogLevel VERBOSE\n\
             # bash sources ~/.bashrc when it thinks sshd started it (SHLVL<2): skip that cost.\n\
             SetEnv SHLVL=1\n",
            port = self.port
        );
        if openssh_at_least(9, 8) {
            // Newer sshd penalises sources that fail auth; tests fail auth on purpose.
            cfg.push_str("PerSourcePenalties no\n");
        }
        if let Some(n) = self.options.max_sessions {
            cfg.push_str(&format!("MaxSessions {n}\n"));
        }
        if let Some(spec) = &self.options.max_startups {
            cfg.push_str(&format!("MaxStartups {spec}\n"));
        }
        for line in &self.options.extra {
            cfg.push_str(line);
            cfg.push('\n');
        }
        let path = self.dir.path().join("sshd_config");
        fs::write(&path, cfg).expect("write sshd_config");
        path
    }

    /// Spawns sshd on `self.port` and waits for "Server listening"; false if the port was taken.
    fn spawn(&mut self) -> bool {
        let config = self.write_config();
        let log_path = self.dir.path().join("sshd.log");
        let log_start = fs::metadata(&log_path).map(|m| m.len()).unwrap_or(0) as usize;
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .expect("open sshd.log");
        let child = Command::new(SSHD)
            .args(["-D", "-e", "-f"])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .spawn()
            .expect("spawn /usr/sbin/sshd (is openssh-server installed?)");
        self.child = Some(child);
        let ready = format!("Server listening on 127.0.0.1 port {}", self.port);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let new_log = self.log().get(log_start..).unwrap_or_default().to_string();
            if new_log.contains(&ready) {
                return true;
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                if new_log.contains("Address already in use") {
                    return false;
                }
                panic!("sshd exited with {status} while starting:\n{new_log}");
            }
            assert!(
                Instant::now() < deadline,
                "sshd not listening after {START_TIMEOUT:?}:\n{new_log}"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// The login user: the current user (root in CI).
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The fixture's temp dir (config, keys, logs).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The authorized ed25519 client key.
    pub fn ed25519_key(&self) -> &ClientKey {
        &self.ed25519
    }

    /// The authorized RSA (2048 bit) client key, generated and added to authorized_keys on
    /// first use (sshd rereads authorized_keys at every login).
    pub fn rsa_key(&self) -> &ClientKey {
        self.rsa
            .get_or_init(|| self.authorized_key("client_rsa", "rsa"))
    }

    /// A fresh ed25519 key that is not in authorized_keys.
    /// A new key of `kind` (ssh-keygen's -t: "ecdsa", "ed25519", …), authorized with the
    /// same restrictions as the others.
    pub fn authorized_key(&self, name: &str, kind: &'static str) -> ClientKey {
        let key = ClientKey::generate(self.dir.path(), name, kind);
        self.authorize(&format!("{} {}", self.restrictions, key.public_key));
        key
    }

    /// A new ed25519 key authorized by a plain line, without forced command or restrictions:
    /// sshd runs whatever the client asks in the account's login shell.
    pub fn unrestricted_key(&self, name: &str) -> ClientKey {
        let key = ClientKey::generate(self.dir.path(), name, "ed25519");
        self.authorize(&key.public_key);
        key
    }

    fn authorize(&self, line: &str) {
        fs::OpenOptions::new()
            .append(true)
            .open(self.dir.path().join("authorized_keys"))
            .and_then(|mut f| f.write_all(format!("{line}\n").as_bytes()))
            .expect("append to authorized_keys");
    }

    pub fn unauthorized_key(&self) -> ClientKey {
        let dir = tempfile::Builder::new()
            .prefix("unauthorized-")
            .tempdir_in(self.dir.path())
            .expect("tempdir for key")
            .keep();
        ClientKey::generate(&dir, "client_ed25519", "ed25519")
    }

    /// The pin for this server: `[127.0.0.1]:PORT ssh-ed25519 AAAA…`.
    pub fn known_hosts_line(&self) -> String {
        format!("[127.0.0.1]:{} {}", self.port, self.host_key_line)
    }

    /// A well-formed pin for this address with a different host key (mismatch tests).
    pub fn wrong_known_hosts_line(&self) -> String {
        format!("[127.0.0.1]:{} {}", self.port, self.wrong_host_key_line)
    }

    /// A file holding [`Sshd::known_hosts_line`].
    pub fn known_hosts_file(&self) -> PathBuf {
        self.dir.path().join("known_hosts")
    }

    /// sshd's own log (all starts, appended).
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }

    /// The shim's invocation log, raw: `<unix time> <verb> <args…>` per line.
    pub fn invocation_log(&self) -> String {
        read(&self.dir.path().join("invocations.log"))
    }

    /// Every command line the shim received, byte for byte (before any word splitting).
    pub fn raw_commands(&self) -> Vec<Vec<u8>> {
        let raw = fs::read(self.dir.path().join("invocations.log.raw")).unwrap_or_default();
        raw.split(|&b| b == 0)
            .filter(|c| !c.is_empty())
            .map(<[u8]>::to_vec)
            .collect()
    }

    /// Every shim invocation so far as `"verb arg1 arg2"` (timestamps stripped), in order.
    pub fn invocations(&self) -> Vec<String> {
        self.invocation_log()
            .lines()
            .map(|l| l.split_once(' ').map_or("", |(_, cmd)| cmd).to_string())
            .collect()
    }

    /// How many invocations had this verb and began with these args.
    pub fn count(&self, verb: &str, args: &[&str]) -> usize {
        self.invocations()
            .iter()
            .filter(|line| {
                let mut words = line.split(' ');
                words.next() == Some(verb) && args.iter().all(|a| words.next() == Some(*a))
            })
            .count()
    }

    /// Per-connection sshd processes (direct children of the listener): one per TCP connection
    /// that sshd has accepted and not yet finished.
    pub fn connection_count(&self) -> usize {
        let listener = self.pid() as i32;
        procs::descendants(listener)
            .into_iter()
            .filter(|&p| procs::parent_of(p) == Some(listener))
            .count()
    }

    /// The listener's pid; panics if sshd is not running.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("sshd is not running").id()
    }

    /// Reads the server's banner over a fresh TCP connection; `None` if none came in `timeout`
    /// (frozen) or the connect failed (down).
    pub fn banner(&self, timeout: Duration) -> Option<String> {
        let mut stream = TcpStream::connect_timeout(&self.addr(), timeout).ok()?;
        stream.set_read_timeout(Some(timeout)).ok()?;
        let mut buf = [0u8; 256];
        let n = stream.read(&mut buf).ok().filter(|&n| n > 0)?;
        let _ = stream.write_all(b"SSH-2.0-fixture-probe\r\n");
        Some(String::from_utf8_lossy(&buf[..n]).trim_end().to_string())
    }

    /// Freezes sshd and every session (SIGSTOP): a laptop gone to sleep. TCP connects still
    /// complete (kernel backlog), but nothing answers.
    pub fn stop(&self) {
        procs::freeze_tree(self.pid() as i32);
    }

    /// Undoes [`Sshd::stop`] (SIGCONT to sshd and every session).
    pub fn resume(&self) {
        procs::thaw_tree(self.pid() as i32);
    }

    /// Kills every per-connection sshd and its sessions, but not the listener: established
    /// connections drop, new ones work.
    pub fn kill_sessions(&self) {
        let listener = self.pid() as i32;
        let sessions = procs::freeze_tree(listener);
        for &pid in &sessions {
            procs::signal(pid, Signal::SIGKILL);
        }
        procs::signal(listener, Signal::SIGCONT);
    }

    /// Kills sshd and every session (SIGKILL): the laptop is off. Connects are refused.
    pub fn kill(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let root = child.id() as i32;
        for pid in procs::freeze_tree(root) {
            procs::signal(pid, Signal::SIGKILL);
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Kills everything and starts sshd again on the same port with the same keys (a reboot).
    pub fn restart(&mut self) {
        self.kill();
        let deadline = Instant::now() + START_TIMEOUT;
        while !self.spawn() {
            assert!(
                Instant::now() < deadline,
                "port {} stays taken:\n{}",
                self.port,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Restarts sshd (same port) with a different host key: a reinstalled laptop, or an
    /// impostor. [`Sshd::known_hosts_line`] and [`Sshd::wrong_known_hosts_line`] swap.
    pub fn restart_with_new_host_key(&mut self) {
        self.kill();
        let d = self.dir.path();
        for ext in ["", ".pub"] {
            let (a, b) = (
                d.join(format!("host_ed25519{ext}")),
                d.join(format!("wrong_host_ed25519{ext}")),
            );
            let swap = d.join("swap");
            fs::rename(&a, &swap).expect("swap host key");
            fs::rename(&b, &a).expect("swap host key");
            fs::rename(&swap, &b).expect("swap host key");
        }
        std::mem::swap(&mut self.host_key_line, &mut self.wrong_host_key_line);
        fs::write(d.join("known_hosts"), self.known_hosts_line() + "\n").expect("known_hosts");
        self.restart();
    }

    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// An OpenSSH client command for this server with `key`, pinned host key, no user config.
    pub fn ssh(&self, key: &ClientKey, remote: &[&str]) -> Command {
        self.ssh_with(key, &[], remote)
    }

    /// Like [`Sshd::ssh`] with extra client options first (ssh keeps the first value it sees,
    /// so these override the defaults), e.g. `&["-oConnectTimeout=1"]`.
    pub fn ssh_with(&self, key: &ClientKey, options: &[&str], remote: &[&str]) -> Command {
        let mut cmd = Command::new("ssh");
        cmd.args(options)
            .args(["-F", "/dev/null", "-i"])
            .arg(&key.path)
            .args(["-p", &self.port.to_string()])
            .arg(format!(
                "-oUserKnownHostsFile={}",
                self.known_hosts_file().display()
            ))
            .args([
                "-oStrictHostKeyChecking=yes",
                "-oBatchMode=yes",
                "-oIdentitiesOnly=yes",
            ])
            .args([
                "-oIdentityAgent=none",
                "-oConnectTimeout=5",
                "-oLogLevel=ERROR",
            ])
            .arg(format!("{}@127.0.0.1", self.user))
            .args(remote);
        cmd
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        self.kill();
    }
}

/// "ssh-ed25519 AAAA… comment" -> "ssh-ed25519 AAAA…".
fn pub_key_body(line: &str) -> String {
    line.split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Whether the installed OpenSSH is at least `major.minor` (from `ssh -V`: "OpenSSH_9.2p1 …").
fn openssh_at_least(major: u32, minor: u32) -> bool {
    let out = Command::new("ssh").arg("-V").output().expect("run ssh -V");
    let text = String::from_utf8_lossy(&out.stderr);
    let version = text.strip_prefix("OpenSSH_").unwrap_or("0.0");
    let mut parts = version.split(|c: char| !c.is_ascii_digit());
    let got_major: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    let got_minor: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    (got_major, got_minor) >= (major, minor)
}

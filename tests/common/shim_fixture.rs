//! A laptop for `tether shim` tests: an OpenSSH sshd whose forced command is the real
//! `tether shim --config …` (with the production restrictions), its `shim.toml`, and a verb
//! program that logs every run, so tests can count runs and check their order.
//!
//! ```ignore
//! let laptop = Laptop::start();
//! let out = laptop.ssh("run-turn s1 6f1c… aGk=", b"");
//! assert_eq!(laptop.starts_of("6f1c…"), 1);
//! ```

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

use super::procs;
use super::sshd::{Sshd, SshdBuilder};
use super::tether::BIN;
use super::wait_until;

/// How long any single wait in these tests may take before it fails.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// The verb program: `verbs.sh DIR VERB ARG…`. Every run appends `start PID VERB ARG…` and,
/// when it ends normally, `end PID VERB ARG…` to DIR/runs.log.
const VERBS: &str = r#"#!/bin/sh
set -u
dir=$1; verb=$2; shift 2
log() { event=$1; shift; printf '%s %s %s %s\n' "$event" "$$" "$verb" "$*" >> "$dir/runs.log"; }
log start "$@"
status=0
case $verb in
  turn) # turn SESSION UUID MSG-BASE64; holds mid-answer while DIR/hold/UUID exists without DIR/release/UUID
    printf 'first half of %s\n' "$2"
    if [ -e "$dir/hold/$2" ]; then
      # (and gives up once the test's directory is gone, so a failed test leaves no process)
      while [ ! -e "$dir/release/$2" ] && [ -d "$dir" ]; do sleep 0.01; done
    fi
    printf 'reply to %s: %s\n' "$2" "$(printf %s "$3" | base64 -d)"
    printf 'note for %s\n' "$2" >&2 ;;
  cat) cat ;;
  hang) sleep 600 & echo $! > "$dir/hang.pid"; wait ;;
  exit) status=$1 ;;
  big) head -c "$2" /dev/zero | tr '\0' x ;;
  env) env | sort ;;
  argv) printf '[%s]\n' "$@" ;;
esac
log end "$@"
exit $status
"#;

/// The shim's verbs for the tests; `{verbs}`, `{dir}`, `{retention}`, `{top}` (more
/// top-level settings) and `{more_verbs}` are filled in.
const SHIM_TOML: &str = r#"
journal_dir = "{dir}/journal"
audit_log = "{dir}/audit.jsonl"
retention = "{retention}"
{top}

[verbs.run-turn]
exec = ["{verbs}", "{dir}", "turn", "{1}", "{2}", "{3}"]
args = 3
key_arg = 2
lock_arg = 1
timeout = "120s"

[verbs.cat]
exec = ["{verbs}", "{dir}", "cat", "{1}"]
args = 1
key_arg = 1
stdin = true

[verbs.hang]
exec = ["{verbs}", "{dir}", "hang", "{1}"]
args = 1
key_arg = 1
timeout = "1s"

[verbs.exit]
exec = ["{verbs}", "{dir}", "exit", "{1}"]
args = 1

[verbs.health]
exec = ["{verbs}", "{dir}", "health", "{1}"]
max_args = 1

# A turn whose message comes in stdin.
[verbs.turn-in]
exec = ["{verbs}", "{dir}", "turn", "{1}", "{2}", "aGk="]
args = 2
key_arg = 2
lock_arg = 1
stdin = true

[verbs.reset]
exec = ["{verbs}", "{dir}", "reset", "{1}"]
args = 1
lock_arg = 1

[verbs.big]
exec = ["{verbs}", "{dir}", "big", "{1}", "{2}"]
args = 2
key_arg = 1

[verbs.env]
exec = ["{verbs}", "{dir}", "env"]

[verbs.env-keyed]
exec = ["{verbs}", "{dir}", "env", "{1}"]
args = 1
key_arg = 1

[verbs.argv]
exec = ["{verbs}", "{dir}", "argv", "{1}"]
args = 1
{more_verbs}
"#;

/// One line of runs.log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    /// "start" or "end".
    pub event: String,
    pub pid: u32,
    pub verb: String,
    pub args: Vec<String>,
}

/// The laptop: sshd with the shim as its forced command, and the shim's files.
pub struct Laptop {
    pub sshd: Sshd,
    dir: TempDir,
}

impl Laptop {
    /// A laptop whose journal keeps finished entries for an hour.
    pub fn start() -> Laptop {
        Laptop::with_retention("1h")
    }

    pub fn with_retention(retention: &str) -> Laptop {
        Laptop::build(retention, "", "", &[])
    }

    /// A laptop whose shim.toml has these top-level settings (limits, audit) and verb tables
    /// too (`{verbs}` and `{dir}` are filled in there as well).
    pub fn with_settings(top: &str, more_verbs: &str) -> Laptop {
        Laptop::build("1h", top, more_verbs, &[])
    }

    /// [`Laptop::with_settings`] with these lines added to sshd's config (e.g. a `Match all`
    /// block raising its `LogLevel`).
    pub fn with_sshd_lines(top: &str, more_verbs: &str, sshd_lines: &[&str]) -> Laptop {
        Laptop::build("1h", top, more_verbs, sshd_lines)
    }

    fn build(retention: &str, top: &str, more_verbs: &str, sshd_lines: &[&str]) -> Laptop {
        let dir = tempfile::Builder::new()
            .prefix("tether-laptop-")
            .tempdir()
            .expect("tempdir");
        let d = dir.path();
        let verbs = d.join("verbs.sh");
        fs::write(&verbs, VERBS).expect("write verbs.sh");
        fs::set_permissions(&verbs, fs::Permissions::from_mode(0o755)).expect("chmod verbs.sh");
        for sub in ["hold", "release"] {
            fs::create_dir(d.join(sub)).expect("mkdir");
        }
        fs::write(d.join("runs.log"), "").expect("create runs.log");
        let config = SHIM_TOML
            .replace("{top}", top)
            .replace("{more_verbs}", more_verbs)
            .replace("{verbs}", &verbs.display().to_string())
            .replace("{dir}", &d.display().to_string())
            .replace("{retention}", retention);
        fs::write(d.join("shim.toml"), config).expect("write shim.toml");
        // The shim refuses a config others may write, whatever the umask.
        fs::set_permissions(d.join("shim.toml"), fs::Permissions::from_mode(0o600))
            .expect("chmod shim.toml");
        let forced = format!("{BIN} shim --config {}", d.join("shim.toml").display());
        let mut sshd = SshdBuilder::default()
            .forced_command(&forced)
            // Tests open dozens of connections at once.
            .max_startups("200")
            // Variables a client may send (the shim must not pass them on unasked).
            .config_line("AcceptEnv TETHER_TEST_*");
        for line in sshd_lines {
            sshd = sshd.config_line(line);
        }
        let sshd = sshd.start();
        Laptop { sshd, dir }
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir().join("shim.toml")
    }

    /// `ssh laptop COMMAND` with `stdin`, to its end.
    pub fn ssh(&self, command: &str, stdin: &[u8]) -> Output {
        self.ssh_spawn(command, stdin).wait()
    }

    /// `ssh laptop COMMAND` with `stdin`, running; its output is collected as it comes.
    pub fn ssh_spawn(&self, command: &str, stdin: &[u8]) -> Caller {
        let mut cmd = self.sshd.ssh(self.sshd.ed25519_key(), &[command]);
        Caller::spawn(&mut cmd, stdin)
    }

    /// `ssh laptop COMMAND` sending these variables (`SendEnv`; sshd accepts `TETHER_TEST_*`).
    pub fn ssh_sending_env(&self, command: &str, vars: &[(&str, &str)]) -> Output {
        let mut cmd = self.sshd.ssh_with(
            self.sshd.ed25519_key(),
            &["-o", "SendEnv=TETHER_TEST_*"],
            &[command],
        );
        cmd.envs(vars.iter().copied());
        Caller::spawn(&mut cmd, b"").wait()
    }

    /// Detached supervisors of this laptop's keyed runs, and their resident memory in bytes.
    pub fn supervisors(&self) -> Vec<(i32, u64)> {
        let journal = self.dir().join("journal").display().to_string();
        fs::read_dir("/proc")
            .expect("read /proc")
            .flatten()
            .filter_map(|e| e.file_name().to_string_lossy().parse::<i32>().ok())
            .filter(|&pid| {
                let argv = cmdline(pid);
                argv.contains(" shim --supervise ") && argv.contains(&journal)
            })
            .map(|pid| (pid, rss_bytes(pid)))
            .collect()
    }

    /// Every line of runs.log so far, in order.
    pub fn runs(&self) -> Vec<Run> {
        let text = fs::read_to_string(self.dir().join("runs.log")).expect("read runs.log");
        text.lines()
            .map(|line| {
                let mut words = line.split(' ').filter(|w| !w.is_empty());
                let mut next = || words.next().unwrap_or_default().to_string();
                let (event, pid, verb) = (next(), next(), next());
                Run {
                    event,
                    pid: pid.parse().expect("pid in runs.log"),
                    verb,
                    args: words.map(str::to_string).collect(),
                }
            })
            .collect()
    }

    /// How many runs started with `word` among their arguments (a uuid, a key).
    pub fn starts_of(&self, word: &str) -> usize {
        self.runs()
            .iter()
            .filter(|r| r.event == "start" && r.args.iter().any(|a| a == word))
            .count()
    }

    /// Makes the turn `uuid` hold mid-answer until [`Laptop::release`].
    pub fn hold(&self, uuid: &str) {
        fs::write(self.dir().join("hold").join(uuid), "").expect("hold");
    }

    pub fn release(&self, uuid: &str) {
        fs::write(self.dir().join("release").join(uuid), "").expect("release");
    }

    /// Waits until a run with `word` among its arguments has started.
    pub fn wait_started(&self, word: &str) {
        assert!(
            wait_until(PATIENCE, || self.starts_of(word) > 0),
            "{word} never started: {:?}",
            self.runs()
        );
    }

    /// The audit log's lines.
    pub fn audit(&self) -> Vec<Value> {
        self.audit_text()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("audit line {l}: {e}")))
            .collect()
    }

    /// The outcome of every audit line, in order ("ran", "replayed", "attached", "refused").
    pub fn outcomes(&self) -> Vec<String> {
        self.audit()
            .iter()
            .map(|l| l["outcome"].as_str().unwrap_or_default().to_string())
            .collect()
    }

    pub fn audit_text(&self) -> String {
        fs::read_to_string(self.dir().join("audit.jsonl")).unwrap_or_default()
    }

    /// The journal entry directory for `verb` and `key` (keys here need no escaping).
    pub fn entry_dir(&self, verb: &str, key: &str) -> PathBuf {
        self.dir().join(format!("journal/entries/{verb}~{key}"))
    }

    /// The entry's `entry.json`, or `Null` while there is none.
    pub fn entry(&self, verb: &str, key: &str) -> Value {
        fs::read(self.entry_dir(verb, key).join("entry.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or(Value::Null)
    }

    /// Waits until the entry's state is `state`.
    pub fn wait_state(&self, verb: &str, key: &str, state: &str) {
        assert!(
            wait_until(PATIENCE, || self.entry(verb, key)["state"] == state),
            "{verb} {key} never reached {state}: {}",
            self.entry(verb, key)
        );
    }

    /// Shim processes serving a call now (not supervisors), found under sshd.
    pub fn shim_pids(&self) -> Vec<i32> {
        procs::descendants(self.sshd.pid() as i32)
            .into_iter()
            .filter(|&pid| {
                let argv = cmdline(pid);
                argv.contains(" shim --config ") && !argv.contains("--supervise")
            })
            .collect()
    }

    /// Resident shims (`@session`, one per tether connection in session mode) now.
    pub fn residents(&self) -> Vec<i32> {
        self.shim_pids()
            .into_iter()
            .filter(|pid| {
                fs::read(format!("/proc/{pid}/environ")).is_ok_and(|env| {
                    env.split(|&b| b == 0)
                        .any(|v| v == b"SSH_ORIGINAL_COMMAND=@session")
                })
            })
            .collect()
    }

    /// `tether shim --config <ours> ARGS…` run here (the operator's commands).
    pub fn operator(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .arg("shim")
            .arg("--config")
            .arg(self.config_path())
            .args(args)
            .output()
            .expect("run tether shim")
    }
}

/// `text` in base64, as turns carry their message.
pub fn b64(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// A fresh turn id.
pub fn uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Output bytes as text, for assertions.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A process's resident memory (VmRSS), in bytes; 0 when it is gone.
pub fn rss_bytes(pid: i32) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
            line.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .map_or(0, |kib| kib * 1024)
}

/// A process's command line, NULs as spaces.
pub fn cmdline(pid: i32) -> String {
    fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .unwrap_or_default()
}

/// A running client process whose stdout and stderr are collected as they arrive.
pub struct Caller {
    child: Child,
    stdout: Arc<Mutex<Vec<u8>>>,
    stderr: Arc<Mutex<Vec<u8>>>,
    readers: Vec<std::thread::JoinHandle<()>>,
}

impl Caller {
    pub fn spawn(cmd: &mut Command, stdin: &[u8]) -> Caller {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn caller");
        let mut pipe = child.stdin.take().expect("stdin");
        let input = stdin.to_vec();
        std::thread::spawn(move || {
            let _ = pipe.write_all(&input);
        });
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let readers = vec![
            collect(
                Box::new(child.stdout.take().expect("stdout")),
                stdout.clone(),
            ),
            collect(
                Box::new(child.stderr.take().expect("stderr")),
                stderr.clone(),
            ),
        ];
        Caller {
            child,
            stdout,
            stderr,
            readers,
        }
    }

    /// Kills the client (`ssh`) at once: the caller goes away.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// What it has written to stdout so far.
    pub fn stdout_so_far(&self) -> String {
        String::from_utf8_lossy(&self.stdout.lock().unwrap()).into_owned()
    }

    /// Waits (up to [`PATIENCE`]) for it to exit; its exit status and all its output.
    pub fn wait(mut self) -> Output {
        let deadline = Instant::now() + PATIENCE;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("the caller ran longer than {PATIENCE:?}");
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
        Output {
            status,
            stdout: std::mem::take(&mut self.stdout.lock().unwrap()),
            stderr: std::mem::take(&mut self.stderr.lock().unwrap()),
        }
    }
}

fn collect(
    mut pipe: Box<dyn Read + Send>,
    into: Arc<Mutex<Vec<u8>>>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        while let Ok(n @ 1..) = pipe.read(&mut buf) {
            into.lock().unwrap().extend_from_slice(&buf[..n]);
        }
    })
}

//! `shim.toml`: where the journal and audit log live, how long finished entries are kept, the
//! limits a laptop survives, and the verbs the shim runs (docs/shim.md). [`load`] reports every
//! problem at once.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::home::expand_home;
use super::template::Template;
use crate::wire::check_arg;
use crate::wire::in_band::{is_reserved, valid_credential_name};

/// Keyed calls' state and output, unless configured.
pub const DEFAULT_JOURNAL_DIR: &str = "~/.local/state/tether/journal";
/// One JSON line per invocation, unless configured ("" disables).
pub const DEFAULT_AUDIT_LOG: &str = "~/.local/state/tether/audit.jsonl";
/// How long a finished journal entry is kept (and replayed).
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(24 * 3600);
/// Keyed runs under way at once (queued or running: each is a supervisor process).
pub const DEFAULT_MAX_RUNNING: usize = 8;
/// Calls waiting behind one lock value.
pub const DEFAULT_MAX_QUEUED: usize = 16;
/// How long a call waits for its lock before it is refused as busy.
pub const DEFAULT_QUEUE_WAIT: Duration = Duration::from_secs(600);
/// Each of a journal entry's stdout and stderr is cut at this size.
pub const DEFAULT_MAX_OUTPUT_BYTES: u64 = 16 << 20;
/// The journal's entries together; the oldest finished ones go first.
pub const DEFAULT_MAX_JOURNAL_BYTES: u64 = 1 << 30;
/// The audit log is rotated at this size (three rotated files are kept).
pub const DEFAULT_AUDIT_MAX_BYTES: u64 = 64 << 20;
/// PATH of a verb program.
pub const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";
/// A verb's command is killed after this, plain verbs too.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

/// The checked configuration.
#[derive(Debug)]
pub struct ShimConfig {
    pub journal_dir: PathBuf,
    /// `None` when disabled.
    pub audit_log: Option<PathBuf>,
    pub audit_max_bytes: u64,
    /// A call whose audit line cannot be written is refused.
    pub audit_required: bool,
    pub retention: Duration,
    pub limits: Limits,
    /// PATH of verb programs.
    pub path: String,
    pub verbs: BTreeMap<String, Verb>,
}

/// Where and how the audit log is written.
#[derive(Debug, Clone)]
pub struct AuditConfig {
    pub path: Option<PathBuf>,
    pub max_bytes: u64,
    pub required: bool,
}

impl ShimConfig {
    pub fn audit(&self) -> AuditConfig {
        AuditConfig {
            path: self.audit_log.clone(),
            max_bytes: self.audit_max_bytes,
            required: self.audit_required,
        }
    }
}

/// What the shim takes on at once (docs/shim.md, "Limits").
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_running: usize,
    pub max_queued: usize,
    pub queue_wait: Duration,
    pub max_output_bytes: u64,
    pub max_journal_bytes: u64,
}

/// One allowed verb.
/// What a verb does when called.
#[derive(Debug)]
pub enum Action {
    /// Runs the program its argv template names.
    Exec(Template),
    /// Answers this line itself, exit 0: no program runs (`reply`, docs/shim.md).
    Reply(String),
}

#[derive(Debug)]
pub struct Verb {
    pub action: Action,
    pub min_args: usize,
    pub max_args: usize,
    /// 1-based index of the argument that names the call; a repeat replays it.
    pub key_arg: Option<usize>,
    /// 1-based index of the argument whose calls run one at a time.
    pub lock_arg: Option<usize>,
    pub stdin: bool,
    pub timeout: Duration,
    /// This verb's own cap on keyed runs at once, under the overall one.
    pub max_running: Option<usize>,
    /// Whether an argument may start with `-` (and so be read as an option).
    pub allow_dash: bool,
    /// Patterns an argument must match, by 1-based index.
    pub arg_patterns: BTreeMap<usize, ArgPattern>,
    /// Variables passed from the shim's environment to the program.
    pub pass_env: Vec<String>,
    /// Names of the credentials an in-band call may give the program (docs/shim.md,
    /// "Credentials").
    pub credentials: Vec<String>,
}

impl Verb {
    /// The argv template of a verb that runs a program.
    pub fn template(&self) -> Option<&Template> {
        match &self.action {
            Action::Exec(template) => Some(template),
            Action::Reply(_) => None,
        }
    }

    /// The program it runs, if it runs one.
    pub fn program(&self) -> Option<&PathBuf> {
        self.template().map(Template::program)
    }
}

/// One `arg_patterns` entry: the text (for messages) and the compiled pattern, which must
/// match the whole argument.
#[derive(Debug)]
pub struct ArgPattern {
    pub text: String,
    pub regex: regex_automata::meta::Regex,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    journal_dir: Option<String>,
    audit_log: Option<String>,
    #[serde(default, with = "humantime_serde")]
    retention: Option<Duration>,
    max_running: Option<usize>,
    max_queued: Option<usize>,
    #[serde(default, with = "humantime_serde")]
    queue_wait: Option<Duration>,
    max_output_bytes: Option<u64>,
    max_journal_bytes: Option<u64>,
    audit_max_bytes: Option<u64>,
    audit_required: Option<bool>,
    path: Option<String>,
    #[serde(default)]
    verbs: BTreeMap<String, RawVerb>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVerb {
    exec: Option<Vec<String>>,
    reply: Option<String>,
    args: Option<usize>,
    min_args: Option<usize>,
    max_args: Option<usize>,
    key_arg: Option<usize>,
    lock_arg: Option<usize>,
    #[serde(default)]
    stdin: bool,
    #[serde(default, with = "humantime_serde")]
    timeout: Option<Duration>,
    max_running: Option<usize>,
    #[serde(default)]
    allow_dash: bool,
    #[serde(default)]
    arg_patterns: BTreeMap<String, String>,
    #[serde(default)]
    pass_env: Vec<String>,
    #[serde(default)]
    credentials: Vec<String>,
}

/// The config file: `--config`, else `$XDG_CONFIG_HOME/tether/shim.toml`, else
/// `~/.config/tether/shim.toml`.
pub fn path(explicit: Option<&Path>) -> PathBuf {
    if let Some(p) = explicit {
        return p.to_path_buf();
    }
    match std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
        Some(xdg) => PathBuf::from(xdg).join("tether/shim.toml"),
        None => expand_home("~/.config/tether/shim.toml").unwrap_or_default(),
    }
}

/// Reads and checks the config at `path`; every problem found, on failure.
pub fn load(path: &Path) -> Result<ShimConfig, Vec<String>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| vec![format!("cannot read {}: {e}", path.display())])?;
    let raw: RawConfig = toml::from_str(&text)
        .map_err(|e| vec![format!("{}: {}", path.display(), e.message().trim_end())])?;
    check(raw)
}

/// Where a refusal is audited when the config itself is unusable: its `audit_log` if it can be
/// read at all, else the default.
pub fn audit_log_hint(path: &Path) -> Option<PathBuf> {
    let configured = std::fs::read_to_string(path)
        .ok()
        .and_then(|text| text.parse::<toml::Table>().ok())
        .and_then(|t| t.get("audit_log")?.as_str().map(str::to_string));
    audit_path(configured.as_deref().unwrap_or(DEFAULT_AUDIT_LOG))
        .ok()
        .flatten()
}

fn check(raw: RawConfig) -> Result<ShimConfig, Vec<String>> {
    let mut errors = Vec::new();
    let journal_dir = expand_home(raw.journal_dir.as_deref().unwrap_or(DEFAULT_JOURNAL_DIR))
        .unwrap_or_else(|e| {
            errors.push(format!("journal_dir: {e}"));
            PathBuf::new()
        });
    let audit_log = audit_path(raw.audit_log.as_deref().unwrap_or(DEFAULT_AUDIT_LOG))
        .unwrap_or_else(|e| {
            errors.push(format!("audit_log: {e}"));
            None
        });
    let retention = raw.retention.unwrap_or(DEFAULT_RETENTION);
    let limits = Limits {
        max_running: raw.max_running.unwrap_or(DEFAULT_MAX_RUNNING),
        max_queued: raw.max_queued.unwrap_or(DEFAULT_MAX_QUEUED),
        queue_wait: raw.queue_wait.unwrap_or(DEFAULT_QUEUE_WAIT),
        max_output_bytes: raw.max_output_bytes.unwrap_or(DEFAULT_MAX_OUTPUT_BYTES),
        max_journal_bytes: raw.max_journal_bytes.unwrap_or(DEFAULT_MAX_JOURNAL_BYTES),
    };
    let audit_max_bytes = raw.audit_max_bytes.unwrap_or(DEFAULT_AUDIT_MAX_BYTES);
    let zero = [
        ("retention", retention.is_zero()),
        ("max_running", limits.max_running == 0),
        ("queue_wait", limits.queue_wait.is_zero()),
        ("max_output_bytes", limits.max_output_bytes == 0),
        ("max_journal_bytes", limits.max_journal_bytes == 0),
    ];
    for (key, _) in zero.iter().filter(|(_, bad)| *bad) {
        errors.push(format!("{key}: must be more than 0"));
    }
    if audit_max_bytes < MIN_AUDIT_BYTES {
        errors.push(format!(
            "audit_max_bytes: must be at least {MIN_AUDIT_BYTES}"
        ));
    }
    let path = raw.path.unwrap_or_else(|| DEFAULT_PATH.to_string());
    if path.split(':').any(|dir| !dir.starts_with('/')) {
        errors.push(format!(
            "path: {path:?} must be absolute directories joined by ':' (an empty or relative \
             entry would run programs from sshd's working directory)"
        ));
    }
    if raw.verbs.is_empty() {
        errors.push("[verbs]: no verb is configured, so every call would be refused".into());
    }
    let mut verbs = BTreeMap::new();
    for (name, v) in raw.verbs {
        let at = format!("verbs.{name}");
        if check_arg(&name).is_err() {
            errors.push(format!("{at}: a verb name uses only [A-Za-z0-9._:,=+/@%-]"));
        }
        if is_reserved(&name) {
            errors.push(format!(
                "{at}: names starting with '@' are reserved for tether's own requests"
            ));
        }
        if let Some(verb) = check_verb(&at, v, &mut errors) {
            verbs.insert(name, verb);
        }
    }
    if errors.is_empty() {
        Ok(ShimConfig {
            journal_dir,
            audit_log,
            audit_max_bytes,
            audit_required: raw.audit_required.unwrap_or(true),
            retention,
            limits,
            path,
            verbs,
        })
    } else {
        Err(errors)
    }
}

fn check_verb(at: &str, v: RawVerb, errors: &mut Vec<String>) -> Option<Verb> {
    let before = errors.len();
    let (min_args, max_args) = match (v.args, v.min_args, v.max_args) {
        (Some(n), None, None) => (n, n),
        (Some(_), _, _) => {
            errors.push(format!("{at}: set args, or min_args/max_args, not both"));
            (0, 0)
        }
        (None, min, max) => {
            let min = min.unwrap_or(0);
            (min, max.unwrap_or(min))
        }
    };
    if min_args > max_args {
        errors.push(format!(
            "{at}: min_args ({min_args}) is more than max_args ({max_args})"
        ));
    }
    let action = action(at, &v, max_args, errors);
    for (name, index) in [("key_arg", v.key_arg), ("lock_arg", v.lock_arg)] {
        if let Some(i) = index
            && !(1..=min_args).contains(&i)
        {
            errors.push(format!(
                "{at}.{name}: {i} is not an argument every call has (1 to {min_args})"
            ));
        }
    }
    if v.timeout.is_some_and(|t| t.is_zero()) {
        errors.push(format!("{at}.timeout: must be more than 0"));
    }
    if v.max_running == Some(0) {
        errors.push(format!("{at}.max_running: must be more than 0"));
    }
    if v.max_running.is_some() && v.key_arg.is_none() {
        errors.push(format!(
            "{at}.max_running: counts keyed runs, and this verb has no key_arg"
        ));
    }
    let arg_patterns = arg_patterns(at, max_args, v.arg_patterns, errors);
    for name in &v.pass_env {
        if name.is_empty() || name.contains(['=', '\0']) {
            errors.push(format!("{at}.pass_env: {name:?} is not a variable name"));
        }
    }
    for name in &v.credentials {
        if !valid_credential_name(name) {
            errors.push(format!(
                "{at}.credentials: {name:?} is not a credential name ([A-Z][A-Z0-9_]{{0,63}})"
            ));
        }
    }
    if errors.len() > before {
        return None;
    }
    Some(Verb {
        action: action?,
        min_args,
        max_args,
        key_arg: v.key_arg,
        lock_arg: v.lock_arg,
        stdin: v.stdin,
        timeout: v.timeout.unwrap_or(DEFAULT_TIMEOUT),
        max_running: v.max_running,
        allow_dash: v.allow_dash,
        arg_patterns,
        pass_env: v.pass_env,
        credentials: v.credentials,
    })
}

/// The longest `reply` line.
const MAX_REPLY: usize = 1024;

/// `exec` (a program's argv template) or `reply` (a line the shim answers itself, for a verb
/// that needs nothing run, like a liveness check); exactly one of them.
fn action(at: &str, v: &RawVerb, max_args: usize, errors: &mut Vec<String>) -> Option<Action> {
    match (&v.exec, &v.reply) {
        (Some(exec), None) => {
            let template = Template::parse(exec)
                .map_err(|e| errors.push(format!("{at}.exec: {e}")))
                .ok()?;
            if let Some(n) = template.highest_placeholder()
                && n > max_args
            {
                errors.push(format!(
                    "{at}.exec: {{{n}}} needs max_args (or args) of at least {n}"
                ));
            }
            Some(Action::Exec(template))
        }
        (None, Some(reply)) => {
            if reply.is_empty() || reply.len() > MAX_REPLY || reply.chars().any(char::is_control) {
                errors.push(format!(
                    "{at}.reply: must be one line of 1 to {MAX_REPLY} bytes, no control characters"
                ));
            }
            let runs: Vec<&str> = [
                ("key_arg", v.key_arg.is_some()),
                ("lock_arg", v.lock_arg.is_some()),
                ("stdin", v.stdin),
                ("max_running", v.max_running.is_some()),
                ("pass_env", !v.pass_env.is_empty()),
                ("credentials", !v.credentials.is_empty()),
            ]
            .into_iter()
            .filter_map(|(key, set)| set.then_some(key))
            .collect();
            if !runs.is_empty() {
                errors.push(format!(
                    "{at}.reply: the shim answers this verb itself and runs nothing, so it takes \
                     no {}",
                    runs.join(", ")
                ));
            }
            Some(Action::Reply(reply.clone()))
        }
        (Some(_), Some(_)) => {
            errors.push(format!("{at}: set exec or reply, not both"));
            None
        }
        (None, None) => {
            errors.push(format!(
                "{at}: needs exec (the program to run) or reply (a line the shim answers itself)"
            ));
            None
        }
    }
}

/// `arg_patterns = {1 = "^[a-z0-9-]+$"}`: each key an argument index, each value a pattern.
fn arg_patterns(
    at: &str,
    max_args: usize,
    raw: BTreeMap<String, String>,
    errors: &mut Vec<String>,
) -> BTreeMap<usize, ArgPattern> {
    let mut patterns = BTreeMap::new();
    for (index, text) in raw {
        let Some(i) = index
            .parse::<usize>()
            .ok()
            .filter(|i| (1..=max_args).contains(i))
        else {
            errors.push(format!(
                "{at}.arg_patterns: {index:?} is not an argument index (1 to {max_args})"
            ));
            continue;
        };
        let built = regex_automata::meta::Regex::builder()
            .syntax(regex_automata::util::syntax::Config::new().unicode(false))
            .build(&format!("^(?:{text})$"));
        match built {
            Ok(regex) => {
                patterns.insert(i, ArgPattern { text, regex });
            }
            Err(e) => errors.push(format!("{at}.arg_patterns.{i}: {e}")),
        }
    }
    patterns
}

/// The smallest `audit_max_bytes`: a few lines must fit before a rotation.
const MIN_AUDIT_BYTES: u64 = 64 << 10;

/// `""` disables the audit log; anything else is a path.
fn audit_path(value: &str) -> Result<Option<PathBuf>, String> {
    if value.is_empty() {
        Ok(None)
    } else {
        expand_home(value).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ShimConfig, Vec<String>> {
        check(toml::from_str(text).map_err(|e| vec![e.to_string()])?)
    }

    #[test]
    fn the_documented_example_loads() {
        let config = parse(
            r#"
            journal_dir = "/var/lib/j"
            audit_log = ""
            retention = "1h"
            [verbs.run-turn]
            exec = ["/bin/p", "run-turn", "{1}", "{2}", "{3}"]
            args = 3
            key_arg = 2
            lock_arg = 1
            stdin = true
            timeout = "10m"
            [verbs.health]
            exec = ["/bin/p", "health", "{1}"]
            max_args = 1
            "#,
        )
        .unwrap();
        assert_eq!(config.audit_log, None);
        assert_eq!(config.retention, Duration::from_secs(3600));
        let turn = &config.verbs["run-turn"];
        assert_eq!((turn.min_args, turn.max_args), (3, 3));
        assert_eq!((turn.key_arg, turn.lock_arg), (Some(2), Some(1)));
        assert_eq!(turn.timeout, Duration::from_secs(600));
        let health = &config.verbs["health"];
        assert_eq!((health.min_args, health.max_args), (0, 1));
        assert!(!health.stdin && health.key_arg.is_none());
        // The documented defaults, a plain verb's timeout among them.
        assert_eq!(health.timeout, DEFAULT_TIMEOUT);
        assert!(!health.allow_dash);
        assert_eq!(config.limits.max_running, 8);
        assert_eq!(config.limits.max_queued, 16);
        assert_eq!(config.limits.queue_wait, Duration::from_secs(600));
        assert_eq!(config.limits.max_output_bytes, 16 << 20);
        assert_eq!(config.limits.max_journal_bytes, 1 << 30);
        assert_eq!(config.audit_max_bytes, 64 << 20);
        assert!(config.audit_required);
        assert_eq!(config.path, "/usr/local/bin:/usr/bin:/bin");
    }

    #[test]
    fn limits_patterns_and_env_are_checked() {
        let errors = parse(
            r#"
            max_running = 0
            path = "/bin:relative"
            [verbs.a]
            exec = ["/bin/x", "{1}"]
            args = 1
            arg_patterns = {1 = "[a-z", 2 = "x"}
            pass_env = ["A=B"]
            credentials = ["PALIAD_JWT", "lower"]
            max_running = 2
            "#,
        )
        .unwrap_err();
        let all = errors.join("\n");
        for needle in [
            "max_running: must be more than 0",
            "path: \"/bin:relative\" must be absolute",
            "verbs.a.arg_patterns.1:",
            "verbs.a.arg_patterns: \"2\" is not an argument index (1 to 1)",
            "verbs.a.pass_env: \"A=B\"",
            "verbs.a.credentials: \"lower\" is not a credential name",
            "verbs.a.max_running: counts keyed runs",
        ] {
            assert!(all.contains(needle), "{needle:?} missing from:\n{all}");
        }
    }

    #[test]
    fn a_reply_verb_runs_nothing_so_it_takes_nothing_a_run_needs() {
        let config = parse(
            r#"
            [verbs.alive]
            reply = "ok"
            max_args = 1
            "#,
        )
        .unwrap();
        let alive = &config.verbs["alive"];
        assert!(matches!(&alive.action, Action::Reply(line) if line == "ok"));
        assert!(alive.program().is_none());
        let errors = parse(
            r#"
            [verbs.a]
            reply = "ok"
            args = 1
            key_arg = 1
            stdin = true
            credentials = ["T"]
            [verbs.b]
            reply = "two\nlines"
            [verbs.c]
            reply = "ok"
            exec = ["/bin/x"]
            [verbs.d]
            max_args = 1
            "#,
        )
        .unwrap_err();
        let all = errors.join("\n");
        for needle in [
            "verbs.a.reply: the shim answers this verb itself and runs nothing, so it takes no \
             key_arg, stdin, credentials",
            "verbs.b.reply: must be one line",
            "verbs.c: set exec or reply, not both",
            "verbs.d: needs exec (the program to run) or reply",
        ] {
            assert!(all.contains(needle), "{needle:?} missing from:\n{all}");
        }
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let errors = parse(
            r#"
            journal_dir = "relative/dir"
            [verbs."bad verb"]
            exec = ["/bin/x"]
            [verbs."@hello"]
            exec = ["/bin/x"]
            [verbs.a]
            exec = ["/bin/x", "{2}"]
            max_args = 1
            key_arg = 1
            [verbs.b]
            exec = ["/bin/x", "{one}"]
            args = 1
            min_args = 1
            "#,
        )
        .unwrap_err();
        let all = errors.join("\n");
        for needle in [
            "journal_dir: \"relative/dir\" is not an absolute path",
            "verbs.bad verb: a verb name",
            "verbs.@hello: names starting with '@' are reserved",
            "verbs.a.exec: {2} needs max_args",
            "verbs.a.key_arg: 1 is not an argument every call has",
            "verbs.b: set args, or min_args/max_args, not both",
            "verbs.b.exec:",
        ] {
            assert!(all.contains(needle), "{needle:?} missing from:\n{all}");
        }
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = toml::from_str::<RawConfig>("[verbs.a]\nexec = [\"/x\"]\nkey = 1\n")
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("unknown field `key`"), "{err}");
    }
}

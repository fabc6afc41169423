//! The caller's request: `SSH_ORIGINAL_COMMAND` decoded by [`crate::wire`] (the rules tether
//! encodes it with; never through a shell), then checked against the verb's own rules (its
//! argument count, no leading `-` unless `allow_dash`, `arg_patterns`). `@hello` asks for the
//! shim's hello, `@session` a session of framed requests; `@in-band VERB ARGS…` is a request
//! like any other whose stdin begins with an in-band frame. A reason never repeats what the caller sent: the audit line names the verb,
//! bounded.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use super::config::{ShimConfig, Verb};
use crate::wire::Decoded;
use crate::wire::in_band::{self, Command};

/// What the command line asks for.
#[derive(Debug)]
pub enum Asked<'c> {
    /// `@hello`: the shim's hello line; nothing runs.
    Hello,
    /// `@session`: requests come as frames on stdin (docs/shim.md, "Session mode").
    Session,
    /// A verb to run.
    Call(Request<'c>),
}

/// A request that passed every check: an allowed verb with the right number of good arguments.
#[derive(Debug)]
pub struct Request<'c> {
    pub name: String,
    pub verb: &'c Verb,
    pub args: Vec<String>,
    /// Its stdin begins with an in-band frame (`@in-band`).
    pub in_band: bool,
}

impl Request<'_> {
    /// The value of the verb's `key_arg`, if it has one.
    pub fn key(&self) -> Option<&str> {
        self.verb.key_arg.map(|i| self.args[i - 1].as_str())
    }

    /// The value of the verb's `lock_arg`, if it has one.
    pub fn lock(&self) -> Option<&str> {
        self.verb.lock_arg.map(|i| self.args[i - 1].as_str())
    }

    /// Bytes of all arguments together (the audit records sizes, not content).
    pub fn args_bytes(&self) -> usize {
        self.args.iter().map(String::len).sum()
    }
}

/// Why a request was refused, and the verb name when it was a good one (for the audit).
#[derive(Debug)]
pub struct Refusal {
    pub verb: Option<String>,
    pub reason: String,
}

/// Checks `command` (the value of `SSH_ORIGINAL_COMMAND`) against the config.
pub fn parse<'c>(command: Option<&OsStr>, config: &'c ShimConfig) -> Result<Asked<'c>, Refusal> {
    let refuse = |verb: Option<&str>, reason: String| Refusal {
        verb: verb.map(str::to_string),
        reason,
    };
    let unknown = |name| refuse(Some(name), "unknown verb: it is not in shim.toml".into());
    let command = command.ok_or_else(|| {
        refuse(
            None,
            "no SSH_ORIGINAL_COMMAND: run me as sshd's forced command, with a verb".into(),
        )
    })?;
    let decoded = in_band::decode_command(command.as_bytes()).map_err(|bad| {
        match bad.verb {
            // An unknown verb is named before whatever is wrong further on.
            Some(name) if !config.verbs.contains_key(name) => unknown(name),
            verb => refuse(verb, bad.reason),
        }
    })?;
    let (Decoded { verb: name, args }, in_band) = match decoded {
        Command::Hello => return Ok(Asked::Hello),
        Command::Plain(decoded) => (decoded, false),
        Command::InBand(decoded) => (decoded, true),
        Command::Session => return Ok(Asked::Session),
    };
    let verb = config.verbs.get(name).ok_or_else(|| unknown(name))?;
    let args: Vec<String> = args.into_iter().map(str::to_string).collect();
    if !(verb.min_args..=verb.max_args).contains(&args.len()) {
        let wanted = if verb.min_args == verb.max_args {
            format!("{}", verb.min_args)
        } else {
            format!("{} to {}", verb.min_args, verb.max_args)
        };
        return Err(refuse(
            Some(name),
            format!("{name} takes {wanted} arguments, got {}", args.len()),
        ));
    }
    for (i, arg) in (1..).zip(&args) {
        check_rules(verb, i, arg).map_err(|e| refuse(Some(name), format!("argument {i}: {e}")))?;
    }
    Ok(Asked::Call(Request {
        name: name.to_string(),
        verb,
        args,
        in_band,
    }))
}

/// The verb's own rules for argument `i` (1-based).
fn check_rules(verb: &Verb, i: usize, arg: &str) -> Result<(), String> {
    if arg.starts_with('-') && !verb.allow_dash {
        return Err(
            "starts with '-', so the program could read it as an option; \
                    the verb must set allow_dash = true to take it"
                .into(),
        );
    }
    match verb.arg_patterns.get(&i) {
        Some(pattern) if !pattern.regex.is_match(arg) => Err(format!(
            "does not match the verb's arg_patterns.{i} ({:?})",
            pattern.text
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shim::config::{Action, ArgPattern, Limits};
    use crate::shim::template::Template;
    use std::collections::BTreeMap;
    use std::path::PathBuf;
    use std::time::Duration;

    fn config() -> ShimConfig {
        let verb = |min, max, key| Verb {
            action: Action::Exec(Template::parse(&["/bin/true".to_string()]).unwrap()),
            min_args: min,
            max_args: max,
            key_arg: key,
            lock_arg: None,
            stdin: false,
            timeout: Duration::from_secs(1),
            max_running: None,
            allow_dash: false,
            arg_patterns: BTreeMap::new(),
            pass_env: Vec::new(),
            credentials: Vec::new(),
        };
        let mut patterned = verb(1, 1, None);
        patterned.arg_patterns.insert(
            1,
            ArgPattern {
                text: "[a-z0-9-]+".into(),
                regex: regex_automata::meta::Regex::new("^(?:[a-z0-9-]+)$").unwrap(),
            },
        );
        patterned.allow_dash = true;
        ShimConfig {
            journal_dir: PathBuf::from("/j"),
            audit_log: None,
            audit_max_bytes: 1 << 20,
            audit_required: true,
            retention: Duration::from_secs(1),
            limits: Limits {
                max_running: 1,
                max_queued: 1,
                queue_wait: Duration::from_secs(1),
                max_output_bytes: 1,
                max_journal_bytes: 1,
            },
            path: "/bin".into(),
            verbs: BTreeMap::from([
                ("run-turn".to_string(), verb(3, 3, Some(2))),
                ("health".to_string(), verb(0, 1, None)),
                ("named".to_string(), patterned),
            ]),
        }
    }

    fn reason(line: &str) -> String {
        parse(Some(OsStr::new(line)), &config()).unwrap_err().reason
    }

    fn request<'c>(line: &str, config: &'c ShimConfig) -> Request<'c> {
        match parse(Some(OsStr::new(line)), config).unwrap() {
            Asked::Call(request) => request,
            other => panic!("{line} asked for {other:?}"),
        }
    }

    #[test]
    fn good_requests_pass() {
        let config = config();
        let r = request("run-turn s1 u-1 aGk=", &config);
        assert!(!r.in_band);
        assert_eq!(
            (r.name.as_str(), r.key(), r.lock()),
            ("run-turn", Some("u-1"), None)
        );
        assert_eq!(r.args_bytes(), 2 + 3 + 4);
        let r = request("health", &config);
        assert!(r.args.is_empty());
        let r = request("@in-band run-turn s1 u-1 aGk=", &config);
        assert_eq!(
            (r.name.as_str(), r.key(), r.in_band),
            ("run-turn", Some("u-1"), true)
        );
        assert!(matches!(
            parse(Some(OsStr::new("@hello")), &config),
            Ok(Asked::Hello)
        ));
        assert!(matches!(
            parse(Some(OsStr::new("@session")), &config),
            Ok(Asked::Session)
        ));
        assert!(reason("@hello x").starts_with("unknown verb"));
        assert!(reason("@in-band rm x").starts_with("unknown verb"));
        assert!(reason("@in-band health a b").contains("takes 0 to 1 arguments"));
    }

    #[test]
    fn refusals_say_why_without_echoing_content() {
        let unknown = reason(&format!("{} -rf /", "r".repeat(1000)));
        assert!(unknown.starts_with("unknown verb"), "{unknown}");
        assert!(!unknown.contains("rrr"), "{unknown}");
        assert!(reason("health a b").contains("takes 0 to 1 arguments, got 2"));
        assert!(reason("run-turn s1 u1").contains("takes 3 arguments, got 2"));
        let bad = reason("run-turn s1 $(id) x");
        assert!(bad.starts_with("argument 2: byte 0"), "{bad}");
        assert!(!bad.contains("$("), "{bad}");
        assert!(reason("").contains("no verb"));
        assert!(reason("he\tlth").starts_with("the verb:"));
        assert!(reason("health  s1").contains("repeated space"));
        let unknown = reason("rm  $(id)");
        assert!(unknown.starts_with("unknown verb"), "{unknown}");
        assert!(
            parse(None, &config())
                .unwrap_err()
                .reason
                .contains("SSH_ORIGINAL_COMMAND")
        );
    }

    #[test]
    fn options_and_patterns_are_the_verbs_to_allow() {
        let dash = reason("health --output=/tmp/x");
        assert!(dash.starts_with("argument 1: starts with '-'"), "{dash}");
        assert!(reason("run-turn s1 -k m").starts_with("argument 2: starts with '-'"));
        assert!(reason("named UPPER").contains("arg_patterns.1"));
        // The pattern must match the whole argument, not a part of it.
        assert!(reason("named ok/../x").contains("arg_patterns.1"));
        let config = config();
        assert!(parse(Some(OsStr::new("named -ok-1")), &config).is_ok());
    }
}

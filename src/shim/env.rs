//! The environment a verb program gets: nothing of sshd's (`SSH_ORIGINAL_COMMAND`,
//! `SSH_CLIENT`, `AcceptEnv` variables) but `HOME`, `USER`, `LOGNAME`, `LANG` and `TRACEPARENT`
//! when set, `PATH` from the config, and the names the verb lists in `pass_env`
//! (docs/shim.md, "Environment").

use std::process::Command;

/// Passed through from the shim's own environment when set.
const KEPT: [&str; 5] = ["HOME", "USER", "LOGNAME", "LANG", "TRACEPARENT"];

/// The variables for a verb program, from this process's environment.
pub fn for_verb(path: &str, pass_env: &[String]) -> Vec<(String, String)> {
    let mut vars = vec![("PATH".to_string(), path.to_string())];
    for name in KEPT
        .iter()
        .copied()
        .chain(pass_env.iter().map(String::as_str))
    {
        if name == "PATH" || vars.iter().any(|(n, _)| n == name) {
            continue;
        }
        if let Ok(value) = std::env::var(name) {
            vars.push((name.to_string(), value));
        }
    }
    vars
}

/// Gives `cmd` exactly `vars` as its environment.
pub fn apply(cmd: &mut Command, vars: &[(String, String)]) {
    cmd.env_clear()
        .envs(vars.iter().map(|(n, v)| (n.as_str(), v.as_str())));
}

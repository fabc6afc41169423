//! The environment a verb program gets: nothing of sshd's (`SSH_ORIGINAL_COMMAND`,
//! `SSH_CLIENT`, `AcceptEnv` variables) but `HOME`, `USER`, `LOGNAME` and `LANG` when set,
//! `PATH` from the config, the names the verb lists in `pass_env`, and from an in-band call
//! `TRACEPARENT` (and `TRACESTATE`) and `CREDENTIALS_DIRECTORY` (docs/shim.md, "Environment").

use std::path::Path;
use std::process::Command;

use crate::wire::in_band::InBand;

/// Passed through from the shim's own environment when set.
const KEPT: [&str; 4] = ["HOME", "USER", "LOGNAME", "LANG"];
/// The directory of the call's credential files.
pub const CREDENTIALS_DIRECTORY: &str = "CREDENTIALS_DIRECTORY";
/// Set only from what the call carried, never from the shim's environment.
const FROM_THE_CALL: [&str; 4] = ["PATH", "TRACEPARENT", "TRACESTATE", CREDENTIALS_DIRECTORY];

/// The variables for a verb program: from this process's environment, and the trace context
/// of an in-band call.
pub fn for_verb(
    path: &str,
    pass_env: &[String],
    in_band: Option<&InBand>,
) -> Vec<(String, String)> {
    let mut vars = vec![("PATH".to_string(), path.to_string())];
    let trace = in_band.map(InBand::trace).unwrap_or_default();
    let traced = [("TRACEPARENT", trace.0), ("TRACESTATE", trace.1)];
    for (name, value) in traced {
        if let Some(value) = value {
            vars.push((name.to_string(), value.to_string()));
        }
    }
    for name in KEPT
        .iter()
        .copied()
        .chain(pass_env.iter().map(String::as_str))
    {
        if FROM_THE_CALL.contains(&name) || vars.iter().any(|(n, _)| n == name) {
            continue;
        }
        if let Ok(value) = std::env::var(name) {
            vars.push((name.to_string(), value));
        }
    }
    vars
}

/// `vars` with `CREDENTIALS_DIRECTORY` naming `dir`.
pub fn with_credentials(mut vars: Vec<(String, String)>, dir: &Path) -> Vec<(String, String)> {
    vars.push((CREDENTIALS_DIRECTORY.to_string(), dir.display().to_string()));
    vars
}

/// Gives `cmd` exactly `vars` as its environment.
pub fn apply(cmd: &mut Command, vars: &[(String, String)]) {
    cmd.env_clear()
        .envs(vars.iter().map(|(n, v)| (n.as_str(), v.as_str())));
}

//! Reading the configuration: defaults, then the TOML file, then `TETHER_*` environment
//! variables, then the legacy `PALIADIN_*` variables. Every problem is collected, not just
//! the first.

use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use figment::value::{Dict, Value};

use super::origins::{self, Origins};
use super::{Config, Loaded, Secret, validate};

/// The file read when neither `--config` nor `$TETHER_CONFIG` names one.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/tether/tether.toml";
/// How many distinct problems one load reports at most.
const MAX_ERRORS: usize = 64;

/// Every problem found in the configuration, each naming its key.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigErrors(pub Vec<String>);

impl std::fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "invalid configuration ({} problem(s)):", self.0.len())?;
        for e in &self.0 {
            writeln!(f, "  - {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Loads the configuration from `path` (else `$TETHER_CONFIG`, else the default path if it
/// exists), the environment and the legacy variables, and validates it: type errors, unknown
/// keys and invalid values are reported together.
pub fn load(path: Option<&Path>) -> Result<Loaded, ConfigErrors> {
    let Read {
        config, mut errors, ..
    } = read(path)?;
    match validate(config) {
        Ok(loaded) if errors.is_empty() => Ok(loaded),
        Ok(_) => Err(ConfigErrors(errors)),
        Err(more) => {
            errors.extend(more.0);
            Err(ConfigErrors(errors))
        }
    }
}

/// The configuration as read from every source, before validation.
pub struct Read {
    /// What could be read; a key that could not is left at its default.
    pub config: Config,
    /// Keys that could not be read (type errors, unknown keys), each named.
    pub errors: Vec<String>,
    /// Which source set each key of each target.
    pub origins: Origins,
}

/// Reads every source; what could not be read is left at its default and reported. Fails
/// only when the config file named by `path` or `$TETHER_CONFIG` does not exist.
pub fn read(path: Option<&Path>) -> Result<Read, ConfigErrors> {
    let mut figment = Figment::new();
    if let Some(file) = config_file(path)? {
        figment = figment.merge(Toml::file(file));
    }
    figment = figment.merge(Env::prefixed("TETHER_").split("__").ignore(&["config"]));
    let (mut config, mut errors) = extract_all(&figment);
    let mut origins = origins::from_figment(&figment);
    let legacy = apply_legacy(&mut config, &|name| std::env::var(name).ok(), &mut errors);
    origins::add_legacy(&mut origins, LEGACY_TARGET, legacy);
    Ok(Read {
        config,
        errors,
        origins,
    })
}

fn config_file(path: Option<&Path>) -> Result<Option<PathBuf>, ConfigErrors> {
    let named = path
        .map(Path::to_path_buf)
        .or_else(|| std::env::var_os("TETHER_CONFIG").map(PathBuf::from));
    match named {
        Some(file) if file.is_file() => Ok(Some(file)),
        Some(file) => Err(ConfigErrors(vec![format!(
            "config file {} does not exist or is not a file",
            file.display()
        )])),
        None => Ok(Some(PathBuf::from(DEFAULT_CONFIG_PATH)).filter(|p| p.is_file())),
    }
}

/// Extracts the config; on failure removes each offending key and tries again, so that one
/// run reports every bad key instead of the first.
fn extract_all(figment: &Figment) -> (Config, Vec<String>) {
    let mut raw = match figment.extract::<Dict>() {
        Ok(raw) => raw,
        Err(e) => {
            return (
                Config::default(),
                e.into_iter().map(|e| e.to_string()).collect(),
            );
        }
    };
    let mut errors = Vec::new();
    loop {
        let attempt = Figment::from(Serialized::defaults(&raw)).extract::<Config>();
        let failure = match attempt {
            Ok(config) => return (config, errors),
            Err(failure) => failure,
        };
        let mut removed_any = false;
        for e in failure {
            let mut key = e.path.clone();
            if let figment::error::Kind::UnknownField(field, _) = &e.kind
                && key.last() != Some(field)
            {
                key.push(field.clone());
            }
            let shown = key.join(".");
            let source = figment
                .find_metadata(&shown)
                .map(|m| format!(" (from {})", m.name))
                .unwrap_or_default();
            errors.push(format!("{shown}: {}{source}", e.kind));
            removed_any |= remove_key(&mut raw, &key);
        }
        if !removed_any || errors.len() >= MAX_ERRORS {
            return (Config::default(), errors);
        }
    }
}

fn remove_key(dict: &mut Dict, key: &[String]) -> bool {
    match key {
        [] => false,
        [last] => dict.remove(last).is_some(),
        [first, rest @ ..] => match dict.get_mut(first) {
            Some(Value::Dict(_, inner)) => remove_key(inner, rest),
            _ => false,
        },
    }
}

/// The target the legacy variables define.
const LEGACY_TARGET: &str = "paliadin";

/// The legacy variables of existing deployments define target `paliadin`. Returns the
/// target keys they set, each with its variable.
fn apply_legacy(
    config: &mut Config,
    env: &dyn Fn(&str) -> Option<String>,
    errors: &mut Vec<String>,
) -> Vec<(&'static str, &'static str)> {
    let Some(host) = env("PALIADIN_REMOTE_HOST") else {
        return Vec::new();
    };
    let mut set = vec![("host", "PALIADIN_REMOTE_HOST")];
    let target = config.targets.entry(LEGACY_TARGET.into()).or_default();
    target.host = host;
    if let Some(port) = env("PALIADIN_REMOTE_PORT") {
        match port.trim().parse() {
            Ok(port) => {
                target.port = port;
                set.push(("port", "PALIADIN_REMOTE_PORT"));
            }
            Err(_) => errors.push(format!(
                "PALIADIN_REMOTE_PORT: {port:?} is not a port number"
            )),
        }
    }
    if let Some(user) = env("PALIADIN_REMOTE_USER") {
        target.user = user;
        set.push(("user", "PALIADIN_REMOTE_USER"));
    }
    if let Some(key) = env("PALIADIN_SSH_PRIVATE_KEY") {
        target.private_key = Some(Secret::new(key));
        target.private_key_file = None;
        set.push(("private_key", "PALIADIN_SSH_PRIVATE_KEY"));
    }
    if let Some(known_hosts) = env("PALIADIN_KNOWN_HOSTS") {
        target.known_hosts = Some(known_hosts);
        target.known_hosts_file = None;
        set.push(("known_hosts", "PALIADIN_KNOWN_HOSTS"));
    }
    if let Some(secs) = env("PALIADIN_TIMEOUT_S") {
        match (secs.trim().parse::<u64>(), config.verbs.get_mut("run-turn")) {
            (Ok(secs), Some(verb)) if secs > 0 => verb.timeout = Duration::from_secs(secs),
            (Ok(_), None) => errors.push(
                "PALIADIN_TIMEOUT_S: the run-turn verb is not in [verbs], so it has no timeout to set"
                    .into(),
            ),
            _ => errors.push(format!(
                "PALIADIN_TIMEOUT_S: {secs:?} is not a positive whole number of seconds"
            )),
        }
    }
    set
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn from_toml(text: &str) -> (Config, Vec<String>) {
        extract_all(&Figment::from(Toml::string(text)))
    }

    #[test]
    fn every_bad_key_is_reported_at_once() {
        let (_, errors) = from_toml(
            r#"
            [server]
            shutdown_grace = "soon"
            bogus = 1
            [targets.a]
            port = "x"
            colour = "red"
            [verbs.health]
            timeout = 5
            "#,
        );
        let all = errors.join("\n");
        for key in [
            "server.shutdown_grace",
            "server.bogus",
            "targets.a.port",
            "targets.a.colour",
            "verbs.health.timeout",
        ] {
            assert!(all.contains(key), "{key} missing from:\n{all}");
        }
    }

    #[test]
    fn a_verbs_table_replaces_the_seed_set() {
        let (config, errors) = from_toml("[verbs.ping]\ntimeout = \"1s\"\n");
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(config.verbs.keys().collect::<Vec<_>>(), ["ping"]);
        let (config, _) = from_toml("");
        assert_eq!(config.verbs.len(), 3);
        assert_eq!(config.verbs["run-turn"].timeout, Duration::from_secs(120));
    }

    #[test]
    fn legacy_variables_define_target_paliadin() {
        let vars = HashMap::from([
            ("PALIADIN_REMOTE_HOST", "100.99.98.203"),
            ("PALIADIN_REMOTE_USER", "m"),
            ("PALIADIN_SSH_PRIVATE_KEY", "a2V5"),
            ("PALIADIN_TIMEOUT_S", "90"),
        ]);
        let mut config = Config::default();
        let mut errors = vec![];
        apply_legacy(
            &mut config,
            &|k| vars.get(k).map(|v| v.to_string()),
            &mut errors,
        );
        assert!(errors.is_empty(), "{errors:?}");
        let t = &config.targets["paliadin"];
        assert_eq!(
            (t.host.as_str(), t.port, t.user.as_str()),
            ("100.99.98.203", 22022, "m")
        );
        assert_eq!(config.verbs["run-turn"].timeout, Duration::from_secs(90));
    }

    #[test]
    fn legacy_port_must_be_a_number() {
        let vars = HashMap::from([
            ("PALIADIN_REMOTE_HOST", "h"),
            ("PALIADIN_REMOTE_PORT", "ssh"),
        ]);
        let mut errors = vec![];
        apply_legacy(
            &mut Config::default(),
            &|k| vars.get(k).map(|v| v.to_string()),
            &mut errors,
        );
        assert!(errors[0].starts_with("PALIADIN_REMOTE_PORT"));
    }
}

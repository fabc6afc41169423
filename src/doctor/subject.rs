//! One target as the checks see it: its configuration, and where each of its keys was set,
//! so that a fix can name the file or the variable to change.

use std::collections::BTreeMap;

use crate::config::{TargetConfig, VerbConfig};

/// One target and what the checks need to know about its configuration.
pub struct Subject<'a> {
    pub name: &'a str,
    pub target: &'a TargetConfig,
    /// Which source (a file path or a variable name) set each of the target's keys.
    pub origins: &'a BTreeMap<String, String>,
    pub verbs: &'a BTreeMap<String, VerbConfig>,
}

impl Subject<'_> {
    /// The `config` check's finding: which file and variables set the target.
    pub fn sources(&self) -> String {
        let mut files: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        let mut variables = Vec::new();
        for (key, source) in self.origins {
            match is_variable(source) {
                true => variables.push(source.as_str()),
                false => files.entry(source).or_default().push(key),
            }
        }
        let mut parts: Vec<String> = files
            .into_iter()
            .map(|(file, keys)| format!("{file} ({})", keys.join(", ")))
            .collect();
        if !variables.is_empty() {
            parts.push(format!("environment ({})", variables.join(", ")));
        }
        match parts.is_empty() {
            true => "loaded; every key of this target is at its default".into(),
            false => format!("loaded; this target is set by {}", parts.join("; ")),
        }
    }

    /// Where to change `keys`: their variables, or the keys and the file that set them
    /// ("host and port in [targets.x] of /etc/tether/tether.toml").
    pub fn where_set(&self, keys: &[&str]) -> String {
        let mut shown = Vec::new();
        let mut in_files: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for &key in keys {
            match self.origins.get(key) {
                Some(var) if is_variable(var) => shown.push(var.clone()),
                Some(file) => in_files.entry(file).or_default().push(key),
                None => shown.push(format!("targets.{}.{key}", self.name)),
            }
        }
        for (file, keys) in in_files {
            let keys = keys.join(" and ");
            shown.push(format!("{keys} in [targets.{}] of {file}", self.name));
        }
        shown.join(" and ")
    }

    /// How to set `key` to `value` (TOML): in the variable or file that sets it now; a key
    /// at its default goes in the target's file, or else in a `TETHER_*` variable.
    pub fn assignment(&self, key: &str, value: &str) -> String {
        let bare = value.trim_matches('"');
        let file = match self.origins.get(key) {
            Some(var) if is_variable(var) => return format!("{var}={bare}"),
            Some(file) => Some(file),
            None => self.origins.values().find(|s| !is_variable(s)),
        };
        match file {
            Some(file) => format!("{key} = {value} in [targets.{}] of {file}", self.name),
            None => format!(
                "TETHER_TARGETS__{}__{}={bare}",
                self.name.to_ascii_uppercase(),
                key.replace('.', "__").to_ascii_uppercase()
            ),
        }
    }

    /// Where the private key is set, whichever of its two keys is used.
    pub fn key_source(&self) -> String {
        match self.target.private_key_file {
            Some(_) => self.where_set(&["private_key_file"]),
            None => self.where_set(&["private_key"]),
        }
    }

    /// Where the pinned host keys are set, whichever of their two keys is used.
    pub fn known_hosts_source(&self) -> String {
        match self.target.known_hosts_file {
            Some(_) => self.where_set(&["known_hosts_file"]),
            None => self.where_set(&["known_hosts"]),
        }
    }
}

/// Whether a key's source is an environment variable (else it is a file).
fn is_variable(source: &str) -> bool {
    source.starts_with("TETHER_") || source.starts_with("PALIADIN_")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subject_with<'a>(origins: &'a BTreeMap<String, String>, t: &'a TargetConfig) -> Subject<'a> {
        static NO_VERBS: BTreeMap<String, VerbConfig> = BTreeMap::new();
        Subject {
            name: "m",
            target: t,
            origins,
            verbs: &NO_VERBS,
        }
    }

    #[test]
    fn fixes_name_the_file_or_the_variable_that_sets_the_key() {
        let t = TargetConfig::default();
        let origins = BTreeMap::from([
            ("host".to_string(), "/etc/t.toml".to_string()),
            ("port".to_string(), "/etc/t.toml".to_string()),
            ("user".to_string(), "PALIADIN_REMOTE_USER".to_string()),
        ]);
        let s = subject_with(&origins, &t);
        assert_eq!(
            s.where_set(&["host", "port"]),
            "host and port in [targets.m] of /etc/t.toml"
        );
        assert_eq!(s.where_set(&["user"]), "PALIADIN_REMOTE_USER");
        assert_eq!(s.where_set(&["probe.timeout"]), "targets.m.probe.timeout");
        assert_eq!(s.assignment("user", "\"m\""), "PALIADIN_REMOTE_USER=m");
        assert_eq!(
            s.assignment("channels_per_connection", "3"),
            "channels_per_connection = 3 in [targets.m] of /etc/t.toml"
        );
        let env_only =
            BTreeMap::from([("host".to_string(), "TETHER_TARGETS__M__HOST".to_string())]);
        let s = subject_with(&env_only, &t);
        assert_eq!(
            s.assignment("probe.timeout", "\"2s\""),
            "TETHER_TARGETS__M__PROBE__TIMEOUT=2s"
        );
        assert!(
            s.sources()
                .contains("environment (TETHER_TARGETS__M__HOST)")
        );
    }
}

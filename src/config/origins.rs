//! Where each target key came from: the config file, a `TETHER_*` variable or a legacy
//! `PALIADIN_*` variable, so that `tether doctor` can say which sources set a target and
//! where to change a key.

use std::collections::BTreeMap;

use figment::value::Value;
use figment::{Figment, Source};

/// Per target, per key below it (`host`, `probe.interval`…), the source that set the key:
/// a file path or a variable name. Keys left at their defaults are absent.
pub type Origins = BTreeMap<String, BTreeMap<String, String>>;

/// The origins of every target key the file and the environment set.
pub(super) fn from_figment(figment: &Figment) -> Origins {
    let mut origins = Origins::new();
    let Some(targets) = figment
        .find_value("targets")
        .ok()
        .and_then(Value::into_dict)
    else {
        return origins;
    };
    for (name, value) in targets {
        let mut keys = Vec::new();
        leaf_keys(&value, "", &mut keys);
        for key in keys {
            let path = format!("targets.{name}.{key}");
            let source = match figment.find_metadata(&path).map(|m| &m.source) {
                Some(Some(Source::File(file))) => file.display().to_string(),
                Some(_) => format!("TETHER_{}", path.replace('.', "__").to_ascii_uppercase()),
                None => continue,
            };
            origins.entry(name.clone()).or_default().insert(key, source);
        }
    }
    origins
}

/// Records the keys the legacy variables set (they win over the other sources).
pub(super) fn add_legacy(origins: &mut Origins, target: &str, set: Vec<(&str, &str)>) {
    for (key, variable) in set {
        origins
            .entry(target.to_string())
            .or_default()
            .insert(key.to_string(), variable.to_string());
    }
}

fn leaf_keys(value: &Value, prefix: &str, out: &mut Vec<String>) {
    match value {
        Value::Dict(_, dict) => {
            for (key, inner) in dict {
                let path = match prefix {
                    "" => key.clone(),
                    _ => format!("{prefix}.{key}"),
                };
                leaf_keys(inner, &path, out);
            }
        }
        _ => out.push(prefix.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use figment::providers::{Format, Toml};

    #[test]
    fn names_the_file_for_each_key_it_set() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("t.toml");
        std::fs::write(
            &file,
            "[targets.a]\nhost = \"h\"\n[targets.a.probe]\ntimeout = \"1s\"\n",
        )
        .unwrap();
        let origins = from_figment(&Figment::from(Toml::file(&file)));
        let shown = file.display().to_string();
        assert_eq!(origins["a"]["host"], shown);
        assert_eq!(origins["a"]["probe.timeout"], shown);
        let mut with_legacy = origins.clone();
        add_legacy(
            &mut with_legacy,
            "a",
            vec![("host", "PALIADIN_REMOTE_HOST")],
        );
        assert_eq!(with_legacy["a"]["host"], "PALIADIN_REMOTE_HOST");
    }
}

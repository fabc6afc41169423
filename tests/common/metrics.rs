//! Prometheus text exposition, parsed once for every test: samples with a name, a label map
//! and a value, plus the `# TYPE` of each family.
//!
//! ```ignore
//! let m = tether.metrics();
//! assert_eq!(m.value("tether_target_up", &[("target", TARGET)]), 1.0);
//! let attempts = m.sum("tether_connects_total", &[]);
//! ```

use std::collections::BTreeMap;

/// One sample line: `name{label="value",…} value`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// A whole scrape.
#[derive(Debug, Clone, Default)]
pub struct Exposition {
    /// Family name -> "counter", "gauge", "histogram", …
    pub types: BTreeMap<String, String>,
    pub samples: Vec<Sample>,
}

impl Exposition {
    /// Parses the text format; panics on a line it cannot read (tests want to know).
    pub fn parse(text: &str) -> Exposition {
        let mut out = Exposition::default();
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').expect("a TYPE line names a type");
                out.types.insert(name.to_string(), kind.to_string());
            } else if !line.starts_with('#') {
                out.samples.push(sample(line));
            }
        }
        out
    }

    /// Samples named `name` whose labels include every pair of `with`.
    pub fn find(&self, name: &str, with: &[(&str, &str)]) -> Vec<&Sample> {
        self.samples
            .iter()
            .filter(|s| s.name == name && has_labels(s, with))
            .collect()
    }

    /// The value of the one sample named `name` with these labels; panics unless exactly one.
    pub fn value(&self, name: &str, with: &[(&str, &str)]) -> f64 {
        let found = self.find(name, with);
        assert_eq!(found.len(), 1, "{name} {with:?}: {found:?}");
        found[0].value
    }

    /// The sum over every sample named `name` with these labels (0 when there is none).
    pub fn sum(&self, name: &str, with: &[(&str, &str)]) -> f64 {
        self.find(name, with).iter().map(|s| s.value).sum()
    }

    /// The value of the sample printed as `selector` (`name{a="x",b="y"}`, labels exactly
    /// these, in any order); `None` when it is not there.
    pub fn get(&self, selector: &str) -> Option<f64> {
        let want = series(selector);
        self.samples
            .iter()
            .find(|s| s.name == want.0 && s.labels == want.1)
            .map(|s| s.value)
    }
}

fn has_labels(sample: &Sample, with: &[(&str, &str)]) -> bool {
    with.iter()
        .all(|(k, v)| sample.labels.get(*k).map(String::as_str) == Some(*v))
}

/// `name{labels} value` (a timestamp after the value is not used by tether).
fn sample(line: &str) -> Sample {
    let (series_text, value) = line
        .rsplit_once(' ')
        .unwrap_or_else(|| panic!("no value in {line:?}"));
    let value = value
        .parse()
        .unwrap_or_else(|_| panic!("bad value in {line:?}"));
    let (name, labels) = series(series_text);
    Sample {
        name,
        labels,
        value,
    }
}

/// `name` or `name{a="x",b="y"}`. Label values are tether's own (config names, codes,
/// numbers), so they hold no escapes; one that does fails the test.
fn series(text: &str) -> (String, BTreeMap<String, String>) {
    let Some((name, rest)) = text.split_once('{') else {
        return (text.to_string(), BTreeMap::new());
    };
    let mut rest = rest
        .strip_suffix('}')
        .unwrap_or_else(|| panic!("unclosed labels in {text:?}"));
    let mut labels = BTreeMap::new();
    while !rest.is_empty() {
        let (key, after) = rest
            .split_once("=\"")
            .unwrap_or_else(|| panic!("bad label in {text:?}"));
        let end = after
            .find('"')
            .unwrap_or_else(|| panic!("unclosed label value in {text:?}"));
        assert!(
            !after[..end].contains('\\'),
            "escaped label value in {text:?}"
        );
        labels.insert(key.to_string(), after[..end].to_string());
        rest = after[end + 1..].trim_start_matches(',');
    }
    (name.to_string(), labels)
}

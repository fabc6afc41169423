//! A verb's `exec` template: the argv the shim runs, never through a shell. `{1}`…`{9}` are
//! the caller's arguments (an element whose argument was not given is dropped), `{args}` is
//! all of them, and a leading `~` or `$HOME` expands in literal elements (docs/shim.md).

use std::path::PathBuf;

use super::home::expand_home;

/// A parsed `exec` array.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    program: PathBuf,
    rest: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    /// 1-based.
    Arg(usize),
    All,
}

impl Template {
    /// Checks the array: a program given as an absolute path, placeholders only as whole
    /// elements, no stray braces.
    pub fn parse(exec: &[String]) -> Result<Template, String> {
        let (first, rest) = exec
            .split_first()
            .ok_or("needs at least the program to run")?;
        if first.contains('{') {
            return Err("the program (exec[0]) cannot be a placeholder".into());
        }
        let program = expand_home(first)?;
        let rest = rest
            .iter()
            .map(|e| part(e))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Template { program, rest })
    }

    /// The program to run (exec[0]).
    pub fn program(&self) -> &PathBuf {
        &self.program
    }

    /// The highest `{n}` used, if any.
    pub fn highest_placeholder(&self) -> Option<usize> {
        self.rest
            .iter()
            .filter_map(|p| match p {
                Part::Arg(n) => Some(*n),
                _ => None,
            })
            .max()
    }

    /// The arguments after the program for one call.
    pub fn args(&self, given: &[String]) -> Vec<String> {
        let mut out = Vec::with_capacity(self.rest.len() + given.len());
        for part in &self.rest {
            match part {
                Part::Literal(s) => out.push(s.clone()),
                Part::Arg(n) => out.extend(given.get(n - 1).cloned()),
                Part::All => out.extend(given.iter().cloned()),
            }
        }
        out
    }
}

fn part(element: &str) -> Result<Part, String> {
    if element == "{args}" {
        return Ok(Part::All);
    }
    if let Some(inner) = element.strip_prefix('{').and_then(|e| e.strip_suffix('}'))
        && let [d @ b'1'..=b'9'] = inner.as_bytes()
    {
        return Ok(Part::Arg(usize::from(d - b'0')));
    }
    if element.contains(['{', '}']) {
        return Err(format!(
            "{element:?}: a placeholder is a whole element, one of {{1}}…{{9}} or {{args}}"
        ));
    }
    if element.starts_with('~') || element.starts_with("$HOME") {
        return expand_home(element).map(|p| Part::Literal(p.to_string_lossy().into_owned()));
    }
    Ok(Part::Literal(element.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(exec: &[&str]) -> Result<Template, String> {
        Template::parse(&exec.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn placeholders_expand_and_missing_ones_drop() {
        let t = template(&["/bin/p", "health", "{1}", "--", "{2}"]).unwrap();
        assert_eq!(
            t.args(&strings(&["s1", "x"])),
            strings(&["health", "s1", "--", "x"])
        );
        assert_eq!(t.args(&strings(&["s1"])), strings(&["health", "s1", "--"]));
        assert_eq!(t.args(&[]), strings(&["health", "--"]));
        assert_eq!(t.highest_placeholder(), Some(2));
        let all = template(&["/bin/p", "x", "{args}"]).unwrap();
        assert_eq!(all.args(&strings(&["a", "b"])), strings(&["x", "a", "b"]));
        assert_eq!(all.highest_placeholder(), None);
    }

    #[test]
    fn bad_templates_are_refused() {
        for bad in [
            &[][..],
            &["relative/prog"],
            &["{1}"],
            &["/bin/p", "{10}"],
            &["/bin/p", "{0}"],
            &["/bin/p", "--x={1}"],
            &["/bin/p", "{arg}"],
        ] {
            assert!(template(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn home_expands_in_the_program_and_literals() {
        let home = std::env::var("HOME").unwrap();
        let t = template(&["~/bin/p", "$HOME/conf", "{1}"]).unwrap();
        assert_eq!(t.program(), &PathBuf::from(format!("{home}/bin/p")));
        assert_eq!(
            t.args(&strings(&["a"])),
            vec![format!("{home}/conf"), "a".into()]
        );
    }
}

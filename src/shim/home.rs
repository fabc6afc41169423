//! `~` and `$HOME` in the paths shim.toml names (the journal, the audit log, a verb's
//! program): expanded once, and the result must be absolute, since sshd's working directory
//! and PATH are not the user's (docs/shim.md, "shim.toml").

use std::path::PathBuf;

/// Expands a leading `~` or `$HOME`; the result must be absolute.
pub fn expand_home(value: &str) -> Result<PathBuf, String> {
    let rest = ["~", "$HOME"]
        .iter()
        .find_map(|prefix| match value.strip_prefix(prefix) {
            Some(rest) if rest.is_empty() || rest.starts_with('/') => Some(rest),
            _ => None,
        });
    let path = match rest {
        Some(rest) => {
            let home = std::env::var("HOME")
                .ok()
                .filter(|h| !h.is_empty())
                .ok_or_else(|| format!("{value:?} needs $HOME, which is not set"))?;
            PathBuf::from(format!("{home}{rest}"))
        }
        None => PathBuf::from(value),
    };
    if path.is_absolute() {
        Ok(path)
    } else {
        Err(format!(
            "{value:?} is not an absolute path (sshd's working directory and PATH are not yours)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn home_expands_in_paths() {
        let home = std::env::var("HOME").unwrap();
        assert_eq!(
            expand_home("~/.local/x").unwrap(),
            PathBuf::from(format!("{home}/.local/x"))
        );
        assert_eq!(
            expand_home("$HOME/x").unwrap(),
            PathBuf::from(format!("{home}/x"))
        );
        assert_eq!(expand_home("/abs").unwrap(), PathBuf::from("/abs"));
        assert!(expand_home("~user/x").is_err());
    }
}

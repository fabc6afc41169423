//! Ownership checks in the manner of sshd's StrictModes: whoever can write `shim.toml`, the
//! journal root or a verb's program decides what tether's key runs on this laptop, so each must
//! belong to this user (or root) and be writable by nobody else. `--check` and every call
//! refuse otherwise, naming the path and the fix.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::config::ShimConfig;

/// Every problem with the config at `path`, the journal root and the verbs' programs.
pub fn problems(path: &Path, config: &ShimConfig) -> Vec<String> {
    let programs = config
        .verbs
        .iter()
        .filter_map(|(name, verb)| Some((format!("verbs.{name}.exec program"), verb.program()?)));
    [
        ("the config".to_string(), path),
        ("the journal root".to_string(), config.journal_dir.as_path()),
    ]
    .into_iter()
    .chain(programs.map(|(what, p)| (what, p.as_path())))
    .filter_map(|(what, p)| problem(&what, p))
    .collect()
}

/// The problem with `path` (a `what`), if any. A path that does not exist is not checked here
/// (the journal root is made on first use, private).
pub fn problem(what: &str, path: &Path) -> Option<String> {
    let meta = std::fs::metadata(path).ok()?;
    let me = nix::unistd::geteuid().as_raw();
    if meta.uid() != me && meta.uid() != 0 {
        return Some(format!(
            "{what} {} belongs to uid {}, not to this user ({me}) or root: whoever owns it \
             decides what this key runs; fix: chown {me} {}",
            path.display(),
            meta.uid(),
            path.display()
        ));
    }
    if meta.mode() & 0o022 != 0 {
        return Some(format!(
            "{what} {} is writable by group or others (mode {:04o}): anyone who can write it \
             decides what this key runs; fix: chmod go-w {}",
            path.display(),
            meta.mode() & 0o7777,
            path.display()
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn group_or_world_writable_is_a_problem_naming_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("shim.toml");
        std::fs::write(&file, "").unwrap();
        for (mode, bad) in [(0o600, false), (0o644, false), (0o664, true), (0o646, true)] {
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).unwrap();
            let got = problem("the config", &file);
            assert_eq!(got.is_some(), bad, "{mode:o}: {got:?}");
            if let Some(why) = got {
                assert!(
                    why.contains(&format!("chmod go-w {}", file.display())),
                    "{why}"
                );
            }
        }
        assert_eq!(problem("x", &dir.path().join("missing")), None);
    }
}

//! The demo's laptop side, in a temporary directory: a `shim.toml` for the real `tether shim`
//! (journal and audit log beside it) whose verbs run this binary's hidden `demo-assistant`,
//! configured the way docs/shim.md suggests for paliadin: run-turn keyed by its uuid and
//! locked by its session, reset locked by its session, health plain.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::serve::StartError;

use super::server::ForcedCommand;

/// The demo's shim files.
pub struct Laptop {
    pub dir: PathBuf,
    pub config: PathBuf,
    pub audit_log: PathBuf,
    exe: PathBuf,
}

impl Laptop {
    /// Writes the shim's config into `dir` (a fresh private directory).
    pub fn create(dir: PathBuf) -> Result<Laptop, StartError> {
        let exe = std::env::current_exe()
            .map_err(|e| StartError(format!("cannot find this program's path: {e}")))?;
        let laptop = Laptop {
            config: dir.join("shim.toml"),
            audit_log: dir.join("audit.jsonl"),
            dir,
            exe,
        };
        // 0600 whatever the umask: the shim refuses a config that others may write.
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&laptop.config)
            .and_then(|mut file| file.write_all(laptop.shim_toml().as_bytes()))
            .map_err(|e| StartError(format!("cannot write {}: {e}", laptop.config.display())))?;
        Ok(laptop)
    }

    /// What the demo's SSH server runs for every exec request: `tether shim --config …`.
    pub fn forced_command(&self) -> ForcedCommand {
        ForcedCommand {
            program: self.exe.clone(),
            args: vec!["shim".into(), "--config".into(), self.config.clone().into()],
        }
    }

    /// Removes the directory with the journal and audit log.
    pub fn remove(&self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }

    fn shim_toml(&self) -> String {
        let quote = |p: &Path| toml::Value::from(p.to_string_lossy().into_owned()).to_string();
        let exe = quote(&self.exe);
        let verb = |name: &str, args: &str| {
            format!(r#"exec = [{exe}, "demo-assistant", "{name}", {args}]"#)
        };
        format!(
            "# The demo's shim config (docs/shim.md).\n\
             journal_dir = {journal}\n\
             audit_log = {audit}\n\
             retention = \"1h\"\n\
             \n\
             [verbs.run-turn]\n\
             {turn}\n\
             args = 3\n\
             key_arg = 2\n\
             lock_arg = 1\n\
             timeout = \"60s\"\n\
             \n\
             [verbs.reset]\n\
             {reset}\n\
             args = 1\n\
             lock_arg = 1\n\
             \n\
             [verbs.health]\n\
             {health}\n\
             max_args = 1\n",
            journal = quote(&self.dir.join("journal")),
            audit = quote(&self.audit_log),
            turn = verb("run-turn", r#""{1}", "{2}", "{3}""#),
            reset = verb("reset", r#""{1}""#),
            health = verb("health", r#""{1}""#),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shim::config;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_demo_shim_config_is_valid() {
        let dir = tempfile::tempdir().unwrap();
        let laptop = Laptop::create(dir.path().to_path_buf()).unwrap();
        let config = config::load(&laptop.config).unwrap();
        let mode = std::fs::metadata(&laptop.config)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "private whatever the umask");
        let turn = &config.verbs["run-turn"];
        assert_eq!((turn.key_arg, turn.lock_arg), (Some(2), Some(1)));
        assert_eq!(config.verbs["reset"].lock_arg, Some(1));
        assert_eq!(
            config.audit_log.as_deref(),
            Some(laptop.audit_log.as_path())
        );
    }
}

//! A laptop for in-band data (docs/shim.md, "In-band data"): the real `tether shim` with
//! verbs whose program records everything it got (stdin, environment, its own /proc cmdline
//! and environ, the credentials directory and files), and a search of every place on the
//! laptop a secret could be left in.

use std::fs;
use std::path::{Path, PathBuf};

use super::shim_fixture::{Laptop, PATIENCE};
use super::wait_until;

/// `inband.sh DIR NAME [hang|hold]`: records what the program got in DIR/seen/NAME (stdin,
/// environment, its own /proc cmdline and environ, the credentials directory, each file's
/// mode and content), then hangs, or holds while DIR/hold/NAME exists.
pub const PROGRAM: &str = r#"#!/bin/sh
set -u
dir=$1; name=$2; mode=${3:-}
out=$dir/seen/$name
mkdir -p "$out"
echo start >> "$out/starts"
cat > "$out/stdin"
env | sort > "$out/env"
cat /proc/$$/cmdline > "$out/cmdline"
cat /proc/$$/environ > "$out/environ"
if [ -n "${CREDENTIALS_DIRECTORY:-}" ]; then
  printf '%s' "$CREDENTIALS_DIRECTORY" > "$out/dir"
  stat -c %a "$CREDENTIALS_DIRECTORY" > "$out/dir_mode"
  for f in "$CREDENTIALS_DIRECTORY"/*; do
    b=$(basename "$f")
    stat -c %a "$f" > "$out/mode.$b"
    cat "$f" > "$out/value.$b"
  done
fi
touch "$out/ready"
case $mode in
  hang) sleep 600 ;;
  hold) while [ -e "$dir/hold/$name" ] && [ -d "$dir" ]; do sleep 0.01; done ;;
esac
echo "done $name"
"#;

pub const VERBS: &str = r#"
[verbs.creds]
exec = ["{dir}/inband.sh", "{dir}", "{1}"]
args = 1
stdin = true
credentials = ["TOKEN", "PALIAD_JWT"]

[verbs.creds-hold]
exec = ["{dir}/inband.sh", "{dir}", "{1}", "hold"]
args = 1
credentials = ["TOKEN"]

[verbs.creds-hang]
exec = ["{dir}/inband.sh", "{dir}", "{1}", "hang"]
args = 1
timeout = "1s"
credentials = ["TOKEN"]

[verbs.creds-keyed]
exec = ["{dir}/inband.sh", "{dir}", "{1}", "hold"]
args = 1
key_arg = 1
stdin = true
credentials = ["TOKEN"]
"#;

/// A laptop with [`VERBS`] and their program; `sshd_lines` go to its sshd config.
pub fn laptop_with(sshd_lines: &[&str]) -> Laptop {
    let laptop = Laptop::with_sshd_lines("", VERBS, sshd_lines);
    let program = laptop.dir().join("inband.sh");
    fs::write(&program, PROGRAM).unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&program, fs::Permissions::from_mode(0o755)).unwrap();
    laptop
}

/// What the program recorded about its run `name`.
pub fn seen(laptop: &Laptop, name: &str, what: &str) -> String {
    fs::read_to_string(laptop.dir().join("seen").join(name).join(what))
        .unwrap_or_else(|e| panic!("seen/{name}/{what}: {e}"))
}

/// Waits until the program's run `name` has recorded everything.
pub fn wait_ready(laptop: &Laptop, name: &str) {
    let ready = laptop.dir().join("seen").join(name).join("ready");
    assert!(
        wait_until(PATIENCE, || ready.exists()),
        "{name} never started"
    );
}

/// A fresh, random 64-character token.
pub fn token() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

/// Where `needle` is found: any file under the laptop's directory (journal, audit log, what
/// the program recorded), `--journal` and `--journal KEY` for these `keys`, and sshd's log.
pub fn places_holding(laptop: &Laptop, needle: &str, keys: &[&str]) -> Vec<String> {
    let mut found = Vec::new();
    let mut files = Vec::new();
    walk(laptop.dir(), &mut files);
    for file in files {
        if fs::read(&file).is_ok_and(|b| contains(&b, needle)) {
            let shown = file.strip_prefix(laptop.dir()).unwrap_or(&file);
            found.push(shown.display().to_string());
        }
    }
    let mut queries = vec![vec!["--journal".to_string()]];
    queries.extend(
        keys.iter()
            .map(|k| vec!["--journal".to_string(), k.to_string()]),
    );
    for query in queries {
        let args: Vec<&str> = query.iter().map(String::as_str).collect();
        let out = laptop.operator(&args);
        if contains(&out.stdout, needle) || contains(&out.stderr, needle) {
            found.push(query.join(" "));
        }
    }
    if laptop.sshd.log().contains(needle) {
        found.push("sshd's log".into());
    }
    found
}

fn walk(dir: &Path, files: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        match entry.file_type() {
            Ok(t) if t.is_dir() => walk(&path, files),
            Ok(t) if t.is_file() => files.push(path),
            _ => {}
        }
    }
}

pub fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

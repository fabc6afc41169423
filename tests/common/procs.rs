//! Process-tree signalling through /proc, for freezing and killing sshd with its sessions.
//!
//! sshd's session processes call setsid(), so process groups do not cover them; parent links
//! do, as long as we collect the tree before anything in it dies.

use std::collections::HashMap;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// All live descendants of `root` (not `root` itself), parents before children.
pub fn descendants(root: i32) -> Vec<i32> {
    let mut children: HashMap<i32, Vec<i32>> = HashMap::new();
    for entry in std::fs::read_dir("/proc").expect("read /proc").flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if let Some(ppid) = parent_of(pid) {
            children.entry(ppid).or_default().push(pid);
        }
    }
    let mut out = Vec::new();
    let mut stack = vec![root];
    while let Some(pid) = stack.pop() {
        for &child in children.get(&pid).into_iter().flatten() {
            out.push(child);
            stack.push(child);
        }
    }
    out
}

/// The parent pid from /proc/PID/stat (the field after the state, which follows the last ')').
pub fn parent_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// Sends `sig` to one process, ignoring processes that are already gone.
pub fn signal(pid: i32, sig: Signal) {
    let _ = kill(Pid::from_raw(pid), sig);
}

/// SIGSTOPs `root` and every descendant, repeating until no new process appears (so a fork in
/// flight cannot escape). Returns the frozen descendants.
pub fn freeze_tree(root: i32) -> Vec<i32> {
    signal(root, Signal::SIGSTOP);
    let mut frozen: Vec<i32> = Vec::new();
    loop {
        let found = descendants(root);
        let new: Vec<i32> = found
            .iter()
            .copied()
            .filter(|p| !frozen.contains(p))
            .collect();
        if new.is_empty() {
            return frozen;
        }
        for &pid in &new {
            signal(pid, Signal::SIGSTOP);
        }
        frozen.extend(new);
    }
}

/// SIGCONTs `root` and every descendant.
pub fn thaw_tree(root: i32) {
    for pid in descendants(root) {
        signal(pid, Signal::SIGCONT);
    }
    signal(root, Signal::SIGCONT);
}

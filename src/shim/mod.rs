//! `tether shim`: the laptop half (docs/shim.md). sshd runs it as the forced command; it reads
//! `SSH_ORIGINAL_COMMAND`, runs only what its own config allows, never through a shell, and
//! runs a call with a `key_arg` exactly once however often it is sent.
//!
//! It starts on every remote call, so it is plain std: no async runtime, no threads but the
//! few a call needs. Asked for `@session`, it stays and answers many requests sent as frames
//! on one channel, each on its own threads, each checked by the same code as an exec call.
//!
//! # Layout
//! - [`config`]: `shim.toml`, checked whole; [`template`]: a verb's argv; [`home`]: `~` in
//!   the paths they name.
//! - [`strict`]: StrictModes-like ownership checks of the config, journal and programs.
//! - [`request`]: `SSH_ORIGINAL_COMMAND`, decoded by [`crate::wire`], checked against the
//!   verb's rules into a request (`@in-band` ones read their frame in [`call`]), `@hello`, or
//!   a refusal.
//! - [`invocation`]: one start by sshd: the config, then one request or a session.
//! - [`call`]: one request, end to end, given its [`io`] (its stdin, stdout, stderr and
//!   in-band data); [`keyed`]: run, attach or replay by key.
//! - [`session`]: `@session`, the resident shim: requests as frames, relayed to [`call`].
//! - [`report`]: how a call ended; [`gate`]: its one audit line, written at the decision;
//!   [`turn`]: its place in its lock's queue, or the refusal.
//! - [`journal`]: entries on disk, crash-safe; [`queue`]: `lock_arg`'s arrival-order queue;
//!   [`files`]: the private, write-then-rename files both keep.
//! - [`running`]: `max_running`, keyed runs under way; [`spool`]: a keyed call's stdin on disk.
//! - [`supervisor`]: the detached process that runs a keyed command and records it.
//! - [`process`]: one command with a timeout and a shell's exit status; [`env`]: its
//!   environment; [`credentials`]: its credential files; [`caller`]: whether the caller is
//!   still there.
//! - [`tail`]: streams an entry's output to the caller; [`audit`]: the JSONL audit log.
//! - [`inspect`]: `--check` and `--journal` for the operator.

pub mod audit;
pub mod call;
pub mod caller;
pub mod config;
pub mod credentials;
pub mod env;
pub mod files;
pub mod gate;
pub mod home;
pub mod inspect;
pub mod invocation;
pub mod io;
pub mod journal;
pub mod keyed;
pub mod process;
pub mod queue;
pub mod report;
pub mod request;
pub mod running;
pub mod session;
pub mod spool;
pub mod strict;
pub mod supervisor;
pub mod tail;
pub mod template;
pub mod turn;

use std::path::PathBuf;

/// The laptop half, run by sshd as the forced command: reads SSH_ORIGINAL_COMMAND, runs only
/// the verbs shim.toml allows, and a keyed call exactly once (docs/shim.md).
#[derive(clap::Parser, Debug)]
#[command(name = "tether shim", bin_name = "tether shim")]
pub struct ShimArgs {
    /// shim.toml (else $XDG_CONFIG_HOME/tether/shim.toml, else ~/.config/tether/shim.toml).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Validate the config and every verb's program; exit 0, or 78 listing every problem.
    #[arg(long, conflicts_with = "journal")]
    pub check: bool,
    /// List the journal's entries, or show the ones for KEY (read-only).
    #[arg(long, value_name = "KEY", num_args = 0..=1)]
    pub journal: Option<Option<String>>,
    /// Internal: supervise the journal entry in this directory.
    #[arg(long, hide = true)]
    pub supervise: Option<PathBuf>,
    /// Internal: the supervised call's place in its lock queue.
    #[arg(long, hide = true, requires = "supervise")]
    pub ticket: Option<PathBuf>,
    /// Internal: start the supervisor detached and exit.
    #[arg(long, hide = true, requires = "supervise")]
    pub detach: bool,
}

/// Runs `tether shim`; the process's exit status.
pub fn main(args: ShimArgs) -> u8 {
    if let Some(dir) = &args.supervise {
        let ticket = args.ticket.as_deref();
        return if args.detach {
            supervisor::detach(dir, ticket)
        } else {
            supervisor::supervise(dir, ticket)
        };
    }
    let path = config::path(args.config.as_deref());
    if args.check {
        return inspect::check(&path);
    }
    if let Some(key) = &args.journal {
        return inspect::journal(&path, key.as_deref());
    }
    invocation::run(&path)
}

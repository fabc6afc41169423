//! The client commands: `tether call` (a drop-in for `ssh host verb args`),
//! `tether check` (exit codes for scripts and healthchecks), and `tether calls` /
//! `tether cancel` (the calls in flight), over the Unix socket.

pub mod call;
pub mod calls;
pub mod check;
pub mod client;

//! The client commands: `tether call` (a drop-in for `ssh host verb args`) and
//! `tether check` (exit codes for scripts and healthchecks), over the Unix socket.

pub mod call;
pub mod check;
pub mod client;

//! Everything SSH: keys, pinned host keys, connections, the slot pool and command execution.

pub mod banner;
pub mod conn;
pub mod connections;
pub mod exec;
pub mod keys;
pub mod known_hosts;
pub mod output;
pub mod pool;

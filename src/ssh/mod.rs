//! Everything SSH: keys, pinned host keys, connections, the slot pool and command execution.

pub mod banner;
pub mod connection;
pub mod connection_set;
pub mod exec;
pub mod keys;
pub mod known_hosts;
pub mod output;
pub mod pool;

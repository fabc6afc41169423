//! Everything SSH: keys, pinned host keys, connections, the slot pool, command execution, and
//! whether a command is still wanted ([`interest`]).

pub mod banner;
pub mod connection;
pub mod connection_set;
pub mod credentials;
pub mod exec;
pub mod interest;
pub mod keys;
pub mod known_hosts;
pub mod output;
pub mod pool;

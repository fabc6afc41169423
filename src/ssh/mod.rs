//! Everything SSH: keys, pinned host keys, connections, the slot pool, warm channels ([`warm`]), and
//! running a request on a channel ([`exec`]) with in-band data when the remote takes it ([`in_band`]), which
//! [`transport`] offers to targets as their transport.

pub mod banner;
pub mod connection;
pub mod connection_set;
pub mod credentials;
pub mod exec;
pub mod in_band;
pub mod keys;
pub mod known_hosts;
pub mod pool;
pub mod session;
pub mod transport;
pub mod warm;

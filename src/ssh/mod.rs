//! Everything SSH: keys, pinned host keys, connections, the slot pool, warm channels ([`warm`]),
//! running a request on a channel ([`exec`]) with in-band data when the remote takes it
//! ([`in_band`]) or on the connection's resident shim session ([`session`]), which
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

/// Whether tether asks a connection's forced command for something only a current `tether
/// shim` has (`targets.NAME.in_band`, `targets.NAME.shim_session`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Ask {
    /// Ask once per connection, and use it when the answer is yes.
    #[default]
    Auto,
    /// Never ask: do without.
    Off,
}

//! What a connection logs in with: our private key and the host keys we trust. Parsed from
//! the config (see [`crate::config::validate`]); never printed.

use std::sync::Arc;

use russh::keys::{PrivateKey, PublicKey};

/// What a target needs to log in: our key and the host keys we trust.
pub struct Credentials {
    pub key: Arc<PrivateKey>,
    pub host_keys: Vec<PublicKey>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("key", &"<redacted>")
            .field("host_keys", &self.host_keys.len())
            .finish()
    }
}

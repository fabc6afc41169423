//! A value that never shows itself: Debug, Display and Serialize print `<redacted>`,
//! whatever it holds.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A secret value, text by default (a private key). Read it with [`Secret::expose`].
#[derive(Clone, Default, Deserialize)]
#[serde(transparent)]
pub struct Secret<T = String>(T);

impl Secret {
    /// Secret text; [`Secret::from`] wraps any other value.
    pub fn new(text: impl Into<String>) -> Self {
        Secret(text.into())
    }
}

impl<T> From<T> for Secret<T> {
    fn from(value: T) -> Self {
        Secret(value)
    }
}

impl<T> Secret<T> {
    /// The secret itself; keep it out of logs and messages.
    pub fn expose(&self) -> &T {
        &self.0
    }
}

const REDACTED: &str = "<redacted>";

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl<T> fmt::Display for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl<T> Serialize for Secret<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(REDACTED)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_prints_itself() {
        let s = Secret::new("-----BEGIN OPENSSH PRIVATE KEY-----");
        assert_eq!(format!("{s:?} {s}"), "<redacted> <redacted>");
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"<redacted>\"");
        assert!(s.expose().starts_with("-----BEGIN"));
    }

    #[test]
    fn any_value_stays_hidden() {
        let token = Secret::from(b"tskey-123".to_vec());
        assert_eq!(format!("{token:?} {token}"), "<redacted> <redacted>");
        assert_eq!(serde_json::to_string(&token).unwrap(), "\"<redacted>\"");
        assert_eq!(token.expose(), b"tskey-123");
    }
}

//! The client's private key: accepted as OpenSSH or PEM text, or base64 of either, with
//! literal `\n` escapes, CRLF and indentation tolerated. Errors never quote the key.

use std::sync::Arc;

use base64::Engine;
use russh::keys::PrivateKey;

/// Parses a private key as operators paste it into env files and secrets.
pub fn parse_private_key(text: &str) -> Result<Arc<PrivateKey>, String> {
    let pem = normalise(text)?;
    match russh::keys::decode_secret_key(&pem, None) {
        Ok(key) => Ok(Arc::new(key)),
        Err(russh::keys::Error::KeyIsEncrypted) => Err(
            "the private key is protected by a passphrase; tether needs an unencrypted key \
             (remove it with `ssh-keygen -p -N '' -f KEYFILE` on a copy)"
                .into(),
        ),
        Err(e) => Err(format!("the private key could not be read ({e})")),
    }
}

/// Turns any accepted spelling into PEM text with plain newlines.
fn normalise(text: &str) -> Result<String, String> {
    let text = text.trim().replace("\\r\\n", "\n").replace("\\n", "\n");
    let text = if text.contains("-----BEGIN") {
        text
    } else {
        let compact: String = text.split_whitespace().collect();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(compact.as_bytes())
            .map_err(|_| {
                "the private key is neither PEM/OpenSSH text nor base64 of it".to_string()
            })?;
        let decoded = String::from_utf8(bytes)
            .map_err(|_| "the base64 private key does not decode to PEM text".to_string())?;
        if !decoded.contains("-----BEGIN") {
            return Err("the base64 private key does not decode to PEM text".into());
        }
        decoded.replace("\\n", "\n")
    };
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    Ok(lines.join("\n") + "\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fresh_key_text() -> String {
        use russh::keys::ssh_key::{Algorithm, LineEnding};
        let key = PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519).unwrap();
        key.to_openssh(LineEnding::LF).unwrap().to_string()
    }

    #[test]
    fn accepts_every_spelling_operators_use() {
        let text = fresh_key_text();
        let escaped = text.replace('\n', "\\n");
        let crlf = text.replace('\n', "\r\n");
        let indented = text.replace('\n', "\n    ");
        let b64 = base64::engine::general_purpose::STANDARD.encode(&text);
        for text in [&text, &escaped, &crlf, &indented, &b64] {
            parse_private_key(text).unwrap_or_else(|e| panic!("{e}: {text:?}"));
        }
    }

    #[test]
    fn errors_never_quote_the_key() {
        let broken = fresh_key_text().replace("b3Bl", "zzzz");
        let err = parse_private_key(&broken).unwrap_err();
        assert!(!err.contains("AAAA") && !err.contains("zzzz"), "{err}");
        assert!(parse_private_key("not a key").is_err());
    }
}

//! The client's private key: accepted as OpenSSH or PEM text, or base64 of either, with
//! literal `\n` escapes, CRLF and indentation tolerated. Errors never quote the key.

use std::sync::Arc;

use base64::Engine;
use russh::keys::PrivateKey;

/// Above this many bytes a value is not "just a BEGIN line": the hint is left out.
const HEADER_ONLY_MAX: usize = 100;

/// Parses a private key as operators paste it into env files and secrets. An error says which
/// accepted form the value was read as, and whether it looks cut off.
pub fn parse_private_key(text: &str) -> Result<Arc<PrivateKey>, String> {
    let (pem, form) = normalise(text)?;
    if let Some(cut) = cut_off(&pem, text.trim().len()) {
        return Err(format!("the private key ({form}) {cut}"));
    }
    match russh::keys::decode_secret_key(&pem, None) {
        Ok(key) => Ok(Arc::new(key)),
        Err(russh::keys::Error::KeyIsEncrypted) => Err(
            "the private key is protected by a passphrase; tether needs an unencrypted key \
             (remove it with `ssh-keygen -p -N '' -f KEYFILE` on a copy)"
                .into(),
        ),
        Err(e) => Err(format!("the private key could not be read as {form} ({e})")),
    }
}

/// How a value was read.
#[derive(Clone, Copy)]
enum Form {
    Text,
    Base64,
}

impl std::fmt::Display for Form {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Form::Text => "PEM/OpenSSH text",
            Form::Base64 => "base64 of PEM/OpenSSH text",
        })
    }
}

/// Says how a key without its END line was cut. The usual cause: an `.env` loader that
/// keeps only the first line of a multi-line value, leaving a few dozen bytes of BEGIN line.
fn cut_off(pem: &str, raw_len: usize) -> Option<String> {
    if pem.contains("-----END") {
        return None;
    }
    let fix = "store it as one line instead: `base64 -w0 KEYFILE` (tether accepts base64 \
               of the key), or use private_key_file";
    let lines = pem.lines().count();
    Some(if lines == 1 && raw_len <= HEADER_ONLY_MAX {
        format!(
            "is {raw_len} bytes holding only its BEGIN line: the value was cut at its first \
             line break, as .env loaders (docker compose env_file, systemd EnvironmentFile) \
             do with multi-line values; {fix}"
        )
    } else {
        format!("has no END line ({lines} lines): it was cut off; {fix}")
    })
}

/// Turns any accepted spelling into PEM text with plain newlines.
fn normalise(text: &str) -> Result<(String, Form), String> {
    let text = text.trim().replace("\\r\\n", "\n").replace("\\n", "\n");
    let (text, form) = if text.contains("-----BEGIN") {
        (text, Form::Text)
    } else {
        let compact: String = text.split_whitespace().collect();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(compact.as_bytes())
            .map_err(|_| {
                "the private key is neither PEM/OpenSSH text (it has no -----BEGIN line) nor \
                 base64 of it"
                    .to_string()
            })?;
        let decoded = String::from_utf8(bytes)
            .map_err(|_| "the base64 private key does not decode to PEM text".to_string())?;
        if !decoded.contains("-----BEGIN") {
            return Err("the base64 private key does not decode to PEM text".into());
        }
        (decoded.replace("\\n", "\n"), Form::Base64)
    };
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    Ok((lines.join("\n") + "\n", form))
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

    #[test]
    fn a_key_cut_to_its_begin_line_says_so_and_how_to_fix_it() {
        let err = parse_private_key("-----BEGIN OPENSSH PRIVATE KEY-----").unwrap_err();
        assert!(
            err.contains("PEM/OpenSSH text") && err.contains("35 bytes"),
            "{err}"
        );
        assert!(
            err.contains("only its BEGIN line") && err.contains("base64 -w0"),
            "{err}"
        );
        let text = fresh_key_text();
        let half: String = text.lines().take(3).collect::<Vec<_>>().join("\n");
        let err = parse_private_key(&half).unwrap_err();
        assert!(err.contains("no END line (3 lines)"), "{err}");
        let b64 = base64::engine::general_purpose::STANDARD.encode(&half);
        let err = parse_private_key(&b64).unwrap_err();
        assert!(err.contains("base64 of PEM/OpenSSH text"), "{err}");
    }
}

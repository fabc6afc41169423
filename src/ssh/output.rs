//! A captured output stream: kept up to a byte cap, flagged when cut, and turned into UTF-8
//! without splitting a character at the cut.

/// One stream (stdout or stderr) of a remote command.
#[derive(Debug, Default)]
pub struct Captured {
    bytes: Vec<u8>,
    cap: usize,
    truncated: bool,
}

impl Captured {
    pub fn new(cap: usize) -> Self {
        Captured {
            bytes: Vec::new(),
            cap,
            truncated: false,
        }
    }

    /// Keeps what fits under the cap; anything beyond is counted as cut, not kept.
    pub fn push(&mut self, data: &[u8]) {
        let room = self.cap - self.bytes.len();
        if data.len() > room {
            self.truncated = true;
        }
        self.bytes.extend_from_slice(&data[..data.len().min(room)]);
    }

    pub fn truncated(&self) -> bool {
        self.truncated
    }

    /// The text: invalid bytes replaced, and a character the cap cut in half dropped.
    pub fn text(&self) -> String {
        let mut bytes = &self.bytes[..];
        if self.truncated {
            bytes = &bytes[..bytes.len() - incomplete_tail(bytes)];
        }
        String::from_utf8_lossy(bytes).into_owned()
    }
}

/// How many bytes at the end of `bytes` start a UTF-8 character that is not complete.
fn incomplete_tail(bytes: &[u8]) -> usize {
    for back in 1..=bytes.len().min(3) {
        let b = bytes[bytes.len() - back];
        if b & 0xC0 != 0x80 {
            let needed = match b {
                0xC0..=0xDF => 2,
                0xE0..=0xEF => 3,
                0xF0..=0xF7 => 4,
                _ => 1,
            };
            return if needed > back { back } else { 0 };
        }
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cut_never_splits_a_character() {
        let text = "Grüße aus Köln";
        for cap in 0..text.len() {
            let mut c = Captured::new(cap);
            c.push(text.as_bytes());
            assert!(c.truncated());
            let out = c.text();
            assert!(text.starts_with(&out), "cap {cap}: {out:?}");
            assert!(!out.contains('\u{FFFD}'));
        }
        let mut whole = Captured::new(text.len());
        whole.push(text.as_bytes());
        assert!(!whole.truncated());
        assert_eq!(whole.text(), text);
    }

    #[test]
    fn output_arriving_in_pieces_is_capped_once() {
        let mut c = Captured::new(5);
        for piece in [&b"abc"[..], b"def", b"ghi"] {
            c.push(piece);
        }
        assert_eq!((c.text().as_str(), c.truncated()), ("abcde", true));
    }

    #[test]
    fn invalid_bytes_are_replaced() {
        let mut c = Captured::new(10);
        c.push(&[b'a', 0xFF, b'b']);
        assert_eq!(c.text(), "a\u{FFFD}b");
    }
}

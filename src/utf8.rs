//! Output bytes arrive in pieces that may split a character; this turns them into UTF-8 text
//! piece by piece, never splitting a character and replacing invalid bytes.

use std::borrow::Cow;

/// Decodes a byte stream that arrives in pieces.
#[derive(Debug, Default)]
pub struct Utf8Pieces {
    /// The start of a character whose remaining bytes have not arrived yet (at most 3 bytes).
    carry: Vec<u8>,
}

impl Utf8Pieces {
    /// Appends the text of `bytes` to `out`: invalid bytes become U+FFFD, and a character cut
    /// at the end of the piece is kept back until the next piece completes it.
    pub fn push(&mut self, bytes: &[u8], out: &mut String) {
        let input: Cow<[u8]> = if self.carry.is_empty() {
            Cow::Borrowed(bytes)
        } else {
            let mut joined = std::mem::take(&mut self.carry);
            joined.extend_from_slice(bytes);
            Cow::Owned(joined)
        };
        let mut rest = &input[..];
        loop {
            match std::str::from_utf8(rest) {
                Ok(text) => return out.push_str(text),
                Err(e) => {
                    let (valid, after) = rest.split_at(e.valid_up_to());
                    out.push_str(std::str::from_utf8(valid).expect("checked as valid"));
                    match e.error_len() {
                        Some(bad) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            rest = &after[bad..];
                        }
                        None => {
                            self.carry = after.to_vec();
                            return;
                        }
                    }
                }
            }
        }
    }

    /// Ends the text. A character still incomplete is replaced when the stream really ended
    /// there, and dropped when a cap cut it (the rest of it exists, it was just not kept).
    pub fn finish(&mut self, cut: bool, out: &mut String) {
        if !std::mem::take(&mut self.carry).is_empty() && !cut {
            out.push(char::REPLACEMENT_CHARACTER);
        }
    }
}

/// The whole text of `pieces`, decoded as one stream.
pub fn text_of<'a>(pieces: impl IntoIterator<Item = &'a [u8]>, cut: bool) -> String {
    let mut decoder = Utf8Pieces::default();
    let mut out = String::new();
    for piece in pieces {
        decoder.push(piece, &mut out);
    }
    decoder.finish(cut, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_character_split_across_pieces_comes_out_whole() {
        let text = "Grüße aus Köln 🦀";
        let bytes = text.as_bytes();
        for split in 0..bytes.len() {
            let (a, b) = bytes.split_at(split);
            let mut decoder = Utf8Pieces::default();
            let (mut first, mut second) = (String::new(), String::new());
            decoder.push(a, &mut first);
            decoder.push(b, &mut second);
            decoder.finish(false, &mut second);
            assert!(text.starts_with(&first), "split {split}: {first:?}");
            assert_eq!(first + &second, text, "split {split}");
        }
    }

    #[test]
    fn invalid_bytes_are_replaced_and_a_cut_character_is_dropped() {
        assert_eq!(text_of([&[b'a', 0xFF, b'b'][..]], false), "a\u{FFFD}b");
        let crab = "🦀".as_bytes();
        assert_eq!(text_of([&b"x"[..], &crab[..2]], true), "x");
        assert_eq!(text_of([&b"x"[..], &crab[..2]], false), "x\u{FFFD}");
    }
}

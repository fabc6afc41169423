//! Output held in memory for a buffered call: each stream is kept up to its byte cap, and
//! all calls in flight together stay within one [`Budget`] (`server.max_buffered_bytes`).
//! Pieces are kept as they arrived, never copied into a growing buffer.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use prometheus::IntGauge;

use crate::utf8;

/// The bytes that buffered calls may hold together, shown as `tether_call_buffered_bytes`.
#[derive(Debug)]
pub struct Budget {
    max: usize,
    used: AtomicUsize,
    gauge: IntGauge,
}

impl Budget {
    pub fn new(max: usize, gauge: IntGauge) -> Arc<Budget> {
        Arc::new(Budget {
            max,
            used: AtomicUsize::new(0),
            gauge,
        })
    }

    /// A budget no metric shows (a one-off command's, like doctor's).
    pub fn unmetered(max: usize) -> Arc<Budget> {
        let gauge = IntGauge::new("unmetered_output_bytes", "output held").expect("a valid name");
        Budget::new(max, gauge)
    }

    /// Takes up to `want` bytes of room; returns how many it got.
    fn reserve(&self, want: usize) -> usize {
        let mut got = 0;
        let _ = self
            .used
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |used| {
                got = want.min(self.max.saturating_sub(used));
                Some(used + got)
            });
        self.gauge.add(got as i64);
        got
    }

    fn release(&self, n: usize) {
        self.used.fetch_sub(n, Ordering::SeqCst);
        self.gauge.sub(n as i64);
    }
}

/// One stream (stdout or stderr) of a buffered call.
#[derive(Debug)]
pub struct Captured {
    pieces: Vec<Bytes>,
    len: usize,
    cap: usize,
    truncated: bool,
    budget: Arc<Budget>,
}

impl Captured {
    pub fn new(cap: usize, budget: Arc<Budget>) -> Self {
        Captured {
            pieces: Vec::new(),
            len: 0,
            cap,
            truncated: false,
            budget,
        }
    }

    /// Keeps what fits under the stream's cap and the shared budget. Once anything was cut,
    /// nothing more is kept, so the text never has a hole in it.
    pub fn push(&mut self, data: &[u8]) {
        if self.truncated {
            return;
        }
        let want = data.len().min(self.cap - self.len);
        let got = self.budget.reserve(want);
        if got < data.len() {
            self.truncated = true;
        }
        if got > 0 {
            self.pieces.push(Bytes::copy_from_slice(&data[..got]));
            self.len += got;
        }
    }

    pub fn truncated(&self) -> bool {
        self.truncated
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// The pieces as they arrived, for writing the text out without another copy.
    pub fn pieces(&self) -> impl Iterator<Item = &[u8]> {
        self.pieces.iter().map(|p| &p[..])
    }

    /// Piece `i`, if there are that many.
    pub fn piece(&self, i: usize) -> Option<&[u8]> {
        self.pieces.get(i).map(|p| &p[..])
    }

    /// Up to the first `n` bytes held, copied.
    pub fn head(&self, n: usize) -> Vec<u8> {
        let mut head = Vec::with_capacity(n.min(self.len));
        for piece in self.pieces() {
            let room = n - head.len();
            head.extend_from_slice(&piece[..piece.len().min(room)]);
            if head.len() == n {
                break;
            }
        }
        head
    }

    /// The text: invalid bytes replaced, and a character the cap cut in half dropped.
    pub fn text(&self) -> String {
        utf8::text_of(self.pieces(), self.truncated)
    }
}

impl Drop for Captured {
    fn drop(&mut self) {
        self.budget.release(self.len);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(max: usize) -> Arc<Budget> {
        Budget::unmetered(max)
    }

    #[test]
    fn cut_never_splits_a_character() {
        let text = "Grüße aus Köln";
        for cap in 0..text.len() {
            let mut c = Captured::new(cap, budget(1 << 20));
            c.push(text.as_bytes());
            assert!(c.truncated());
            let out = c.text();
            assert!(text.starts_with(&out), "cap {cap}: {out:?}");
            assert!(!out.contains('\u{FFFD}'));
        }
        let mut whole = Captured::new(text.len(), budget(1 << 20));
        whole.push(text.as_bytes());
        assert!(!whole.truncated());
        assert_eq!(whole.text(), text);
    }

    #[test]
    fn output_arriving_in_pieces_is_capped_once() {
        let mut c = Captured::new(5, budget(1 << 20));
        for piece in [&b"abc"[..], b"def", b"ghi"] {
            c.push(piece);
        }
        assert_eq!((c.text().as_str(), c.truncated()), ("abcde", true));
    }

    #[test]
    fn calls_share_one_budget_and_give_it_back_when_done() {
        let shared = budget(10);
        let mut a = Captured::new(100, shared.clone());
        let mut b = Captured::new(100, shared.clone());
        a.push(b"0123456");
        b.push(b"abcdef");
        assert_eq!((a.text().as_str(), a.truncated()), ("0123456", false));
        assert_eq!((b.text().as_str(), b.truncated()), ("abc", true));
        b.push(b"more");
        assert_eq!(b.text(), "abc", "nothing is kept after a cut");
        assert_eq!(shared.gauge.get(), 10);
        drop(a);
        drop(b);
        assert_eq!(shared.gauge.get(), 0);
        let mut c = Captured::new(100, shared);
        c.push(b"0123456789");
        assert!(!c.truncated());
    }
}

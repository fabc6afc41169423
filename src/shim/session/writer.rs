//! The session's one way out: whole frames written to the channel (fd 1) under a mutex, so
//! frames from many requests' threads never interleave. Once a write fails (tether is gone)
//! every later frame is dropped: the reader sees the channel end and closes the session.

use std::fs::File;
use std::io::Write;
use std::sync::Mutex;

use crate::wire::session::Frame;

/// Writes frames to the channel, one whole frame at a time.
pub struct Writer {
    out: Mutex<Option<File>>,
}

impl Writer {
    pub fn new(out: File) -> Writer {
        Writer {
            out: Mutex::new(Some(out)),
        }
    }

    /// Sends `frame`; a frame that cannot be sent is dropped (the channel is gone).
    pub fn send(&self, frame: &Frame) {
        let mut bytes = Vec::with_capacity(frame.wire_len());
        if frame.encode(&mut bytes).is_err() {
            return;
        }
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(file) = out.as_mut()
            && file.write_all(&bytes).is_err()
        {
            *out = None;
        }
    }

    /// Sends `data` as frames of at most [`crate::wire::session::MAX_DATA`] bytes each, made
    /// by `frame`.
    pub fn send_chunks(&self, data: &[u8], frame: impl Fn(bytes::Bytes) -> Frame) {
        for chunk in data.chunks(crate::wire::session::MAX_DATA) {
            self.send(&frame(bytes::Bytes::copy_from_slice(chunk)));
        }
    }
}

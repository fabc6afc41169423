//! A length-prefixed frame: a 4-byte big-endian length N, then N bytes of payload. The reader
//! checks N against the caller's bound before it allocates anything, and reads exactly 4 + N
//! bytes, never one more, so whatever follows the frame on the same stream is left unread
//! for its owner. A payload may hold secrets, so the buffer read is zeroed on drop.

use std::fmt;
use std::io::{self, Read};

use zeroize::Zeroizing;

/// Bytes of the length prefix.
pub const LEN_BYTES: usize = 4;

/// Why a frame could not be written or read.
#[derive(Debug)]
pub enum FrameError {
    /// The payload is longer than the bound.
    TooLarge { len: u64, max: usize },
    /// The stream ended inside the frame (`got` of `wanted` bytes).
    Truncated { got: usize, wanted: usize },
    /// Reading the stream failed.
    Io(io::Error),
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::TooLarge { len, max } => {
                write!(f, "the frame says {len} bytes; at most {max} are accepted")
            }
            FrameError::Truncated { got, wanted } => write!(
                f,
                "the stream ended {got} bytes into a frame of {wanted} (prefix included)"
            ),
            FrameError::Io(e) => write!(f, "cannot read the frame: {e}"),
        }
    }
}

impl std::error::Error for FrameError {}

/// Appends the frame for `payload` to `out`, reserving its whole size first (so a buffer that
/// holds secrets is never reallocated, leaving copies behind). `payload` is at most `max`.
pub fn write(out: &mut Vec<u8>, payload: &[u8], max: usize) -> Result<(), FrameError> {
    let len = u32::try_from(payload.len())
        .ok()
        .filter(|&n| n as usize <= max)
        .ok_or(FrameError::TooLarge {
            len: payload.len() as u64,
            max,
        })?;
    out.reserve_exact(LEN_BYTES + payload.len());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(payload);
    Ok(())
}

/// Reads one frame of at most `max` payload bytes from `input`: exactly its 4 + N bytes, the
/// size checked before the payload's buffer is allocated.
pub fn read(input: &mut impl Read, max: usize) -> Result<Zeroizing<Vec<u8>>, FrameError> {
    let mut prefix = [0u8; LEN_BYTES];
    let got = fill(input, &mut prefix)?;
    if got < LEN_BYTES {
        return Err(FrameError::Truncated {
            got,
            wanted: LEN_BYTES,
        });
    }
    let len = u32::from_be_bytes(prefix);
    if len as usize > max {
        return Err(FrameError::TooLarge {
            len: u64::from(len),
            max,
        });
    }
    let mut payload = Zeroizing::new(vec![0u8; len as usize]);
    let got = fill(input, &mut payload)?;
    if got < payload.len() {
        return Err(FrameError::Truncated {
            got: LEN_BYTES + got,
            wanted: LEN_BYTES + payload.len(),
        });
    }
    Ok(payload)
}

/// Reads until `buf` is full or the stream ends; how many bytes were read.
fn fill(input: &mut impl Read, buf: &mut [u8]) -> Result<usize, FrameError> {
    let mut got = 0;
    while got < buf.len() {
        match input.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(FrameError::Io(e)),
        }
    }
    Ok(got)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn exactly_the_frame_is_read_and_the_rest_is_left() {
        let mut wire = Vec::new();
        write(&mut wire, b"hello", 16).unwrap();
        wire.extend_from_slice(b"\0\0\0\x01after");
        let mut input = &wire[..];
        assert_eq!(&read(&mut input, 16).unwrap()[..], b"hello");
        assert_eq!(input, b"\0\0\0\x01after");
    }

    #[test]
    fn sizes_are_checked_before_allocation() {
        // 4 GiB - 1 announced: refused at once, nothing allocated or read further.
        let mut input = &b"\xff\xff\xff\xffrest"[..];
        let err = read(&mut input, 1024).unwrap_err();
        assert!(
            matches!(
                err,
                FrameError::TooLarge {
                    len: 4_294_967_295,
                    max: 1024
                }
            ),
            "{err}"
        );
        assert_eq!(input, b"rest");
        assert!(matches!(
            write(&mut Vec::new(), &[0; 17], 16),
            Err(FrameError::TooLarge { len: 17, max: 16 })
        ));
        let cut = read(&mut &b"\0\0\0\x05abc"[..], 16).unwrap_err();
        assert!(
            matches!(cut, FrameError::Truncated { got: 7, wanted: 9 }),
            "{cut}"
        );
        let empty = read(&mut &b"\0\0"[..], 16).unwrap_err();
        assert!(matches!(empty, FrameError::Truncated { got: 2, wanted: 4 }));
    }

    proptest! {
        #[test]
        fn what_is_written_reads_back(payload in proptest::collection::vec(any::<u8>(), 0..512)) {
            let mut wire = Vec::new();
            write(&mut wire, &payload, 512).unwrap();
            prop_assert_eq!(wire.len(), LEN_BYTES + payload.len());
            prop_assert_eq!(&read(&mut &wire[..], 512).unwrap()[..], &payload[..]);
        }

        #[test]
        fn any_bytes_read_as_a_frame_within_the_bound_or_are_refused(
            bytes in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let mut input = &bytes[..];
            if let Ok(payload) = read(&mut input, 32) {
                prop_assert!(payload.len() <= 32);
                prop_assert_eq!(bytes.len(), LEN_BYTES + payload.len() + input.len());
            }
        }
    }
}

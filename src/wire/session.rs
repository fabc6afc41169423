//! The shim session's frames (docs/shim.md, "Session mode"): tether runs `tether shim` once per
//! connection with the command line `@session`, and both ends then speak these frames over the
//! channel instead of one exec per call.
//!
//! Each frame is a [`super::frame`] (4-byte big-endian length, then the payload); the payload
//! is one type byte, then the type's fields, integers big-endian. Both ends send a
//! [`Frame::Hello`] first (tether's, then the shim's answer); every request has an id that
//! tether never reuses within a session: each is higher than the one before, so a frame for a
//! lower id not in flight is for a request that ended (it may cross that request's exit). Output and stdin flow under per-request credit: a
//! sender has at most [`WINDOW`] bytes of one request's data unacknowledged, and the receiver
//! grants more with [`Frame::Credit`] as it passes data on, so one slow reader stalls only its
//! own request. A data frame carries at most [`MAX_DATA`] bytes, far below the SSH window.
//!
//! Decoding never panics and never allocates more than the frame's checked size: any byte
//! string is a valid frame or a [`Refusal`] naming the rule it broke.

use std::fmt;
use std::io::Read;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use zeroize::Zeroizing;

use super::frame::{self, FrameError, LEN_BYTES};
use super::in_band::MAX_IN_BAND_BYTES;
use super::line::MAX_COMMAND_BYTES;

/// The command line that asks `tether shim` for a session.
pub const SESSION: &str = "@session";
/// The session protocol's version, in both hellos.
pub const VERSION: u32 = 1;
/// The hello's feature word for trace context and credentials in the request frame.
pub const FEATURE_IN_BAND: &str = "in-band";
/// The most data one frame carries (stdin, stdout or stderr).
pub const MAX_DATA: usize = 32 << 10;
/// The largest payload either end accepts: an open frame with the longest command line and
/// the largest in-band data.
pub const MAX_PAYLOAD: usize = 16 + MAX_COMMAND_BYTES + MAX_IN_BAND_BYTES;
/// Bytes of one request's data (each direction) a sender may have unacknowledged.
pub const WINDOW: u32 = 256 << 10;
/// How often tether sends a [`Frame::Ping`] on an idle session...
pub const HEARTBEAT: Duration = Duration::from_secs(5);
/// ...and how long the shim waits for any frame before it takes tether to be gone and exits.
pub const SILENCE: Duration = Duration::from_secs(20);
/// The most features a hello may list, and the longest feature word.
const MAX_FEATURES: usize = 16;
const MAX_FEATURE: usize = 32;

/// One frame of the session.
#[derive(Clone, PartialEq, Eq)]
pub enum Frame {
    /// Both ways, first: the protocol version and what the sender takes.
    Hello { version: u32, features: Vec<String> },
    /// tether → shim: are you there? (also the heartbeat).
    Ping(u64),
    /// shim → tether: the answer to the ping with that nonce.
    Pong(u64),
    /// tether → shim: run `line` (a verb and its arguments, as exec would send it). `in_band`
    /// is an in-band frame's payload (trace context, credentials), when the request has one.
    Open {
        id: u32,
        line: String,
        in_band: Option<Zeroizing<Vec<u8>>>,
    },
    /// tether → shim: a piece of the request's stdin.
    Stdin { id: u32, data: Bytes },
    /// tether → shim: the request's stdin is complete.
    StdinEnd { id: u32 },
    /// Both ways: the receiver passed on `bytes` more of the request's data; send that much more.
    Credit { id: u32, bytes: u32 },
    /// tether → shim: the caller is gone; treat the request as a closed channel would be.
    Cancel { id: u32 },
    /// shim → tether: a piece of the request's stdout.
    Stdout { id: u32, data: Bytes },
    /// shim → tether: a piece of the request's stderr.
    Stderr { id: u32, data: Bytes },
    /// shim → tether: the request ended; nothing more comes for its id.
    Exit {
        id: u32,
        status: Option<u32>,
        signal: Option<String>,
    },
}

impl fmt::Debug for Frame {
    /// Names, ids and sizes only: data and in-band payloads may hold secrets.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Frame::Hello { version, features } => write!(f, "Hello(v{version}, {features:?})"),
            Frame::Ping(n) => write!(f, "Ping({n})"),
            Frame::Pong(n) => write!(f, "Pong({n})"),
            Frame::Open { id, line, in_band } => write!(
                f,
                "Open({id}, {} line bytes, {} in-band bytes)",
                line.len(),
                in_band.as_ref().map_or(0, |b| b.len())
            ),
            Frame::Stdin { id, data } => write!(f, "Stdin({id}, {} bytes)", data.len()),
            Frame::StdinEnd { id } => write!(f, "StdinEnd({id})"),
            Frame::Credit { id, bytes } => write!(f, "Credit({id}, {bytes})"),
            Frame::Cancel { id } => write!(f, "Cancel({id})"),
            Frame::Stdout { id, data } => write!(f, "Stdout({id}, {} bytes)", data.len()),
            Frame::Stderr { id, data } => write!(f, "Stderr({id}, {} bytes)", data.len()),
            Frame::Exit { id, status, signal } => write!(f, "Exit({id}, {status:?}, {signal:?})"),
        }
    }
}

/// Why bytes are not a frame: the rule they broke (never their content).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal(pub String);

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refusal {}

/// Why reading a frame from a stream failed.
#[derive(Debug)]
pub enum ReadError {
    /// The stream ended cleanly, between frames.
    Ended,
    /// The stream broke, or ended inside a frame.
    Stream(FrameError),
    /// A whole frame arrived, but it is not a valid one.
    Refused(Refusal),
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::Ended => f.write_str("the session's stream ended"),
            ReadError::Stream(e) => write!(f, "{e}"),
            ReadError::Refused(r) => write!(f, "{r}"),
        }
    }
}

const HELLO: u8 = 0x01;
const PING: u8 = 0x02;
const PONG: u8 = 0x03;
const OPEN: u8 = 0x10;
const STDIN: u8 = 0x11;
const STDIN_END: u8 = 0x12;
const CREDIT: u8 = 0x13;
const CANCEL: u8 = 0x14;
const STDOUT: u8 = 0x20;
const STDERR: u8 = 0x21;
const EXIT: u8 = 0x22;
/// Exit's kinds: a status, or a signal's name.
const EXIT_STATUS: u8 = 0;
const EXIT_SIGNAL: u8 = 1;

impl Frame {
    /// The request the frame belongs to, if it belongs to one.
    pub fn id(&self) -> Option<u32> {
        match self {
            Frame::Hello { .. } | Frame::Ping(_) | Frame::Pong(_) => None,
            Frame::Open { id, .. }
            | Frame::Stdin { id, .. }
            | Frame::StdinEnd { id }
            | Frame::Credit { id, .. }
            | Frame::Cancel { id }
            | Frame::Stdout { id, .. }
            | Frame::Stderr { id, .. }
            | Frame::Exit { id, .. } => Some(*id),
        }
    }

    /// Appends the frame (length prefix included) to `out`. Fails only for a frame no
    /// receiver would take (a field over its limit).
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), Refusal> {
        let mut payload = Zeroizing::new(Vec::with_capacity(self.payload_len()));
        let p = &mut *payload;
        match self {
            Frame::Hello { version, features } => {
                check_features(features)?;
                p.push(HELLO);
                p.extend_from_slice(&version.to_be_bytes());
                p.extend_from_slice(features.join(" ").as_bytes());
            }
            Frame::Ping(n) | Frame::Pong(n) => {
                p.push(if matches!(self, Frame::Ping(_)) {
                    PING
                } else {
                    PONG
                });
                p.extend_from_slice(&n.to_be_bytes());
            }
            Frame::Open { id, line, in_band } => {
                check_line(line.as_bytes())?;
                let in_band = in_band.as_deref().map_or(&[][..], |b| &b[..]);
                check_in_band(in_band)?;
                p.push(OPEN);
                p.extend_from_slice(&id.to_be_bytes());
                p.extend_from_slice(&(line.len() as u32).to_be_bytes());
                p.extend_from_slice(line.as_bytes());
                p.extend_from_slice(in_band);
            }
            Frame::Stdin { id, data } | Frame::Stdout { id, data } | Frame::Stderr { id, data } => {
                check_data(data)?;
                p.push(match self {
                    Frame::Stdin { .. } => STDIN,
                    Frame::Stdout { .. } => STDOUT,
                    _ => STDERR,
                });
                p.extend_from_slice(&id.to_be_bytes());
                p.extend_from_slice(data);
            }
            Frame::StdinEnd { id } | Frame::Cancel { id } => {
                p.push(match self {
                    Frame::StdinEnd { .. } => STDIN_END,
                    _ => CANCEL,
                });
                p.extend_from_slice(&id.to_be_bytes());
            }
            Frame::Credit { id, bytes } => {
                p.push(CREDIT);
                p.extend_from_slice(&id.to_be_bytes());
                p.extend_from_slice(&bytes.to_be_bytes());
            }
            Frame::Exit { id, status, signal } => {
                p.push(EXIT);
                p.extend_from_slice(&id.to_be_bytes());
                match (status, signal) {
                    (_, Some(name)) => {
                        check_signal(name.as_bytes())?;
                        p.push(EXIT_SIGNAL);
                        p.extend_from_slice(name.as_bytes());
                    }
                    (status, None) => {
                        p.push(EXIT_STATUS);
                        p.extend_from_slice(&status.unwrap_or(255).to_be_bytes());
                    }
                }
            }
        }
        frame::write(out, p, MAX_PAYLOAD).map_err(|e| Refusal(e.to_string()))
    }

    /// The frame's whole size on the wire, its length prefix included.
    pub fn wire_len(&self) -> usize {
        LEN_BYTES + self.payload_len()
    }

    fn payload_len(&self) -> usize {
        1 + match self {
            Frame::Hello { features, .. } => 4 + features.join(" ").len(),
            Frame::Ping(_) | Frame::Pong(_) => 8,
            Frame::Open { line, in_band, .. } => {
                8 + line.len() + in_band.as_ref().map_or(0, |b| b.len())
            }
            Frame::Stdin { data, .. } | Frame::Stdout { data, .. } | Frame::Stderr { data, .. } => {
                4 + data.len()
            }
            Frame::StdinEnd { .. } | Frame::Cancel { .. } => 4,
            Frame::Credit { .. } => 8,
            Frame::Exit { signal, .. } => 5 + signal.as_ref().map_or(4, String::len),
        }
    }

    /// Decodes one frame's payload (its length prefix already taken off).
    pub fn decode(payload: &[u8]) -> Result<Frame, Refusal> {
        let (&kind, mut rest) = payload
            .split_first()
            .ok_or_else(|| Refusal("an empty frame".into()))?;
        let frame = match kind {
            HELLO => {
                let version = u32_of(&mut rest, "hello")?;
                let features = features_of(rest)?;
                rest = &[];
                Frame::Hello { version, features }
            }
            PING | PONG => {
                let n = u64_of(&mut rest, "ping")?;
                match kind {
                    PING => Frame::Ping(n),
                    _ => Frame::Pong(n),
                }
            }
            OPEN => {
                let id = u32_of(&mut rest, "open")?;
                let len = u32_of(&mut rest, "open")? as usize;
                if len > rest.len() {
                    return Err(Refusal(format!(
                        "an open frame's line says {len} bytes, the frame has {}",
                        rest.len()
                    )));
                }
                let (line, in_band) = rest.split_at(len);
                check_line(line)?;
                check_in_band(in_band)?;
                let line = std::str::from_utf8(line)
                    .map_err(|_| Refusal("an open frame's line is not UTF-8".into()))?;
                rest = &[];
                Frame::Open {
                    id,
                    line: line.to_string(),
                    in_band: (!in_band.is_empty()).then(|| Zeroizing::new(in_band.to_vec())),
                }
            }
            STDIN | STDOUT | STDERR => {
                let id = u32_of(&mut rest, "data")?;
                check_data(rest)?;
                let data = Bytes::copy_from_slice(rest);
                rest = &[];
                match kind {
                    STDIN => Frame::Stdin { id, data },
                    STDOUT => Frame::Stdout { id, data },
                    _ => Frame::Stderr { id, data },
                }
            }
            STDIN_END => Frame::StdinEnd {
                id: u32_of(&mut rest, "stdin-end")?,
            },
            CANCEL => Frame::Cancel {
                id: u32_of(&mut rest, "cancel")?,
            },
            CREDIT => {
                let id = u32_of(&mut rest, "credit")?;
                let bytes = u32_of(&mut rest, "credit")?;
                Frame::Credit { id, bytes }
            }
            EXIT => {
                let id = u32_of(&mut rest, "exit")?;
                let (&how, tail) = rest
                    .split_first()
                    .ok_or_else(|| Refusal("an exit frame ends before its kind".into()))?;
                rest = tail;
                match how {
                    EXIT_STATUS => Frame::Exit {
                        id,
                        status: Some(u32_of(&mut rest, "exit")?),
                        signal: None,
                    },
                    EXIT_SIGNAL => {
                        check_signal(rest)?;
                        let name = String::from_utf8_lossy(rest).into_owned();
                        rest = &[];
                        Frame::Exit {
                            id,
                            status: None,
                            signal: Some(name),
                        }
                    }
                    other => return Err(Refusal(format!("an exit frame of unknown kind {other}"))),
                }
            }
            other => return Err(Refusal(format!("unknown frame type 0x{other:02x}"))),
        };
        match rest.is_empty() {
            true => Ok(frame),
            false => Err(Refusal(format!(
                "{} bytes after the end of a {frame:?} frame",
                rest.len()
            ))),
        }
    }

    /// Reads exactly one frame from a blocking stream (the shim's stdin).
    pub fn read(input: &mut impl Read) -> Result<Frame, ReadError> {
        match frame::read(input, MAX_PAYLOAD) {
            Ok(payload) => Frame::decode(&payload).map_err(ReadError::Refused),
            Err(FrameError::Truncated { got: 0, .. }) => Err(ReadError::Ended),
            Err(FrameError::TooLarge { len, max }) => Err(ReadError::Refused(Refusal(format!(
                "a frame of {len} bytes, over the {max} accepted"
            )))),
            Err(e) => Err(ReadError::Stream(e)),
        }
    }

    /// Takes one whole frame off the front of `buf` (bytes as they arrived from a channel):
    /// `None` while the frame is not all there yet. A length over the bound is refused at
    /// once, before anything waits for (or holds) its bytes.
    pub fn take(buf: &mut BytesMut) -> Result<Option<Frame>, Refusal> {
        let Some(prefix) = buf.get(..LEN_BYTES) else {
            return Ok(None);
        };
        let len = u32::from_be_bytes(prefix.try_into().expect("four bytes")) as usize;
        if len > MAX_PAYLOAD {
            return Err(Refusal(format!(
                "a frame of {len} bytes, over the {MAX_PAYLOAD} accepted"
            )));
        }
        if buf.len() < LEN_BYTES + len {
            buf.reserve(LEN_BYTES + len - buf.len());
            return Ok(None);
        }
        buf.advance(LEN_BYTES);
        let payload = buf.split_to(len);
        Frame::decode(&payload).map(Some)
    }
}

fn u32_of(rest: &mut &[u8], what: &str) -> Result<u32, Refusal> {
    let (head, tail) = rest
        .split_first_chunk::<4>()
        .ok_or_else(|| Refusal(format!("a {what} frame ends inside a field")))?;
    *rest = tail;
    Ok(u32::from_be_bytes(*head))
}

fn u64_of(rest: &mut &[u8], what: &str) -> Result<u64, Refusal> {
    let (head, tail) = rest
        .split_first_chunk::<8>()
        .ok_or_else(|| Refusal(format!("a {what} frame ends inside a field")))?;
    *rest = tail;
    Ok(u64::from_be_bytes(*head))
}

fn check_line(line: &[u8]) -> Result<(), Refusal> {
    check_len("an open frame's line", line.len(), 1, MAX_COMMAND_BYTES)
}

fn check_in_band(in_band: &[u8]) -> Result<(), Refusal> {
    check_len(
        "an open frame's in-band data",
        in_band.len(),
        0,
        MAX_IN_BAND_BYTES,
    )
}

fn check_data(data: &[u8]) -> Result<(), Refusal> {
    check_len("a data frame's data", data.len(), 1, MAX_DATA)
}

/// `what` holds `n` bytes: refused when empty but at least `min` is needed, or over `max`.
fn check_len(what: &str, n: usize, min: usize, max: usize) -> Result<(), Refusal> {
    match n {
        0 if min > 0 => Err(Refusal(format!("{what} is empty"))),
        n if n > max => Err(Refusal(format!(
            "{what} of {n} bytes, over the {max} accepted"
        ))),
        _ => Ok(()),
    }
}

fn check_signal(name: &[u8]) -> Result<(), Refusal> {
    match name.len() <= MAX_FEATURE && !name.is_empty() && name.iter().all(u8::is_ascii_uppercase) {
        true => Ok(()),
        false => Err(Refusal(
            "an exit frame's signal is not a name of 1 to 32 capital letters".into(),
        )),
    }
}

fn check_features(features: &[String]) -> Result<(), Refusal> {
    if features.len() > MAX_FEATURES {
        return Err(Refusal(format!(
            "a hello with {} features, over the {MAX_FEATURES} accepted",
            features.len()
        )));
    }
    let good = |f: &String| {
        (1..=MAX_FEATURE).contains(&f.len())
            && f.bytes().all(|b| b.is_ascii_lowercase() || b == b'-')
    };
    match features.iter().all(good) {
        true => Ok(()),
        false => Err(Refusal(
            "a hello feature is not a word of 1 to 32 lower-case letters and dashes".into(),
        )),
    }
}

fn features_of(rest: &[u8]) -> Result<Vec<String>, Refusal> {
    let text = std::str::from_utf8(rest)
        .map_err(|_| Refusal("a hello's features are not UTF-8".into()))?;
    let features: Vec<String> = match text.is_empty() {
        true => Vec::new(),
        false => text.split(' ').map(str::to_string).collect(),
    };
    check_features(&features)?;
    Ok(features)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn round_trip(frame: &Frame) -> Frame {
        let mut wire = Vec::new();
        frame.encode(&mut wire).unwrap();
        assert_eq!(wire.len(), frame.wire_len(), "{frame:?}");
        let mut buf = BytesMut::from(&wire[..]);
        let taken = Frame::take(&mut buf).unwrap().unwrap();
        assert!(buf.is_empty());
        assert_eq!(Frame::read(&mut &wire[..]).unwrap(), taken);
        taken
    }

    fn every_kind() -> Vec<Frame> {
        vec![
            Frame::Hello {
                version: VERSION,
                features: vec![FEATURE_IN_BAND.into()],
            },
            Frame::Hello {
                version: 7,
                features: vec![],
            },
            Frame::Ping(u64::MAX),
            Frame::Pong(3),
            Frame::Open {
                id: 1,
                line: "run-turn s1 u1 aGk=".into(),
                in_band: Some(Zeroizing::new(b"{\"v\":1}".to_vec())),
            },
            Frame::Open {
                id: 2,
                line: "health".into(),
                in_band: None,
            },
            Frame::Stdin {
                id: 1,
                data: Bytes::from_static(b"\0\0\0\x05frame-like"),
            },
            Frame::StdinEnd { id: 1 },
            Frame::Credit {
                id: 9,
                bytes: WINDOW,
            },
            Frame::Cancel { id: u32::MAX },
            Frame::Stdout {
                id: 1,
                data: Bytes::from(vec![7; MAX_DATA]),
            },
            Frame::Stderr {
                id: 1,
                data: Bytes::from_static(b"x"),
            },
            Frame::Exit {
                id: 1,
                status: Some(124),
                signal: None,
            },
            Frame::Exit {
                id: 1,
                status: None,
                signal: Some("KILL".into()),
            },
        ]
    }

    #[test]
    fn every_kind_of_frame_reads_back_as_written() {
        for frame in every_kind() {
            assert_eq!(round_trip(&frame), frame);
        }
    }

    #[test]
    fn frames_arrive_in_pieces_and_are_taken_whole() {
        let mut wire = Vec::new();
        for frame in every_kind() {
            frame.encode(&mut wire).unwrap();
        }
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for piece in wire.chunks(5) {
            buf.extend_from_slice(piece);
            while let Some(frame) = Frame::take(&mut buf).unwrap() {
                got.push(frame);
            }
        }
        assert_eq!(got, every_kind());
        let mut input = &wire[..];
        for frame in every_kind() {
            assert_eq!(Frame::read(&mut input).unwrap(), frame);
        }
        assert!(matches!(Frame::read(&mut input), Err(ReadError::Ended)));
    }

    #[test]
    fn sizes_and_rules_are_refused_by_name_before_anything_waits() {
        let mut buf = BytesMut::from(&b"\x7f\xff\xff\xff"[..]);
        let refused = Frame::take(&mut buf).unwrap_err();
        assert!(refused.0.contains("over the"), "{refused}");
        let refused = Frame::read(&mut &b"\x7f\xff\xff\xffrest"[..]).unwrap_err();
        assert!(matches!(refused, ReadError::Refused(_)), "{refused}");
        let cut = Frame::read(&mut &b"\0\0\0\x09\x20\0\0"[..]).unwrap_err();
        assert!(matches!(cut, ReadError::Stream(_)), "{cut}");
        let big = Frame::Stdout {
            id: 1,
            data: Bytes::from(vec![0; MAX_DATA + 1]),
        };
        assert!(big.encode(&mut Vec::new()).is_err());
        let long = Frame::Open {
            id: 1,
            line: "x".repeat(MAX_COMMAND_BYTES + 1),
            in_band: None,
        };
        assert!(long.encode(&mut Vec::new()).unwrap_err().0.contains("line"));
        for (payload, rule) in [
            (&b""[..], "empty"),
            (b"\x99", "unknown frame type 0x99"),
            (b"\x11\0\0\0\x01", "data is empty"),
            (b"\x14\0\0\0\x01\0", "after the end"),
            (b"\x10\0\0\0\x01\0\0\0\x09ab", "line says 9 bytes"),
            (b"\x10\0\0\0\x01\0\0\0\x00", "line is empty"),
            (b"\x10\0\0\0\x01\0\0\0\x02\xff\xfe", "not UTF-8"),
            (b"\x22\0\0\0\x01\x01kill", "capital letters"),
            (b"\x01\0\0\0\x01BAD", "lower-case"),
        ] {
            let refused = Frame::decode(payload).unwrap_err();
            assert!(refused.0.contains(rule), "{payload:?}: {refused}");
        }
    }

    #[test]
    fn debug_shows_sizes_never_data() {
        let open = Frame::Open {
            id: 4,
            line: "run-turn s1 u1 c2VjcmV0".into(),
            in_band: Some(Zeroizing::new(
                b"{\"credentials\":{\"T\":\"hunter2\"}}".to_vec(),
            )),
        };
        let shown = format!("{open:?}");
        assert!(
            !shown.contains("c2VjcmV0") && !shown.contains("hunter2"),
            "{shown}"
        );
        let data = Frame::Stdin {
            id: 4,
            data: Bytes::from_static(b"hunter2"),
        };
        assert!(!format!("{data:?}").contains("hunter2"));
    }

    proptest! {
        #[test]
        fn any_payload_is_a_frame_or_a_refusal(bytes in proptest::collection::vec(any::<u8>(), 0..96)) {
            if let Ok(frame) = Frame::decode(&bytes) {
                // What decodes encodes back to the same bytes.
                let mut wire = Vec::new();
                frame.encode(&mut wire).unwrap();
                prop_assert_eq!(&wire[LEN_BYTES..], &bytes[..]);
            }
        }

        #[test]
        fn any_stream_yields_frames_then_a_refusal_or_a_wait(
            bytes in proptest::collection::vec(any::<u8>(), 0..256),
            cut in 1usize..16,
        ) {
            let mut buf = BytesMut::new();
            'feed: for piece in bytes.chunks(cut) {
                buf.extend_from_slice(piece);
                loop {
                    match Frame::take(&mut buf) {
                        Ok(Some(_)) => continue,
                        Ok(None) => break,
                        Err(_) => break 'feed,
                    }
                }
            }
        }

        #[test]
        fn data_frames_of_any_size_within_the_bound_read_back(
            data in proptest::collection::vec(any::<u8>(), 1..2048),
            id in any::<u32>(),
        ) {
            let frame = Frame::Stdout { id, data: Bytes::from(data) };
            prop_assert_eq!(round_trip(&frame), frame);
        }
    }
}

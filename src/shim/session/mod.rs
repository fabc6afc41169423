//! `@session`: the resident shim (docs/shim.md, "Session mode"). tether runs `tether shim` once
//! per connection with this command line, and then sends requests as frames
//! ([`crate::wire::session`]) over the channel, many at once. The config is loaded once per
//! session and trusted as for `@hello`; each request is then answered by the same code as an
//! exec call ([`Shim::answer`]: allowlist, arguments, keys, locks, journal, audit line, strict
//! checks, credentials), on its own threads ([`relay`]), its output sent through the one
//! [`writer`] within its credit ([`flow`]).
//!
//! This thread reads the frames. A frame that breaks the protocol ends the session with one
//! audited refusal naming the rule (exit 2); the end of the channel ends it quietly (exit 0),
//! and so does [`SILENCE`] without a frame (tether pings every [`HEARTBEAT`]). Either way the
//! requests in flight see their pipes closed, as with a lost channel, and the shim exits once
//! their handlers have returned.
//!
//! [`HEARTBEAT`]: crate::wire::session::HEARTBEAT

mod flow;
mod relay;
mod writer;

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::thread::Scope;
use std::time::Duration;

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use zeroize::Zeroizing;

use self::relay::{Opened, Relay};
use self::writer::Writer;
use super::call::Shim;
use super::gate::{Seen, Start};
use super::io::Io;
use super::report::Report;
use super::request::{self, Asked};
use crate::wire::session::{FEATURE_IN_BAND, Frame, ReadError, SESSION, SILENCE, VERSION};

/// The most requests in flight in one session, a cancelled one counted until its handler
/// returned (each holds at most [`crate::wire::session::WINDOW`] of queued stdin, two
/// [`crate::wire::session::MAX_DATA`] buffers and its in-band data until checked); an open
/// beyond it is refused as busy.
pub const MAX_IN_FLIGHT: usize = 64;

/// How a session ended.
enum End {
    /// The channel closed, or tether fell silent: exit 0.
    Gone,
    /// tether broke the protocol: the rule, audited.
    Broken(String),
}

/// Serves the session on the shim's own stdin and stdout; the process's exit status.
pub fn serve(shim: &Shim, start: &Start, io: Io) -> u8 {
    let Io {
        stdin,
        stdout,
        stderr,
        ..
    } = io;
    if let Some(refused) = shim.untrusted(start, SESSION, &stderr) {
        return refused;
    }
    let mut input = BufReader::new(stdin);
    let writer = Writer::new(stdout);
    if let Err(end) = hello(&mut input) {
        return ended(shim, end, &stderr);
    }
    writer.send(&Frame::Hello {
        version: VERSION,
        features: vec![FEATURE_IN_BAND.to_string()],
    });
    std::thread::scope(|scope| {
        let mut session = Session {
            scope,
            shim,
            writer: &writer,
            requests: HashMap::new(),
            highest: None,
        };
        let end = session.run(&mut input, SILENCE);
        // Audited before the requests in flight wind down, which may take their time.
        let status = ended(shim, end, &stderr);
        for relay in session.requests.values_mut() {
            relay.cancel();
        }
        status
    })
}

/// tether's hello, first.
fn hello(input: &mut BufReader<File>) -> Result<(), End> {
    match next(input, SILENCE)? {
        Frame::Hello { version, .. } if version == VERSION => Ok(()),
        Frame::Hello { version, .. } => Err(End::Broken(format!(
            "a hello of session protocol version {version}; this shim speaks version {VERSION}"
        ))),
        other => Err(End::Broken(format!(
            "the session's first frame must be tether's hello, not {other:?}"
        ))),
    }
}

/// The exit status for how the session ended: 0, or 2 after the audited refusal naming the
/// rule tether broke.
fn ended(shim: &Shim, end: End, stderr: &File) -> u8 {
    match end {
        End::Gone => 0,
        End::Broken(rule) => {
            let seen = Seen {
                verb: Some(SESSION),
                ..Seen::default()
            };
            let audit = shim.config.audit();
            Start::now()
                .gate(&audit, seen, stderr)
                .finish(Report::refused(format!("{rule}; the session ends")))
        }
    }
}

/// The next frame, within `silence`.
fn next(input: &mut BufReader<File>, silence: Duration) -> Result<Frame, End> {
    if input.buffer().is_empty() && !arrives(input.get_ref(), silence) {
        return Err(End::Gone);
    }
    match Frame::read(input) {
        Ok(frame) => Ok(frame),
        Err(ReadError::Ended) => Err(End::Gone),
        Err(ReadError::Refused(rule)) => Err(End::Broken(rule.to_string())),
        Err(ReadError::Stream(e)) => Err(End::Broken(e.to_string())),
    }
}

/// Whether `input` has something to read (a byte, or its end) within `silence`.
fn arrives(input: &File, silence: Duration) -> bool {
    let timeout = PollTimeout::try_from(silence).unwrap_or(PollTimeout::MAX);
    loop {
        let mut fds = [PollFd::new(input.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, timeout) {
            Err(Errno::EINTR) => continue,
            Ok(0) => return false,
            _ => return true,
        }
    }
}

/// The requests of one session, as the reader sees them.
struct Session<'scope, 'env> {
    scope: &'scope Scope<'scope, 'env>,
    shim: &'env Shim<'env>,
    writer: &'env Writer,
    requests: HashMap<u32, Relay>,
    /// The highest id opened so far: ids only grow, so a lower one not in flight has ended.
    highest: Option<u32>,
}

impl Session<'_, '_> {
    /// Reads and dispatches frames until the session ends.
    fn run(&mut self, input: &mut BufReader<File>, silence: Duration) -> End {
        loop {
            let frame = match next(input, silence) {
                Ok(frame) => frame,
                Err(end) => return end,
            };
            if let Err(rule) = self.dispatch(frame) {
                return End::Broken(rule);
            }
        }
    }

    /// One frame from tether; `Err` names the rule it broke.
    fn dispatch(&mut self, frame: Frame) -> Result<(), String> {
        match frame {
            Frame::Open { id, line, in_band } => self.open(id, line, in_band),
            Frame::Stdin { id, data } => {
                if let Some(relay) = self.relay(id, "stdin")? {
                    relay.stdin(id, data)?;
                }
            }
            Frame::StdinEnd { id } => {
                if let Some(relay) = self.relay(id, "stdin-end")? {
                    relay.stdin_end();
                }
            }
            Frame::Credit { id, bytes } => {
                if let Some(relay) = self.relay(id, "credit")? {
                    relay.flow.grant(bytes);
                }
            }
            Frame::Cancel { id } => {
                if let Some(relay) = self.relay(id, "cancel")? {
                    relay.cancel();
                }
            }
            Frame::Ping(nonce) => self.writer.send(&Frame::Pong(nonce)),
            Frame::Hello { .. } => return Err("a second hello".into()),
            other => return Err(format!("{other:?} is a frame only the shim sends")),
        }
        Ok(())
    }

    /// The request `id` in flight; `None` for one that ended (frames for it may cross its
    /// exit); `Err` for an id never opened.
    fn relay(&mut self, id: u32, what: &str) -> Result<Option<&mut Relay>, String> {
        if self.highest.is_none_or(|highest| id > highest) {
            return Err(format!(
                "a {what} frame for request {id}, which was never opened"
            ));
        }
        Ok(self.requests.get_mut(&id))
    }

    /// Starts request `id`, or refuses it (an id used before, too many in flight).
    fn open(&mut self, id: u32, line: String, in_band: Option<Zeroizing<Vec<u8>>>) {
        let start = Start::now();
        self.requests.retain(|_, relay| !relay.done());
        let refusal = if self.highest.is_some_and(|highest| id <= highest) {
            Some(Report::refused(format!(
                "request id {id} was used before in this session (ids only grow); nothing ran"
            )))
        } else if self.requests.len() >= MAX_IN_FLIGHT {
            Some(Report::busy(format!(
                "{MAX_IN_FLIGHT} requests are in flight in this session, the most it takes; \
                 send it again once one has ended; nothing ran"
            )))
        } else {
            None
        };
        self.highest = Some(self.highest.map_or(id, |highest| highest.max(id)));
        if let Some(refusal) = refusal {
            return self.refuse(id, &line, &start, refusal);
        }
        let opened = Opened {
            id,
            line,
            in_band,
            start,
        };
        match Relay::start(self.scope, self.shim, self.writer, opened) {
            Ok(relay) => {
                self.requests.insert(id, relay);
            }
            Err(e) => {
                let busy = Report::busy(format!("cannot start the request: {e}; nothing ran"));
                self.refuse(id, "", &Start::now(), busy);
            }
        }
    }

    /// Answers request `id` with `refusal` here and now, audited as every refusal is.
    fn refuse(&self, id: u32, line: &str, start: &Start, refusal: Report) {
        let asked = request::parse(Some(std::ffi::OsStr::new(line)), self.shim.config);
        let verb = match &asked {
            Ok(Asked::Call(request)) => Some(request.name.as_str()),
            Ok(_) => None,
            Err(refused) => refused.verb.as_deref(),
        };
        let audit = self.shim.config.audit();
        let told = told(|stderr| {
            let seen = Seen {
                verb,
                ..Seen::default()
            };
            start.gate(&audit, seen, stderr).finish(refusal)
        });
        let (status, line) = told.unwrap_or((crate::exit::SHIM_REFUSED, Vec::new()));
        self.writer
            .send_chunks(&line, |data| Frame::Stderr { id, data });
        self.writer.send(&Frame::Exit {
            id,
            status: Some(u32::from(status)),
            signal: None,
        });
    }
}

/// Runs `tell` with a stderr of its own, and returns its status and what it wrote there (a
/// refusal's line: far less than a pipe holds).
fn told(tell: impl FnOnce(&File) -> u8) -> io::Result<(u8, Vec<u8>)> {
    let (mut rx, tx) = io::pipe()?;
    let tx = File::from(OwnedFd::from(tx));
    let status = tell(&tx);
    drop(tx);
    let mut line = Vec::new();
    rx.read_to_end(&mut line)?;
    Ok((status, line))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn reader() -> (BufReader<File>, io::PipeWriter) {
        let (rx, tx) = io::pipe().unwrap();
        (BufReader::new(File::from(OwnedFd::from(rx))), tx)
    }

    #[test]
    fn silence_and_the_end_of_the_channel_end_the_session() {
        let (mut input, mut tx) = reader();
        let short = Duration::from_millis(20);
        assert!(matches!(next(&mut input, short), Err(End::Gone)));
        let mut bytes = Vec::new();
        Frame::Ping(3).encode(&mut bytes).unwrap();
        Frame::Ping(4).encode(&mut bytes).unwrap();
        tx.write_all(&bytes).unwrap();
        assert!(matches!(next(&mut input, short), Ok(Frame::Ping(3))));
        // The second frame is buffered already: no wait for the channel.
        assert!(matches!(next(&mut input, short), Ok(Frame::Ping(4))));
        drop(tx);
        assert!(matches!(next(&mut input, short), Err(End::Gone)));
    }

    #[test]
    fn a_frame_cut_short_breaks_the_session() {
        let (mut input, mut tx) = reader();
        tx.write_all(&[0, 0, 0, 9, 0x02]).unwrap();
        drop(tx);
        let Err(End::Broken(rule)) = next(&mut input, SILENCE) else {
            panic!("a cut frame was taken");
        };
        assert!(!rule.is_empty());
    }
}

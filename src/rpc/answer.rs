//! Writing answers (docs/rpc.md): the error envelope, a buffered call's JSON serialized
//! straight from the output buffers piece by piece (the output is never copied whole), and
//! a streamed call's NDJSON events written as they arrive.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use hyper::Response;
use hyper::body::Frame;
use serde::Serialize;
use tokio::sync::mpsc;

use crate::call::{Answer, Ending, Meta, Output, Piece};
use crate::error::Error;
use crate::http::{Body, respond, respond_with};
use crate::transport::Stream;
use crate::utf8::Utf8Pieces;

/// Output up to this size is answered as one body with a Content-Length; larger output is
/// serialized piece by piece as hyper writes it (chunked), so it is never held twice.
const WHOLE_UP_TO: usize = 64 << 10;

/// The `error` object of an error answer or event.
#[derive(Serialize)]
struct ErrorFields<'a> {
    code: &'a str,
    message: String,
    retryable: bool,
}

impl ErrorFields<'_> {
    fn of(e: &Error, idempotent: bool) -> ErrorFields<'static> {
        ErrorFields {
            code: e.code(),
            message: e.to_string(),
            retryable: e.retryable(idempotent),
        }
    }
}

#[derive(Serialize)]
struct ErrorAnswer<'a> {
    error: ErrorFields<'a>,
    request_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    trace_id: Option<&'a str>,
}

/// The error envelope, with the code's HTTP status.
pub fn error(e: &Error, idempotent: bool, request_id: Option<&str>) -> Response<Body> {
    envelope(e, idempotent, request_id, None)
}

/// The error envelope of a call that started: with its request id and trace id.
pub fn call_error(e: &Error, meta: &Meta) -> Response<Body> {
    envelope(
        e,
        meta.idempotent,
        Some(&meta.request_id),
        Some(&meta.trace_id),
    )
}

fn envelope(
    e: &Error,
    idempotent: bool,
    request_id: Option<&str>,
    trace_id: Option<&str>,
) -> Response<Body> {
    let body = ErrorAnswer {
        error: ErrorFields::of(e, idempotent),
        request_id,
        trace_id,
    };
    respond(
        e.http_status(),
        "application/json",
        serde_json::to_vec(&body).expect("serializable"),
    )
}

/// Everything of a buffered answer but the output text.
#[derive(Serialize)]
struct Summary<'a> {
    request_id: &'a str,
    target: &'a str,
    verb: &'a str,
    exit_status: Option<u32>,
    exit_signal: Option<&'a str>,
    stdout_truncated: bool,
    stderr_truncated: bool,
    duration_ms: f64,
    cached: bool,
    trace_id: &'a str,
}

/// A buffered call's answer: 200 with the output, or the error envelope.
pub fn buffered(answer: Answer) -> Response<Body> {
    let Answer { meta, result } = answer;
    let out = match result {
        Ok(out) => out,
        Err(e) => return call_error(&e, &meta),
    };
    let summary = Summary {
        request_id: &meta.request_id,
        target: &meta.target,
        verb: &meta.verb,
        exit_status: out.exit.status,
        exit_signal: out.exit.signal.as_deref(),
        stdout_truncated: out.stdout.truncated(),
        stderr_truncated: out.stderr.truncated(),
        duration_ms: crate::health::millis(meta.duration),
        cached: meta.cached,
        trace_id: &meta.trace_id,
    };
    let small = out.len() <= WHOLE_UP_TO;
    let mut head = serde_json::to_vec(&summary).expect("serializable");
    head.pop(); // the closing brace: the output fields follow
    head.extend_from_slice(br#","stdout":""#);
    let frames = std::iter::once(Bytes::from(head))
        .chain(EscapedText::new(out.clone(), Stream::Stdout))
        .chain(std::iter::once(Bytes::from_static(br#"","stderr":""#)))
        .chain(EscapedText::new(out, Stream::Stderr))
        .chain(std::iter::once(Bytes::from_static(b"\"}")));
    if small {
        // The usual case: one body with a Content-Length, written at once.
        let mut whole = Vec::new();
        frames.for_each(|b| whole.extend_from_slice(&b));
        return respond(200, "application/json", whole);
    }
    respond_with(200, "application/json", Body::new(Frames(frames)))
}

/// A streamed call's answer once its command was sent: NDJSON, one line per piece.
pub fn streamed(pieces: mpsc::Receiver<Piece>) -> Response<Body> {
    respond_with(200, "application/x-ndjson", Body::new(Lines(pieces)))
}

/// A body whose frames an iterator makes when hyper asks for them.
struct Frames<I>(I);

impl<I: Iterator<Item = Bytes> + Unpin> hyper::body::Body for Frames<I> {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.get_mut().0.next().map(|b| Ok(Frame::data(b))))
    }
}

/// One output stream as the inside of a JSON string, a piece at a time.
struct EscapedText {
    out: Arc<Output>,
    stream: Stream,
    next: usize,
    decoder: Utf8Pieces,
    finished: bool,
}

impl EscapedText {
    fn new(out: Arc<Output>, stream: Stream) -> Self {
        EscapedText {
            out,
            stream,
            next: 0,
            decoder: Utf8Pieces::default(),
            finished: false,
        }
    }
}

impl Iterator for EscapedText {
    type Item = Bytes;

    fn next(&mut self) -> Option<Bytes> {
        let captured = self.out.stream(self.stream);
        loop {
            let mut text = String::new();
            match captured.piece(self.next) {
                Some(piece) => {
                    self.next += 1;
                    self.decoder.push(piece, &mut text);
                }
                None if !self.finished => {
                    self.finished = true;
                    self.decoder.finish(captured.truncated(), &mut text);
                }
                None => return None,
            }
            if !text.is_empty() {
                return Some(escape(&text));
            }
        }
    }
}

/// `text` as it stands between the quotes of a JSON string.
fn escape(text: &str) -> Bytes {
    let quoted = Bytes::from(serde_json::to_vec(text).expect("serializable"));
    quoted.slice(1..quoted.len() - 1)
}

/// The NDJSON body of a streamed call.
struct Lines(mpsc::Receiver<Piece>);

impl hyper::body::Body for Lines {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let rx = &mut self.get_mut().0;
        loop {
            match ready!(rx.poll_recv(cx)) {
                None => return Poll::Ready(None),
                Some(Piece::Started) => continue,
                Some(piece) => return Poll::Ready(Some(Ok(Frame::data(line(&piece))))),
            }
        }
    }
}

/// One NDJSON event.
#[derive(Serialize)]
#[serde(tag = "event", rename_all = "lowercase")]
enum Event<'a> {
    Stdout {
        data: &'a str,
    },
    Stderr {
        data: &'a str,
    },
    Exit {
        exit_status: Option<u32>,
        exit_signal: Option<&'a str>,
        stdout_truncated: bool,
        stderr_truncated: bool,
        duration_ms: f64,
        cached: bool,
        request_id: &'a str,
        target: &'a str,
        verb: &'a str,
        trace_id: &'a str,
    },
    Error {
        error: ErrorFields<'a>,
        request_id: &'a str,
        trace_id: &'a str,
    },
}

fn line(piece: &Piece) -> Bytes {
    let event = match piece {
        Piece::Output(Stream::Stdout, data) => Event::Stdout { data },
        Piece::Output(Stream::Stderr, data) => Event::Stderr { data },
        Piece::End(meta, Ok(ending)) => exit_event(meta, ending),
        Piece::End(meta, Err(e)) => Event::Error {
            error: ErrorFields::of(e, meta.idempotent),
            request_id: &meta.request_id,
            trace_id: &meta.trace_id,
        },
        Piece::Started => unreachable!("not an event"),
    };
    let mut line = serde_json::to_vec(&event).expect("serializable");
    line.push(b'\n');
    Bytes::from(line)
}

fn exit_event<'a>(meta: &'a Meta, ending: &'a Ending) -> Event<'a> {
    Event::Exit {
        exit_status: ending.exit.status,
        exit_signal: ending.exit.signal.as_deref(),
        stdout_truncated: ending.stdout_truncated,
        stderr_truncated: ending.stderr_truncated,
        duration_ms: crate::health::millis(meta.duration),
        cached: meta.cached,
        request_id: &meta.request_id,
        target: &meta.target,
        verb: &meta.verb,
        trace_id: &meta.trace_id,
    }
}

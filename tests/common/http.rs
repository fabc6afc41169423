//! A tiny blocking HTTP/1.1 client for tests: one request per connection (`Connection: close`),
//! over a Unix socket (tether's RPC) or TCP (the admin listener). Reads to EOF; understands
//! `Content-Length`, chunked and close-delimited bodies.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

/// Longest a test waits for one response before the request fails.
const IO_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    /// Header names lower-cased, in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON; panics with the body text if it is not JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "status {} body is not JSON ({e}): {}",
                self.status,
                self.text()
            )
        })
    }
}

/// One request over the Unix socket at `socket`.
pub fn unix(socket: &Path, method: &str, path: &str, body: Option<&[u8]>) -> io::Result<Response> {
    let stream = UnixStream::connect(socket)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    request(stream, method, path, body)
}

/// One request over TCP to `addr` ("127.0.0.1:9477").
pub fn tcp(addr: &str, method: &str, path: &str, body: Option<&[u8]>) -> io::Result<Response> {
    let stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    request(stream, method, path, body)
}

/// `GET path` on the Unix socket; returns (status, JSON body).
pub fn get_json(socket: &Path, path: &str) -> (u16, Value) {
    let resp = unix(socket, "GET", path, None).unwrap_or_else(|e| panic!("GET {path}: {e}"));
    (resp.status, resp.json())
}

/// `POST path` with a JSON body on the Unix socket; returns (status, JSON body).
pub fn post_json(socket: &Path, path: &str, body: &Value) -> (u16, Value) {
    let bytes = serde_json::to_vec(body).expect("serialize");
    let resp =
        unix(socket, "POST", path, Some(&bytes)).unwrap_or_else(|e| panic!("POST {path}: {e}"));
    (resp.status, resp.json())
}

/// Sends raw bytes (for malformed requests) and parses whatever comes back.
pub fn raw_unix(socket: &Path, bytes: &[u8]) -> io::Result<Response> {
    let mut stream = UnixStream::connect(socket)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.write_all(bytes)?;
    read_response(stream)
}

/// Writes `POST /v1/call` with `body` on a new connection, without reading the answer.
fn send_call(socket: &Path, body: &Value, connection: &str) -> UnixStream {
    let mut stream = UnixStream::connect(socket).expect("connect");
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let bytes = serde_json::to_vec(body).expect("serialize");
    let head = format!(
        "POST /v1/call HTTP/1.1\r\nHost: tether\r\nConnection: {connection}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        bytes.len()
    );
    stream.write_all(head.as_bytes()).expect("write head");
    stream.write_all(&bytes).expect("write body");
    stream
}

/// Sends `POST /v1/call` with `body`, waits `after`, then closes the connection without
/// reading: a caller that hangs up.
pub fn hang_up(socket: &Path, body: &Value, after: Duration) {
    let _stream = send_call(socket, body, "keep-alive");
    std::thread::sleep(after);
}

/// A streamed call's answer, read as it arrives.
pub struct Streamed {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    reader: io::BufReader<UnixStream>,
    pending: Vec<u8>,
}

impl Streamed {
    /// Sends `body` to `POST /v1/call` and reads the answer's head.
    pub fn start(socket: &Path, body: &Value) -> Streamed {
        let stream = send_call(socket, body, "close");
        let mut reader = io::BufReader::new(stream);
        let mut status_line = String::new();
        io::BufRead::read_line(&mut reader, &mut status_line).expect("status line");
        let status = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("status");
        let mut headers = Vec::new();
        loop {
            let mut line = String::new();
            io::BufRead::read_line(&mut reader, &mut line).expect("header");
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((n, v)) = line.split_once(':') {
                headers.push((n.trim().to_ascii_lowercase(), v.trim().to_string()));
            }
        }
        Streamed {
            status,
            headers,
            reader,
            pending: Vec::new(),
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The next NDJSON event and when it arrived; None at the end of the body. Assumes a
    /// chunked body (a streamed answer) or, for an error answer, reads the whole JSON body.
    pub fn next_event(&mut self) -> Option<(std::time::Instant, Value)> {
        loop {
            if let Some(end) = self.pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.pending.drain(..=end).collect();
                let value = serde_json::from_slice(&line).expect("each line is JSON");
                return Some((std::time::Instant::now(), value));
            }
            let mut size = String::new();
            io::BufRead::read_line(&mut self.reader, &mut size).ok()?;
            let size = usize::from_str_radix(size.trim(), 16).ok()?;
            if size == 0 {
                return None;
            }
            let mut chunk = vec![0; size + 2];
            self.reader.read_exact(&mut chunk).ok()?;
            self.pending.extend_from_slice(&chunk[..size]);
        }
    }

    /// Every remaining event.
    pub fn events(&mut self) -> Vec<Value> {
        std::iter::from_fn(|| self.next_event().map(|(_, v)| v)).collect()
    }

    /// The body of a non-streamed (error) answer.
    pub fn body_json(self) -> Value {
        let mut rest = Vec::new();
        let mut reader = self.reader;
        reader.read_to_end(&mut rest).expect("read body");
        serde_json::from_slice(&rest).expect("an error answer is JSON")
    }
}

fn request<S: Read + Write>(
    mut stream: S,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
) -> io::Result<Response> {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: tether\r\nConnection: close\r\n");
    if let Some(body) = body {
        head.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(body.unwrap_or_default())?;
    stream.flush()?;
    read_response(stream)
}

fn read_response<S: Read>(mut stream: S) -> io::Result<Response> {
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_string());
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no header end"))?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("bad status line"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let rest = &raw[split + 4..];
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    let body = if chunked {
        dechunk(rest).ok_or_else(|| bad("bad chunked body"))?
    } else if let Some((_, len)) = headers.iter().find(|(n, _)| n == "content-length") {
        let len: usize = len.parse().map_err(|_| bad("bad content-length"))?;
        rest.get(..len).ok_or_else(|| bad("short body"))?.to_vec()
    } else {
        rest.to_vec()
    };
    Ok(Response {
        status,
        headers,
        body,
    })
}

fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = data.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&data[..eol]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        data = &data[eol + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(data.get(..size)?);
        data = data.get(size + 2..)?;
    }
}

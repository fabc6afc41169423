//! The ways to run one verb that the bench compares: a process per call (`ssh`, `ssh` through
//! a ControlMaster, `tether call`), HTTP over tether's socket on a kept-alive connection, and
//! the floor, a raw russh exec on a connection that is already open.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request, Response};
use hyper_util::rt::TokioIo;
use russh::ChannelMsg;
use russh::client::{self, Handle};
use russh::keys::{PrivateKeyWithHashAlg, PublicKeyOrCertificate};
use tokio::net::{TcpStream, UnixStream};

/// One caller; each concurrent caller owns its own.
pub enum Caller {
    /// A process per call; succeeds when it exits 0 and prints `expect`.
    Process {
        argv: Arc<Vec<String>>,
        expect: Arc<str>,
    },
    /// `POST /v1/call` with `body` on one kept-alive connection; 200, exit 0, stdout `expect`.
    Http {
        client: HttpClient,
        body: Bytes,
        expect: Arc<str>,
    },
    /// A russh exec of `line` on a shared, already open connection.
    Floor {
        conn: Arc<Floor>,
        line: Arc<str>,
        expect: Arc<str>,
    },
}

impl Caller {
    /// Calls back to back while `go_on` holds; returns (successes, failures, first error).
    pub async fn call_while(&mut self, go_on: impl Fn() -> bool) -> (usize, usize, Option<String>) {
        let (mut ok, mut failed, mut first) = (0, 0, None);
        while go_on() {
            match self.call().await {
                Ok(()) => ok += 1,
                Err(e) => {
                    failed += 1;
                    first.get_or_insert(e);
                }
            }
        }
        (ok, failed, first)
    }

    pub async fn call(&mut self) -> Result<(), String> {
        match self {
            Caller::Process { argv, expect } => {
                let out = tokio::process::Command::new(&argv[0])
                    .args(&argv[1..])
                    .stdin(std::process::Stdio::null())
                    .kill_on_drop(true)
                    .output()
                    .await
                    .map_err(|e| format!("spawn {}: {e}", argv[0]))?;
                if !out.status.success() || out.stdout != expect.as_bytes() {
                    return Err(format!(
                        "{} exited {}: {}{}",
                        argv[0],
                        out.status,
                        String::from_utf8_lossy(&out.stdout),
                        String::from_utf8_lossy(&out.stderr).trim()
                    ));
                }
                Ok(())
            }
            Caller::Http {
                client,
                body,
                expect,
            } => {
                let (status, bytes) = client
                    .request(Method::POST, "/v1/call", body.clone())
                    .await?;
                let json: serde_json::Value = serde_json::from_slice(&bytes)
                    .map_err(|e| format!("status {status}, body not JSON: {e}"))?;
                if status != 200 || json["exit_status"] != 0 || json["stdout"] != **expect {
                    return Err(format!("status {status}: {json}"));
                }
                Ok(())
            }
            Caller::Floor { conn, line, expect } => conn.exec(line, expect).await,
        }
    }
}

/// An HTTP/1.1 client on one Unix-socket connection to tether, kept alive across requests,
/// as the app holds it. Like a pooling client it reconnects when tether has closed the idle
/// connection (hyper's header read timeout, 10 s in tether, also bounds keep-alive idleness).
pub struct HttpClient {
    socket: PathBuf,
    sender: SendRequest<Full<Bytes>>,
    pub reconnects: usize,
}

impl HttpClient {
    pub async fn connect(socket: &Path) -> HttpClient {
        HttpClient {
            socket: socket.to_path_buf(),
            sender: Self::handshake(socket).await,
            reconnects: 0,
        }
    }

    async fn handshake(socket: &Path) -> SendRequest<Full<Bytes>> {
        let stream = UnixStream::connect(socket)
            .await
            .expect("connect to tether");
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .expect("HTTP handshake");
        tokio::spawn(conn);
        sender
    }

    /// Sends one request, reconnecting first if tether closed the connection; the answer's
    /// body is left for the caller to read, as it arrives.
    pub async fn send(
        &mut self,
        method: Method,
        path: &str,
        body: Bytes,
    ) -> Result<Response<Incoming>, String> {
        if self.sender.is_closed() || self.sender.ready().await.is_err() {
            self.sender = Self::handshake(&self.socket).await;
            self.reconnects += 1;
        }
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "tether")
            .header("content-type", "application/json")
            .body(Full::new(body))
            .map_err(|e| e.to_string())?;
        self.sender
            .send_request(req)
            .await
            .map_err(|e| e.to_string())
    }

    /// One request and its whole answer.
    pub async fn request(
        &mut self,
        method: Method,
        path: &str,
        body: Bytes,
    ) -> Result<(u16, Bytes), String> {
        let resp = self.send(method, path, body).await?;
        let status = resp.status().as_u16();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok((status, body))
    }
}

/// The floor: a minimal russh client, `nodelay`, authenticated, warmed by one ping; each call
/// opens a session channel, execs, sends EOF and reads until the server's Close.
pub struct Floor {
    handle: Handle<TrustFixture>,
}

/// The bench talks to its own fixture sshd only; the host key is pinned by tether, not here.
pub struct TrustFixture;

impl client::Handler for TrustFixture {
    type Error = russh::Error;

    async fn check_server_key(&mut self, _: &PublicKeyOrCertificate) -> Result<bool, Self::Error> {
        Ok(true)
    }
}

impl Floor {
    pub async fn connect(port: u16, user: &str, private_key: &str) -> Floor {
        let config = Arc::new(client::Config {
            nodelay: true,
            ..Default::default()
        });
        let tcp = TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect to sshd");
        tcp.set_nodelay(true).expect("nodelay");
        let mut handle = client::connect_stream(config, tcp, TrustFixture)
            .await
            .expect("SSH handshake");
        let key = russh::keys::decode_secret_key(private_key, None).expect("fixture key");
        let auth = handle
            .authenticate_publickey(user, PrivateKeyWithHashAlg::new(Arc::new(key), None))
            .await
            .expect("authenticate");
        assert!(auth.success(), "the fixture refused its own key");
        // The first request on a fresh connection otherwise stalls ~40 ms (GUIDE.md).
        handle.send_ping().await.expect("warm-up ping");
        Floor { handle }
    }

    async fn exec(&self, line: &str, expect: &str) -> Result<(), String> {
        let mut stdout = Vec::new();
        let status = self
            .exec_with(line, |data| stdout.extend_from_slice(data))
            .await?;
        if status != Some(0) || stdout != expect.as_bytes() {
            return Err(format!(
                "exit {status:?}: {}",
                String::from_utf8_lossy(&stdout)
            ));
        }
        Ok(())
    }

    /// Execs `line` on a new channel, hands each piece of stdout to `on_stdout` as it arrives,
    /// and gives the exit status once the server has closed the channel.
    pub async fn exec_with(
        &self,
        line: &str,
        mut on_stdout: impl FnMut(&[u8]),
    ) -> Result<Option<u32>, String> {
        let mut channel = self
            .handle
            .channel_open_session()
            .await
            .map_err(|e| format!("open: {e}"))?;
        channel
            .exec(true, line.as_bytes())
            .await
            .map_err(|e| format!("exec: {e}"))?;
        channel.eof().await.map_err(|e| format!("eof: {e}"))?;
        let mut status = None;
        loop {
            match channel.wait().await {
                Some(ChannelMsg::Data { data }) => on_stdout(&data),
                Some(ChannelMsg::ExitStatus { exit_status }) => status = Some(exit_status),
                Some(ChannelMsg::Close) => return Ok(status),
                Some(_) => {}
                None => return Err("connection lost".into()),
            }
        }
    }
}

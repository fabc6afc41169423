//! A minimal HTTP/1.1 client over the RPC's Unix socket.

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;

/// Sends one request and returns the response as it starts to arrive. Fails when nobody
/// answers within `bound` (connect and response head) or the socket is missing.
pub async fn send(
    socket: &Path,
    method: Method,
    path: &str,
    body: Option<Vec<u8>>,
    bound: Duration,
) -> std::io::Result<Response<Incoming>> {
    let head = async {
        let stream = UnixStream::connect(socket).await?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(std::io::Error::other)?;
        tokio::spawn(conn);
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "tether")
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(std::io::Error::other)?;
        sender
            .send_request(req)
            .await
            .map_err(std::io::Error::other)
    };
    tokio::time::timeout(bound, head)
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer from tether"))?
}

/// Sends one request and returns the status and the whole body.
pub async fn request(
    socket: &Path,
    method: Method,
    path: &str,
    body: Option<Vec<u8>>,
    bound: Duration,
) -> std::io::Result<(u16, Bytes)> {
    let response = send(socket, method, path, body, bound).await?;
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(std::io::Error::other)?
        .to_bytes();
    Ok((status, body))
}

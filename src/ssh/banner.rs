//! The server's identification string, read before anything else: tether refuses a server
//! that announces Tailscale SSH (it accepts any key and never runs the `authorized_keys`
//! forced command, so tether's verbs would run in the login shell) before it authenticates.
//!
//! russh only reports the identification after key exchange, so [`read_identification`]
//! reads it off the TCP stream itself and hands back a [`Replay`] stream that gives russh
//! every byte again.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

use crate::error::Error;

/// Lines a server may send before its identification (as russh allows).
const MAX_PRE_BANNER_LINES: usize = 20;
/// The longest line, CR LF included (RFC 4253 § 4.2).
const MAX_LINE: usize = 255;
/// How Tailscale SSH identifies itself.
const TAILSCALE_PREFIX: &str = "SSH-2.0-Tailscale";
/// The way off Tailscale SSH, for messages.
pub const USE_OPENSSH: &str = "run OpenSSH on another port (e.g. 22022 via an ssh.socket drop-in)";

/// Reads up to and including the server's `SSH-` line. Returns that line (without CR LF)
/// and a stream that replays everything read so far before reading on. Errors are russh's
/// own for the same faults, so callers treat them as a failed handshake.
pub async fn read_identification<S: AsyncRead + Unpin>(
    mut stream: S,
) -> Result<(String, Replay<S>), russh::Error> {
    let mut head = Vec::with_capacity(512);
    let mut line_start = 0;
    let mut lines = 0;
    loop {
        while let Some(end) = head[line_start..].iter().position(|&b| b == b'\n') {
            let line = &head[line_start..line_start + end];
            if line.starts_with(b"SSH-") {
                let id = String::from_utf8_lossy(line).trim_end().to_string();
                return Ok((id, Replay::new(head, stream)));
            }
            lines += 1;
            line_start += end + 1;
            if end + 1 > MAX_LINE || lines > MAX_PRE_BANNER_LINES {
                return Err(russh::Error::Version);
            }
        }
        if head.len() - line_start > MAX_LINE {
            return Err(russh::Error::Version);
        }
        if stream.read_buf(&mut head).await? == 0 {
            return Err(russh::Error::Disconnect);
        }
    }
}

/// Whether an identification string is Tailscale SSH's.
pub fn is_tailscale(id: &str) -> bool {
    id.starts_with(TAILSCALE_PREFIX)
}

/// Refuses a Tailscale SSH server unless the target allows it (`allow_tailscale_ssh`).
pub fn refuse_tailscale(id: &str, addr: &str, allowed: bool) -> Result<(), Error> {
    if allowed || !is_tailscale(id) {
        return Ok(());
    }
    Err(Error::UpstreamMisconfigured {
        addr: addr.to_string(),
        problem: tailscale_problem(id),
        fix: format!(
            "{USE_OPENSSH} and point the target's port there, or set allow_tailscale_ssh = \
             true on the target to use Tailscale SSH anyway"
        ),
    })
}

/// Why a server with Tailscale SSH's identification `id` must not be used.
pub fn tailscale_problem(id: &str) -> String {
    format!(
        "the server identifies as {id:?}: Tailscale SSH answers on this port; it accepts any \
         key and never runs the authorized_keys forced command, so tether's verbs would run \
         in the login shell"
    )
}

/// A stream that first gives back bytes already read from `inner`, then reads on; writes go
/// straight to `inner`.
pub struct Replay<S> {
    head: Vec<u8>,
    pos: usize,
    inner: S,
}

impl<S> Replay<S> {
    fn new(head: Vec<u8>, inner: S) -> Self {
        Replay {
            head,
            pos: 0,
            inner,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Replay<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.pos < this.head.len() {
            let n = buf.remaining().min(this.head.len() - this.pos);
            buf.put_slice(&this.head[this.pos..this.pos + n]);
            this.pos += n;
            if this.pos == this.head.len() {
                this.head = Vec::new();
                this.pos = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Replay<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn read(wire: &[u8]) -> Result<(String, Vec<u8>), russh::Error> {
        let (id, mut replay) = read_identification(wire).await?;
        let mut again = Vec::new();
        replay.read_to_end(&mut again).await?;
        Ok((id, again))
    }

    #[tokio::test]
    async fn finds_the_identification_and_replays_every_byte() {
        let wire = b"a notice\r\nSSH-2.0-OpenSSH_9.2p1 Debian\r\n\x00\x00\x01\x0ckexinit...";
        let (id, again) = read(wire).await.unwrap();
        assert_eq!(id, "SSH-2.0-OpenSSH_9.2p1 Debian");
        assert_eq!(again, wire);
    }

    #[tokio::test]
    async fn refuses_what_russh_refuses() {
        assert!(matches!(read(b"").await, Err(russh::Error::Disconnect)));
        assert!(matches!(
            read(b"HTTP/1.1 400 Bad Request\r\n\r\n").await,
            Err(russh::Error::Disconnect)
        ));
        let long = [b'x'; 300];
        assert!(matches!(read(&long).await, Err(russh::Error::Version)));
        let chatty = b"hi\n".repeat(30);
        assert!(matches!(read(&chatty).await, Err(russh::Error::Version)));
    }

    #[test]
    fn only_tailscale_is_refused_and_only_when_not_allowed() {
        let refused = refuse_tailscale("SSH-2.0-Tailscale", "h:22", false).unwrap_err();
        assert_eq!(refused.code(), "upstream_misconfigured");
        assert_eq!(refused.http_status(), 502);
        assert!(!refused.retryable(true));
        let message = refused.to_string();
        assert!(message.contains("22022") && message.contains("allow_tailscale_ssh"));
        assert!(refuse_tailscale("SSH-2.0-Tailscale", "h:22", true).is_ok());
        assert!(refuse_tailscale("SSH-2.0-OpenSSH_9.6", "h:22", false).is_ok());
    }
}

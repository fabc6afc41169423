//! A loopback TCP proxy that delays every byte by a fixed time in each direction, like a
//! tailnet path: latency without a bandwidth limit, order preserved.
//!
//! tokio's timer rounds a deadline up to its next millisecond tick, which made a "10 ms" hop
//! take 11.4 ms here; so the proxy sleeps until 2 ms before the due time and yields until it
//! has come, and it measures what it really added (`added_ms`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// A running proxy; dropping it stops accepting (open connections end with their peers).
pub struct DelayProxy {
    pub port: u16,
    accept: JoinHandle<()>,
    added: Arc<Added>,
}

/// Total delay added to forwarded chunks, and how many.
#[derive(Default)]
struct Added {
    micros: AtomicU64,
    chunks: AtomicU64,
}

impl DelayProxy {
    /// Listens on a free loopback port and forwards to `upstream`, adding `one_way` each way.
    pub async fn start(upstream: SocketAddr, one_way: Duration) -> DelayProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let port = listener.local_addr().expect("proxy addr").port();
        let added = Arc::new(Added::default());
        let stats = added.clone();
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let added = stats.clone();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    tokio::join!(
                        pipe(cr, sw, one_way, added.clone()),
                        pipe(sr, cw, one_way, added)
                    );
                });
            }
        });
        DelayProxy {
            port,
            accept,
            added,
        }
    }

    /// The mean delay really added to a chunk so far, in milliseconds.
    pub fn added_ms(&self) -> f64 {
        let chunks = self.added.chunks.load(Ordering::Relaxed).max(1);
        self.added.micros.load(Ordering::Relaxed) as f64 / chunks as f64 / 1e3
    }
}

impl Drop for DelayProxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// Copies `from` to `to`, each chunk written `delay` after it was read.
async fn pipe(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, delay: Duration, added: Arc<Added>) {
    // (when read, bytes)
    let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let reader = async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match from.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if tx.send((Instant::now(), buf[..n].to_vec())).is_err() {
                        break;
                    }
                }
            }
        }
        // Dropping tx ends the writer once everything queued went out.
    };
    let writer = async move {
        while let Some((read, bytes)) = rx.recv().await {
            let due = read + delay;
            tokio::time::sleep_until(due - Duration::from_millis(2)).await;
            while Instant::now() < due {
                tokio::task::yield_now().await;
            }
            let late = read.elapsed();
            added
                .micros
                .fetch_add(late.as_micros() as u64, Ordering::Relaxed);
            added.chunks.fetch_add(1, Ordering::Relaxed);
            if to.write_all(&bytes).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    };
    tokio::join!(reader, writer);
}

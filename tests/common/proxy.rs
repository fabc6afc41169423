//! A loopback TCP proxy for fault tests, between tether and the sshd fixture: it can add
//! latency each way, black-hole traffic (nothing flows either way and nothing closes: a
//! half-open connection, like a laptop that froze or a tailnet that stalled), resume, and cut
//! every connection (RST).
//!
//! ```ignore
//! let proxy = Proxy::start(sshd.addr());
//! let tether = TetherConfig::for_sshd(&sshd).via(proxy.port(), &sshd).spawn();
//! proxy.blackhole();   // established and new connections go silent
//! proxy.resume();      // everything held back flows again
//! proxy.cut();         // every connection so far is reset
//! ```
//!
//! Plain std threads: per connection and direction a reader (socket -> queue) and a writer
//! (queue -> socket, each chunk released `latency` after it was read, and only while not
//! black-holed).

use std::io::{Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// A running proxy; dropping it stops accepting and cuts every connection.
pub struct Proxy {
    port: u16,
    shared: Arc<Shared>,
}

struct Shared {
    upstream: SocketAddr,
    state: Mutex<State>,
    changed: Condvar,
    accepted: AtomicUsize,
    stopped: AtomicBool,
}

#[derive(Default)]
struct State {
    blackhole: bool,
    latency: Duration,
    links: Vec<Arc<Link>>,
}

/// One proxied connection: both sockets, so it can be cut.
struct Link {
    client: TcpStream,
    server: TcpStream,
    cut: AtomicBool,
}

impl Link {
    fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for s in [&self.client, &self.server] {
            reset_on_close(s);
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

impl Proxy {
    /// Listens on a free loopback port and forwards every connection to `upstream`. A
    /// connection that cannot reach `upstream` is closed at once.
    pub fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind proxy");
        let port = listener.local_addr().expect("local_addr").port();
        let shared = Arc::new(Shared {
            upstream,
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
            accepted: AtomicUsize::new(0),
            stopped: AtomicBool::new(false),
        });
        let s = shared.clone();
        std::thread::spawn(move || accept_loop(listener, s));
        Proxy { port, shared }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// ConnectionSet accepted so far.
    pub fn accepted(&self) -> usize {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// Delays every chunk by `latency` in each direction from now on.
    pub fn set_latency(&self, latency: Duration) {
        self.shared.state.lock().unwrap().latency = latency;
        self.shared.changed.notify_all();
    }

    /// Stops forwarding in both directions, on established and new connections, without
    /// closing anything: TCP connects still complete, but no byte gets through.
    pub fn blackhole(&self) {
        self.shared.state.lock().unwrap().blackhole = true;
        self.shared.changed.notify_all();
    }

    /// Forwards again, including whatever was held back.
    pub fn resume(&self) {
        self.shared.state.lock().unwrap().blackhole = false;
        self.shared.changed.notify_all();
    }

    /// Resets every connection made so far (both sides see RST); new ones are accepted.
    pub fn cut(&self) {
        let links = std::mem::take(&mut self.shared.state.lock().unwrap().links);
        for link in &links {
            link.cut();
        }
        self.shared.changed.notify_all();
    }

    /// ConnectionSet currently open through the proxy.
    pub fn open_links(&self) -> usize {
        let mut state = self.shared.state.lock().unwrap();
        state.links.retain(|l| !l.cut.load(Ordering::SeqCst));
        state.links.len()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.stopped.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees `stopped`.
        let _ = TcpStream::connect((Ipv4Addr::LOCALHOST, self.port));
        self.cut();
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    for client in listener.incoming() {
        if shared.stopped.load(Ordering::SeqCst) {
            return;
        }
        let Ok(client) = client else { continue };
        shared.accepted.fetch_add(1, Ordering::SeqCst);
        let Ok(server) = TcpStream::connect(shared.upstream) else {
            reset_on_close(&client);
            continue;
        };
        let _ = client.set_nodelay(true);
        let _ = server.set_nodelay(true);
        let link = Arc::new(Link {
            client: client.try_clone().expect("clone"),
            server: server.try_clone().expect("clone"),
            cut: AtomicBool::new(false),
        });
        shared.state.lock().unwrap().links.push(link.clone());
        pump(
            &shared,
            &link,
            client.try_clone().expect("clone"),
            server.try_clone().expect("clone"),
        );
        pump(&shared, &link, server, client);
    }
}

/// Forwards `from` -> `to` with the proxy's latency and black-hole rules, on two threads.
fn pump(shared: &Arc<Shared>, link: &Arc<Link>, mut from: TcpStream, mut to: TcpStream) {
    let (tx, rx) = mpsc::channel::<(Instant, Vec<u8>)>();
    let (s, l) = (shared.clone(), link.clone());
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            if !s.wait_flowing(&l) {
                return;
            }
            match from.read(&mut buf) {
                Ok(0) | Err(_) => return, // dropping tx tells the writer
                Ok(n) => {
                    let due = Instant::now() + s.state.lock().unwrap().latency;
                    if tx.send((due, buf[..n].to_vec())).is_err() {
                        return;
                    }
                }
            }
        }
    });
    let (s, l) = (shared.clone(), link.clone());
    std::thread::spawn(move || {
        for (due, chunk) in rx {
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
            if !s.wait_flowing(&l) || to.write_all(&chunk).is_err() {
                return;
            }
        }
        // The source closed: pass the FIN on.
        let _ = to.shutdown(Shutdown::Write);
    });
}

impl Shared {
    /// Blocks while black-holed; false once the link was cut.
    fn wait_flowing(&self, link: &Link) -> bool {
        let mut state = self.state.lock().unwrap();
        while state.blackhole && !link.cut.load(Ordering::SeqCst) {
            state = self.changed.wait(state).unwrap();
        }
        !link.cut.load(Ordering::SeqCst)
    }
}

/// SO_LINGER 0: closing the socket sends RST instead of FIN.
fn reset_on_close(s: &TcpStream) {
    let linger = nix::libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    let _ = nix::sys::socket::setsockopt(s, nix::sys::socket::sockopt::Linger, &linger);
}

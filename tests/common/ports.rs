//! Loopback ports for tests: a free one, one where connects are refused, one that never answers.

use std::net::{Ipv4Addr, TcpListener, TcpStream};

/// A port that was free a moment ago (the kernel picked it). Racy by nature: prefer
/// [`ClosedPort`] when the test needs the port to stay unused.
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// A loopback port where nothing listens, held for the value's lifetime: connects to it are
/// refused at once (RST), and no listener can bind it meanwhile.
///
/// The port is the local end of an established loopback connection: bound (so `bind` elsewhere
/// fails with EADDRINUSE) but not listening. std has no bind-without-listen.
pub struct ClosedPort {
    port: u16,
    _pair: (TcpStream, TcpStream),
}

impl ClosedPort {
    pub fn new() -> Self {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
        let client =
            TcpStream::connect(listener.local_addr().expect("local_addr")).expect("connect");
        let (server, _) = listener.accept().expect("accept");
        ClosedPort {
            port: client.local_addr().expect("local_addr").port(),
            _pair: (client, server),
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Default for ClosedPort {
    fn default() -> Self {
        Self::new()
    }
}

/// A listener that never accepts: the kernel completes TCP handshakes into the backlog, but no
/// byte ever comes back (like a frozen host). Keep it alive for as long as the test needs it.
pub fn silent_listener() -> (TcpListener, u16) {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
    let port = listener.local_addr().expect("local_addr").port();
    (listener, port)
}

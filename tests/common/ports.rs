//! Loopback ports for tests: a free one, and one where connects are refused.

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

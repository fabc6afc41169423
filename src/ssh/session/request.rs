//! One request on a session: the open frame (with its in-band payload), stdin under the
//! shim's credit, output to the [`Sink`] with credit granted back as the sink takes it, and
//! the exit. The meanings are exec's ([`crate::ssh::exec`]):
//! - sent once the open frame is on the channel; a session that ends before that sent nothing;
//! - a caller gone before the send sends nothing; after it, its call runs on;
//! - a deadline answers `timeout` and the request's output is read and dropped until it ends,
//!   or until it ran `stuck_after` longer or printed `drain_cap` more (then it is cancelled);
//! - an operator's cancel and the drain's hard stop cancel it at once (the shim treats that as
//!   a closed channel);
//! - a session that ends while it runs is a lost connection: it may have run.
//!
//! The slot (`hold`) is given back when the request is over on the shim's side, or cancelled.

use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use zeroize::Zeroizing;

use super::live::{Event, Live, Route};
use crate::error::Error;
use crate::transport::interest::Interest;
use crate::transport::{Exit, Failed, Limits, Ran, Sink};
use crate::wire::session::{Frame, MAX_DATA, WINDOW};
use std::sync::Arc;

/// Output credit is granted back in steps of at least this many bytes.
const CREDIT_STEP: u32 = WINDOW / 4;

/// What one request sends.
pub struct Open<'a> {
    pub line: &'a str,
    pub in_band: Option<Zeroizing<Vec<u8>>>,
    pub stdin: Option<&'a Bytes>,
}

/// Why reading stopped before the exit.
enum Cut {
    Deadline,
    Stop,
    Cancelled,
    Lost,
}

/// The session was gone before the request could be sent: nothing was; `hold` comes back.
pub struct Gone<H>(pub H);

/// Runs `open` on `live`; [`Gone`] when the session ended before the request was sent, so
/// the caller can run it another way.
pub async fn run<H: Send + 'static>(
    live: &Arc<Live>,
    open: Open<'_>,
    limits: Limits,
    stop: &CancellationToken,
    interest: &mut Interest,
    hold: H,
    sink: &mut dyn Sink,
) -> Result<Ran, Gone<H>> {
    let budget = limits.deadline.saturating_duration_since(Instant::now());
    if interest.is_lost().await {
        let unwanted = Error::Cancelled(
            "the caller hung up while the call waited for the session; it was never sent".into(),
        );
        return Ok(at_once(Err(Failed::NotSent(unwanted)), hold));
    }
    let (line, in_band) = (open.line, open.in_band);
    let opened = live.open(|id| Frame::Open {
        id,
        line: line.to_string(),
        in_band,
    });
    let Some((mut route, written)) = opened else {
        return Err(Gone(hold));
    };
    // A session that ends before the frame left never sent it.
    if written.await.is_err() {
        return Err(Gone(hold));
    }
    let id = route.id;
    sink.sent();
    let mut stdin = Stdin::new(open.stdin);
    let mut granted = Granted::default();
    let ended = loop {
        stdin.send(live, id);
        tokio::select! {
            event = route.events.recv() => match event {
                Some(Event::Output(stream, data)) => {
                    sink.output(stream, &data).await;
                    granted.took(live, id, data.len());
                }
                Some(Event::Credit(bytes)) => stdin.credit = stdin.credit.saturating_add(bytes),
                Some(Event::Exit(exit)) => break Ok(exit),
                None => break Err(Cut::Lost),
            },
            _ = tokio::time::sleep_until(limits.deadline) => break Err(Cut::Deadline),
            _ = stop.cancelled() => break Err(Cut::Stop),
            _ = interest.cancelled() => break Err(Cut::Cancelled),
        }
    };
    let cut = match ended {
        Ok(exit) => return Ok(at_once(Ok(exit), hold)),
        Err(cut) => cut,
    };
    let error = match cut {
        Cut::Deadline => Error::Timeout(budget),
        Cut::Stop => Error::ShuttingDown,
        Cut::Cancelled => Error::Cancelled("an operator cancelled the call".into()),
        Cut::Lost => Error::ConnectionLost(format!(
            "the shim session on SSH connection {} ended while the command ran: it may have run",
            live.conn_id
        )),
    };
    let live = live.clone();
    let release = Box::pin(async move {
        if matches!(cut, Cut::Deadline) && drain(&live, &mut route, limits).await {
            drop(hold);
            return;
        }
        if !matches!(cut, Cut::Lost) {
            live.send(&Frame::Cancel { id });
        }
        drop(route);
        drop(hold);
    });
    Ok(Ran {
        result: Err(Failed::Sent(error)),
        release,
    })
}

fn at_once<H: Send + 'static>(result: Result<Exit, Failed>, hold: H) -> Ran {
    Ran {
        result,
        release: Box::pin(async move { drop(hold) }),
    }
}

/// After a deadline: reads and drops the request's output (granting credit, so it is not
/// stuck on us) until it exits; false when it ran `stuck_after` longer or printed `drain_cap`
/// more first.
async fn drain(live: &Arc<Live>, route: &mut Route, limits: Limits) -> bool {
    let mut drained = 0usize;
    let mut granted = Granted::default();
    let ends = async {
        while let Some(event) = route.events.recv().await {
            match event {
                Event::Output(_, data) => {
                    drained = drained.saturating_add(data.len());
                    if drained >= limits.drain_cap {
                        tracing::warn!(
                            bytes = limits.drain_cap,
                            "a timed-out command printed its output cap after its deadline; cancelling it on the session"
                        );
                        return false;
                    }
                    granted.took(live, route.id, data.len());
                }
                Event::Exit(_) => return true,
                Event::Credit(_) => {}
            }
        }
        // The session ended: nothing left to cancel.
        true
    };
    match tokio::time::timeout(limits.stuck_after, ends).await {
        Ok(ended) => ended,
        Err(_) => {
            let stuck: Duration = limits.stuck_after;
            tracing::warn!(
                "a timed-out command still runs {stuck:?} after its deadline (stuck_after); cancelling it on the session"
            );
            false
        }
    }
}

/// The request's stdin, sent as the shim's credit allows, then its end.
struct Stdin {
    rest: Bytes,
    credit: u32,
    ended: bool,
}

impl Stdin {
    fn new(stdin: Option<&Bytes>) -> Stdin {
        Stdin {
            rest: stdin.cloned().unwrap_or_default(),
            credit: WINDOW,
            ended: false,
        }
    }

    /// Queues what the credit allows now, and the end once all of it is queued.
    fn send(&mut self, live: &Live, id: u32) {
        while !self.rest.is_empty() && self.credit > 0 {
            let n = self.rest.len().min(MAX_DATA).min(self.credit as usize);
            let data = self.rest.split_to(n);
            live.send(&Frame::Stdin { id, data });
            self.credit -= n as u32;
        }
        if self.rest.is_empty() && !self.ended {
            live.send(&Frame::StdinEnd { id });
            self.ended = true;
        }
    }
}

/// Output taken by the sink and not yet granted back to the shim.
#[derive(Default)]
struct Granted(u32);

impl Granted {
    fn took(&mut self, live: &Live, id: u32, bytes: usize) {
        self.0 = self.0.saturating_add(bytes as u32);
        if self.0 >= CREDIT_STEP {
            live.send(&Frame::Credit { id, bytes: self.0 });
            self.0 = 0;
        }
    }
}

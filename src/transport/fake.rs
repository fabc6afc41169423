//! A transport that stands in for SSH in unit tests of the call path: each attempt takes the
//! next [`Step`] of a script, waits for room like a pool does (honouring the deadline, the
//! hard stop and the caller's interest), and counts what it was asked to do.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::{Attempt, BoxFuture, Exit, Failed, Ran, Sink, Stream, Transport, released};
use crate::error::Error;
use crate::health::PoolNumbers;

/// What one attempt does once it has room.
#[derive(Debug, Clone)]
pub enum Step {
    /// Sends, prints each piece to stdout, exits with the status.
    Answer(Vec<&'static str>, u32),
    /// The connection is lost before the request leaves.
    LostBeforeSend,
    /// Sends, prints to stdout, then the connection is lost.
    LostAfterSend(&'static str),
    /// Sends, then runs until the deadline or the hard stop.
    Hang,
}

/// The scripted transport.
pub struct Fake {
    script: Mutex<VecDeque<Step>>,
    room: Arc<Semaphore>,
    connected: AtomicBool,
    /// Attempts asked for, and requests that left.
    pub attempts: AtomicUsize,
    pub sent: AtomicUsize,
}

impl Fake {
    /// A connected transport with room for `room` requests at once, answering by `script`
    /// and then with `Answer(["ok"], 0)`.
    pub fn new(room: usize, script: Vec<Step>) -> Fake {
        Fake {
            script: Mutex::new(script.into()),
            room: Arc::new(Semaphore::new(room)),
            connected: AtomicBool::new(true),
            attempts: AtomicUsize::new(0),
            sent: AtomicUsize::new(0),
        }
    }

    /// Gives room for `n` more requests at once.
    pub fn add_room(&self, n: usize) {
        self.room.add_permits(n);
    }

    pub fn set_connected(&self, connected: bool) {
        self.connected.store(connected, Ordering::SeqCst);
    }

    pub fn sent(&self) -> usize {
        self.sent.load(Ordering::SeqCst)
    }

    pub fn attempts(&self) -> usize {
        self.attempts.load(Ordering::SeqCst)
    }

    async fn attempt(&self, attempt: Attempt<'_>) -> Ran {
        self.attempts.fetch_add(1, Ordering::SeqCst);
        let Attempt {
            limits,
            stop,
            interest,
            sink,
            ..
        } = attempt;
        let budget = limits.deadline.saturating_duration_since(Instant::now());
        let not_sent = |e| Ran {
            result: Err(Failed::NotSent(e)),
            release: released(),
        };
        let permit = tokio::select! {
            permit = self.room.clone().acquire_owned() => permit.expect("never closed"),
            _ = interest.lost() => return not_sent(Error::Cancelled("hung up while queued".into())),
            _ = tokio::time::sleep_until(limits.deadline) => return not_sent(Error::Timeout(budget)),
            _ = stop.cancelled() => return not_sent(Error::ShuttingDown),
        };
        let step = self.script.lock().expect("poisoned").pop_front();
        let step = step.unwrap_or(Step::Answer(vec!["ok"], 0));
        if let Step::LostBeforeSend = step {
            return not_sent(Error::ConnectionLost("lost before the send".into()));
        }
        sink.sent();
        self.sent.fetch_add(1, Ordering::SeqCst);
        let result = match step {
            Step::Answer(pieces, status) => {
                print(sink, &pieces).await;
                Ok(Exit {
                    status: Some(status),
                    signal: None,
                })
            }
            Step::LostAfterSend(piece) => {
                print(sink, &[piece]).await;
                Err(Failed::Sent(Error::ConnectionLost(
                    "lost after the send".into(),
                )))
            }
            Step::Hang => {
                tokio::select! {
                    _ = tokio::time::sleep_until(limits.deadline) => {}
                    _ = stop.cancelled() => {}
                }
                Err(Failed::Sent(Error::Timeout(budget)))
            }
            Step::LostBeforeSend => unreachable!("answered above"),
        };
        Ran {
            result,
            release: Box::pin(async move { drop(permit) }),
        }
    }
}

async fn print(sink: &mut dyn Sink, pieces: &[&str]) {
    for piece in pieces {
        sink.output(Stream::Stdout, piece.as_bytes()).await;
    }
}

impl Transport for Fake {
    fn run<'a>(&'a self, attempt: Attempt<'a>) -> BoxFuture<'a, Ran> {
        Box::pin(self.attempt(attempt))
    }

    fn is_connected(&self) -> bool {
        self.connected.load(Ordering::SeqCst)
    }

    fn connect(&self) -> BoxFuture<'_, Result<(), Error>> {
        let connected = self.is_connected();
        Box::pin(async move {
            match connected {
                true => Ok(()),
                false => Err(Error::UpstreamUnreachable("the fake is offline".into())),
            }
        })
    }

    fn ping(&self, _: Duration) -> BoxFuture<'_, Result<Duration, Error>> {
        Box::pin(std::future::ready(Ok(Duration::from_millis(1))))
    }

    fn numbers(&self) -> PoolNumbers {
        PoolNumbers {
            connections: self.is_connected() as usize,
            channels_in_use: 0,
            channels_capacity: 0,
            waiting: 0,
        }
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        self.room.close();
        Box::pin(async {})
    }
}

//! The SSH implementation of [`crate::transport::Transport`]. A request waits for a slot in
//! the target's pool (the probes' requests skip it and take any live connection), then runs on
//! that connection one of two ways, chosen here and nowhere else: as a request on the
//! connection's resident shim session when it has one ([`super::session`]), else as an exec on
//! one of its warm channels or a fresh one ([`super::exec`], [`super::warm`]).

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::connection::{Connection, Endpoint};
use super::connection_set::ConnectionSet;
use super::exec::{self, On};
use super::in_band::{self, Mode};
use super::pool::SlotPool;
use super::session;
use super::session::request::{self, Gone, Open};
use crate::error::Error;
use crate::health::PoolNumbers;
use crate::metrics::TargetMetrics;
use crate::transport::interest::Interest;
use crate::transport::{Attempt, BoxFuture, Failed, Ran, Room, Transport, released};

/// One target's connections, channel pool, and how its connections carry requests.
pub struct SshTransport {
    name: String,
    connections: Arc<ConnectionSet>,
    pool: SlotPool,
    capacity: usize,
    in_band: Mode,
    session: session::Plan,
}

/// How a target's connections are made and shared.
pub struct Shape {
    pub max_connections: usize,
    pub channels_per_connection: usize,
    /// Session channels each connection opens ahead of demand ([`super::warm`]).
    pub warm_channels: usize,
    /// The longest pause between failed connection attempts.
    pub backoff_cap: Duration,
    /// Whether in-band data is sent to a remote that takes it.
    pub in_band: Mode,
    /// Whether calls go on a resident shim session when the remote has one.
    pub shim_session: session::Mode,
}

impl SshTransport {
    pub fn new(
        name: &str,
        endpoint: Endpoint,
        shape: Shape,
        metrics: TargetMetrics,
        tracker: TaskTracker,
    ) -> SshTransport {
        let connections = Arc::new(ConnectionSet::new(
            endpoint,
            shape.max_connections,
            shape.channels_per_connection,
            shape.warm_channels,
            shape.backoff_cap,
            metrics.clone(),
            tracker.clone(),
        ));
        let capacity = shape.max_connections * shape.channels_per_connection;
        let up = metrics.shim_sessions.clone();
        let pool = SlotPool::new(name, connections.clone(), capacity, metrics);
        SshTransport {
            name: name.to_string(),
            connections,
            pool,
            capacity,
            in_band: shape.in_band,
            session: session::Plan {
                mode: shape.shim_session,
                tracker,
                told: Arc::default(),
                up,
            },
        }
    }

    async fn attempt(&self, attempt: Attempt<'_>) -> Ran {
        let Attempt {
            request,
            limits,
            room,
            stop,
            interest,
            sink,
        } = attempt;
        let pooled = matches!(room, Room::Pooled(_));
        let room = match room {
            Room::Pooled(wait) => self.slot(wait, limits.deadline, stop, interest).await,
            Room::Unpooled => self.connections.any().await.map(|conn| Taken {
                conn,
                hold: Box::new(()),
            }),
        };
        let Taken { conn, hold } = match room {
            Ok(taken) => taken,
            Err(e) => return not_sent(e),
        };
        let budget = limits.deadline.saturating_duration_since(Instant::now());
        let hold = match session::ready(&conn, &self.session) {
            None => hold,
            Some(live) => {
                let takes = std::future::ready(live.in_band);
                let in_band = match in_band::payload(request, self.in_band, &self.name, takes).await
                {
                    Ok(in_band) => in_band,
                    Err(e) => return not_sent(e),
                };
                let open = Open {
                    line: &request.line,
                    in_band,
                    stdin: request.stdin.as_ref(),
                };
                // A session that ended before the request left: exec this once instead.
                match request::run(&live, open, limits, stop, interest, hold, sink).await {
                    Ok(ran) => return ran,
                    Err(Gone(hold)) => hold,
                }
            }
        };
        let command = in_band::command(&conn, request, self.in_band, &self.name, stop);
        let command = match tokio::time::timeout_at(limits.deadline, command).await {
            Ok(Ok(command)) => command,
            Ok(Err(e)) => return not_sent(e),
            Err(_) => return not_sent(Error::Timeout(budget)),
        };
        let on = match pooled {
            true => On::warm_or_new(&conn),
            false => On::new_channel(&conn),
        };
        exec::run(on, &command, limits, stop, interest, hold, sink).await
    }

    /// A slot in the pool, waiting at most `wait`. Waiting for a slot (whose connection may
    /// still be being made) is bounded by the deadline too, not only by connect_timeout;
    /// a caller gone while queued is never sent.
    async fn slot(
        &self,
        wait: Duration,
        deadline: Instant,
        stop: &CancellationToken,
        interest: &mut Interest,
    ) -> Result<Taken, Error> {
        let budget = deadline.saturating_duration_since(Instant::now());
        let get = tokio::time::timeout_at(deadline, self.pool.get(wait));
        let slot = tokio::select! {
            slot = get => slot.unwrap_or(Err(Error::Timeout(budget))),
            _ = stop.cancelled() => Err(Error::ShuttingDown),
            _ = interest.lost() => Err(Error::Cancelled(
                "the caller hung up while the call was queued; it was never sent".into(),
            )),
        }?;
        Ok(Taken {
            conn: slot.conn().clone(),
            hold: Box::new(slot),
        })
    }

    async fn ping_all(&self, bound: Duration) -> Result<Duration, Error> {
        let live = match self.connections.live() {
            live if live.is_empty() => vec![self.connections.any().await?],
            live => live,
        };
        let mut pings = tokio::task::JoinSet::new();
        for conn in live {
            // A new connection is asked for its session at the probe's first round trip.
            session::ready(&conn, &self.session);
            pings.spawn(ping(bound, conn));
        }
        let mut best = None;
        while let Some(Ok((conn, answer))) = pings.join_next().await {
            if answer.is_err() {
                self.connections.discard(&conn).await;
            }
            best = match (best, answer) {
                (Some(Ok(fastest)), Ok(latency)) => Some(Ok(std::cmp::min(fastest, latency))),
                (Some(Ok(latency)), Err(_)) | (_, Ok(latency)) => Some(Ok(latency)),
                (_, Err(e)) => Some(Err(e)),
            };
        }
        best.unwrap_or_else(|| Err(Error::Internal("no ping finished".into())))
    }
}

fn not_sent(error: Error) -> Ran {
    Ran {
        result: Err(Failed::NotSent(error)),
        release: released(),
    }
}

/// Room to run on: a connection, and what holds the room until the release ends.
struct Taken {
    conn: Arc<Connection>,
    hold: Box<dyn Send>,
}

/// One SSH round trip on `conn`, bounded by `bound`.
async fn ping(
    bound: Duration,
    conn: Arc<Connection>,
) -> (Arc<Connection>, Result<Duration, Error>) {
    let answer = conn.ping(bound).await.map_err(|e| match e {
        Error::Timeout(_) => Error::UpstreamUnreachable(format!(
            "no answer to an SSH ping within {bound:?} (probe.timeout): the remote may be frozen or asleep"
        )),
        other => other,
    });
    (conn, answer)
}

impl Transport for SshTransport {
    fn run<'a>(&'a self, attempt: Attempt<'a>) -> BoxFuture<'a, Ran> {
        Box::pin(self.attempt(attempt))
    }

    fn is_connected(&self) -> bool {
        !self.connections.live().is_empty()
    }

    fn connect(&self) -> BoxFuture<'_, Result<(), Error>> {
        Box::pin(async { self.connections.any().await.map(drop) })
    }

    fn ping(&self, bound: Duration) -> BoxFuture<'_, Result<Duration, Error>> {
        Box::pin(self.ping_all(bound))
    }

    fn numbers(&self) -> PoolNumbers {
        let occupancy = self.pool.occupancy();
        PoolNumbers {
            connections: self.connections.live().len(),
            channels_in_use: occupancy.in_use,
            channels_capacity: self.capacity,
            waiting: occupancy.waiting,
        }
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {
            self.pool.close();
            self.connections.close_all().await;
        })
    }
}

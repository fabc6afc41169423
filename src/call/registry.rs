//! The calls in flight, one registry per sidecar shared by all targets: what `GET /v1/calls`,
//! `tether calls` and the status page show, and what `DELETE /v1/calls/{id}` cancels
//! (docs/rpc.md, "Calls in flight"). An entry holds what a call is, never what it carries
//! (no arguments, stdin, credentials or output). It lives from [`super::task::start`] until
//! the call's slot is released: the [`Tracked`] guard is owned by the call task and removes
//! it when dropped, however the task ends.
//!
//! Request ids may repeat (a client may send the same id twice): each call is its own entry,
//! listed on its own, and a cancel by id cancels every call with that id that can still be
//! cancelled.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::Serialize;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::error::Error;
use crate::transport::{BoxFuture, Sink, Stream};

/// Most entries one listing shows (the oldest); `total` still counts them all.
pub const MAX_SHOWN: usize = 1000;

/// Where a call is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Waiting for a channel; nothing was sent.
    Queued,
    /// The exec request has left (or the call waits on a shared, cached run).
    Running,
    /// A streamed call that has sent output.
    Streaming,
    /// The caller was answered; the channel is still being released.
    Closing,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Queued => "queued",
            State::Running => "running",
            State::Streaming => "streaming",
            State::Closing => "closing",
        }
    }
}

/// What a call is, as the call task registers it.
pub struct Registration {
    pub request_id: String,
    pub target: String,
    pub verb: String,
    pub caller_uid: Option<u32>,
    pub stream: bool,
    pub trace_id: String,
    /// Whether the caller has hung up, asked when the call is listed.
    pub hung_up: Box<dyn Fn() -> bool + Send + Sync>,
}

struct Entry {
    call: Registration,
    started: Instant,
    /// When the exec request left.
    sent: Option<Instant>,
    /// Waits on a shared (cached) run rather than a channel of its own.
    shared: bool,
    state: State,
    /// Set once the caller was answered (or found gone).
    abandoned: Option<bool>,
    cancel: CancellationToken,
}

/// One call in a listing.
#[derive(Debug, Serialize)]
pub struct Listed {
    pub request_id: String,
    pub target: String,
    pub verb: String,
    pub state: State,
    pub age_ms: u64,
    pub queued_ms: u64,
    pub caller_uid: Option<u32>,
    pub stream: bool,
    pub abandoned: bool,
    pub trace_id: String,
}

/// A listing: the oldest [`MAX_SHOWN`] calls, oldest first, and how many there are.
#[derive(Debug, Serialize)]
pub struct Listing {
    pub calls: Vec<Listed>,
    pub total: usize,
    pub shown: usize,
}

/// One call a cancel reached.
#[derive(Debug, Serialize)]
pub struct Cancelled {
    pub request_id: String,
    pub target: String,
    pub verb: String,
    pub state_before: State,
    /// Whether its command had been sent (it may have run).
    pub sent: bool,
}

/// The calls in flight.
#[derive(Default)]
pub struct Registry {
    /// By registration order, which is start order: iteration is oldest first.
    entries: Mutex<BTreeMap<u64, Entry>>,
    next: AtomicU64,
}

impl Registry {
    /// Registers a call; the entry lives as long as the returned guard.
    pub fn register(self: &Arc<Self>, call: Registration) -> Tracked {
        let key = self.next.fetch_add(1, Ordering::Relaxed);
        let cancel = CancellationToken::new();
        let entry = Entry {
            call,
            started: Instant::now(),
            sent: None,
            shared: false,
            state: State::Queued,
            abandoned: None,
            cancel: cancel.clone(),
        };
        self.lock().insert(key, entry);
        Tracked {
            registry: self.clone(),
            key,
            cancel,
        }
    }

    /// The oldest calls, at most [`MAX_SHOWN`], and the total.
    pub fn list(&self) -> Listing {
        let now = Instant::now();
        let entries = self.lock();
        let calls: Vec<Listed> = entries
            .values()
            .take(MAX_SHOWN)
            .map(|e| e.listed(now))
            .collect();
        Listing {
            total: entries.len(),
            shown: calls.len(),
            calls,
        }
    }

    /// Cancels every call with `request_id` that is neither answered nor already cancelled.
    pub fn cancel(&self, request_id: &str) -> Vec<Cancelled> {
        let mut entries = self.lock();
        entries
            .values_mut()
            .filter(|e| e.call.request_id == request_id)
            .filter(|e| e.state != State::Closing && !e.cancel.is_cancelled())
            .map(|e| {
                e.cancel.cancel();
                Cancelled {
                    request_id: e.call.request_id.clone(),
                    target: e.call.target.clone(),
                    verb: e.call.verb.clone(),
                    state_before: e.state,
                    sent: e.sent.is_some(),
                }
            })
            .collect()
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<u64, Entry>> {
        // A panic while holding the lock leaves the map consistent (every update is one
        // assignment), so a poisoned lock is used as it is.
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Entry {
    fn listed(&self, now: Instant) -> Listed {
        let ms = |from: Instant, to: Instant| to.saturating_duration_since(from).as_millis() as u64;
        let queued_ms = match (self.shared, self.sent) {
            (true, _) => 0,
            (false, Some(sent)) => ms(self.started, sent),
            (false, None) => ms(self.started, now),
        };
        Listed {
            request_id: self.call.request_id.clone(),
            target: self.call.target.clone(),
            verb: self.call.verb.clone(),
            state: self.state,
            age_ms: ms(self.started, now),
            queued_ms,
            caller_uid: self.call.caller_uid,
            stream: self.call.stream,
            abandoned: self.abandoned.unwrap_or_else(|| (self.call.hung_up)()),
            trace_id: self.call.trace_id.clone(),
        }
    }
}

/// A call's entry, owned by its task: dropping it removes the entry.
pub struct Tracked {
    registry: Arc<Registry>,
    key: u64,
    cancel: CancellationToken,
}

impl Tracked {
    /// Fires when an operator cancels the call.
    pub fn cancel_token(&self) -> CancellationToken {
        self.cancel.clone()
    }

    /// Resolves when an operator cancels the call.
    pub fn cancelled(&self) -> impl Future<Output = ()> + Send + '_ {
        self.cancel.cancelled()
    }

    /// The call waits on a shared (cached) run: it shows as running from the start, and a
    /// cancel only detaches it.
    pub fn waits_on_shared_run(&self) {
        self.update(|e| {
            e.shared = true;
            e.state = State::Running;
        });
    }

    /// The caller was answered, or found gone; the channel is being released.
    pub fn answered(&self, abandoned: bool) {
        self.update(|e| {
            e.state = State::Closing;
            e.abandoned = Some(abandoned);
        });
    }

    /// `result`, unless an operator cancelled the call and it failed for that: then the
    /// `cancelled` error that says what the cancel did.
    pub fn overrule<T>(&self, result: Result<T, Error>) -> Result<T, Error> {
        match result {
            Err(_) if self.cancel.is_cancelled() => Err(self.cancellation()),
            result => result,
        }
    }

    /// The stage a caller who left it left it at: `queued` (never sent) or `running`.
    pub fn stage(&self) -> &'static str {
        match self.read(|e| e.sent.is_some() || e.shared) {
            true => "running",
            false => "queued",
        }
    }

    /// The `cancelled` error for this call: what the cancel did depends on where it was.
    pub fn cancellation(&self) -> Error {
        let (sent, shared) = self.read(|e| (e.sent.is_some(), e.shared));
        Error::Cancelled(cancel_message(sent, shared).into())
    }

    /// `sink`, with the call's state following what happens to it.
    pub fn sink<'a>(&'a self, sink: &'a mut dyn Sink) -> Tracking<'a> {
        Tracking {
            tracked: self,
            inner: sink,
            output_noted: false,
        }
    }

    fn update(&self, change: impl FnOnce(&mut Entry)) {
        if let Some(entry) = self.registry.lock().get_mut(&self.key) {
            change(entry);
        }
    }

    fn read<T: Default>(&self, look: impl FnOnce(&Entry) -> T) -> T {
        self.registry
            .lock()
            .get(&self.key)
            .map(look)
            .unwrap_or_default()
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.registry.lock().remove(&self.key);
    }
}

/// What a cancelled caller is told.
fn cancel_message(sent: bool, shared: bool) -> &'static str {
    match (sent, shared) {
        (_, true) => {
            "an operator cancelled this caller's wait on a shared (cached) run (DELETE /v1/calls); the run goes on for its other callers, and may have run"
        }
        (false, false) => {
            "an operator cancelled the call (DELETE /v1/calls) while it was queued; it was never sent"
        }
        (true, false) => {
            "an operator cancelled the call (DELETE /v1/calls) after its command was sent: it may have run. tether closed its channel; a keyed run goes on on the laptop under the shim's supervisor, and the shim's own verb (e.g. `reset`) is how to stop it"
        }
    }
}

/// A sink that keeps its call's entry up to date: `running` once the exec request has left,
/// `streaming` once a streamed call has output.
pub struct Tracking<'a> {
    tracked: &'a Tracked,
    inner: &'a mut dyn Sink,
    output_noted: bool,
}

impl Sink for Tracking<'_> {
    fn sent(&mut self) {
        self.tracked.update(|e| {
            e.sent = Some(Instant::now());
            e.state = State::Running;
        });
        self.inner.sent();
    }

    fn output<'a>(&'a mut self, stream: Stream, data: &'a [u8]) -> BoxFuture<'a, ()> {
        if !self.output_noted {
            self.output_noted = true;
            self.tracked.update(|e| {
                if e.call.stream && e.state == State::Running {
                    e.state = State::Streaming;
                }
            });
        }
        self.inner.output(stream, data)
    }

    fn restart(&mut self) -> bool {
        self.inner.restart()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registration(id: &str) -> Registration {
        Registration {
            request_id: id.into(),
            target: "t".into(),
            verb: "v".into(),
            caller_uid: Some(1000),
            stream: false,
            trace_id: "0".repeat(32),
            hung_up: Box::new(|| false),
        }
    }

    #[test]
    fn entries_are_listed_oldest_first_and_removed_with_their_guard() {
        let registry = Arc::new(Registry::default());
        let a = registry.register(registration("a"));
        let b = registry.register(registration("b"));
        let ids = |r: &Registry| -> Vec<String> {
            r.list().calls.into_iter().map(|c| c.request_id).collect()
        };
        assert_eq!(ids(&registry), ["a", "b"]);
        drop(a);
        assert_eq!(ids(&registry), ["b"]);
        b.answered(true);
        let listing = registry.list();
        assert_eq!(listing.calls[0].state, State::Closing);
        assert!(listing.calls[0].abandoned);
        drop(b);
        assert_eq!(registry.list().total, 0);
    }

    #[test]
    fn a_listing_is_bounded_but_counts_everything() {
        let registry = Arc::new(Registry::default());
        let held: Vec<Tracked> = (0..MAX_SHOWN + 5)
            .map(|i| registry.register(registration(&i.to_string())))
            .collect();
        let listing = registry.list();
        assert_eq!(listing.total, MAX_SHOWN + 5);
        assert_eq!(listing.shown, MAX_SHOWN);
        assert_eq!(listing.calls[0].request_id, "0", "oldest first");
        drop(held);
    }

    #[test]
    fn a_cancel_reaches_every_call_with_the_id_once() {
        let registry = Arc::new(Registry::default());
        let first = registry.register(registration("dup"));
        let second = registry.register(registration("dup"));
        let other = registry.register(registration("other"));
        let cancelled = registry.cancel("dup");
        assert_eq!(cancelled.len(), 2);
        assert!(
            cancelled
                .iter()
                .all(|c| c.state_before == State::Queued && !c.sent)
        );
        assert!(first.cancel.is_cancelled() && second.cancel.is_cancelled());
        assert!(!other.cancel.is_cancelled());
        assert!(registry.cancel("dup").is_empty(), "already cancelled");
        let overruled = first.overrule::<()>(Err(Error::ShuttingDown));
        assert!(matches!(overruled, Err(Error::Cancelled(m)) if m.contains("never sent")));
        assert!(
            first.overrule(Ok(())).is_ok(),
            "a call that finished keeps its result"
        );
        other.answered(false);
        assert!(
            registry.cancel("other").is_empty(),
            "an answered call is not cancelled"
        );
    }
}

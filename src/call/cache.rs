//! The verb result cache: identical calls (same verb, arguments and stdin) within a verb's
//! `cache_ttl` share one execution. The execution is a task of its own (a flight), never one
//! of the callers: a caller that hangs up cannot cancel it or make it start again, and every
//! caller waiting for it gets its result. A failure is shared only with the callers already
//! waiting, never kept. The cache is bounded in entries and bytes; each entry expires by its
//! own verb's ttl. One cache serves every target; a target's name is part of each key.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use super::Call;
use super::buffer::{Buffer, Output};
use crate::error::Error;
use crate::target::Target;
use crate::transport::interest::Interest;

/// Most entries kept at once; the oldest finished ones go first.
const MAX_ENTRIES: usize = 1024;
/// Most output bytes kept in finished entries at once.
const MAX_BYTES: usize = 16 << 20;

/// A flight's result once it has landed: when, and what.
pub type Landed<T> = Option<(Instant, T)>;

/// What the cache needs to know of a result.
pub trait Cacheable: Clone {
    /// Whether later callers may share it (a success).
    fn keep(&self) -> bool;
    /// Bytes it holds.
    fn weight(&self) -> usize;
}

struct Entry<T> {
    landed: watch::Receiver<Landed<T>>,
    ttl: Duration,
}

impl<T: Cacheable> Entry<T> {
    /// The landing time of a result worth keeping; None while the flight runs.
    fn kept_since(&self) -> Option<Result<(Instant, usize), ()>> {
        let landed = self.landed.borrow();
        let (at, value) = landed.as_ref()?;
        Some(if value.keep() && at.elapsed() < self.ttl {
            Ok((*at, value.weight()))
        } else {
            Err(())
        })
    }
}

/// Flights and kept results of one target's cacheable verbs.
pub struct ResultCache<T> {
    entries: Mutex<HashMap<Vec<u8>, Entry<T>>>,
}

impl<T> Default for ResultCache<T> {
    fn default() -> Self {
        ResultCache {
            entries: Mutex::new(HashMap::new()),
        }
    }
}

impl<T: Cacheable> ResultCache<T> {
    /// The flight for `key`: a running one, or a result kept less than `ttl` ago; else a new
    /// one that `start` launches with the sender it must land its result on. The flag is
    /// true when the caller joined an existing flight.
    pub fn join(
        &self,
        key: Vec<u8>,
        ttl: Duration,
        start: impl FnOnce(watch::Sender<Landed<T>>),
    ) -> (watch::Receiver<Landed<T>>, bool) {
        let mut entries = self.entries.lock().expect("poisoned");
        prune(&mut entries);
        if let Some(entry) = entries.get(&key) {
            return (entry.landed.clone(), true);
        }
        let (tx, landed) = watch::channel(None);
        entries.insert(
            key,
            Entry {
                landed: landed.clone(),
                ttl,
            },
        );
        drop(entries);
        start(tx);
        (landed, false)
    }
}

/// A buffered result, shared by the callers of a cached verb.
pub type SharedResult = Result<Arc<Output>, Error>;

impl Cacheable for SharedResult {
    fn keep(&self) -> bool {
        self.is_ok()
    }

    fn weight(&self) -> usize {
        self.as_ref().map_or(0, |out| out.len())
    }
}

/// The results of every target's cached verbs.
pub type Results = ResultCache<SharedResult>;

/// Runs `call` on `target` once through `results`: joins an identical call that is running
/// or finished within the verb's ttl, else starts one as a flight of its own on the calls
/// tracker. True when shared.
pub async fn shared_run(
    results: &Results,
    target: &Arc<Target>,
    call: &Call,
) -> (SharedResult, bool) {
    let request = &call.request;
    let key = key(&target.name, &request.line, request.stdin.as_deref());
    let (mut landed, joined) = results.join(key, call.verb_config.cache_ttl, |tx| {
        let (target, call) = (target.clone(), call.clone());
        target.calls().clone().spawn(async move {
            // Shared by every caller who joins, now or later: never dropped for one.
            let mut interest = Interest::lasting();
            let mut buffer = Buffer::new(target.config.max_output_bytes, target.budget());
            let (verb, timeout) = (&call.verb_config, call.timeout);
            let (result, release) = target
                .execute(
                    &call.request,
                    timeout,
                    verb.idempotent,
                    &mut interest,
                    &mut buffer,
                )
                .await;
            let result = result.and_then(|exit| buffer.answer(exit)).map(Arc::new);
            tx.send_replace(Some((Instant::now(), result)));
            release.await;
        });
    });
    let result = tokio::select! {
        landed = landed.wait_for(Option::is_some) => match landed {
            Ok(landed) => landed.as_ref().map(|(_, r)| r.clone()),
            Err(_) => None,
        },
        _ = target.hard_stop().cancelled() => Some(Err(Error::ShuttingDown)),
    };
    let result = result.unwrap_or_else(|| {
        Err(Error::Internal(
            "a shared call ended without a result".into(),
        ))
    });
    (result, joined)
}

/// Drops expired and failed entries, then the oldest finished ones while over a bound.
fn prune<T: Cacheable>(entries: &mut HashMap<Vec<u8>, Entry<T>>) {
    entries.retain(|_, e| !matches!(e.kept_since(), Some(Err(()))));
    let mut finished: Vec<(Instant, usize, Vec<u8>)> = entries
        .iter()
        .filter_map(|(k, e)| match e.kept_since() {
            Some(Ok((at, bytes))) => Some((at, bytes, k.clone())),
            _ => None,
        })
        .collect();
    let mut bytes: usize = finished.iter().map(|(_, b, _)| b).sum();
    finished.sort_by_key(|(at, _, _)| *at);
    for (_, weight, key) in finished {
        if entries.len() < MAX_ENTRIES && bytes <= MAX_BYTES {
            break;
        }
        entries.remove(&key);
        bytes -= weight;
    }
}

/// The identity of a call: its target, command line (verb and arguments) and stdin,
/// unambiguously joined.
pub fn key(target: &str, line: &str, stdin: Option<&[u8]>) -> Vec<u8> {
    let mut key = Vec::new();
    for part in [target, line] {
        key.extend_from_slice(&(part.len() as u64).to_le_bytes());
        key.extend_from_slice(part.as_bytes());
    }
    if let Some(stdin) = stdin {
        key.push(1);
        key.extend_from_slice(stdin);
    }
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Debug, PartialEq)]
    struct Fake(Result<usize, ()>);

    impl Cacheable for Fake {
        fn keep(&self) -> bool {
            self.0.is_ok()
        }
        fn weight(&self) -> usize {
            *self.0.as_ref().unwrap_or(&0)
        }
    }

    /// Joins `key`, landing `value` at once when a new flight starts; true when it started.
    fn join(cache: &ResultCache<Fake>, key: &[u8], ttl: u64, value: Fake) -> bool {
        let (_, joined) = cache.join(key.to_vec(), Duration::from_secs(ttl), |tx| {
            tx.send_replace(Some((Instant::now(), value)));
        });
        !joined
    }

    #[tokio::test(start_paused = true)]
    async fn callers_join_a_running_flight_and_share_its_result_for_the_ttl() {
        let cache = ResultCache::<Fake>::default();
        let mut sender = None;
        let (mut first, joined) = cache.join(b"k".to_vec(), Duration::from_secs(2), |tx| {
            sender = Some(tx)
        });
        assert!(!joined);
        let (mut second, joined) = cache.join(b"k".to_vec(), Duration::from_secs(2), |_| {
            panic!("a second flight started")
        });
        assert!(joined, "the second caller joins the running flight");
        drop(first.clone());
        sender
            .unwrap()
            .send_replace(Some((Instant::now(), Fake(Ok(7)))));
        for rx in [&mut first, &mut second] {
            let landed = rx.wait_for(Option::is_some).await.unwrap();
            assert_eq!(landed.as_ref().unwrap().1, Fake(Ok(7)));
        }
        assert!(!join(&cache, b"k", 2, Fake(Ok(8))), "kept within the ttl");
        tokio::time::advance(Duration::from_secs(3)).await;
        assert!(join(&cache, b"k", 2, Fake(Ok(9))), "expired after the ttl");
    }

    #[tokio::test(start_paused = true)]
    async fn each_entry_expires_by_its_own_ttl_and_failures_are_not_kept() {
        let cache = ResultCache::<Fake>::default();
        assert!(join(&cache, b"long", 60, Fake(Ok(1))));
        assert!(join(&cache, b"short", 1, Fake(Ok(1))));
        assert!(join(&cache, b"failed", 60, Fake(Err(()))));
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(
            !join(&cache, b"long", 60, Fake(Ok(2))),
            "a short ttl does not prune a long one"
        );
        assert!(join(&cache, b"short", 1, Fake(Ok(2))));
        assert!(
            join(&cache, b"failed", 60, Fake(Ok(2))),
            "a failure is tried again"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_cache_is_bounded_in_bytes_and_entries() {
        let cache = ResultCache::<Fake>::default();
        assert!(join(&cache, b"a", 60, Fake(Ok(MAX_BYTES / 2))));
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(join(&cache, b"b", 60, Fake(Ok(MAX_BYTES / 2))));
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(join(&cache, b"c", 60, Fake(Ok(MAX_BYTES / 2))));
        assert!(
            join(&cache, b"d", 60, Fake(Ok(1))),
            "over the byte bound: the oldest went"
        );
        assert!(join(&cache, b"a", 60, Fake(Ok(1))));
        for i in 0..MAX_ENTRIES * 2 {
            join(&cache, format!("n{i}").as_bytes(), 60, Fake(Ok(1)));
        }
        assert!(cache.entries.lock().unwrap().len() <= MAX_ENTRIES);
    }

    #[test]
    fn keys_do_not_collide_across_boundaries() {
        assert_ne!(key("t", "a bc", None), key("t a", "bc", None));
        assert_ne!(key("t", "a", Some(b"")), key("t", "a", None));
        assert_ne!(key("t1", "a", None), key("t2", "a", None));
    }
}

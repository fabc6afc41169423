//! The verb result cache: identical calls (same verb, arguments and stdin) within a verb's
//! `cache_ttl` share one execution, single-flight: concurrent callers wait for the first.
//! A failure is shared only with the callers already waiting for it, never kept: the next
//! call tries again.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::OnceCell;
use tokio::time::Instant;

/// One shared execution, when it finished, and whether its result may be kept.
type Slot<T> = Arc<OnceCell<(Instant, T, bool)>>;

/// Results of one target's cacheable verbs.
pub struct ResultCache<T> {
    entries: Mutex<HashMap<Vec<u8>, Slot<T>>>,
}

impl<T: Clone> Default for ResultCache<T> {
    fn default() -> Self {
        ResultCache {
            entries: Mutex::new(HashMap::new()),
        }
    }
}

impl<T: Clone> ResultCache<T> {
    /// Runs `work` unless an identical call is running or finished less than `ttl` ago with a
    /// result that `keep` accepts; the flag says whether the result is a shared copy.
    pub async fn get_or_run<F>(
        &self,
        key: Vec<u8>,
        ttl: Duration,
        keep: impl Fn(&T) -> bool,
        work: F,
    ) -> (T, bool)
    where
        F: Future<Output = T>,
    {
        let slot = {
            let mut entries = self.entries.lock().expect("poisoned");
            entries.retain(|_, s| fresh(s, ttl));
            entries.entry(key).or_default().clone()
        };
        let mut ran = false;
        let (_, value, _) = slot
            .get_or_init(|| async {
                ran = true;
                let value = work.await;
                let kept = keep(&value);
                (Instant::now(), value, kept)
            })
            .await;
        (value.clone(), !ran)
    }
}

/// Still running, or finished within the ttl with a result worth keeping.
fn fresh<T>(slot: &Slot<T>, ttl: Duration) -> bool {
    slot.get()
        .is_none_or(|(done, _, kept)| *kept && done.elapsed() < ttl)
}

/// The identity of a call: verb, arguments and stdin, unambiguously joined.
pub fn key(verb: &str, args: &[String], stdin: Option<&[u8]>) -> Vec<u8> {
    let mut key = Vec::new();
    for part in std::iter::once(verb).chain(args.iter().map(String::as_str)) {
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
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test(start_paused = true)]
    async fn concurrent_identical_calls_run_once_and_expire() {
        let cache = Arc::new(ResultCache::<u32>::default());
        let runs = Arc::new(AtomicUsize::new(0));
        let call = |cache: Arc<ResultCache<u32>>, runs: Arc<AtomicUsize>| async move {
            cache
                .get_or_run(
                    key("health", &["s".into()], None),
                    Duration::from_secs(2),
                    |_| true,
                    async {
                        runs.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        7
                    },
                )
                .await
        };
        let handles: Vec<_> = (0..50)
            .map(|_| tokio::spawn(call(cache.clone(), runs.clone())))
            .collect();
        let mut shared = 0;
        for h in handles {
            let (v, cached) = h.await.unwrap();
            assert_eq!(v, 7);
            shared += cached as usize;
        }
        assert_eq!((runs.load(Ordering::SeqCst), shared), (1, 49));
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert!(!call(cache, runs.clone()).await.1);
        assert_eq!(runs.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn failures_are_not_kept() {
        let cache = ResultCache::<Result<u32, ()>>::default();
        let k = || key("health", &[], None);
        let ttl = Duration::from_secs(60);
        let (first, _) = cache
            .get_or_run(k(), ttl, Result::is_ok, async { Err(()) })
            .await;
        let (second, cached) = cache
            .get_or_run(k(), ttl, Result::is_ok, async { Ok(1) })
            .await;
        assert_eq!((first, second, cached), (Err(()), Ok(1), false));
        let (third, cached) = cache
            .get_or_run(k(), ttl, Result::is_ok, async { Ok(2) })
            .await;
        assert_eq!((third, cached), (Ok(1), true));
    }

    #[test]
    fn keys_do_not_collide_across_argument_boundaries() {
        assert_ne!(
            key("a", &["bc".into()], None),
            key("ab", &["c".into()], None)
        );
        assert_ne!(key("a", &[], Some(b"")), key("a", &[], None));
    }
}

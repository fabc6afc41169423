//! The verb result cache: identical calls (same verb, arguments and stdin) within a verb's
//! `cache_ttl` share one execution, single-flight: concurrent callers wait for the first.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::OnceCell;
use tokio::time::Instant;

/// One shared execution and when it finished.
type Slot<T> = Arc<OnceCell<(Instant, T)>>;

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
    /// Runs `work` unless an identical call is running or finished less than `ttl` ago; the
    /// flag says whether the result is a shared copy.
    pub async fn get_or_run<F>(&self, key: Vec<u8>, ttl: Duration, work: F) -> (T, bool)
    where
        F: Future<Output = T>,
    {
        let slot = {
            let mut entries = self.entries.lock().expect("poisoned");
            entries.retain(|_, s| fresh(s, ttl));
            entries.entry(key).or_default().clone()
        };
        let mut ran = false;
        let (_, value) = slot
            .get_or_init(|| async {
                ran = true;
                (Instant::now(), work.await)
            })
            .await;
        (value.clone(), !ran)
    }
}

/// Still running, or finished within the ttl.
fn fresh<T>(slot: &Slot<T>, ttl: Duration) -> bool {
    slot.get().is_none_or(|(done, _)| done.elapsed() < ttl)
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

    #[test]
    fn keys_do_not_collide_across_argument_boundaries() {
        assert_ne!(
            key("a", &["bc".into()], None),
            key("ab", &["c".into()], None)
        );
        assert_ne!(key("a", &[], Some(b"")), key("a", &[], None));
    }
}

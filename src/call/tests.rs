//! The call path (a call task through its target) against a scripted transport: deadlines,
//! re-sends, hang-ups, the cache and streaming, with no SSH and paused time.

use std::sync::Arc;
use std::time::Duration;

use super::cache::Results;
use super::registry::Registry;
use super::{Call, Piece, task};
use crate::config::{TargetConfig, VerbConfig};
use crate::error::Error;
use crate::metrics::Metrics;
use crate::runtime::Runtime;
use crate::target::Target;
use crate::transport::fake::{Fake, Step};
use crate::transport::output::Budget;
use crate::transport::{Request, Stream};

struct Bench {
    fake: Arc<Fake>,
    target: Arc<Target>,
    results: Arc<Results>,
    calls: Arc<Registry>,
    metrics: Metrics,
}

fn bench(room: usize, script: Vec<Step>) -> Bench {
    let fake = Arc::new(Fake::new(room, script));
    let metrics = Metrics::new();
    let runtime = Runtime::new(Budget::unmetered(1 << 20));
    let target = Target::with_transport(
        "t",
        TargetConfig::default(),
        fake.clone(),
        metrics.target("t"),
        runtime,
    );
    Bench {
        fake,
        target: Arc::new(target),
        results: Arc::default(),
        calls: Arc::default(),
        metrics,
    }
}

fn call(verb: VerbConfig, timeout: Duration) -> Call {
    Call {
        request_id: "r1".into(),
        verb: "v".into(),
        verb_config: verb,
        request: Request {
            line: "v".into(),
            stdin: None,
            in_band: None,
        },
        timeout,
        caller_uid: None,
        trace: crate::trace::Trace::fresh(),
    }
}

fn verb(idempotent: bool, cache_ttl: Duration) -> VerbConfig {
    VerbConfig {
        idempotent,
        cache_ttl,
        ..VerbConfig::default()
    }
}

impl Bench {
    /// Runs a buffered call to its answer: stdout, or the error.
    async fn buffered(&self, call: Call) -> Result<(String, bool), Error> {
        let (reply, mut answered) = task::buffered();
        task::start(&self.target, &self.results, &self.calls, call, reply);
        let answer = answered.recv().await.expect("an answer");
        answer
            .result
            .map(|out| (out.stdout.text(), answer.meta.cached))
    }

    /// Runs a streamed call to its end: every piece.
    async fn streamed(&self, call: Call) -> Vec<Piece> {
        let (reply, mut rx) = task::streamed();
        task::start(&self.target, &self.results, &self.calls, call, reply);
        let mut pieces = Vec::new();
        while let Some(piece) = rx.recv().await {
            pieces.push(piece);
        }
        pieces
    }

    /// Starts a buffered call and hangs up `after` it started; returns once the call task
    /// has ended.
    async fn hang_up(&self, call: Call, after: Duration, then: impl AsyncFnOnce()) {
        let (reply, answered) = task::buffered();
        task::start(&self.target, &self.results, &self.calls, call, reply);
        tokio::time::sleep(after).await;
        drop(answered);
        then().await;
        self.settled().await;
    }

    async fn settled(&self) {
        self.target.calls().close();
        self.target.calls().wait().await;
    }

    fn abandoned(&self, stage: &str) -> bool {
        let line =
            format!("tether_calls_abandoned_total{{stage=\"{stage}\",target=\"t\",verb=\"v\"}} 1");
        self.metrics.render().contains(&line)
    }
}

const SECOND: Duration = Duration::from_secs(1);

#[tokio::test(start_paused = true)]
async fn a_buffered_call_answers_with_the_remote_output() {
    let b = bench(8, vec![Step::Answer(vec!["hel", "lo"], 0)]);
    let answer = b.buffered(call(verb(false, Duration::ZERO), SECOND)).await;
    assert_eq!(answer.unwrap(), ("hello".to_string(), false));
    assert_eq!(b.fake.sent(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_call_past_its_deadline_answers_timeout_with_its_own_timeout() {
    let b = bench(8, vec![Step::Hang]);
    let answer = b
        .buffered(call(verb(true, Duration::ZERO), 3 * SECOND))
        .await;
    assert!(
        matches!(answer, Err(Error::Timeout(t)) if t == 3 * SECOND),
        "{answer:?}"
    );
    assert_eq!(b.fake.attempts(), 1, "a timeout is never re-sent");
}

#[tokio::test(start_paused = true)]
async fn a_call_waiting_for_room_past_its_deadline_answers_timeout() {
    let b = bench(0, vec![]);
    let answer = b
        .buffered(call(verb(false, Duration::ZERO), 2 * SECOND))
        .await;
    assert!(
        matches!(answer, Err(Error::Timeout(t)) if t == 2 * SECOND),
        "{answer:?}"
    );
    assert_eq!(b.fake.sent(), 0);
}

#[tokio::test(start_paused = true)]
async fn an_idempotent_call_is_sent_again_once_after_a_lost_connection() {
    let b = bench(
        8,
        vec![Step::LostAfterSend(""), Step::Answer(vec!["two"], 0)],
    );
    let answer = b.buffered(call(verb(true, Duration::ZERO), SECOND)).await;
    assert_eq!(answer.unwrap().0, "two");
    assert_eq!(b.fake.sent(), 2);

    let b = bench(8, vec![Step::LostBeforeSend, Step::LostAfterSend("")]);
    let answer = b.buffered(call(verb(true, Duration::ZERO), SECOND)).await;
    assert!(
        matches!(answer, Err(Error::ConnectionLost(_))),
        "{answer:?}"
    );
    assert_eq!(b.fake.attempts(), 2, "once again, not more");
}

#[tokio::test(start_paused = true)]
async fn a_call_that_is_not_idempotent_is_never_sent_twice() {
    let b = bench(8, vec![Step::LostAfterSend("half")]);
    let answer = b.buffered(call(verb(false, Duration::ZERO), SECOND)).await;
    assert!(
        matches!(answer, Err(Error::ConnectionLost(_))),
        "{answer:?}"
    );
    assert_eq!(b.fake.attempts(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_stream_whose_output_reached_the_caller_is_not_sent_again() {
    let b = bench(
        8,
        vec![Step::LostAfterSend("partial"), Step::Answer(vec!["x"], 0)],
    );
    let pieces = b.streamed(call(verb(true, Duration::ZERO), SECOND)).await;
    assert!(matches!(&pieces[0], Piece::Started));
    assert!(matches!(&pieces[1], Piece::Output(Stream::Stdout, t) if t == "partial"));
    assert!(matches!(
        &pieces[2],
        Piece::End(_, Err(Error::ConnectionLost(_)))
    ));
    assert_eq!(pieces.len(), 3);
    assert_eq!(
        b.fake.attempts(),
        1,
        "a re-send would repeat what the caller saw"
    );
}

#[tokio::test(start_paused = true)]
async fn a_stream_hands_on_output_in_order_then_one_end() {
    let b = bench(8, vec![Step::Answer(vec!["a", "b", "c"], 3)]);
    let pieces = b.streamed(call(verb(false, Duration::ZERO), SECOND)).await;
    let text: String = pieces
        .iter()
        .filter_map(|p| match p {
            Piece::Output(Stream::Stdout, t) => Some(t.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(text, "abc");
    assert!(matches!(pieces.first(), Some(Piece::Started)));
    let Some(Piece::End(meta, Ok(ending))) = pieces.last() else {
        panic!("{pieces:?}")
    };
    assert_eq!((ending.exit.status, meta.cached), (Some(3), false));
}

#[tokio::test(start_paused = true)]
async fn a_caller_who_hangs_up_while_queued_is_never_sent() {
    let b = bench(0, vec![]);
    let queued = call(verb(false, Duration::ZERO), 60 * SECOND);
    b.hang_up(queued, SECOND, async || {
        tokio::time::sleep(SECOND).await;
        b.fake.add_room(1);
    })
    .await;
    assert_eq!(b.fake.sent(), 0, "nobody wanted it");
    assert!(b.abandoned("queued"), "{}", b.metrics.render());
}

#[tokio::test(start_paused = true)]
async fn a_caller_who_hangs_up_after_the_send_leaves_the_call_running() {
    let b = bench(8, vec![Step::Hang]);
    let sent = call(verb(false, Duration::ZERO), 5 * SECOND);
    b.hang_up(sent, SECOND, async || {}).await;
    assert_eq!(b.fake.sent(), 1);
    assert!(b.abandoned("running"), "{}", b.metrics.render());
}

#[tokio::test(start_paused = true)]
async fn identical_calls_of_a_cached_verb_share_one_run() {
    let b = Arc::new(bench(8, vec![]));
    let cached = verb(false, 10 * SECOND);
    let mut callers = tokio::task::JoinSet::new();
    for _ in 0..5 {
        let (b, call) = (b.clone(), call(cached.clone(), SECOND));
        callers.spawn(async move { b.buffered(call).await });
    }
    let answers = callers.join_all().await;
    assert_eq!(b.fake.sent(), 1, "one run for five callers");
    let shared = answers.iter().filter(|a| a.as_ref().unwrap().1).count();
    assert_eq!(shared, 4, "{answers:?}");
    let pieces = b.streamed(call(cached, SECOND)).await;
    assert!(matches!(pieces.last(), Some(Piece::End(meta, Ok(_))) if meta.cached));
    assert_eq!(
        b.fake.sent(),
        1,
        "a streamed caller replays the kept result"
    );
}

#[tokio::test(start_paused = true)]
async fn a_target_known_down_fails_fast_without_an_attempt() {
    let b = bench(8, vec![]);
    b.fake.set_connected(false);
    let down = Error::UpstreamUnreachable("no route".into());
    for _ in 0..TargetConfig::default().probe.fail_threshold {
        b.target.health.transport(Err(&down));
    }
    let answer = b
        .buffered(call(verb(true, Duration::ZERO), 60 * SECOND))
        .await;
    assert!(
        matches!(&answer, Err(Error::UpstreamUnreachable(m)) if m.contains("is down")),
        "{answer:?}"
    );
    assert_eq!(b.fake.attempts(), 0);
}

/// Yields (paused time moves on) until `cond` holds for the calls in flight.
async fn until_listed(b: &Bench, cond: impl Fn(&super::registry::Listing) -> bool) {
    while !cond(&b.calls.list()) {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_queued_call_an_operator_cancels_is_never_sent_and_leaves_the_listing() {
    let b = bench(0, vec![]);
    let (reply, mut answered) = task::buffered();
    task::start(
        &b.target,
        &b.results,
        &b.calls,
        call(verb(false, Duration::ZERO), 10 * SECOND),
        reply,
    );
    until_listed(&b, |l| l.total == 1).await;
    let cancelled = b.calls.cancel("r1");
    assert_eq!(cancelled.len(), 1);
    assert!(!cancelled[0].sent);
    let answer = answered.recv().await.expect("an answer");
    assert!(
        matches!(&answer.result, Err(Error::Cancelled(m)) if m.contains("never sent")),
        "{:?}",
        answer.result.err()
    );
    b.settled().await;
    assert_eq!(b.fake.sent(), 0);
    assert_eq!(b.calls.list().total, 0, "the entry goes with its task");
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_waiter_of_a_shared_run_is_detached_and_the_run_goes_on() {
    let b = bench(8, vec![Step::Hang]);
    let cached = verb(true, 10 * SECOND);
    let start = |id: &str| {
        let (reply, answered) = task::buffered();
        let mut c = call(cached.clone(), 5 * SECOND);
        c.request_id = id.into();
        task::start(&b.target, &b.results, &b.calls, c, reply);
        answered
    };
    let mut first = start("first");
    let mut second = start("second");
    until_listed(&b, |l| l.total == 2).await;
    assert_eq!(b.calls.cancel("second").len(), 1);
    let detached = second.recv().await.expect("an answer");
    assert!(
        matches!(&detached.result, Err(Error::Cancelled(m)) if m.contains("shared")),
        "{:?}",
        detached.result.err()
    );
    let ran_on = first.recv().await.expect("an answer");
    assert!(
        matches!(ran_on.result, Err(Error::Timeout(_))),
        "the shared run went on to its deadline"
    );
    assert_eq!(b.fake.sent(), 1);
}

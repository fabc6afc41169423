//! `cargo bench --bench shim`: what `tether shim` costs per call.
//!
//! One OpenSSH sshd, two authorized keys: one whose forced command is `/bin/true`, one whose
//! forced command is `tether shim --config …` (release build) with a plain verb that runs
//! `/bin/true`. Each key has one warm russh connection (the floor caller of the compare bench);
//! calls alternate between the two so load from elsewhere hits both alike. Then keyed calls:
//! a fresh key every call (a run through the journal and a supervisor) against the same key
//! again (a replay). And, without sshd, the same two processes spawned directly.
//!
//! Knobs: BENCH_SHIM_CALLS (400 per series).

#[path = "../tests/common/mod.rs"]
mod common;

#[allow(dead_code)]
#[path = "compare/callers.rs"]
mod callers;
#[allow(dead_code)]
#[path = "compare/stats.rs"]
mod stats;

use std::fs;
use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

use callers::{Caller, Floor};
use common::keys::ClientKey;
use common::sshd::Sshd;
use common::tether::BIN;
use stats::Samples;

const WARMUP: usize = 20;

const SHIM_TOML: &str = r#"
journal_dir = "{dir}/journal"
audit_log = "{dir}/audit.jsonl"

[verbs.true]
exec = ["/bin/true"]

[verbs.echo]
exec = ["/bin/echo", "{1}"]
args = 1
key_arg = 1
"#;

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("shim: skipped (run `cargo bench --bench shim`)");
        return;
    }
    let calls: usize = std::env::var("BENCH_SHIM_CALLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(400);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(run(calls));
}

async fn run(calls: usize) {
    let sshd = Sshd::builder().forced_command("/bin/true").start();
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("shim.toml");
    fs::write(
        &config,
        SHIM_TOML.replace("{dir}", &dir.path().display().to_string()),
    )
    .expect("write shim.toml");
    let shim_key = ClientKey::generate(dir.path(), "shim_key", "ed25519");
    let line = format!(
        "command=\"{BIN} shim --config {}\",from=\"127.0.0.1\",no-pty,no-port-forwarding,\
         no-agent-forwarding,no-X11-forwarding,no-user-rc {}\n",
        config.display(),
        shim_key.public_key
    );
    fs::OpenOptions::new()
        .append(true)
        .open(sshd.dir().join("authorized_keys"))
        .and_then(|mut f| f.write_all(line.as_bytes()))
        .expect("authorize the shim key");

    let direct =
        Arc::new(Floor::connect(sshd.port(), sshd.user(), &sshd.ed25519_key().private_key).await);
    let shim = Arc::new(Floor::connect(sshd.port(), sshd.user(), &shim_key.private_key).await);
    let caller = |conn: &Arc<Floor>, line: &str, expect: &str| Caller::Floor {
        conn: conn.clone(),
        line: line.into(),
        expect: expect.into(),
    };

    println!("tether shim start-up through sshd ({calls} calls per series, interleaved)\n");
    let mut true_direct = Samples::default();
    let mut true_shim = Samples::default();
    for i in 0..WARMUP + calls {
        for (conn, series) in [(&direct, &mut true_direct), (&shim, &mut true_shim)] {
            let t = Instant::now();
            let result = caller(conn, "true", "").call().await;
            if i >= WARMUP {
                series.record(t.elapsed(), result);
            }
        }
    }

    let mut fresh = Samples::default();
    let mut replay = Samples::default();
    let replayed = "replayed-key";
    caller(&shim, &format!("echo {replayed}"), &format!("{replayed}\n"))
        .call()
        .await
        .expect("the first keyed call");
    for i in 0..WARMUP + calls {
        let key = format!("k{i}");
        let t = Instant::now();
        let result = caller(&shim, &format!("echo {key}"), &format!("{key}\n"))
            .call()
            .await;
        if i >= WARMUP {
            fresh.record(t.elapsed(), result);
        }
        let t = Instant::now();
        let result = caller(&shim, &format!("echo {replayed}"), &format!("{replayed}\n"))
            .call()
            .await;
        if i >= WARMUP {
            replay.record(t.elapsed(), result);
        }
    }

    let mut local_true = Samples::default();
    let mut local_shim = Samples::default();
    for i in 0..WARMUP + calls {
        let t = Instant::now();
        let ok = Command::new("/bin/true")
            .status()
            .is_ok_and(|s| s.success());
        if i >= WARMUP {
            local_true.record(t.elapsed(), ok.then_some(()).ok_or(()));
        }
        let t = Instant::now();
        let ok = Command::new(BIN)
            .args(["shim", "--config"])
            .arg(&config)
            .env("SSH_ORIGINAL_COMMAND", "true")
            .stdin(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if i >= WARMUP {
            local_shim.record(t.elapsed(), ok.then_some(()).ok_or(()));
        }
    }

    println!("| series | calls | errors | p50 ms | p99 ms | mean ms |");
    println!("|---|---|---|---|---|---|");
    let rows = [
        ("sshd, forced command /bin/true", &true_direct),
        ("sshd, tether shim -> /bin/true", &true_shim),
        ("sshd, tether shim keyed, fresh key (run)", &fresh),
        ("sshd, tether shim keyed, same key (replay)", &replay),
        ("no sshd: spawn /bin/true", &local_true),
        ("no sshd: spawn tether shim -> /bin/true", &local_shim),
    ];
    for (name, samples) in rows {
        let s = samples.summary();
        println!(
            "| {name} | {} | {} | {:.2} | {:.2} | {:.2} |",
            s.calls, s.errors, s.p50_ms, s.p99_ms, s.mean_ms
        );
    }
    let (a, b) = (true_direct.summary(), true_shim.summary());
    println!(
        "\nshim start-up cost at p50: {:+.2} ms (goal: at most +2 ms); at p99: {:+.2} ms",
        b.p50_ms - a.p50_ms,
        b.p99_ms - a.p99_ms
    );
    let (f, r) = (fresh.summary(), replay.summary());
    println!(
        "keyed: a replay takes {:.2} ms at p50 against {:.2} ms for a fresh run",
        r.p50_ms, f.p50_ms
    );
}

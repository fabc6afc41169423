//! The status page (`GET /` on the admin port, docs/metrics.md): the target, its badge, an
//! inline chart, a self-refresh, no external assets, and the last error in words once
//! something failed.
//!
//! `cargo test --test status_page -- --ignored --nocapture` also renders it in headless
//! Chromium (scripts/status-page-screenshot.sh) in the up and down states, for a person to look at.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::sshd::Sshd;
use common::tether::{TARGET, Tether, TetherConfig};
use common::wait_until;
use serde_json::json;

fn spawn(sshd: &Sshd) -> Tether {
    TetherConfig::for_sshd(sshd)
        .set("targets.laptop.probe.interval", "200ms")
        .spawn()
}

fn page(tether: &Tether) -> String {
    let resp = tether.admin_get("/");
    assert_eq!(resp.status, 200);
    assert!(
        resp.header("content-type")
            .is_some_and(|c| c.starts_with("text/html")),
        "{:?}",
        resp.headers
    );
    resp.text()
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// No `src`/`href`/`url()`/`@import` that would fetch anything from another origin.
fn assert_self_contained(html: &str) {
    let lower = html.to_ascii_lowercase();
    for bad in [
        "src=\"http",
        "src='http",
        "src=http",
        "href=\"http",
        "href='http",
        "href=http",
        "href=\"//",
        "src=\"//",
        "url(http",
        "url(//",
        "url(\"http",
        "url('http",
        "@import",
    ] {
        assert!(
            !lower.contains(bad),
            "external asset ({bad}) in the page:\n{html}"
        );
    }
    assert!(!lower.contains("<script src"), "external script:\n{html}");
}

#[test]
fn page_shows_the_target_state_chart_and_last_error() {
    let mut sshd = Sshd::start();
    let tether = spawn(&sshd);
    tether.wait_status("up");
    let (code, _) = tether.call(&json!({"verb": "health", "args": ["s1"]}));
    assert_eq!(code, 200);

    let html = page(&tether);
    assert!(html.starts_with("<!doctype html>"), "{html}");
    assert!(
        html.contains(&format!("<h2>{TARGET} ")),
        "target name:\n{html}"
    );
    assert!(html.contains("class=\"badge up\""), "up badge:\n{html}");
    assert!(html.contains("<svg"), "inline chart:\n{html}");
    assert!(
        html.contains("<meta http-equiv=\"refresh\""),
        "refreshes itself:\n{html}"
    );
    assert!(html.contains(env!("CARGO_PKG_VERSION")), "version:\n{html}");
    assert!(html.contains("<td>health</td>"), "calls by verb:\n{html}");
    assert!(!html.contains("Recent errors"), "no errors yet:\n{html}");
    assert_self_contained(&html);

    sshd.kill();
    tether.wait_status("down");
    // The page shows the error the health JSON reports, in words.
    let mut last = String::new();
    let mut message = String::new();
    let shown = wait_until(Duration::from_secs(5), || {
        last = page(&tether);
        let err = &tether.target_health()["last_error"];
        message = err["message"].as_str().unwrap_or_default().to_string();
        !message.is_empty() && last.contains(&escape(&message))
    });
    assert!(shown, "last error {message:?} not on the page:\n{last}");
    assert!(last.contains("class=\"badge down\""), "down badge:\n{last}");
    assert!(last.contains("upstream_unreachable"), "error code:\n{last}");
    assert_self_contained(&last);
}

/// Renders the page in the up and the down state with headless Chromium and prints where the
/// PNGs are. Needs chromium; run by hand (see the module doc).
#[test]
#[ignore = "needs chromium; writes screenshots for a person to look at"]
fn screenshots_up_and_down() {
    let dir = std::env::var_os("TETHER_SCREENSHOT_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("screenshots"));
    std::fs::create_dir_all(&dir).unwrap();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/scripts/status-page-screenshot.sh"
    );
    let shoot = |tether: &Tether, name: &str| {
        let url = format!("http://{}/", tether.admin_addr().unwrap());
        let out = dir.join(name);
        let run = Command::new(script).arg(&url).arg(&out).output().unwrap();
        assert!(run.status.success(), "{run:?}");
        eprintln!("{url} -> {}", out.display());
    };

    let mut sshd = Sshd::start();
    let tether = spawn(&sshd);
    tether.wait_status("up");
    for i in 0..20 {
        let verb = if i % 5 == 4 { "nope" } else { "health" };
        tether.call(&json!({"verb": verb, "args": [format!("s{}", i % 3)]}));
    }
    // Some probe history for the chart.
    let points = |t: &Tether| {
        t.metrics().sum(
            "tether_probes_total",
            &[("kind", "transport"), ("result", "ok")],
        )
    };
    assert!(wait_until(Duration::from_secs(20), || points(&tether) >= 30.0));
    shoot(&tether, "status-up.png");

    sshd.kill();
    tether.wait_status("down");
    let failures = |t: &Tether| {
        t.target_health()["consecutive_failures"]
            .as_u64()
            .unwrap_or(0)
    };
    assert!(wait_until(Duration::from_secs(20), || failures(&tether) >= 10));
    shoot(&tether, "status-down.png");

    sshd.restart();
    tether.wait_status("up");
    assert!(wait_until(Duration::from_secs(20), || {
        tether.target_health()["last_ok_at"].is_string() && points(&tether) >= 50.0
    }));
    shoot(&tether, "status-recovered.png");
}

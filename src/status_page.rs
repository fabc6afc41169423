//! The status page: per target a status badge, the last error in words, probe latency over
//! the last minutes as an inline SVG chart, pool numbers and calls by verb; then the calls in
//! flight (oldest first: state, age, time queued; never arguments). No external assets; it
//! refreshes itself.

use std::fmt::Write;
use std::time::{Duration, SystemTime};

use crate::call::registry::Listing;
use crate::health::{LastError, Status, millis};
use crate::sidecar::Sidecar;
use crate::target::Target;

const CHART_W: f64 = 600.0;
const CHART_H: f64 = 120.0;
/// Calls in flight the page lists at most (the oldest); `tether calls` lists more.
const CALLS_SHOWN: usize = 50;

/// Renders the whole page.
pub fn render(shared: &Sidecar) -> String {
    let mut html = String::from(HEAD);
    for target in shared.targets.values() {
        target_section(&mut html, target);
    }
    calls_section(&mut html, &shared.calls.list());
    let _ = write!(
        html,
        "<footer>tether {} · refreshes every 5 s · <a href=\"/v1/health\">/v1/health</a> · <a href=\"/v1/calls\">/v1/calls</a> · <a href=\"/metrics\">/metrics</a></footer></body></html>",
        env!("CARGO_PKG_VERSION")
    );
    html
}

fn target_section(html: &mut String, t: &Target) {
    let status = t.health.status();
    let pool = t.pool_numbers();
    let history = t.health.history();
    let _ = write!(
        html,
        "<section class=\"{s}\"><h2>{name} <span class=\"badge {s}\">{s}</span></h2><p class=\"addr\">{user}@{addr} · {meaning}</p>",
        name = escape(&t.name),
        s = status.as_str(),
        user = escape(&t.config.user),
        addr = escape(&t.config.addr()),
        meaning = meaning(status),
    );
    let errors = t.health.recent_errors();
    if status != Status::Up
        && let Some(last) = errors.first()
    {
        let _ = write!(
            html,
            "<p class=\"why\"><b>Last error</b> at {}: {} <code>{}</code></p>",
            clock(&last.at),
            escape(&last.message),
            escape(&last.code)
        );
    }
    let last_ok = history
        .iter()
        .rev()
        .find(|(_, l)| l.is_some())
        .map(|(at, _)| *at);
    let last_ok = match last_ok.and_then(|at| SystemTime::now().duration_since(at).ok()) {
        Some(ago) => format!("{:.1} s ago", ago.as_secs_f64()),
        None if status == Status::Unknown => "never".to_string(),
        None => "over the chart's window ago".to_string(),
    };
    let _ = write!(
        html,
        "<p class=\"nums\">last ok probe <b>{last_ok}</b> · <b>{}</b> connections · <b>{}/{}</b> channels in use · <b>{}</b> calls waiting</p>",
        pool.connections, pool.channels_in_use, pool.channels_capacity, pool.waiting
    );
    chart(html, &history);
    if !errors.is_empty() {
        html.push_str("<h3>Recent errors</h3><ul class=\"errors\">");
        for (e, n, oldest) in collapse(&errors) {
            let repeat = if n > 1 {
                format!(" <span class=\"muted\">×{n} since {}</span>", clock(oldest))
            } else {
                String::new()
            };
            let _ = write!(
                html,
                "<li><time>{}</time> <code>{}</code> {}{repeat}</li>",
                clock(&e.at),
                escape(&e.code),
                escape(&e.message)
            );
        }
        html.push_str("</ul>");
    }
    let calls = t.metrics.calls_by_verb();
    if !calls.is_empty() {
        html.push_str("<h3>Calls</h3><table><tr><th>verb</th><th>result</th><th>count</th></tr>");
        for (verb, code, n) in calls {
            let _ = write!(
                html,
                "<tr><td>{}</td><td>{}</td><td>{n}</td></tr>",
                escape(&verb),
                escape(&code)
            );
        }
        html.push_str("</table>");
    }
    html.push_str("</section>");
}

fn calls_section(html: &mut String, listing: &Listing) {
    let _ = write!(
        html,
        "<section><h2>Calls in flight <span class=\"muted\">({})</span></h2>",
        listing.total
    );
    if listing.total == 0 {
        html.push_str("<p class=\"muted\">None.</p></section>");
        return;
    }
    html.push_str("<table class=\"calls\"><tr><th>request id</th><th>target</th><th>verb</th><th>state</th><th>age</th><th>queued</th></tr>");
    for call in listing.calls.iter().take(CALLS_SHOWN) {
        let gone = if call.abandoned { " (caller gone)" } else { "" };
        let _ = write!(
            html,
            "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}{gone}</td><td>{:.1} s</td><td>{:.1} s</td></tr>",
            escape(&call.request_id),
            escape(&call.target),
            escape(&call.verb),
            call.state.as_str(),
            call.age_ms as f64 / 1000.0,
            call.queued_ms as f64 / 1000.0,
        );
    }
    html.push_str("</table>");
    if listing.total > CALLS_SHOWN {
        let _ = write!(
            html,
            "<p class=\"muted\">the oldest {CALLS_SHOWN} of {}; <code>tether calls</code> or <a href=\"/v1/calls\">/v1/calls</a> for more</p>",
            listing.total
        );
    }
    html.push_str("</section>");
}

/// Runs of the same error (newest first) as one line: the newest, how many, the oldest time.
fn collapse(errors: &[LastError]) -> Vec<(&LastError, usize, &str)> {
    let mut out: Vec<(&LastError, usize, &str)> = Vec::new();
    for e in errors {
        match out.last_mut() {
            Some((first, n, oldest)) if first.code == e.code && first.message == e.message => {
                *n += 1;
                *oldest = &e.at;
            }
            _ => out.push((e, 1, &e.at)),
        }
    }
    out
}

/// "2026-11-21T10:00:00.123456Z" -> "10:00:00 UTC" (the page is read by a person).
fn clock(rfc3339: &str) -> String {
    match rfc3339.get(11..19) {
        Some(hms) => format!("{} UTC", escape(hms)),
        None => escape(rfc3339),
    }
}

fn meaning(status: Status) -> &'static str {
    match status {
        Status::Up => "reachable; the shim answers",
        Status::Degraded => "reachable, but the shim probe fails",
        Status::Down => "unreachable (asleep, offline or refusing us); calls fail fast",
        Status::Unknown => "no probe has finished yet",
    }
}

/// Probe latency as bars, newest at the right; a failed probe is a full-height red bar.
fn chart(html: &mut String, history: &[(SystemTime, Option<Duration>)]) {
    if history.is_empty() {
        html.push_str("<p class=\"muted\">No probes yet.</p>");
        return;
    }
    let max = history
        .iter()
        .filter_map(|(_, l)| l.map(millis))
        .fold(1.0_f64, f64::max);
    let slots = history.len().max(60);
    let step = CHART_W / slots as f64;
    let span = match (history.first(), history.last()) {
        (Some((first, _)), Some((last, _))) => last.duration_since(*first).unwrap_or_default(),
        _ => Duration::ZERO,
    };
    let failed = history.iter().filter(|(_, l)| l.is_none()).count();
    let _ = write!(
        html,
        "<h3>Probe latency, last {:.0} s ({} probes, {failed} failed; top = {max:.1} ms)</h3><svg viewBox=\"0 0 {CHART_W} {CHART_H}\" preserveAspectRatio=\"none\" role=\"img\" aria-label=\"probe latency\">",
        span.as_secs_f64(),
        history.len(),
    );
    let offset = (slots - history.len()) as f64 * step;
    for (i, (_, latency)) in history.iter().enumerate() {
        let x = offset + i as f64 * step;
        let (h, class) = match latency {
            Some(l) => ((millis(*l) / max * (CHART_H - 4.0)).max(2.0), "ok"),
            None => (CHART_H, "fail"),
        };
        let _ = write!(
            html,
            "<rect class=\"{class}\" x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{h:.1}\"/>",
            CHART_H - h,
            (step - 1.0).max(1.0)
        );
    }
    html.push_str("</svg><p class=\"axis\"><span>older</span><span>now</span></p>");
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

const HEAD: &str = r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="5"><meta name="viewport" content="width=device-width"><title>tether status</title><style>
body{font:15px/1.4 system-ui,sans-serif;margin:2rem auto;max-width:44rem;color:#1d2430;background:#f6f7f9}
section{background:#fff;border:1px solid #dde1e6;border-radius:8px;padding:1rem 1.25rem;margin-bottom:1rem}
h1{font-size:1.3rem}h2{margin:.2rem 0;font-size:1.2rem}h3{font-size:.95rem;margin:1rem 0 .3rem;color:#4a5361}
.badge{font-size:.95rem;padding:.2rem .8rem;border-radius:999px;color:#fff;vertical-align:middle;text-transform:uppercase;letter-spacing:.04em}
.badge.up{background:#1f883d}.badge.degraded{background:#bf8700}.badge.down{background:#cf222e}.badge.unknown{background:#6e7781}
.addr,.muted,footer{color:#6e7781}.nums b{font-variant-numeric:tabular-nums}
section.up{border-left:6px solid #1f883d}section.degraded{border-left:6px solid #bf8700}section.down{border-left:6px solid #cf222e}section.unknown{border-left:6px solid #6e7781}
.why{background:#fff1f0;border-radius:4px;padding:.4rem .6rem}
svg{width:100%;height:120px;background:#f6f8fa;border-radius:4px}rect.ok{fill:#2da44e}rect.fail{fill:#f4a6ab}
.axis{display:flex;justify-content:space-between;margin:0;font-size:.75rem;color:#6e7781}
table{border-collapse:collapse}td,th{padding:.2rem .8rem .2rem 0;text-align:left}ul.errors{padding-left:1rem}code{color:#cf222e}
</style></head><body><h1>tether</h1>"#;

//! The status page: per target a status badge, the last error in words, probe latency over
//! the last minutes as an inline SVG chart, pool numbers and calls by verb. No external
//! assets; it refreshes itself.

use std::fmt::Write;
use std::time::Duration;

use crate::health::{Status, millis};
use crate::state::Shared;
use crate::target::Target;

const CHART_W: f64 = 600.0;
const CHART_H: f64 = 120.0;

/// Renders the whole page.
pub fn render(shared: &Shared) -> String {
    let mut html = String::from(HEAD);
    for target in shared.targets.values() {
        target_section(&mut html, target);
    }
    let _ = write!(
        html,
        "<footer>tether {} · refreshes every 5 s · <a href=\"/v1/health\">/v1/health</a> · <a href=\"/metrics\">/metrics</a></footer></body></html>",
        env!("CARGO_PKG_VERSION")
    );
    html
}

fn target_section(html: &mut String, t: &Target) {
    let status = t.health.status();
    let pool = t.pool_numbers();
    let _ = write!(
        html,
        "<section><h2>{name} <span class=\"badge {s}\">{s}</span></h2><p class=\"addr\">{user}@{addr} · {meaning}</p>",
        name = escape(&t.name),
        s = status.as_str(),
        user = escape(&t.config.user),
        addr = escape(&t.config.addr()),
        meaning = meaning(status),
    );
    let _ = write!(
        html,
        "<p class=\"nums\"><b>{}</b> connections · <b>{}/{}</b> channels in use · <b>{}</b> calls waiting</p>",
        pool.connections, pool.channels_in_use, pool.channels_capacity, pool.waiting
    );
    chart(html, &t.health.history());
    let errors = t.health.recent_errors();
    if let Some(last) = errors.first() {
        let _ = write!(
            html,
            "<h3>Recent errors</h3><ul class=\"errors\">{}</ul>",
            errors
                .iter()
                .map(|e| format!(
                    "<li><time>{}</time> <code>{}</code> {}</li>",
                    escape(&e.at),
                    escape(&e.code),
                    escape(&e.message)
                ))
                .collect::<String>()
        );
        let _ = last;
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

fn meaning(status: Status) -> &'static str {
    match status {
        Status::Up => "reachable; the shim answers",
        Status::Degraded => "reachable, but the shim probe fails",
        Status::Down => "unreachable (asleep, offline or refusing us); calls fail fast",
        Status::Unknown => "no probe has finished yet",
    }
}

/// Probe latency as bars: grey for a failed probe, the scale in milliseconds.
fn chart(html: &mut String, history: &[(std::time::SystemTime, Option<Duration>)]) {
    if history.is_empty() {
        html.push_str("<p class=\"muted\">No probes yet.</p>");
        return;
    }
    let max = history
        .iter()
        .filter_map(|(_, l)| l.map(millis))
        .fold(1.0_f64, f64::max);
    let step = CHART_W / history.len().max(60) as f64;
    let _ = write!(
        html,
        "<h3>Probe latency, last {} probes (max {max:.1} ms)</h3><svg viewBox=\"0 0 {CHART_W} {CHART_H}\" role=\"img\" aria-label=\"probe latency\">",
        history.len()
    );
    for (i, (_, latency)) in history.iter().enumerate() {
        let x = i as f64 * step;
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
    html.push_str("</svg>");
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
.badge{font-size:.8rem;padding:.15rem .6rem;border-radius:999px;color:#fff;vertical-align:middle;text-transform:uppercase;letter-spacing:.04em}
.up{background:#1f883d}.degraded{background:#bf8700}.down{background:#cf222e}.unknown{background:#6e7781}
.addr,.muted,footer{color:#6e7781}.nums b{font-variant-numeric:tabular-nums}
svg{width:100%;height:120px;background:#f6f8fa;border-radius:4px}rect.ok{fill:#2da44e}rect.fail{fill:#d0d7de}
table{border-collapse:collapse}td,th{padding:.2rem .8rem .2rem 0;text-align:left}ul.errors{padding-left:1rem}code{color:#cf222e}
</style></head><body><h1>tether</h1>"#;

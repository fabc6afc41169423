//! W3C trace context (https://www.w3.org/TR/trace-context/) for a call: the caller's
//! `traceparent` and `tracestate` when valid, else a fresh trace; the call's `trace_id` is
//! logged, listed in `/v1/calls` and answered, and [`Trace::downstream`] is the traceparent
//! tether hands on (same trace, tether's own span). An invalid header is ignored, never an
//! error (docs/rpc.md, "Trace context").

/// Longest `tracestate` kept (W3C trace context's limit for what a vendor must propagate).
const MAX_TRACESTATE: usize = 512;
/// Length of a version-00 traceparent: `00-` 32 hex `-` 16 hex `-` 2 hex.
const TRACEPARENT_LEN: usize = 55;

/// A call's trace context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trace {
    /// 32 lowercase hex digits, never all zero.
    pub trace_id: String,
    /// The caller's span (16 hex), when the caller sent a traceparent.
    pub parent_id: Option<String>,
    /// tether's own span for this call (16 hex).
    pub span_id: String,
    /// Trace flags, two hex digits ("01": sampled).
    pub flags: String,
    /// The caller's tracestate, passed on unchanged when it looked sane.
    pub state: Option<String>,
}

impl Trace {
    /// The caller's trace when `traceparent` is valid (with `tracestate` when that is sane
    /// too), else a fresh one; what was ignored is logged at debug.
    pub fn continue_or_start(traceparent: Option<&str>, tracestate: Option<&str>) -> Trace {
        let Some(given) = traceparent else {
            return Trace::fresh();
        };
        let (trace_id, parent_id, flags) = match parse_traceparent(given) {
            Ok(parsed) => parsed,
            Err(why) => {
                tracing::debug!(
                    why,
                    "ignoring an invalid traceparent; starting a fresh trace"
                );
                return Trace::fresh();
            }
        };
        let state = tracestate.and_then(|s| match sane_tracestate(s) {
            true => Some(s.trim().to_string()),
            false => {
                tracing::debug!("ignoring an invalid tracestate");
                None
            }
        });
        Trace {
            trace_id,
            parent_id: Some(parent_id),
            span_id: random_hex::<8>(),
            flags,
            state,
        }
    }

    /// A new trace: random trace id and span id, sampled.
    pub fn fresh() -> Trace {
        Trace {
            trace_id: random_hex::<16>(),
            parent_id: None,
            span_id: random_hex::<8>(),
            flags: "01".into(),
            state: None,
        }
    }

    /// The traceparent tether passes downstream: the same trace, tether's span as the parent.
    pub fn downstream(&self) -> String {
        format!("00-{}-{}-{}", self.trace_id, self.span_id, self.flags)
    }
}

/// (trace id, parent id, flags) of a valid traceparent. Version 00 must be exactly its 55
/// characters; a later version may be longer when a `-` follows them, and its first fields
/// are read as version 00's (W3C trace context's rule for versions a parser does not know).
pub fn parse_traceparent(given: &str) -> Result<(String, String, String), &'static str> {
    let given = given.trim();
    let version = given.get(..2).ok_or("too short")?;
    if !is_lower_hex(version) {
        return Err("the version is not two lowercase hex digits");
    }
    match version {
        "ff" => return Err("version ff is invalid"),
        "00" if given.len() != TRACEPARENT_LEN => return Err("version 00 is 55 characters"),
        _ if given.len() < TRACEPARENT_LEN => return Err("too short"),
        _ if given.len() > TRACEPARENT_LEN && given.as_bytes()[TRACEPARENT_LEN] != b'-' => {
            return Err("a later version's extra fields must follow a '-'");
        }
        _ => {}
    }
    let fields: Vec<&str> = given[..TRACEPARENT_LEN].split('-').collect();
    let [_, trace_id, parent_id, flags] = fields[..] else {
        return Err("not four '-'-separated fields");
    };
    let shaped = |field: &str, len| field.len() == len && is_lower_hex(field);
    if !shaped(trace_id, 32) || !shaped(parent_id, 16) || !shaped(flags, 2) {
        return Err("a field is not lowercase hex of its length");
    }
    if all_zero(trace_id) || all_zero(parent_id) {
        return Err("an all-zero id");
    }
    Ok((trace_id.into(), parent_id.into(), flags.into()))
}

/// A tracestate worth passing on: short and printable ASCII (not parsed further).
pub fn sane_tracestate(state: &str) -> bool {
    let state = state.trim();
    !state.is_empty()
        && state.len() <= MAX_TRACESTATE
        && state.bytes().all(|b| (0x20..0x7f).contains(&b))
}

fn is_lower_hex(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn all_zero(s: &str) -> bool {
    s.bytes().all(|b| b == b'0')
}

/// `N` random bytes as lowercase hex, never all zero.
fn random_hex<const N: usize>() -> String {
    loop {
        let bytes: [u8; N] = rand::random();
        if bytes.iter().any(|&b| b != 0) {
            return bytes.iter().map(|b| format!("{b:02x}")).collect();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIVEN: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_valid_traceparent_is_continued_with_tethers_own_span() {
        let trace = Trace::continue_or_start(Some(GIVEN), Some("vendor=abc"));
        assert_eq!(trace.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(trace.parent_id.as_deref(), Some("00f067aa0ba902b7"));
        assert_eq!(trace.state.as_deref(), Some("vendor=abc"));
        let down = trace.downstream();
        assert!(down.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
        assert!(down.ends_with("-01"));
        assert_ne!(
            &down[36..52],
            "00f067aa0ba902b7",
            "tether's span, not the caller's"
        );
        assert!(parse_traceparent(&down).is_ok());
    }

    #[test]
    fn invalid_traceparents_are_ignored_and_a_fresh_trace_made() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",
            "zz-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
        ] {
            assert!(parse_traceparent(bad).is_err(), "{bad:?} must be refused");
            let trace = Trace::continue_or_start(Some(bad), Some("vendor=abc"));
            assert_eq!(trace.parent_id, None, "{bad:?}");
            assert_eq!(
                trace.state, None,
                "a tracestate without its traceparent is dropped"
            );
            assert!(parse_traceparent(&trace.downstream()).is_ok());
        }
    }

    #[test]
    fn later_versions_are_read_as_version_00_when_shaped_like_it() {
        let later = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-whatever";
        let trace = Trace::continue_or_start(Some(later), None);
        assert_eq!(trace.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        let glued = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x";
        assert!(parse_traceparent(glued).is_err());
    }

    #[test]
    fn a_fresh_trace_is_well_formed_and_different_each_time() {
        let (a, b) = (Trace::fresh(), Trace::fresh());
        assert_ne!(a.trace_id, b.trace_id);
        assert_eq!(a.flags, "01");
        assert!(parse_traceparent(&a.downstream()).is_ok());
        assert_eq!(Trace::continue_or_start(None, Some("x=y")).state, None);
    }

    #[test]
    fn tracestate_is_kept_only_when_short_and_printable() {
        assert!(sane_tracestate("congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"));
        assert!(!sane_tracestate(&"a".repeat(MAX_TRACESTATE + 1)));
        assert!(!sane_tracestate("a=b\nc=d"));
        assert!(!sane_tracestate("  "));
    }
}

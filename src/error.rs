//! The one error type that leaves tether: every variant has a stable code (docs/rpc.md), an HTTP
//! status and a retry hint, all decided in one place.

use std::time::Duration;

/// A failed call or connection, as the app sees it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    BadRequest(String),
    #[error("verb {0:?} is not in the allowlist ([verbs] in the config)")]
    VerbNotAllowed(String),
    #[error("caller uid {0} is not in server.allowed_uids")]
    Forbidden(u32),
    #[error("{0}")]
    UnknownTarget(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("no channel to {target} came free within {waited:?} (queue_timeout); try again")]
    Busy { target: String, waited: Duration },
    /// `tether shim` refused the call because one of its limits is reached; nothing ran.
    #[error("the remote's tether shim is at a limit ({0}); nothing ran; try again shortly")]
    ShimBusy(String),
    #[error(
        "{addr} refused our key for user {user:?}; check that authorized_keys holds tether's public key"
    )]
    UpstreamAuthFailed { addr: String, user: String },
    #[error(
        "host key for {addr} is not pinned: expected {expected}, got {received}; \
         update known_hosts if the remote was reinstalled"
    )]
    HostKeyMismatch {
        addr: String,
        expected: String,
        received: String,
    },
    /// The server answers but must not be used as configured (Tailscale SSH, which never
    /// runs the forced command); `fix` says what to change.
    #[error("{addr}: {problem}; nothing was sent. Fix: {fix}")]
    UpstreamMisconfigured {
        addr: String,
        problem: String,
        fix: String,
    },
    #[error("{0}")]
    UpstreamUnreachable(String),
    #[error("{0}")]
    ConnectionLost(String),
    #[error("tether is shutting down")]
    ShuttingDown,
    #[error("the deadline of {0:?} passed; the command may have run")]
    Timeout(Duration),
    /// The call was dropped before anything was sent (its caller hung up while it waited),
    /// or an operator cancelled it (the message says whether it was sent).
    #[error("{0}")]
    Cancelled(String),
    /// What a request named (a call in flight) is not there.
    #[error("{0}")]
    NotFound(String),
    /// The admin port refuses to change anything unless `server.admin_mutations` is set.
    #[error(
        "the admin port is read-only: set server.admin_mutations = true to cancel calls here, or cancel on the socket (`tether cancel ID`)"
    )]
    AdminReadOnly,
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// The stable code from the table in docs/rpc.md.
    pub fn code(&self) -> &'static str {
        self.describe().0
    }

    /// The HTTP status that goes with [`Error::code`].
    pub fn http_status(&self) -> u16 {
        self.describe().1
    }

    /// Whether the caller may simply try again; `idempotent` is the verb's setting.
    pub fn retryable(&self, idempotent: bool) -> bool {
        match self.describe().2 {
            Retry::Always => true,
            Retry::IfIdempotent => idempotent,
            Retry::Never => false,
        }
    }

    /// A refusal for security reasons (the host key, our key, or a server that would not
    /// run the forced command): an operator must act, so it is logged at ERROR and shown as
    /// the target's last error, and a call to a target known down still answers with it.
    pub fn is_security(&self) -> bool {
        matches!(
            self,
            Error::HostKeyMismatch { .. }
                | Error::UpstreamAuthFailed { .. }
                | Error::UpstreamMisconfigured { .. }
        )
    }

    fn describe(&self) -> (&'static str, u16, Retry) {
        use Retry::*;
        match self {
            Error::BadRequest(_) => ("bad_request", 400, Never),
            Error::VerbNotAllowed(_) => ("verb_not_allowed", 403, Never),
            Error::Forbidden(_) => ("forbidden", 403, Never),
            Error::UnknownTarget(_) => ("unknown_target", 404, Never),
            Error::PayloadTooLarge(_) => ("payload_too_large", 413, Never),
            Error::Busy { .. } | Error::ShimBusy(_) => ("busy", 429, Always),
            Error::UpstreamAuthFailed { .. } => ("upstream_auth_failed", 502, Never),
            Error::HostKeyMismatch { .. } => ("host_key_mismatch", 502, Never),
            Error::UpstreamMisconfigured { .. } => ("upstream_misconfigured", 502, Never),
            Error::UpstreamUnreachable(_) => ("upstream_unreachable", 503, Always),
            Error::ConnectionLost(_) => ("connection_lost", 503, IfIdempotent),
            Error::ShuttingDown => ("shutting_down", 503, Always),
            Error::Timeout(_) => ("timeout", 504, IfIdempotent),
            Error::Cancelled(_) => ("cancelled", 409, Never),
            Error::NotFound(_) => ("not_found", 404, Never),
            Error::AdminReadOnly => ("forbidden", 403, Never),
            Error::Internal(_) => ("internal", 500, Never),
        }
    }
}

enum Retry {
    Always,
    IfIdempotent,
    Never,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_hints_follow_the_spec() {
        let lost = Error::ConnectionLost("x".into());
        assert!(!lost.retryable(false));
        assert!(lost.retryable(true));
        assert!(Error::ShuttingDown.retryable(false));
        assert!(!Error::BadRequest("x".into()).retryable(true));
        assert_eq!(Error::Timeout(Duration::from_secs(1)).http_status(), 504);
    }
}

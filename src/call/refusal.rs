//! `tether shim`'s refusal when one of its limits is reached: exit status 2, no stdout, and
//! stderr starting `tether shim: busy:` (docs/shim.md). Nothing ran on the laptop, so tether
//! answers it as its own `busy` (429, retryable) rather than as a 200 with exit status 2
//! (docs/rpc.md, "Errors"). Any other exit 2 is the verb's own answer and stays a 200.

use crate::error::Error;
use crate::transport::Exit;

/// How the shim's over-a-limit refusal line begins.
const BUSY_PREFIX: &[u8] = b"tether shim: busy:";
/// The refusal is one short line: stderr longer than this is a command's own output.
pub const MAX_REFUSAL_BYTES: usize = 1024;

/// `busy`, with the shim's own words, when a command with no stdout ended as the refusal.
pub fn busy(exit: &Exit, stderr: &[u8]) -> Option<Error> {
    if exit.status != Some(2) || !stderr.starts_with(BUSY_PREFIX) || !may_be_busy(stderr) {
        return None;
    }
    let rest = &stderr[BUSY_PREFIX.len()..];
    let line = rest.split(|&b| b == b'\n').next().unwrap_or_default();
    Some(Error::ShimBusy(
        String::from_utf8_lossy(line).trim().to_string(),
    ))
}

/// Whether stderr written so far (with no stdout yet) may still turn out to be the refusal.
pub fn may_be_busy(stderr: &[u8]) -> bool {
    stderr.len() <= MAX_REFUSAL_BYTES
        && (stderr.starts_with(BUSY_PREFIX) || BUSY_PREFIX.starts_with(stderr))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exit(status: u32) -> Exit {
        Exit {
            status: Some(status),
            signal: None,
        }
    }

    #[test]
    fn only_the_shims_busy_line_with_exit_2_is_busy() {
        let line = b"tether shim: busy: 8 keyed runs already (max_running = 8)\n";
        let busy = busy(&exit(2), line).expect("busy");
        assert_eq!(busy.code(), "busy");
        assert!(busy.retryable(false));
        assert!(
            busy.to_string()
                .contains("8 keyed runs already (max_running = 8)")
        );
        assert!(super::busy(&exit(1), line).is_none(), "another status");
        assert!(super::busy(&exit(2), b"tether shim: unknown verb\n").is_none());
        assert!(super::busy(&exit(2), b"usage: busy\n").is_none());
    }

    #[test]
    fn stderr_is_held_only_while_it_can_still_be_the_refusal() {
        assert!(may_be_busy(b""));
        assert!(may_be_busy(b"tether sh"));
        assert!(may_be_busy(b"tether shim: busy: at a limit\n"));
        assert!(!may_be_busy(b"tether shim: unknown"));
        assert!(!may_be_busy(b"warning"));
        let long = [
            b"tether shim: busy: ".as_slice(),
            &[b'x'; MAX_REFUSAL_BYTES],
        ]
        .concat();
        assert!(!may_be_busy(&long));
    }
}

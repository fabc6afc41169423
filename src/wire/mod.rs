//! The tether ↔ shim wire, one codec both ends share so the two halves cannot disagree
//! (docs/shim.md, "How a call is run" and "In-band data").
//!
//! - [`line`]: the verb and its arguments as the remote command line (re-exported here:
//!   [`encode`], [`decode`], [`check_arg`]).
//! - [`frame`]: a length-prefixed frame, its size checked before anything is allocated.
//! - [`in_band`]: the reserved words (`@hello`, `@in-band`), the hello line, and the frame an
//!   in-band call's stdin begins with (trace context, per-turn credentials).
//! - [`session`]: the frames of a resident shim session (`@session`), many requests at once.

pub mod frame;
pub mod in_band;
pub mod line;
pub mod session;

pub use line::{Decoded, MAX_ARG_BYTES, MAX_COMMAND_BYTES, Malformed, check_arg, decode, encode};

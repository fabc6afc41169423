//! Exit statuses that mean one thing wherever tether or `tether shim` returns them
//! (docs/cli.md, docs/doctor.md, docs/shim.md). A command's own status passes through as it is.

/// The configuration is unusable (sysexits' `EX_CONFIG`): `tether serve`, `tether config`,
/// `tether doctor` and `tether shim --check` report every problem, then exit with this.
pub const CONFIG_UNUSABLE: u8 = 78;

/// `tether shim` refused the call and ran nothing; one `tether shim: …` line says why.
pub const SHIM_REFUSED: u8 = 2;

/// A command killed by its timeout, as coreutils' `timeout` reports it; a keyed run records
/// it and its repeats replay it.
pub const TIMED_OUT: u8 = 124;

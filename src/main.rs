//! tether: see README.md.
#![forbid(unsafe_code)]
fn main() {}

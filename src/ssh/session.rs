//! The resident shim session on tether's side (docs/shim.md, "Session mode").

/// Whether a target runs its calls on a resident `tether shim` session
/// (`targets.NAME.shim_session`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// When the forced command is a `tether shim` with session mode; else exec per call.
    #[default]
    Auto,
    /// Never: exec per call.
    Off,
}

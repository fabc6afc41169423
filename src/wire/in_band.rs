//! In-band data from tether to `tether shim`: what reaches the laptop without being a verb
//! argument, so never in argv (docs/shim.md, "In-band data").
//!
//! - Verb names starting with [`RESERVED_PREFIX`] are tether's own requests; neither config
//!   may name a verb so.
//! - [`HELLO`] (`@hello`): the shim answers one [`Hello`] line, and tether learns whether it
//!   can take in-band data.
//! - [`IN_BAND`] (`@in-band VERB ARGS…`, built by [`in_band_line`]): a plain request whose
//!   stdin begins with one [`frame`] of JSON, an [`InBand`] (trace context and per-turn
//!   [`Credentials`]), and then carries the caller's stdin byte for byte.
//!
//! The decoder checks everything (sizes, names, the version), so both ends agree on what a
//! valid frame is: a bad credential is refused, a bad trace context is dropped.

use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, Read, Write};

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use zeroize::Zeroizing;

use super::frame::{self, FrameError};
use super::line::{Decoded, MAX_COMMAND_BYTES, Malformed, decode, encode};
use crate::error::Error;
use crate::trace;

/// Verb names starting with this are reserved for tether's own requests.
pub const RESERVED_PREFIX: char = '@';
/// The command line that asks the shim for its [`Hello`].
pub const HELLO: &str = "@hello";
/// The word before the verb of a call whose stdin begins with an [`InBand`] frame.
pub const IN_BAND: &str = "@in-band";
/// The `tether_shim` protocol number of the [`Hello`] line.
pub const HELLO_PROTOCOL: u64 = 1;
/// The feature a shim that reads [`InBand`] frames announces.
pub const FEATURE_IN_BAND: &str = "in-band";
/// The `v` of the [`InBand`] frame.
pub const IN_BAND_VERSION: u64 = 1;
/// The longest [`InBand`] frame payload, in bytes (checked before anything is allocated).
pub const MAX_IN_BAND_BYTES: usize = 192 << 10;
/// Credentials one call may carry.
pub const MAX_CREDENTIALS: usize = 64;
/// The longest credential name (`[A-Z][A-Z0-9_]{0,63}`).
pub const MAX_CREDENTIAL_NAME: usize = 64;
/// The longest credential value, in bytes.
pub const MAX_CREDENTIAL_BYTES: usize = 16 << 10;
/// All of a call's credential values together, in bytes.
pub const MAX_CREDENTIALS_BYTES: usize = 64 << 10;
/// The longest output of `@hello` read as a hello line.
const MAX_HELLO_BYTES: usize = 4096;

/// Whether `verb` is a name reserved for tether's own requests.
pub fn is_reserved(verb: &str) -> bool {
    verb.starts_with(RESERVED_PREFIX)
}

/// The command line of an in-band call: `@in-band VERB ARGS…`, each word checked as by
/// [`encode`], and the whole line within [`MAX_COMMAND_BYTES`].
pub fn in_band_line(verb: &str, args: &[String]) -> Result<String, Error> {
    if is_reserved(verb) {
        return Err(Error::BadRequest(format!(
            "the verb: names starting with '{RESERVED_PREFIX}' are reserved for tether itself"
        )));
    }
    in_band_word_before(&encode(verb, args)?)
}

/// `line` (an [`encode`]d command line) as an in-band call's: `@in-band ` before it, the
/// whole within [`MAX_COMMAND_BYTES`].
pub fn in_band_word_before(line: &str) -> Result<String, Error> {
    let line = format!("{IN_BAND} {line}");
    if line.len() > MAX_COMMAND_BYTES {
        return Err(Error::PayloadTooLarge(format!(
            "the command line would be {} bytes; at most {MAX_COMMAND_BYTES}: send payloads \
             through stdin",
            line.len()
        )));
    }
    Ok(line)
}

/// What a command line asks the shim for.
#[derive(Debug, PartialEq, Eq)]
pub enum Command<'a> {
    /// `@hello`: the shim's [`Hello`] line.
    Hello,
    /// A verb and its arguments; stdin is the caller's.
    Plain(Decoded<'a>),
    /// `@in-band VERB ARGS…`: a verb and its arguments; stdin begins with an [`InBand`] frame.
    InBand(Decoded<'a>),
    /// `@session`: the resident shim session ([`super::session`]); stdin and stdout carry frames.
    Session,
}

/// Decodes a command line (`SSH_ORIGINAL_COMMAND`) into what it asks for. The length limit
/// holds for the whole line, `@in-band ` included.
pub fn decode_command(line: &[u8]) -> Result<Command<'_>, Malformed<'_>> {
    if line.len() > MAX_COMMAND_BYTES {
        let reason = format!("the command line is over {MAX_COMMAND_BYTES} bytes");
        return Err(Malformed { verb: None, reason });
    }
    if line == HELLO.as_bytes() {
        return Ok(Command::Hello);
    }
    if line == super::session::SESSION.as_bytes() {
        return Ok(Command::Session);
    }
    let Some(rest) = line
        .strip_prefix(IN_BAND.as_bytes())
        .and_then(|rest| rest.strip_prefix(b" "))
    else {
        return decode(line).map(Command::Plain);
    };
    if rest.is_empty() {
        let reason = format!("{IN_BAND} needs a verb after it");
        return Err(Malformed { verb: None, reason });
    }
    decode(rest).map(Command::InBand)
}

/// The one line `@hello` prints: `{"tether_shim":1,"version":"…","features":["in-band"]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    pub tether_shim: u64,
    pub version: String,
    pub features: Vec<String>,
}

impl Hello {
    /// This build's hello.
    pub fn ours() -> Hello {
        Hello {
            tether_shim: HELLO_PROTOCOL,
            version: env!("CARGO_PKG_VERSION").to_string(),
            features: vec![FEATURE_IN_BAND.to_string()],
        }
    }

    /// The hello as printed: one line of JSON, with its newline.
    pub fn line(&self) -> String {
        let mut line = serde_json::to_string(self).unwrap_or_default();
        line.push('\n');
        line
    }

    /// The hello in what `@hello` printed, if it is exactly one hello line (an older shim
    /// refuses `@hello`; another forced command prints whatever: `None` for both).
    pub fn parse(stdout: &[u8]) -> Option<Hello> {
        if stdout.len() > MAX_HELLO_BYTES {
            return None;
        }
        let line = stdout.strip_suffix(b"\n").unwrap_or(stdout);
        if line.contains(&b'\n') {
            return None;
        }
        serde_json::from_slice::<Hello>(line)
            .ok()
            .filter(|hello| hello.tether_shim >= HELLO_PROTOCOL)
    }

    /// Whether the shim reads [`InBand`] frames (`@in-band` calls).
    pub fn supports_in_band(&self) -> bool {
        self.features.iter().any(|f| f == FEATURE_IN_BAND)
    }
}

/// Why credentials were refused. [`CredentialError::is_too_large`] tells a size
/// (`payload_too_large`) from a bad name (`bad_request`); messages never hold a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialError {
    /// A name outside `[A-Z][A-Z0-9_]{0,63}` (shown cut to a few dozen characters).
    BadName(String),
    /// More than [`MAX_CREDENTIALS`] names.
    TooMany { count: usize },
    /// A value over [`MAX_CREDENTIAL_BYTES`].
    ValueTooLarge { name: String, bytes: usize },
    /// The values together over [`MAX_CREDENTIALS_BYTES`].
    TooLarge { bytes: usize },
}

impl CredentialError {
    /// A size or count limit (else a bad name).
    pub fn is_too_large(&self) -> bool {
        !matches!(self, CredentialError::BadName(_))
    }
}

impl fmt::Display for CredentialError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CredentialError::BadName(name) => write!(
                f,
                "credential name {name:?} is not [A-Z][A-Z0-9_]{{0,63}} (an upper-case letter, \
                 then upper-case letters, digits or '_')"
            ),
            CredentialError::TooMany { count } => write!(
                f,
                "{count} credentials or more; at most {MAX_CREDENTIALS} per call"
            ),
            CredentialError::ValueTooLarge { name, bytes } => write!(
                f,
                "credential {name} is {bytes} bytes; at most {MAX_CREDENTIAL_BYTES}"
            ),
            CredentialError::TooLarge { bytes } => write!(
                f,
                "the credentials are {bytes} bytes together; at most {MAX_CREDENTIALS_BYTES}"
            ),
        }
    }
}

impl std::error::Error for CredentialError {}

/// Whether `name` is a credential name: `[A-Z][A-Z0-9_]{0,63}`.
pub fn valid_credential_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    name.len() <= MAX_CREDENTIAL_NAME
        && bytes.next().is_some_and(|b| b.is_ascii_uppercase())
        && bytes.all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
}

/// A bad name as a message shows it: its first few dozen characters.
fn shown(name: &str) -> String {
    match name.char_indices().nth(MAX_CREDENTIAL_NAME) {
        Some((end, _)) => format!("{}…", &name[..end]),
        None => name.to_string(),
    }
}

/// A call's credentials, by name: each value zeroed on drop; Debug shows the names only.
#[derive(Default, PartialEq, Eq)]
pub struct Credentials(BTreeMap<String, Zeroizing<String>>);

impl Credentials {
    /// Checks and keeps `pairs` (names, count, sizes); the values move in, never copied.
    pub fn from_pairs(
        pairs: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Credentials, CredentialError> {
        Credentials::checked(
            pairs
                .into_iter()
                .map(|(name, value)| (name, Zeroizing::new(value))),
        )
    }

    fn checked(
        pairs: impl IntoIterator<Item = (String, Zeroizing<String>)>,
    ) -> Result<Credentials, CredentialError> {
        let mut map = BTreeMap::new();
        let mut total = 0;
        for (name, value) in pairs {
            if !valid_credential_name(&name) {
                return Err(CredentialError::BadName(shown(&name)));
            }
            if value.len() > MAX_CREDENTIAL_BYTES {
                let bytes = value.len();
                return Err(CredentialError::ValueTooLarge { name, bytes });
            }
            total += value.len();
            if let Some(old) = map.insert(name, value) {
                total -= old.len();
            }
            if map.len() > MAX_CREDENTIALS {
                return Err(CredentialError::TooMany { count: map.len() });
            }
            if total > MAX_CREDENTIALS_BYTES {
                return Err(CredentialError::TooLarge { bytes: total });
            }
        }
        Ok(Credentials(map))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The names, in order (what an audit line or a message may show).
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }

    /// Each name and its value; the value goes to one place only, the credentials file.
    pub fn expose(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Credentials")
            .field(&self.names().collect::<Vec<_>>())
            .finish()
    }
}

impl Serialize for Credentials {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.expose())
    }
}

/// Credentials as a caller sent them (the RPC's `credentials` field), each value read
/// straight into a buffer zeroed on drop; [`Unchecked::check`] applies the rules and tells
/// a bad name from a size.
#[derive(Default, Deserialize)]
#[serde(transparent)]
pub struct Unchecked(BTreeMap<String, SecretValue>);

impl Unchecked {
    pub fn check(self) -> Result<Credentials, CredentialError> {
        Credentials::checked(self.0.into_iter().map(|(n, v)| (n, v.0)))
    }
}

impl fmt::Debug for Unchecked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Unchecked")
            .field(&self.0.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// A value read straight into a buffer that is zeroed on drop, also when a later part of the
/// document fails to parse.
struct SecretValue(Zeroizing<String>);

impl<'de> Deserialize<'de> for SecretValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(|s| SecretValue(Zeroizing::new(s)))
    }
}

impl<'de> Deserialize<'de> for Credentials {
    /// Checked as [`Credentials::from_pairs`] checks.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let map = BTreeMap::<String, SecretValue>::deserialize(d)?;
        Credentials::checked(map.into_iter().map(|(n, v)| (n, v.0)))
            .map_err(serde::de::Error::custom)
    }
}

/// Whether `value` is a W3C version-00 `traceparent` ([`crate::trace`]'s rules): `00-` 32 hex
/// `-` 16 hex `-` 2 hex, lower case, neither id all zeros. tether only sends version 00.
pub fn valid_traceparent(value: &str) -> bool {
    value.starts_with("00-") && value.trim() == value && trace::parse_traceparent(value).is_ok()
}

/// Whether `value` can be passed on as `TRACESTATE` ([`crate::trace`]'s rules).
pub fn valid_tracestate(value: &str) -> bool {
    value.trim() == value && trace::sane_tracestate(value)
}

/// Why an in-band frame was refused (messages never hold a credential value).
#[derive(Debug)]
pub enum InBandError {
    Frame(FrameError),
    /// Not the frame's JSON; where, never what.
    Json(String),
    /// A `v` this build does not read.
    Version(u64),
    Credentials(CredentialError),
}

impl fmt::Display for InBandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InBandError::Frame(e) => write!(f, "the in-band frame: {e}"),
            InBandError::Json(e) => write!(f, "the in-band frame: {e}"),
            InBandError::Version(v) => write!(
                f,
                "the in-band frame is version {v}; this tether shim reads version \
                 {IN_BAND_VERSION} only: update tether on the laptop"
            ),
            InBandError::Credentials(e) => write!(f, "the in-band frame: {e}"),
        }
    }
}

impl std::error::Error for InBandError {}

/// The in-band frame's contents: trace context and credentials, all optional.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct InBand {
    pub traceparent: Option<String>,
    pub tracestate: Option<String>,
    pub credentials: Credentials,
}

#[derive(Serialize)]
struct Outgoing<'a> {
    v: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    traceparent: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tracestate: Option<&'a str>,
    #[serde(skip_serializing_if = "Credentials::is_empty")]
    credentials: &'a Credentials,
}

#[derive(Deserialize)]
struct Versioned {
    v: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Incoming {
    #[allow(dead_code)] // checked by `Versioned` first
    v: u64,
    traceparent: Option<String>,
    tracestate: Option<String>,
    #[serde(default)]
    credentials: Option<BTreeMap<String, SecretValue>>,
}

/// The in-band frame (length prefix and payload) around an in-band `payload`, in a buffer
/// zeroed on drop.
pub fn framed(payload: &[u8]) -> Result<Zeroizing<Vec<u8>>, FrameError> {
    let mut wire = Zeroizing::new(Vec::new());
    frame::write(&mut wire, payload, MAX_IN_BAND_BYTES)?;
    Ok(wire)
}

/// `value` as JSON in a buffer zeroed on drop, sized exactly first so it is never reallocated
/// (a reallocation would leave copies of secrets behind).
pub fn secret_json<T: Serialize>(value: &T) -> serde_json::Result<Zeroizing<Vec<u8>>> {
    let mut count = Count(0);
    serde_json::to_writer(&mut count, value)?;
    let mut json = Zeroizing::new(Vec::with_capacity(count.0));
    serde_json::to_writer(&mut *json, value)?;
    Ok(json)
}

/// Counts the bytes written to it.
struct Count(usize);

impl Write for Count {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl InBand {
    /// The trace context as it is sent and passed on: a `traceparent` only when valid, a
    /// `tracestate` only beside one and when valid.
    pub fn trace(&self) -> (Option<&str>, Option<&str>) {
        let parent = self.traceparent.as_deref().filter(|t| valid_traceparent(t));
        let state = parent.and(self.tracestate.as_deref().filter(|t| valid_tracestate(t)));
        (parent, state)
    }

    /// The 32-hex trace id of a valid `traceparent`.
    pub fn trace_id(&self) -> Option<&str> {
        self.trace().0.map(|t| &t[3..35])
    }

    /// The whole frame (length prefix and JSON), in a buffer zeroed on drop, sized exactly
    /// so it is never reallocated. An invalid trace context is left out, as the shim would
    /// drop it. `Err` only when the JSON is over [`MAX_IN_BAND_BYTES`] (values full of
    /// characters JSON escapes).
    pub fn encode(&self) -> Result<Zeroizing<Vec<u8>>, FrameError> {
        framed(&self.payload()?)
    }

    /// The frame's payload alone (the JSON), as a session's open frame carries it
    /// ([`super::session`]); the same checks as [`Self::encode`].
    pub fn payload(&self) -> Result<Zeroizing<Vec<u8>>, FrameError> {
        let (traceparent, tracestate) = self.trace();
        let outgoing = Outgoing {
            v: IN_BAND_VERSION,
            traceparent,
            tracestate,
            credentials: &self.credentials,
        };
        let json = secret_json(&outgoing).map_err(|e| FrameError::Io(e.into()))?;
        match json.len() <= MAX_IN_BAND_BYTES {
            true => Ok(json),
            false => Err(FrameError::TooLarge {
                len: json.len() as u64,
                max: MAX_IN_BAND_BYTES,
            }),
        }
    }

    /// Reads the frame from the start of `input`: exactly its bytes, so what follows is the
    /// caller's stdin, unread.
    pub fn read(input: &mut impl Read) -> Result<InBand, InBandError> {
        let payload = frame::read(input, MAX_IN_BAND_BYTES).map_err(InBandError::Frame)?;
        InBand::decode(&payload)
    }

    /// Decodes a frame's payload: `v` must be [`IN_BAND_VERSION`], no other fields than
    /// these, credentials checked as [`Credentials::from_pairs`] checks; an invalid trace
    /// context is dropped.
    pub fn decode(payload: &[u8]) -> Result<InBand, InBandError> {
        let versioned: Versioned = serde_json::from_slice(payload).map_err(json)?;
        if let Some(v) = versioned.v.filter(|&v| v != IN_BAND_VERSION) {
            return Err(InBandError::Version(v));
        }
        let incoming: Incoming = serde_json::from_slice(payload).map_err(json)?;
        let credentials = Credentials::checked(
            incoming
                .credentials
                .unwrap_or_default()
                .into_iter()
                .map(|(n, v)| (n, v.0)),
        )
        .map_err(InBandError::Credentials)?;
        let mut in_band = InBand {
            traceparent: incoming.traceparent,
            tracestate: incoming.tracestate,
            credentials,
        };
        let (parent, state) = in_band.trace();
        let (parent, state) = (parent.map(str::to_string), state.map(str::to_string));
        (in_band.traceparent, in_band.tracestate) = (parent, state);
        Ok(in_band)
    }
}

/// A JSON error as a message: its kind and place, never the text around it (which may be a
/// credential's value).
fn json(e: serde_json::Error) -> InBandError {
    use serde_json::error::Category;
    let kind = match e.classify() {
        Category::Io => "cannot be read",
        Category::Syntax => "is not JSON",
        Category::Data => {
            "is not {\"v\":1, \"traceparent\", \"tracestate\", \"credentials\"} (a field is \
             unknown, missing or of the wrong type)"
        }
        Category::Eof => "is JSON cut short",
    };
    InBandError::Json(format!("its JSON {kind} (at column {})", e.column()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn creds(pairs: &[(&str, &str)]) -> Credentials {
        Credentials::from_pairs(pairs.iter().map(|(n, v)| (n.to_string(), v.to_string()))).unwrap()
    }

    #[test]
    fn reserved_words_and_the_in_band_line() {
        assert!(is_reserved(HELLO) && is_reserved(IN_BAND) && !is_reserved("run-turn"));
        let line = in_band_line("run-turn", &["s1".into(), "u1".into()]).unwrap();
        assert_eq!(line, "@in-band run-turn s1 u1");
        assert_eq!(
            decode_command(line.as_bytes()).unwrap(),
            Command::InBand(Decoded {
                verb: "run-turn",
                args: vec!["s1", "u1"]
            })
        );
        assert_eq!(decode_command(b"@hello").unwrap(), Command::Hello);
        assert!(matches!(
            decode_command(b"health").unwrap(),
            Command::Plain(_)
        ));
        assert_eq!(
            in_band_line("@hello", &[]).unwrap_err().code(),
            "bad_request"
        );
        let long = "a".repeat(MAX_COMMAND_BYTES - 2);
        assert_eq!(
            in_band_line("v", &[long]).unwrap_err().code(),
            "payload_too_large"
        );
        assert!(
            decode_command(b"@in-band ")
                .unwrap_err()
                .reason
                .contains("needs a verb")
        );
        let bad = decode_command(b"@in-band run-turn $(id)").unwrap_err();
        assert_eq!(bad.verb, Some("run-turn"));
    }

    #[test]
    fn the_hello_line() {
        let line = Hello::ours().line();
        assert_eq!(
            line,
            format!(
                "{{\"tether_shim\":1,\"version\":\"{}\",\"features\":[\"in-band\"]}}\n",
                env!("CARGO_PKG_VERSION")
            )
        );
        let hello = Hello::parse(line.as_bytes()).unwrap();
        assert!(hello.supports_in_band());
        for not_hello in [
            &b""[..],
            b"ok\n",
            b"tether shim: unknown verb\n",
            b"{\"tether_shim\":0,\"version\":\"x\",\"features\":[]}\n",
            b"{\"tether_shim\":1,\"version\":\"x\",\"features\":[]}\n\n",
        ] {
            assert_eq!(Hello::parse(not_hello), None, "{not_hello:?}");
        }
        let without = Hello::parse(b"{\"tether_shim\":1,\"version\":\"x\",\"features\":[]}");
        assert!(!without.unwrap().supports_in_band());
    }

    #[test]
    fn credential_rules() {
        let err = |pairs: Vec<(String, String)>| Credentials::from_pairs(pairs).unwrap_err();
        let one = |n: &str, v: &str| vec![(n.to_string(), v.to_string())];
        for bad in ["", "a", "1A", "A-B", "AÜ", &"A".repeat(65)] {
            let e = err(one(bad, "x"));
            assert!(
                matches!(e, CredentialError::BadName(_)) && !e.is_too_large(),
                "{bad}"
            );
        }
        assert!(valid_credential_name(&format!("A{}", "_9".repeat(31))));
        let e = err(one("A", &"x".repeat(MAX_CREDENTIAL_BYTES + 1)));
        assert!(e.is_too_large(), "{e}");
        assert!(e.to_string().contains("credential A is 16385 bytes"), "{e}");
        let many = (0..65).map(|i| (format!("N{i}"), String::new())).collect();
        assert!(matches!(err(many), CredentialError::TooMany { .. }));
        let big = (0..5)
            .map(|i| (format!("N{i}"), "x".repeat(MAX_CREDENTIAL_BYTES)))
            .collect();
        assert!(matches!(
            err(big),
            CredentialError::TooLarge { bytes: 81920 }
        ));
        let long = err(one(&"a".repeat(10_000), "x")).to_string();
        assert!(long.len() < 300, "{long}");
    }

    #[test]
    fn debug_shows_names_never_values() {
        let c = creds(&[("PALIAD_JWT", "s3cr3t-value")]);
        let shown = format!("{c:?}");
        let in_band = format!(
            "{:?}",
            InBand {
                credentials: c,
                ..InBand::default()
            }
        );
        let shown = format!("{shown} {in_band}");
        assert!(
            shown.contains("PALIAD_JWT") && !shown.contains("s3cr3t"),
            "{shown}"
        );
    }

    #[test]
    fn a_frame_round_trips_and_stops_at_its_end() {
        let in_band = InBand {
            traceparent: Some(PARENT.into()),
            tracestate: Some("congo=t61rcWkgMzE".into()),
            credentials: creds(&[("PALIAD_JWT", "eyJ\"\n\\"), ("B", "")]),
        };
        let mut wire = in_band.encode().unwrap().to_vec();
        wire.extend_from_slice(b"\0\0\0\x02{}caller's stdin");
        let mut input = &wire[..];
        let got = InBand::read(&mut input).unwrap();
        assert_eq!(got, in_band);
        assert_eq!(got.trace_id(), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
        assert_eq!(input, b"\0\0\0\x02{}caller's stdin");
        let empty = InBand::default().encode().unwrap();
        assert_eq!(&empty[..], b"\0\0\0\x07{\"v\":1}");
    }

    #[test]
    fn bad_trace_context_is_dropped_bad_credentials_refused() {
        let decode = |json: &str| InBand::decode(json.as_bytes());
        for bad in [
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",
        ] {
            let got = decode(&format!(
                r#"{{"v":1,"traceparent":"{bad}","tracestate":"a=b"}}"#
            ));
            let got = got.unwrap();
            assert_eq!((got.traceparent, got.tracestate), (None, None), "{bad}");
        }
        let bad_name = decode(r#"{"v":1,"credentials":{"lower":"x"}}"#).unwrap_err();
        assert!(bad_name.to_string().contains("\"lower\""), "{bad_name}");
        let version = decode(r#"{"v":2,"new":true}"#).unwrap_err().to_string();
        assert!(version.contains("version 2"), "{version}");
        let unknown = decode(r#"{"v":1,"extra":1}"#).unwrap_err();
        assert!(matches!(unknown, InBandError::Json(_)), "{unknown}");
        let hidden = decode(r#"{"v":1,"credentials":"s3cr3t"}"#)
            .unwrap_err()
            .to_string();
        assert!(!hidden.contains("s3cr3t"), "{hidden}");
        let hidden = decode(r#"{"v":"s3cr3t"}"#).unwrap_err().to_string();
        assert!(!hidden.contains("s3cr3t"), "{hidden}");
        assert!(decode(r#"{}"#).is_err());
        let over = format!("\0\x03\0\x01{}", "x".repeat(8));
        let err = InBand::read(&mut over.as_bytes()).unwrap_err();
        assert!(
            matches!(err, InBandError::Frame(FrameError::TooLarge { .. })),
            "{err}"
        );
    }

    fn name() -> impl Strategy<Value = String> {
        "[A-Z][A-Z0-9_]{0,8}"
    }

    proptest! {
        #[test]
        fn what_is_encoded_decodes_to_itself(
            pairs in proptest::collection::btree_map(name(), any::<String>(), 0..6),
            trace in proptest::option::of("[0-9a-f]{32}"),
        ) {
            let in_band = InBand {
                traceparent: trace.map(|t| format!("00-{t}-00f067aa0ba902b7-01")),
                tracestate: None,
                credentials: Credentials::from_pairs(pairs).unwrap(),
            };
            let wire = in_band.encode().unwrap();
            let got = InBand::read(&mut &wire[..]).unwrap();
            prop_assert_eq!(&got.credentials, &in_band.credentials);
            prop_assert_eq!(got.trace_id(), in_band.trace_id());
        }

        #[test]
        fn any_bytes_read_as_a_valid_frame_or_are_refused(
            bytes in proptest::collection::vec(any::<u8>(), 0..96),
            json in r#"\{"v":1(,"credentials":\{"[A-Za-z_]{1,3}":"[a-z]{0,3}"\})?(,"traceparent":"[0-9a-f-]{0,8}")?\}"#,
        ) {
            for input in [bytes.clone(), {
                let mut framed = (json.len() as u32).to_be_bytes().to_vec();
                framed.extend_from_slice(json.as_bytes());
                framed
            }] {
                if let Ok(got) = InBand::read(&mut &input[..]) {
                    prop_assert!(got.credentials.names().all(valid_credential_name));
                    prop_assert!(got.traceparent.as_deref().is_none_or(valid_traceparent));
                }
            }
        }
    }
}

//! The command line: how a verb and its arguments travel as the remote command. tether
//! [`encode`]s them; `tether shim` [`decode`]s `SSH_ORIGINAL_COMMAND` with the same rules, so
//! the two halves cannot disagree (docs/rpc.md, "Argument rules"; docs/shim.md, "How a call is
//! run").
//!
//! The line is the verb and its arguments joined by single spaces. Each word is 1 to
//! [`MAX_ARG_BYTES`] bytes of `[A-Za-z0-9._:,=+/@%-]`, so nothing a shell could interpret ever
//! leaves tether, and the whole line is at most [`MAX_COMMAND_BYTES`]. Anything else (an
//! empty word from a leading, trailing or repeated space, a tab, a quote, non-ASCII) is
//! refused, never repaired.

use crate::error::Error;

/// Longest single argument, in bytes.
pub const MAX_ARG_BYTES: usize = 131_072;
/// Longest whole command line (verb, arguments and the spaces between), in bytes.
pub const MAX_COMMAND_BYTES: usize = 131_072;

/// Checks one argument (or verb name) against the allowed charset and length.
pub fn check_arg(arg: &str) -> Result<(), String> {
    if arg.is_empty() {
        return Err("an argument may not be empty".into());
    }
    if arg.len() > MAX_ARG_BYTES {
        return Err(format!("an argument is at most {MAX_ARG_BYTES} bytes"));
    }
    match arg.bytes().position(|b| !allowed(b)) {
        None => Ok(()),
        Some(at) => Err(format!(
            "byte {at} of an argument is outside [A-Za-z0-9._:,=+/@%-]; send payloads through stdin"
        )),
    }
}

fn allowed(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"._:,=+/@%-".contains(&b)
}

/// Joins a verb and its arguments into the remote command line, each checked first.
pub fn encode(verb: &str, args: &[String]) -> Result<String, Error> {
    check_arg(verb).map_err(|e| Error::BadRequest(format!("the verb: {e}")))?;
    for (i, arg) in args.iter().enumerate() {
        check_arg(arg).map_err(|e| Error::BadRequest(format!("args[{i}]: {e}")))?;
    }
    let len = verb.len() + args.iter().map(|a| a.len() + 1).sum::<usize>();
    if len > MAX_COMMAND_BYTES {
        return Err(Error::PayloadTooLarge(format!(
            "the command line would be {len} bytes; at most {MAX_COMMAND_BYTES}: send payloads through stdin"
        )));
    }
    let mut line = String::with_capacity(len);
    line.push_str(verb);
    for arg in args {
        line.push(' ');
        line.push_str(arg);
    }
    Ok(line)
}

/// A command line that decoded: the verb and its arguments, each within the charset.
#[derive(Debug, PartialEq, Eq)]
pub struct Decoded<'a> {
    pub verb: &'a str,
    pub args: Vec<&'a str>,
}

/// Why a command line did not decode. `verb` is the verb when it was itself a good word (the
/// fault is further on), so the caller can still name it; `reason` never repeats the line.
#[derive(Debug, PartialEq, Eq)]
pub struct Malformed<'a> {
    pub verb: Option<&'a str>,
    pub reason: String,
}

/// Splits a command line into its verb and arguments, refusing anything [`encode`] could not
/// have produced. The size is checked before anything is allocated.
pub fn decode(line: &[u8]) -> Result<Decoded<'_>, Malformed<'_>> {
    let malformed = |verb, reason: String| Malformed { verb, reason };
    if line.len() > MAX_COMMAND_BYTES {
        let reason = format!("the command line is over {MAX_COMMAND_BYTES} bytes");
        return Err(malformed(None, reason));
    }
    let line = std::str::from_utf8(line)
        .map_err(|_| malformed(None, "the command line is not UTF-8".into()))?;
    if line.is_empty() {
        return Err(malformed(None, "no verb was given".into()));
    }
    let mut words = line.split(' ');
    let verb = words.next().unwrap_or_default();
    let spaced = || {
        "the command line has a leading, trailing or repeated space; \
         words are separated by one space each"
            .to_string()
    };
    if verb.is_empty() {
        return Err(malformed(None, spaced()));
    }
    check_arg(verb).map_err(|e| malformed(None, format!("the verb: {e}")))?;
    let args: Vec<&str> = words.collect();
    for (i, arg) in (1..).zip(&args) {
        if arg.is_empty() {
            return Err(malformed(Some(verb), spaced()));
        }
        check_arg(arg).map_err(|e| malformed(Some(verb), format!("argument {i}: {e}")))?;
    }
    Ok(Decoded { verb, args })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn shell_metacharacters_never_pass() {
        for bad in [
            "a b", "$(id)", "`id`", "a;b", "a|b", "a&b", "'", "\"", "a\nb", "ü", "*", "~", "",
        ] {
            assert!(check_arg(bad).is_err(), "{bad:?} passed");
        }
        for good in [
            "paliad-paliadin-1a2b",
            "6f1c-ab",
            "aGVsbG8=",
            "a+b/c",
            "k=v,x:y@z%",
        ] {
            assert!(check_arg(good).is_ok(), "{good:?} refused");
        }
    }

    #[test]
    fn encode_limits() {
        assert_eq!(encode("health", &["s1".into()]).unwrap(), "health s1");
        let big = "a".repeat(MAX_ARG_BYTES);
        let err = encode("run-turn", &[big]).unwrap_err();
        assert_eq!(err.code(), "payload_too_large");
        let err = encode("x", &["a b".into()]).unwrap_err();
        assert_eq!(err.code(), "bad_request");
        assert_eq!(encode("a b", &[]).unwrap_err().code(), "bad_request");
    }

    #[test]
    fn spaces_separate_words_one_each() {
        for line in [
            " health",
            "health ",
            "health  s1",
            "run-turn s1  u1 m",
            "  ",
        ] {
            let refused = decode(line.as_bytes()).unwrap_err();
            assert!(
                refused.reason.contains("repeated space"),
                "{line:?}: {refused:?}"
            );
        }
        assert_eq!(decode(b"health  s1").unwrap_err().verb, Some("health"));
        assert_eq!(decode(b"").unwrap_err().reason, "no verb was given");
    }

    #[test]
    fn refusals_name_the_verb_only_when_it_is_a_good_word() {
        let bad_arg = decode(b"run-turn s1 $(id)").unwrap_err();
        assert_eq!(bad_arg.verb, Some("run-turn"));
        assert!(
            bad_arg.reason.starts_with("argument 2: byte 0"),
            "{bad_arg:?}"
        );
        let bad_verb = decode(b"he\tlth x").unwrap_err();
        assert_eq!(bad_verb.verb, None);
        assert!(bad_verb.reason.starts_with("the verb:"), "{bad_verb:?}");
        let over = vec![b'a'; MAX_COMMAND_BYTES + 1];
        assert!(decode(&over).unwrap_err().reason.contains("over"));
        assert!(decode(b"health \xff").unwrap_err().reason.contains("UTF-8"));
    }

    fn word() -> impl Strategy<Value = String> {
        "[A-Za-z0-9._:,=+/@%-]{1,24}"
    }

    proptest! {
        #[test]
        fn what_is_encoded_decodes_to_itself(
            verb in word(),
            args in proptest::collection::vec(word(), 0..8),
        ) {
            let line = encode(&verb, &args).unwrap();
            let decoded = decode(line.as_bytes()).unwrap();
            prop_assert_eq!(decoded.verb, verb.as_str());
            prop_assert_eq!(decoded.args, args.iter().map(String::as_str).collect::<Vec<_>>());
        }

        #[test]
        fn long_words_round_trip_up_to_the_limits(
            sizes in proptest::collection::vec(1..MAX_ARG_BYTES, 1..4),
        ) {
            let args: Vec<String> = sizes.iter().map(|&n| "x".repeat(n)).collect();
            match encode("v", &args) {
                Ok(line) => {
                    prop_assert!(line.len() <= MAX_COMMAND_BYTES);
                    let decoded = decode(line.as_bytes()).unwrap();
                    prop_assert_eq!(decoded.args.len(), args.len());
                }
                Err(e) => {
                    prop_assert_eq!(e.code(), "payload_too_large");
                    let line = ["v"].into_iter().chain(args.iter().map(String::as_str));
                    let joined = line.collect::<Vec<_>>().join(" ");
                    prop_assert!(decode(joined.as_bytes()).is_err());
                }
            }
        }

        #[test]
        fn any_bytes_decode_to_a_request_encode_would_send_or_are_refused(
            line in proptest::collection::vec(
                prop_oneof![
                    // Mostly bytes of the wire, so that many lines decode.
                    16 => proptest::sample::select(b"ab-=/ ".to_vec()),
                    1 => any::<u8>(),
                ],
                0..64,
            ),
        ) {
            if let Ok(decoded) = decode(&line) {
                let args: Vec<String> = decoded.args.iter().map(|a| a.to_string()).collect();
                let again = encode(decoded.verb, &args).unwrap();
                prop_assert_eq!(again.as_bytes(), &line[..]);
            }
        }
    }
}

//! What may reach the remote's command line: arguments of a safe charset only, so nothing a
//! shell could interpret ever leaves tether (docs/rpc.md, "Argument rules").

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

/// Joins an allowlisted verb and its checked arguments into the remote command line.
pub fn command_line(verb: &str, args: &[String]) -> Result<String, Error> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
    fn command_line_limits() {
        assert_eq!(command_line("health", &["s1".into()]).unwrap(), "health s1");
        let big = "a".repeat(MAX_ARG_BYTES);
        let err = command_line("run-turn", &[big]).unwrap_err();
        assert_eq!(err.code(), "payload_too_large");
        let err = command_line("x", &["a b".into()]).unwrap_err();
        assert_eq!(err.code(), "bad_request");
    }
}

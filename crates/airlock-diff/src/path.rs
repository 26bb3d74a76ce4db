//! Paths in diffs: git's C-style quoting in both directions, prefix stripping, and the
//! checks every path passes before it leaves the parser.

use crate::error::{ParseProblem, excerpt};

/// Whether git (with the default `core.quotePath=true`) quotes a path containing `byte`.
fn needs_quoting(byte: u8) -> bool {
    byte < 0x20 || byte == b'"' || byte == b'\\' || byte >= 0x7f
}

/// `path` as git writes it in a diff header: unchanged when no byte needs quoting, else in
/// double quotes with C escapes and octal for every other byte.
pub(crate) fn quote(path: &str) -> String {
    if !path.bytes().any(needs_quoting) {
        return path.to_owned();
    }
    let mut quoted = String::with_capacity(path.len() + 2);
    quoted.push('"');
    for byte in path.bytes() {
        match byte {
            0x07 => quoted.push_str("\\a"),
            0x08 => quoted.push_str("\\b"),
            b'\t' => quoted.push_str("\\t"),
            b'\n' => quoted.push_str("\\n"),
            0x0b => quoted.push_str("\\v"),
            0x0c => quoted.push_str("\\f"),
            b'\r' => quoted.push_str("\\r"),
            b'"' => quoted.push_str("\\\""),
            b'\\' => quoted.push_str("\\\\"),
            byte if needs_quoting(byte) => quoted.push_str(&format!("\\{byte:03o}")),
            byte => quoted.push(char::from(byte)),
        }
    }
    quoted.push('"');
    quoted
}

/// Reads a quoted path at the start of `input` (which starts with `"`), returning the
/// unescaped bytes and what follows the closing quote.
pub(crate) fn unquote(input: &[u8]) -> Result<(Vec<u8>, &[u8]), ParseProblem> {
    let bad = |reason| ParseProblem::BadQuotedPath { reason };
    let Some(mut rest) = input.strip_prefix(b"\"") else {
        return Err(bad("missing opening quote"));
    };
    let mut path = Vec::new();
    loop {
        let Some((&byte, after)) = rest.split_first() else {
            return Err(bad("missing closing quote"));
        };
        rest = after;
        match byte {
            b'"' => return Ok((path, rest)),
            b'\\' => {
                let Some((&escape, after)) = rest.split_first() else {
                    return Err(bad("missing closing quote"));
                };
                rest = after;
                let unescaped = match escape {
                    b'a' => 0x07,
                    b'b' => 0x08,
                    b't' => b'\t',
                    b'n' => b'\n',
                    b'v' => 0x0b,
                    b'f' => 0x0c,
                    b'r' => b'\r',
                    b'"' => b'"',
                    b'\\' => b'\\',
                    b'0'..=b'3' => {
                        let Some((digits, after)) = rest.split_first_chunk::<2>() else {
                            return Err(bad("octal escape needs three digits"));
                        };
                        if !digits.iter().all(|digit| (b'0'..=b'7').contains(digit)) {
                            return Err(bad("octal escape needs three digits"));
                        }
                        rest = after;
                        let [middle, low] = *digits;
                        (escape - b'0') * 64 + (middle - b'0') * 8 + (low - b'0')
                    }
                    _ => return Err(bad("unknown escape")),
                };
                path.push(unescaped);
            }
            byte => path.push(byte),
        }
    }
}

/// Removes the first path component (`a/`, `b/`, or any other directory, as `-p1` does).
pub(crate) fn strip_prefix(raw: &[u8]) -> Result<&[u8], ParseProblem> {
    match raw.iter().position(|&byte| byte == b'/') {
        Some(slash) if slash > 0 => raw
            .get(slash + 1..)
            .filter(|rest| !rest.is_empty())
            .ok_or_else(|| ParseProblem::PathWithoutPrefix {
                found: excerpt(raw),
            }),
        _ => Err(ParseProblem::PathWithoutPrefix {
            found: excerpt(raw),
        }),
    }
}

/// Turns path bytes into a path, refusing what no caller can represent faithfully.
/// A lossy conversion would make the checked path differ from the one written.
pub(crate) fn validate(bytes: Vec<u8>) -> Result<String, ParseProblem> {
    if bytes.contains(&0) {
        return Err(ParseProblem::PathHasNul);
    }
    String::from_utf8(bytes).map_err(|_| ParseProblem::PathNotUtf8)
}

/// A path in `rename from`, `copy to` and similar lines: no prefix, maybe quoted.
pub(crate) fn bare_path(rest: &[u8]) -> Result<String, ParseProblem> {
    let bytes = if rest.first() == Some(&b'"') {
        let (bytes, tail) = unquote(rest)?;
        if !tail.is_empty() {
            return Err(ParseProblem::BadQuotedPath {
                reason: "text after the closing quote",
            });
        }
        bytes
    } else {
        rest.to_vec()
    };
    if bytes.is_empty() {
        return Err(ParseProblem::PathWithoutPrefix {
            found: String::new(),
        });
    }
    validate(bytes)
}

/// A path from `---`/`+++` or `diff --git`, with its prefix removed.
pub(crate) fn prefixed_path(raw: &[u8]) -> Result<String, ParseProblem> {
    validate(strip_prefix(raw)?.to_vec())
}

/// The names in `diff --git A B`, prefixes removed. `None` when unquoted names containing
/// spaces cannot be told apart; git then takes the names from other header lines too.
pub(crate) fn git_header_names(rest: &[u8]) -> Result<Option<(String, String)>, ParseProblem> {
    if rest.first() == Some(&b'"') {
        let (first, after) = unquote(rest)?;
        let second = after
            .strip_prefix(b" ")
            .ok_or(ParseProblem::BadQuotedPath {
                reason: "expected a space after the first name",
            })?;
        let second = whole_name(second)?;
        return Ok(Some((prefixed_path(&first)?, prefixed_path(&second)?)));
    }
    // A first name git did not quote cannot contain `"`, so a quote starts the second.
    if let Some(quote_at) = rest.iter().position(|&byte| byte == b'"')
        && quote_at > 0
        && rest.get(quote_at - 1) == Some(&b' ')
    {
        let first = rest.get(..quote_at - 1).unwrap_or_default();
        let second = whole_name(rest.get(quote_at..).unwrap_or_default())?;
        return Ok(Some((prefixed_path(first)?, prefixed_path(&second)?)));
    }
    let mut spaces = rest.iter().enumerate().filter(|(_, byte)| **byte == b' ');
    match (spaces.next(), spaces.next()) {
        (None, _) => Err(ParseProblem::UnknownPaths),
        (Some((space, _)), None) => {
            let first = rest.get(..space).unwrap_or_default();
            let second = rest.get(space + 1..).unwrap_or_default();
            Ok(Some((prefixed_path(first)?, prefixed_path(second)?)))
        }
        _ => match equal_names(rest) {
            Some(name) => {
                let name = validate(name.to_vec())?;
                Ok(Some((name.clone(), name)))
            }
            None => Ok(None),
        },
    }
}

/// A name that is the rest of the line: quoted (nothing may follow) or taken verbatim.
fn whole_name(raw: &[u8]) -> Result<Vec<u8>, ParseProblem> {
    if raw.first() != Some(&b'"') {
        return Ok(raw.to_vec());
    }
    let (name, tail) = unquote(raw)?;
    if tail.is_empty() {
        Ok(name)
    } else {
        Err(ParseProblem::BadQuotedPath {
            reason: "text after the closing quote",
        })
    }
}

/// For `P/NAME Q/NAME` with spaces inside NAME, finds NAME: the split where both names are
/// equal once their first component is removed, as git does.
///
/// Linear: the candidate second name shrinks as the split moves right, so only one split
/// can have two names of equal length, and the slash pointer only moves forward.
fn equal_names(rest: &[u8]) -> Option<&[u8]> {
    let first_slash = rest.iter().position(|&byte| byte == b'/')?;
    if first_slash == 0 {
        return None;
    }
    let names = rest.get(first_slash + 1..)?;
    let mut slash = 0;
    for (space, &byte) in names.iter().enumerate() {
        if byte != b' ' {
            continue;
        }
        slash = slash.max(space + 1);
        while names.get(slash).is_some_and(|&byte| byte != b'/') {
            slash += 1;
        }
        let second = names.get(slash + 1..)?;
        // The second name's prefix must be one non-empty component.
        if slash > space + 1 && second.len() == space {
            let first = names.get(..space)?;
            if first == second && !first.is_empty() {
                return Some(first);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_round_trips() {
        for path in [
            "plain.txt",
            "sp ace",
            "tab\there",
            "spécial",
            "q\"uote\\",
            "\x01\x7f",
        ] {
            let quoted = quote(path);
            let unquoted = if quoted.starts_with('"') {
                let (bytes, tail) = unquote(quoted.as_bytes()).unwrap();
                assert!(tail.is_empty());
                bytes
            } else {
                quoted.clone().into_bytes()
            };
            assert_eq!(unquoted, path.as_bytes(), "{quoted}");
        }
        assert_eq!(quote("spécial"), "\"sp\\303\\251cial\"");
    }

    #[test]
    fn equal_names_split() {
        let check = |input: &str, expected: Option<&str>| {
            assert_eq!(
                equal_names(input.as_bytes()),
                expected.map(str::as_bytes),
                "{input}"
            );
        };
        check("a/x y b/x y", Some("x y"));
        check("a/dir/x y z b/dir/x y z", Some("dir/x y z"));
        check("a/x y b/z y", None);
        check("a/x y", None);
        check("a/ b/", None);
        // The second prefix may itself contain a space, as git allows.
        check("a/x y c b/x y", Some("x y"));
    }
}

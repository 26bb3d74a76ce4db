//! GitHub CODEOWNERS: who owns which paths, read the way GitHub reads the file, so the
//! owners a policy sees are the ones GitHub would request.

use std::fmt;

/// A line of a CODEOWNERS file that airlock does not accept. GitHub ignores a file with
/// an invalid line (or, by older accounts, the line); airlock refuses it, since silently
/// dropping a line would drop an owner's review.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("CODEOWNERS line {line}: {message}")]
pub struct CodeOwnersError {
    /// 1-based; 0 when the error is about the whole file.
    pub line: usize,
    pub message: String,
}

/// GitHub refuses CODEOWNERS files of 3 MB or more.
const MAX_BYTES: usize = 3 * 1024 * 1024;

/// The rules of a CODEOWNERS file, in file order.
///
/// Semantics, as GitHub documents them (gitignore patterns with exceptions):
/// - each line is a pattern followed by owners (`@user`, `@org/team` or an email
///   address); `#` starts a comment at the start of a line or of a word;
/// - the last matching line wins; a line with a pattern and no owners makes the paths
///   it matches unowned;
/// - a leading `/` anchors the pattern to the repository root, and so does a `/` inside
///   it; a pattern with no `/` but a trailing one matches at any depth;
/// - a trailing `/` matches everything under a directory (not a file of that name);
///   otherwise a pattern also matches everything under the directories it names;
/// - `*` matches within one path segment, `?` one character other than `/`, `**` any
///   number of segments; a last segment that is exactly `*` (as in `docs/*`) matches
///   files directly inside the directory only.
///
/// Refused, each naming its line: `!` negation and `[ ]` ranges (GitHub does not
/// support them), backslash escapes (GitHub does not honour them: a pattern cannot start
/// with `#` or contain a space), `***`, and malformed owners.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CodeOwners {
    rules: Vec<Rule>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Rule {
    /// As written, for messages.
    pattern: String,
    segments: Vec<Segment>,
    end: End,
    owners: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Segment {
    /// `**`: zero or more whole path segments.
    AnySegments,
    /// One path segment matching a glob made of these pieces.
    Glob(Vec<Piece>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Piece {
    Char(char),
    /// `*` within a segment: any run of characters, possibly empty.
    Star,
    /// `?`: exactly one character.
    AnyChar,
}

/// What may follow the segments the pattern matched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum End {
    /// The path itself or anything under it (a name matches a file or a directory).
    SelfOrBelow,
    /// Only something under it (a trailing `/` or `/**`: a directory's contents).
    Below,
    /// Exactly the path (a last segment of `*`: files directly in a directory).
    Exact,
}

impl CodeOwners {
    /// The places GitHub looks for the file, relative to the repository root, in the
    /// order it looks: the first that exists is the one in force. Reading it is the
    /// caller's business.
    pub const fn locate() -> &'static [&'static str] {
        &[".github/CODEOWNERS", "CODEOWNERS", "docs/CODEOWNERS"]
    }

    /// Parses the text of a CODEOWNERS file. Lines may end in `\n` or `\r\n`.
    pub fn parse(text: &str) -> Result<CodeOwners, CodeOwnersError> {
        if text.len() >= MAX_BYTES {
            return Err(CodeOwnersError {
                line: 0,
                message: format!(
                    "the file is {} bytes; accepted: under 3 MB (GitHub ignores larger files)",
                    text.len()
                ),
            });
        }
        let mut rules = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let number = index + 1;
            let error = |message: String| CodeOwnersError {
                line: number,
                message,
            };
            let mut words = line
                .split_whitespace()
                .take_while(|word| !word.starts_with('#'));
            let Some(pattern) = words.next() else {
                continue;
            };
            let (segments, end) = compile(pattern).map_err(error)?;
            let owners = words
                .map(|owner| validate_owner(owner).map(|()| owner.to_owned()))
                .collect::<Result<Vec<_>, _>>()
                .map_err(error)?;
            rules.push(Rule {
                pattern: pattern.to_owned(),
                segments,
                end,
                owners,
            });
        }
        Ok(CodeOwners { rules })
    }

    /// The owners of a repository-relative path (`src/main.rs`; a leading `/` is
    /// ignored): those of the last line whose pattern matches, or none if no line
    /// matches or the last matching line lists no owners.
    pub fn owners_of(&self, path: &str) -> &[String] {
        let path = path.trim_start_matches('/');
        if path.is_empty() {
            return &[];
        }
        let components: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
        self.rules
            .iter()
            .rev()
            .find(|rule| rule.matches(&components))
            .map_or(&[], |rule| rule.owners.as_slice())
    }

    /// The owners of any of `paths`, sorted and without duplicates: the `owners` field
    /// of the policy input.
    pub fn owners_of_all<'a>(&self, paths: impl IntoIterator<Item = &'a str>) -> Vec<String> {
        let mut owners: Vec<String> = paths
            .into_iter()
            .flat_map(|path| self.owners_of(path).iter().cloned())
            .collect();
        owners.sort();
        owners.dedup();
        owners
    }

    /// The number of rules (non-comment, non-blank lines).
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}

impl fmt::Display for CodeOwners {
    /// The rules, one per line, normalised (comments and extra spaces dropped).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for rule in &self.rules {
            f.write_str(&rule.pattern)?;
            for owner in &rule.owners {
                write!(f, " {owner}")?;
            }
            writeln!(f)?;
        }
        Ok(())
    }
}

/// Turns a pattern into segments and an end condition, refusing what GitHub does not
/// support.
fn compile(pattern: &str) -> Result<(Vec<Segment>, End), String> {
    let refuse = |what: &str| {
        Err(format!(
            "`{pattern}`: {what}; accepted: gitignore-style patterns with `*`, `?`, `**`, and `/` to anchor or mark a directory"
        ))
    };
    if pattern.starts_with('!') {
        return refuse("`!` negation is not supported by CODEOWNERS");
    }
    if pattern.contains(['[', ']']) {
        return refuse("`[ ]` character ranges are not supported by CODEOWNERS");
    }
    if pattern.contains('\\') {
        return refuse("backslash escapes are not supported by CODEOWNERS");
    }
    if pattern.contains("***") {
        return refuse("`***` is not a pattern");
    }
    if pattern == "/" {
        return refuse("`/` alone matches nothing");
    }

    let anchored_by_slash = pattern.starts_with('/');
    let body = pattern.trim_start_matches('/');
    let directory = body.ends_with('/');
    let body = body.trim_end_matches('/');
    if body.split('/').any(str::is_empty) {
        return refuse("empty path segments (`//`) are not supported");
    }
    let mut parts: Vec<&str> = body.split('/').collect();
    // A slash at the start or in the middle anchors the pattern to the root; otherwise
    // it matches at any depth, as if it began with `**/`.
    if !anchored_by_slash && parts.len() == 1 && parts[0] != "**" {
        parts.insert(0, "**");
    }
    let last = *parts.last().unwrap_or(&"");
    let end = if directory || (last == "**" && parts.len() > 1) {
        End::Below
    } else if last == "*" {
        End::Exact
    } else {
        End::SelfOrBelow
    };
    // A trailing `**` is expressed by `End::Below`: drop it (but keep a lone `**`).
    if last == "**" && parts.len() > 1 {
        parts.pop();
    }
    let mut segments = Vec::with_capacity(parts.len());
    for part in parts {
        if part == "**" {
            if segments.last() != Some(&Segment::AnySegments) {
                segments.push(Segment::AnySegments);
            }
            continue;
        }
        if part.contains("**") {
            return refuse("`**` must be a whole path segment (`a/**/b`)");
        }
        segments.push(Segment::Glob(pieces(part)));
    }
    Ok((segments, end))
}

fn pieces(segment: &str) -> Vec<Piece> {
    segment
        .chars()
        .map(|c| match c {
            '*' => Piece::Star,
            '?' => Piece::AnyChar,
            c => Piece::Char(c),
        })
        .collect()
}

/// `@user`, `@org/team` (as airlock's policy groups are written) or an email address.
fn validate_owner(owner: &str) -> Result<(), String> {
    if owner.starts_with('@') {
        return airlock_core::review::validate_group(owner);
    }
    let valid_email = owner.split_once('@').is_some_and(|(local, domain)| {
        !local.is_empty()
            && !domain.is_empty()
            && !domain.contains('@')
            && domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
    });
    if valid_email {
        Ok(())
    } else {
        Err(format!(
            "`{}` is not an owner; accepted: `@user`, `@org/team` or an email address",
            owner
                .chars()
                .flat_map(char::escape_debug)
                .collect::<String>()
        ))
    }
}

impl Rule {
    fn matches(&self, path: &[&str]) -> bool {
        matches_from(&self.segments, path, self.end)
    }
}

/// Whether `segments` match a prefix of `path` that `end` accepts.
fn matches_from(segments: &[Segment], path: &[&str], end: End) -> bool {
    let Some((first, rest)) = segments.split_first() else {
        return match end {
            End::SelfOrBelow => true,
            End::Below => !path.is_empty(),
            End::Exact => path.is_empty(),
        };
    };
    match first {
        // Zero or more segments: try every split. A lone `**` pattern needs at least
        // one segment, which `owners_of` guarantees (it never matches an empty path).
        Segment::AnySegments => (0..=path.len()).any(|skip| matches_from(rest, &path[skip..], end)),
        Segment::Glob(pieces) => match path.split_first() {
            Some((component, below)) => glob(pieces, component) && matches_from(rest, below, end),
            None => false,
        },
    }
}

/// Whether one path segment matches a glob (`*` any run, `?` one character): the
/// classic two-pointer match, which only ever backtracks to the last `*`, so it takes
/// O(pattern × text) steps however many stars the pattern has.
fn glob(pieces: &[Piece], text: &str) -> bool {
    let text: Vec<char> = text.chars().collect();
    let (mut p, mut t) = (0, 0);
    // The last `*` seen and the text position it currently stands in for.
    let mut backtrack: Option<(usize, usize)> = None;
    while t < text.len() {
        match pieces.get(p) {
            Some(Piece::Char(c)) if *c == text[t] => (p, t) = (p + 1, t + 1),
            Some(Piece::AnyChar) => (p, t) = (p + 1, t + 1),
            Some(Piece::Star) => {
                backtrack = Some((p, t));
                p += 1;
            }
            _ => match backtrack {
                // Let the last `*` swallow one more character and retry after it.
                Some((star, from)) => {
                    backtrack = Some((star, from + 1));
                    (p, t) = (star + 1, from + 1);
                }
                None => return false,
            },
        }
    }
    pieces[p..].iter().all(|piece| *piece == Piece::Star)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pattern semantics, one line per (pattern, path, matches). Cases follow GitHub's
    /// documentation and gitignore's pattern format.
    #[test]
    fn patterns() {
        let cases: &[(&str, &str, bool)] = &[
            ("foo", "foo", true),
            ("foo", "foo/bar", true),
            ("foo", "bar/foo", true),
            ("foo", "bar/foo/baz", true),
            ("foo", "foo.txt", false),
            ("foo", "bar/foo.txt", false),
            ("/foo", "foo/bar/baz", true),
            ("/foo", "bar/foo", false),
            ("/foo", "fool", false),
            ("foo/", "foo", false),
            ("foo/", "foo/bar", true),
            ("foo/", "bar/foo/baz/qux", true),
            ("/foo/", "bar/foo/baz", false),
            ("foo/bar", "foo/bar/baz", true),
            ("foo/bar", "baz/foo/bar", false),
            ("foo/bar", "foo/bart", false),
            ("foo/bar/", "foo/bar", false),
            ("*", "anything/at/all", true),
            ("f*", "foo/bar", true),
            ("f*", "bar/foo", true),
            ("f*", "xfoo", false),
            ("/*", "foo", true),
            ("/*", "foo/bar", false),
            ("/*/", "foo", false),
            ("/*/", "foo/bar", true),
            ("foo/*", "foo/bar", true),
            ("foo/*", "foo/bar/baz", false),
            ("foo/*", "foo", false),
            ("foo/*.txt", "foo/bar.txt", true),
            ("foo/*.txt", "foo/bar/baz.txt", false),
            ("foo/*/baz", "foo/bar/baz/qux", true),
            ("foo/*/baz", "foo/baz", false),
            ("f?o", "foo", true),
            ("f?o", "fo", false),
            ("f?o", "fooo", false),
            ("**/foo/bar", "qux/foo/bar/baz", true),
            ("**/foo/bar", "foo/baz/bar", false),
            ("**/*bar*", "foo/rebar", true),
            ("foo/bar/**", "foo/bar", false),
            ("foo/bar/**", "foo/bar/baz/qux", true),
            ("foo/**/bar", "foo/bar", true),
            ("foo/**/bar", "foo/qux/quux/bar/baz", true),
            ("foo/**/bar", "qux/foo/bar", false),
            ("foo/**/bar/b*", "foo/qux/bar/baz", true),
            ("foo/**/bar/b*", "foo/qux/bar/qux", false),
            ("**", "a/b", true),
            ("*.rs", "src/main.rs", true),
            ("*.rs", "src/main.rs.orig", false),
            ("db/migrate/", "db/migrate/001_init.rb", true),
            ("db/migrate/", "app/db/migrate/001_init.rb", false),
        ];
        for &(pattern, path, expected) in cases {
            let owners = CodeOwners::parse(&format!("{pattern} @owner")).unwrap();
            let got = !owners.owners_of(path).is_empty();
            assert_eq!(got, expected, "pattern `{pattern}` on `{path}`");
        }
    }

    #[test]
    fn globs_do_not_backtrack_exponentially() {
        let owners = CodeOwners::parse("*a*a*a*a*a*a*a*a*b @x").unwrap();
        let start = std::time::Instant::now();
        assert!(owners.owners_of(&"a".repeat(40)).is_empty());
        // Quadratic per star at worst for these sizes; this must be instant, not minutes.
        assert!(start.elapsed() < std::time::Duration::from_secs(2));
    }
}

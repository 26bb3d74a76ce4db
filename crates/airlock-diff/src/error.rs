//! Why a diff could not be parsed or applied, worded for the agent that sent it.

use thiserror::Error;

/// A diff that is not accepted. Nothing is partially parsed: the whole input is rejected.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ParseError {
    #[error("no file changes found; expected a unified diff such as `git diff` prints")]
    NoFileChanges,
    /// `line` is the 1-based line of the diff where the problem was found.
    #[error("line {line}: {problem}")]
    Invalid { line: usize, problem: ParseProblem },
}

impl ParseError {
    /// The 1-based line of the diff the error is about, if it is about one line.
    pub fn line(&self) -> Option<usize> {
        match self {
            ParseError::NoFileChanges => None,
            ParseError::Invalid { line, .. } => Some(*line),
        }
    }
}

/// What was wrong with a line of a diff. Fields hold paths exactly and excerpts of other
/// input shortened; messages escape control characters, so they are safe to print.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ParseProblem {
    #[error(
        "hunk header without a file header; expected `diff --git` or `---`/`+++` lines before `@@`"
    )]
    HunkWithoutFileHeader,
    #[error(
        "malformed hunk header `{found}`; expected `@@ -START[,COUNT] +START[,COUNT] @@` with line numbers from 1 (0 only for an empty side)"
    )]
    BadHunkHeader { found: String },
    #[error(
        "hunk has no added or removed lines; a hunk needs at least one line starting with `+` or `-`"
    )]
    EmptyHunk,
    #[error(
        "hunk starting at line {header_line} ends early: {old_missing} old and {new_missing} new lines fewer than its header declares"
    )]
    TruncatedHunk {
        header_line: usize,
        old_missing: u32,
        new_missing: u32,
    },
    #[error(
        "one {side} line more than the hunk header at line {header_line} declares; the counts in `@@ -START,COUNT +START,COUNT @@` must match the hunk"
    )]
    ExtraHunkLine {
        header_line: usize,
        side: &'static str,
    },
    #[error(
        "unexpected line in hunk `{found}`; hunk lines start with ' ' (context), '+', '-' or '\\'"
    )]
    BadHunkLine { found: String },
    #[error(
        "misplaced `\\ No newline at end of file`; it may only follow the last old or new line of the file"
    )]
    MisplacedNoNewline,
    #[error(
        "hunk starts before the hunk at line {previous_line} ends; hunks must be in file order and must not overlap"
    )]
    HunksOutOfOrder { previous_line: usize },
    #[error("malformed quoted path: {reason}; git quotes paths as \"...\" with C escapes")]
    BadQuotedPath { reason: &'static str },
    #[error("path is not valid UTF-8; only UTF-8 paths are accepted")]
    PathNotUtf8,
    #[error("path contains a NUL byte")]
    PathHasNul,
    #[error(
        "path `{found}` has no leading directory to strip; expected `a/PATH` and `b/PATH` (or `/dev/null`)"
    )]
    PathWithoutPrefix { found: String },
    #[error("malformed file mode `{found}`; expected an octal mode such as 100644")]
    BadMode { found: String },
    #[error("duplicate `{header}` line in the file header")]
    DuplicateHeader { header: &'static str },
    #[error("file header is contradictory: {detail}")]
    ConflictingHeaders { detail: &'static str },
    #[error(
        "file names disagree within one file header: `{}` and `{}`",
        printable(.first),
        printable(.second)
    )]
    InconsistentPaths { first: String, second: String },
    #[error(
        "old and new paths differ (`{}`, `{}`) without `rename from`/`rename to` or `copy from`/`copy to` lines",
        printable(.old),
        printable(.new)
    )]
    UndeclaredRename { old: String, new: String },
    #[error(
        "cannot tell the file names apart; expected `---`/`+++` lines, `rename from`/`rename to` lines, or equal names in `diff --git a/PATH b/PATH`"
    )]
    UnknownPaths,
    #[error("`---` line not followed by a `+++` line")]
    MissingPlusLine,
    #[error(
        "file header for `{}` is not followed by a hunk (`@@ ... @@`)",
        printable(.path)
    )]
    MissingHunks { path: String },
    #[error(
        "file patch for `{}` changes nothing; expected hunks, a mode change, a rename, a copy or a binary patch",
        printable(.path)
    )]
    NoChanges { path: String },
    #[error("expected `literal SIZE` or `delta SIZE` after `GIT binary patch`")]
    MissingBinaryBlock,
    #[error(
        "malformed binary patch line `{found}`; expected base85 data lines ended by a blank line"
    )]
    BadBinaryLine { found: String },
    #[error(
        "cannot tell the file names apart in `{found}`; expected `Binary files OLD and NEW differ`"
    )]
    BadBinaryFilesLine { found: String },
    #[error(
        "unexpected line between file patches `{found}`; expected `diff --git`, `---`/`+++`, `@@` or the end of the diff"
    )]
    UnexpectedLine { found: String },
}

/// A file patch that does not fit the content it was applied to. The content is unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ApplyError {
    #[error(
        "`{}` has a binary patch, which cannot be applied as text",
        printable(.path)
    )]
    Binary { path: String },
    #[error("the patch creates `{}`, but it already exists", printable(.path))]
    AlreadyExists { path: String },
    #[error("the patch changes `{}`, but it does not exist", printable(.path))]
    Missing { path: String },
    #[error(
        "hunk #{hunk} of `{}` (`@@ -{old_start},{old_len} +{new_start},{new_len} @@`) does not apply: its context and removed lines match nowhere {place}; hunks apply exactly, without fuzz",
        printable(.path)
    )]
    HunkMismatch {
        path: String,
        /// 1-based position of the hunk in its file patch.
        hunk: usize,
        old_start: u32,
        old_len: u32,
        new_start: u32,
        new_len: u32,
        place: HunkPlace,
    },
    #[error(
        "the patch deletes `{}`, but the file has content the patch does not remove",
        printable(.path)
    )]
    DeletionMismatch { path: String },
}

/// Where a hunk was allowed to match, as git decides it: a hunk that starts at line 1 must
/// match at the start of the file, one without trailing context at its end, and the others
/// anywhere after the previous hunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HunkPlace {
    /// Anywhere at or after this 1-based line of the original file.
    AtOrAfterLine(usize),
    StartOfFile,
    EndOfFile,
    WholeFile,
}

impl std::fmt::Display for HunkPlace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HunkPlace::AtOrAfterLine(line) => write!(f, "at or after line {line}"),
            HunkPlace::StartOfFile => f.write_str("at the start of the file (it starts at line 1)"),
            HunkPlace::EndOfFile => {
                f.write_str("at the end of the file (it has no trailing context)")
            }
            HunkPlace::WholeFile => {
                f.write_str("as the whole file (it starts at line 1 and has no trailing context)")
            }
        }
    }
}

/// Untrusted text with control characters escaped, so a message cannot move a cursor,
/// clear a screen or forge a line of log.
pub(crate) fn printable(text: &str) -> String {
    let mut shown = String::with_capacity(text.len());
    for character in text.chars() {
        if character.is_control() {
            shown.extend(character.escape_default());
        } else {
            shown.push(character);
        }
    }
    shown
}

/// A short, printable rendering of untrusted bytes for an error message.
pub(crate) fn excerpt(bytes: &[u8]) -> String {
    const LIMIT: usize = 80;
    let shown = bytes.get(..LIMIT).unwrap_or(bytes);
    let mut text = printable(&String::from_utf8_lossy(shown));
    if shown.len() < bytes.len() {
        text.push_str("...");
    }
    text
}

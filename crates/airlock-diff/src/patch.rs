//! The parsed form of a unified diff: files, hunks and lines, as plain data.

use std::ops::Range;

/// Every file change found in one diff, in input order.
///
/// The same path may appear more than once (a `git format-patch` series that touches a file
/// in several commits); such entries apply one after the other.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Patch {
    pub files: Vec<FilePatch>,
}

/// What a file patch does to its file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileChangeKind {
    Added,
    Deleted,
    Modified,
    Renamed,
    Copied,
}

/// The change to one file.
///
/// Invariants upheld by `parse`: `old_path` is `None` exactly when `kind` is `Added`,
/// `new_path` is `None` exactly when `kind` is `Deleted`, and the two paths are equal for
/// `Modified`. Paths are exactly as the diff names them once the `a/`/`b/` prefix is gone:
/// valid UTF-8 without NUL, but not checked for safety (`..`, absolute, `.git/`).
/// Hunks are in file order and do not overlap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilePatch {
    pub old_path: Option<String>,
    pub new_path: Option<String>,
    /// Git's mode of the old file, e.g. `0o100644`, `0o100755`, `0o120000` (symlink),
    /// `0o160000` (submodule), when the diff states it.
    pub old_mode: Option<u32>,
    /// Git's mode of the new file, when the diff states it.
    pub new_mode: Option<u32>,
    pub kind: FileChangeKind,
    /// The diff carries a binary change (`GIT binary patch` or `Binary files ... differ`);
    /// its content is not parsed and the hunks are empty.
    pub binary: bool,
    pub hunks: Vec<Hunk>,
}

impl FilePatch {
    /// The path the change is best known by: the new path, or the old one for a deletion.
    pub fn path(&self) -> &str {
        self.new_path
            .as_deref()
            .or(self.old_path.as_deref())
            .unwrap_or_default()
    }

    pub fn lines_added(&self) -> usize {
        self.count_lines(LineKind::Added)
    }

    pub fn lines_removed(&self) -> usize {
        self.count_lines(LineKind::Removed)
    }

    /// How many lines the file had before the change, when its hunks show where it
    /// ended (`OldLength`).
    pub fn old_lines(&self) -> Option<u32> {
        let mut length = OldLength::default();
        for hunk in &self.hunks {
            length.begin(hunk.old_start, hunk.old_len);
            for line in &hunk.lines {
                length.line(line.kind);
                if line.no_newline_at_end && line.in_old() {
                    length.old_side_ended();
                }
            }
        }
        length.finish()
    }

    fn count_lines(&self, kind: LineKind) -> usize {
        self.hunks
            .iter()
            .flat_map(|hunk| &hunk.lines)
            .filter(|line| line.kind == kind)
            .count()
    }
}

/// One `@@ -old_start,old_len +new_start,new_len @@` section.
///
/// Line numbers are 1-based; a zero-length side names the line *after which* the hunk
/// applies (0 for the start of the file), as in `git diff` output.
/// `parse` guarantees that `lines` holds exactly `old_len` context and removed lines and
/// `new_len` context and added lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hunk {
    pub old_start: u32,
    pub old_len: u32,
    pub new_start: u32,
    pub new_len: u32,
    pub lines: Vec<HunkLine>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LineKind {
    Context,
    Added,
    Removed,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HunkLine {
    pub kind: LineKind,
    /// The line without its prefix character and without the newline; a carriage return
    /// before the newline stays here, so CRLF content is kept byte for byte.
    pub text: Vec<u8>,
    /// The line is the last of its file and has no newline
    /// (`\ No newline at end of file` followed it). For a context line this holds on
    /// both sides.
    pub no_newline_at_end: bool,
}

impl HunkLine {
    /// Whether the line is part of the old file's content.
    pub(crate) fn in_old(&self) -> bool {
        matches!(self.kind, LineKind::Context | LineKind::Removed)
    }

    /// Whether the line is part of the new file's content.
    pub(crate) fn in_new(&self) -> bool {
        matches!(self.kind, LineKind::Context | LineKind::Added)
    }
}

/// `Patch`, with line text borrowed from the parsed input instead of copied: what
/// `parse_ref` returns, for callers that read a large diff once (the scanner).
///
/// The same invariants hold as for `Patch`, and `into_patch` gives exactly what `parse`
/// returns for the same input.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PatchRef<'a> {
    pub files: Vec<FilePatchRef<'a>>,
}

/// `FilePatch` with borrowed hunk lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilePatchRef<'a> {
    pub old_path: Option<String>,
    pub new_path: Option<String>,
    pub old_mode: Option<u32>,
    pub new_mode: Option<u32>,
    pub kind: FileChangeKind,
    pub binary: bool,
    pub hunks: Vec<HunkRef<'a>>,
}

/// `Hunk` with borrowed lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HunkRef<'a> {
    pub old_start: u32,
    pub old_len: u32,
    pub new_start: u32,
    pub new_len: u32,
    pub lines: Vec<HunkLineRef<'a>>,
}

/// `HunkLine` with its text borrowed from the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HunkLineRef<'a> {
    pub kind: LineKind,
    /// As `HunkLine::text`: no prefix character, no newline; a slice of the input.
    pub text: &'a [u8],
    /// Where `text` starts in the input, in bytes. Lines of one hunk are consecutive in
    /// the input unless a `\ No newline at end of file` line sits between them.
    pub offset: usize,
    pub no_newline_at_end: bool,
}

impl PatchRef<'_> {
    /// The owned form, equal to what `parse` returns for the same input.
    pub fn into_patch(self) -> Patch {
        Patch {
            files: self
                .files
                .into_iter()
                .map(FilePatchRef::into_file_patch)
                .collect(),
        }
    }
}

impl FilePatchRef<'_> {
    /// The path the change is best known by: the new path, or the old one for a deletion.
    pub fn path(&self) -> &str {
        self.new_path
            .as_deref()
            .or(self.old_path.as_deref())
            .unwrap_or_default()
    }

    pub fn lines_added(&self) -> usize {
        self.count_lines(LineKind::Added)
    }

    pub fn lines_removed(&self) -> usize {
        self.count_lines(LineKind::Removed)
    }

    fn count_lines(&self, kind: LineKind) -> usize {
        self.hunks
            .iter()
            .flat_map(|hunk| &hunk.lines)
            .filter(|line| line.kind == kind)
            .count()
    }

    /// The owned form of this file patch.
    pub fn into_file_patch(self) -> FilePatch {
        FilePatch {
            old_path: self.old_path,
            new_path: self.new_path,
            old_mode: self.old_mode,
            new_mode: self.new_mode,
            kind: self.kind,
            binary: self.binary,
            hunks: self
                .hunks
                .into_iter()
                .map(|hunk| Hunk {
                    old_start: hunk.old_start,
                    old_len: hunk.old_len,
                    new_start: hunk.new_start,
                    new_len: hunk.new_len,
                    lines: hunk
                        .lines
                        .into_iter()
                        .map(|line| HunkLine {
                            kind: line.kind,
                            text: line.text.to_vec(),
                            no_newline_at_end: line.no_newline_at_end,
                        })
                        .collect(),
                })
                .collect(),
        }
    }
}

/// A diff reduced to the runs of changed lines of each file, as offsets into the parsed
/// input: what `parse_runs` returns, for a caller that searches the changed lines in the
/// input itself rather than line by line (the scanner).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PatchRuns {
    pub files: Vec<FileRuns>,
}

/// `FilePatchRef` with its hunks reduced to their runs of changed lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRuns {
    pub old_path: Option<String>,
    pub new_path: Option<String>,
    pub old_mode: Option<u32>,
    pub new_mode: Option<u32>,
    pub kind: FileChangeKind,
    pub binary: bool,
    /// The runs of every hunk, in input order.
    pub runs: Vec<ChangedRun>,
    /// How many lines the file had before the change, when its hunks show where it
    /// ended (`FilePatch::old_lines`).
    pub old_lines: Option<u32>,
}

impl FileRuns {
    /// The path the change is best known by: the new path, or the old one for a deletion.
    pub fn path(&self) -> &str {
        self.new_path
            .as_deref()
            .or(self.old_path.as_deref())
            .unwrap_or_default()
    }

    pub fn lines_added(&self) -> usize {
        self.runs.iter().map(|run| run.added as usize).sum()
    }

    pub fn lines_removed(&self) -> usize {
        self.runs.iter().map(|run| run.removed as usize).sum()
    }
}

/// Added and removed lines of one hunk that follow each other in the input: no context
/// line and no `\ No newline at end of file` line between them. Every line of `span`
/// is one of them, starting with its `+` or `-` and ended by a newline, but the last,
/// whose newline (if any) follows the span.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ChangedRun {
    /// From the first line's prefix character to the end of the last line's text.
    pub span: Range<usize>,
    /// Where the hunk's first line starts (after its `@@` header line), for looking back
    /// at the lines before the run.
    pub hunk_start: usize,
    /// Where the hunk's last line's text ends, for reading on past the run (the context
    /// lines after it).
    pub hunk_end: usize,
    /// The new-side line number of the run's first line: for a removed line, the number
    /// of the new line where the removal happened (as the scanner numbers lines).
    pub new_line: u32,
    pub added: u32,
    pub removed: u32,
    /// Bytes of the lines' text, without prefix characters and newlines.
    pub text_bytes: u64,
}

/// The length of a file before the change, as far as its hunks tell it. A diff gives
/// each change a fixed number of context lines (git's three unless told otherwise) and
/// fewer only where the file ends, so the last hunk ends the old file when it has fewer
/// context lines after its last change than that, or when its last old line is marked
/// `\ No newline at end of file`. The number of context lines is read from the hunks
/// that show it (the context before a change away from the file's start, and after the
/// last change of any hunk but the last), the largest seen, three when none does.
#[derive(Debug, Default)]
pub(crate) struct OldLength {
    /// The current hunk's old side, and its context lines before its first change and
    /// after its last one.
    old_start: u32,
    old_len: u32,
    leading: u32,
    trailing: u32,
    changed: bool,
    ended: bool,
    /// The most context lines seen where the file did not cut them short.
    context: Option<u32>,
}

impl OldLength {
    const DEFAULT_CONTEXT: u32 = 3;

    pub(crate) fn begin(&mut self, old_start: u32, old_len: u32) {
        if self.changed {
            self.seen_context(self.trailing);
        }
        *self = OldLength {
            old_start,
            old_len,
            context: self.context,
            ..OldLength::default()
        };
    }

    pub(crate) fn line(&mut self, kind: LineKind) {
        if kind == LineKind::Context {
            if self.changed {
                self.trailing += 1;
            } else {
                self.leading += 1;
            }
            return;
        }
        if !self.changed && self.old_start > 1 {
            self.seen_context(self.leading);
        }
        self.changed = true;
        self.trailing = 0;
    }

    /// The current hunk's last old-side line has no newline: the old file ends there.
    pub(crate) fn old_side_ended(&mut self) {
        self.ended = true;
    }

    fn seen_context(&mut self, lines: u32) {
        self.context = Some(self.context.map_or(lines, |seen| seen.max(lines)));
    }

    pub(crate) fn finish(self) -> Option<u32> {
        let context = self.context.unwrap_or(Self::DEFAULT_CONTEXT);
        let ends = self.ended || (self.changed && self.trailing < context);
        (ends && self.old_len > 0).then(|| self.old_start.saturating_add(self.old_len - 1))
    }
}

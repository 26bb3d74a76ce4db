//! The parsed form of a unified diff: files, hunks and lines, as plain data.

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

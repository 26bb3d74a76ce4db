//! The parser: `git diff` (with `--binary`), `git format-patch` mail, and plain `diff -u`.
//!
//! One pass over the lines with a constant look-ahead, so time and memory are linear in
//! the input. Hunk line counts decide where a hunk ends, as in git; text outside file
//! patches is skipped only where mail carries it (before the first file patch and after a
//! format-patch signature), so a miscounted hunk is an error rather than silently shorter.

use crate::error::{ParseError, ParseProblem, excerpt};
use crate::patch::{
    ChangedRun, FileChangeKind, FilePatchRef, FileRuns, HunkLineRef, HunkRef, LineKind, OldLength,
    Patch, PatchRef, PatchRuns,
};
use crate::path;

/// Parses a unified diff as produced by `git diff`, `git diff --binary`,
/// `git format-patch` (mail headers, the commit message and the `-- ` signature are
/// skipped; several mails in one mbox are read in order), or plain `diff -u` with
/// `--- a/x` and `+++ b/x` lines and no `diff --git` line.
///
/// Fails on the first line that does not fit, naming it; never panics, whatever the bytes.
/// Paths must be UTF-8 without NUL once unquoted; they are returned exactly, unchecked
/// for safety.
pub fn parse(input: &[u8]) -> Result<Patch, ParseError> {
    parse_ref(input).map(PatchRef::into_patch)
}

/// `parse`, without copying: line text stays in `input`. Accepts and rejects exactly what
/// `parse` does, with the same errors.
pub fn parse_ref(input: &[u8]) -> Result<PatchRef<'_>, ParseError> {
    let files = Parser::new(input).patch::<Vec<HunkRef<'_>>>()?;
    Ok(PatchRef {
        files: files.into_iter().map(File::into_file_patch_ref).collect(),
    })
}

/// `parse`, keeping of each file's hunks only its runs of changed lines, as offsets into
/// `input`: no record per line, for callers that look at the changed lines alone and find
/// them in the input (the scanner). Accepts and rejects exactly what `parse` does, with
/// the same errors.
pub fn parse_runs(input: &[u8]) -> Result<PatchRuns, ParseError> {
    let files = Parser::new(input).patch::<Runs>()?;
    Ok(PatchRuns {
        files: files.into_iter().map(File::into_file_runs).collect(),
    })
}

/// A hunk's header values.
#[derive(Debug, Clone, Copy)]
struct HunkHeader {
    old_start: u32,
    old_len: u32,
    new_start: u32,
    new_len: u32,
}

/// What the parser builds from one file's hunks, a line at a time: every line for
/// `parse_ref` (`Vec<HunkRef>`), the runs of changed lines for `parse_runs` (`Runs`).
/// The parser validates alike whatever it builds.
trait Hunks<'a>: Default {
    /// Starts a hunk that has at most `capacity` lines.
    fn begin(&mut self, header: HunkHeader, capacity: usize);
    /// Adds a line to the current hunk: its kind, where its raw line starts (at the prefix
    /// character), its text, and where the text starts.
    fn line(&mut self, kind: LineKind, line_start: usize, text: &'a [u8], text_start: usize);
    /// Marks the current hunk's last line `\ No newline at end of file`, and returns its
    /// kind; `None` when the hunk has no line yet or the last one is marked already.
    fn mark_no_newline(&mut self) -> Option<LineKind>;
    /// Whether no hunk was begun.
    fn is_empty(&self) -> bool;
}

impl<'a> Hunks<'a> for Vec<HunkRef<'a>> {
    fn begin(&mut self, header: HunkHeader, capacity: usize) {
        self.push(HunkRef {
            old_start: header.old_start,
            old_len: header.old_len,
            new_start: header.new_start,
            new_len: header.new_len,
            lines: Vec::with_capacity(capacity),
        });
    }

    fn line(&mut self, kind: LineKind, _line_start: usize, text: &'a [u8], text_start: usize) {
        if let Some(hunk) = self.last_mut() {
            hunk.lines.push(HunkLineRef {
                kind,
                text,
                offset: text_start,
                no_newline_at_end: false,
            });
        }
    }

    fn mark_no_newline(&mut self) -> Option<LineKind> {
        let last = self
            .last_mut()?
            .lines
            .last_mut()
            .filter(|last| !last.no_newline_at_end)?;
        last.no_newline_at_end = true;
        Some(last.kind)
    }

    fn is_empty(&self) -> bool {
        Vec::is_empty(self)
    }
}

/// The runs of changed lines of one file's hunks, built as `parse_runs` reads them.
#[derive(Debug, Default)]
struct Runs {
    runs: Vec<ChangedRun>,
    /// The run the last line extended, while `open`: the next line may extend it too.
    run: ChangedRun,
    open: bool,
    hunks: usize,
    /// Where the current hunk's first line starts, once it has one.
    hunk_start: Option<usize>,
    /// Where the current hunk's last line so far ends, and its first run in `runs`.
    hunk_end: usize,
    hunk_runs: usize,
    /// The new-side number of the current hunk's next line.
    new_line: u32,
    /// The kind of the current hunk's last line, if it has one, and whether it is marked
    /// `\ No newline at end of file`.
    last: Option<LineKind>,
    marked: bool,
    old_length: OldLength,
}

impl Runs {
    fn close(&mut self) {
        if self.open {
            self.open = false;
            let run = &mut self.run;
            // Each line is its prefix, its text and a newline, but the last has no
            // newline in the span.
            let lines = u64::from(run.added) + u64::from(run.removed);
            run.text_bytes = (run.span.len() as u64 + 1).saturating_sub(2 * lines);
            self.runs.push(run.clone());
        }
    }

    /// Closes the current run and gives the hunk's runs the hunk's end.
    fn end_hunk(&mut self) {
        self.close();
        for run in &mut self.runs[self.hunk_runs..] {
            run.hunk_end = self.hunk_end;
        }
        self.hunk_runs = self.runs.len();
    }
}

impl<'a> Hunks<'a> for Runs {
    fn begin(&mut self, header: HunkHeader, _capacity: usize) {
        self.end_hunk();
        self.old_length.begin(header.old_start, header.old_len);
        self.hunks += 1;
        self.hunk_start = None;
        self.new_line = header.new_start;
        self.last = None;
    }

    #[inline]
    fn line(&mut self, kind: LineKind, line_start: usize, text: &'a [u8], text_start: usize) {
        let hunk_start = *self.hunk_start.get_or_insert(line_start);
        self.hunk_end = text_start + text.len();
        self.last = Some(kind);
        self.marked = false;
        self.old_length.line(kind);
        if kind == LineKind::Context {
            self.close();
            self.new_line = self.new_line.saturating_add(1);
            return;
        }
        if !self.open {
            self.open = true;
            self.run = ChangedRun {
                span: line_start..line_start,
                hunk_start,
                hunk_end: 0,
                new_line: self.new_line,
                added: 0,
                removed: 0,
                text_bytes: 0,
            };
        }
        let run = &mut self.run;
        run.span.end = text_start + text.len();
        if kind == LineKind::Added {
            run.added += 1;
            self.new_line = self.new_line.saturating_add(1);
        } else {
            run.removed += 1;
        }
    }

    fn mark_no_newline(&mut self) -> Option<LineKind> {
        // The marker line sits between this line and the next: they are not adjacent.
        self.close();
        let kind = self.last.filter(|_| !self.marked)?;
        self.marked = true;
        if in_old(kind) {
            self.old_length.old_side_ended();
        }
        Some(kind)
    }

    fn is_empty(&self) -> bool {
        self.hunks == 0
    }
}

/// One file patch as the parser builds it, with the hunks in the form `H` asked for.
#[derive(Debug)]
struct File<H> {
    old_path: Option<String>,
    new_path: Option<String>,
    old_mode: Option<u32>,
    new_mode: Option<u32>,
    kind: FileChangeKind,
    binary: bool,
    hunks: H,
}

impl<H> File<H> {
    fn path(&self) -> &str {
        self.new_path
            .as_deref()
            .or(self.old_path.as_deref())
            .unwrap_or_default()
    }
}

impl<'a> File<Vec<HunkRef<'a>>> {
    fn into_file_patch_ref(self) -> FilePatchRef<'a> {
        FilePatchRef {
            old_path: self.old_path,
            new_path: self.new_path,
            old_mode: self.old_mode,
            new_mode: self.new_mode,
            kind: self.kind,
            binary: self.binary,
            hunks: self.hunks,
        }
    }
}

impl File<Runs> {
    fn into_file_runs(mut self) -> FileRuns {
        self.hunks.end_hunk();
        FileRuns {
            old_path: self.old_path,
            new_path: self.new_path,
            old_mode: self.old_mode,
            new_mode: self.new_mode,
            kind: self.kind,
            binary: self.binary,
            runs: self.hunks.runs,
            old_lines: self.hunks.old_length.finish(),
        }
    }
}

/// The lines of the input, split as they are read: the parser looks at most two lines
/// ahead, so the whole input is never split up front.
struct Lines<'a> {
    input: &'a [u8],
    /// The newlines of the input, found as the lines are split.
    newlines: Newlines<'a>,
    /// Where the first line not yet split off starts.
    rest: usize,
    /// Lines split off and not yet consumed, as (offset, line), oldest first.
    ahead: [(usize, &'a [u8]); 2],
    ahead_len: usize,
}

impl<'a> Lines<'a> {
    fn new(input: &'a [u8]) -> Lines<'a> {
        Lines {
            input,
            newlines: Newlines::new(input),
            rest: 0,
            ahead: [(0, &[]); 2],
            ahead_len: 0,
        }
    }

    /// The next line and its offset, without its newline. A final newline ends the last
    /// line rather than starting an empty one.
    fn split_next(&mut self) -> Option<(usize, &'a [u8])> {
        let start = self.rest;
        if start >= self.input.len() {
            return None;
        }
        // Newlines are found in order and `rest` is always just past the last one, so the
        // next one found ends this line.
        let end = self.newlines.next().unwrap_or(self.input.len());
        self.rest = end + 1;
        Some((start, self.input.get(start..end).unwrap_or_default()))
    }

    /// Bytes not yet split into lines, a bound on how many lines can follow.
    fn remaining(&self) -> usize {
        self.input.len().saturating_sub(self.rest)
    }

    /// The line `index` lines ahead (0 or 1), with its offset.
    fn get(&mut self, index: usize) -> Option<(usize, &'a [u8])> {
        while self.ahead_len <= index {
            let line = self.split_next()?;
            self.ahead[self.ahead_len] = line;
            self.ahead_len += 1;
        }
        Some(self.ahead[index])
    }

    fn advance(&mut self) {
        self.take();
    }

    /// The next line with its offset, consumed: what `get(0)` then `advance` give, without
    /// storing the line ahead first (hunk bodies are read this way, a line at a time).
    fn take(&mut self) -> Option<(usize, &'a [u8])> {
        if self.ahead_len == 0 {
            return self.split_next();
        }
        let line = self.ahead[0];
        self.ahead[0] = self.ahead[1];
        self.ahead_len -= 1;
        Some(line)
    }
}

/// The newlines of an input in order, found 64 bytes at a time: each block becomes a mask
/// with a bit per newline, read off one line at a time. Diff lines average a few dozen
/// bytes; a search per line, even `memchr_iter` resuming where it stopped, pays more to
/// set up its vector loop than to run it, and that was most of the parser's time.
struct Newlines<'a> {
    input: &'a [u8],
    /// Where the block `mask` describes starts.
    block: usize,
    /// The newlines of that block not yet returned, a bit per byte.
    mask: u64,
}

impl<'a> Newlines<'a> {
    fn new(input: &'a [u8]) -> Newlines<'a> {
        Newlines {
            input,
            block: 0,
            mask: newline_mask(input),
        }
    }

    fn next(&mut self) -> Option<usize> {
        while self.mask == 0 {
            self.block += 64;
            if self.block >= self.input.len() {
                return None;
            }
            self.mask = newline_mask(&self.input[self.block..]);
        }
        let bit = self.mask.trailing_zeros() as usize;
        // Clears the lowest bit set.
        self.mask &= self.mask - 1;
        Some(self.block + bit)
    }
}

/// A bit per newline among the first 64 bytes of `bytes`.
fn newline_mask(bytes: &[u8]) -> u64 {
    let block = match bytes.first_chunk::<64>() {
        Some(block) => *block,
        None => {
            // The last, short block: the padding holds no newline.
            let mut block = [0u8; 64];
            block[..bytes.len()].copy_from_slice(bytes);
            block
        }
    };
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: SSE2 is part of the x86-64 baseline: every CPU this code runs on has it.
        unsafe { newline_mask_sse2(&block) }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        block.iter().enumerate().fold(0, |mask, (index, &byte)| {
            mask | u64::from(byte == b'\n') << index
        })
    }
}

/// `newline_mask` with four 16-byte vector compares and byte masks. The compiler does
/// not turn a plain loop into these; it does read each 16 bytes with one load.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse2")]
fn newline_mask_sse2(block: &[u8; 64]) -> u64 {
    use std::arch::x86_64::{_mm_cmpeq_epi8, _mm_movemask_epi8, _mm_set_epi8, _mm_set1_epi8};
    let newline = _mm_set1_epi8(b'\n'.cast_signed());
    let mut mask = 0u64;
    for (index, chunk) in block.chunks_exact(16).enumerate() {
        let [
            b0,
            b1,
            b2,
            b3,
            b4,
            b5,
            b6,
            b7,
            b8,
            b9,
            b10,
            b11,
            b12,
            b13,
            b14,
            b15,
        ] = <[u8; 16]>::try_from(chunk)
            .unwrap_or_default()
            .map(u8::cast_signed);
        let bytes = _mm_set_epi8(
            b15, b14, b13, b12, b11, b10, b9, b8, b7, b6, b5, b4, b3, b2, b1, b0,
        );
        // 16 bits, one per byte: `as` keeps them.
        let found = _mm_movemask_epi8(_mm_cmpeq_epi8(bytes, newline)) as u16;
        mask |= u64::from(found) << (16 * index);
    }
    mask
}

struct Parser<'a> {
    lines: Lines<'a>,
    /// Index of the next unread line.
    next: usize,
    /// The 1-based line of the last hunk header of the current file patch, to explain
    /// lines that follow a hunk whose header undercounts them.
    last_hunk_line: Option<usize>,
}

/// A value read from the line with this 1-based number, kept for error messages.
#[derive(Debug, Clone)]
struct Sourced<T> {
    value: T,
    line: usize,
}

/// A name from a `---` or `+++` line.
#[derive(Debug, Clone)]
struct HeaderName {
    /// `None` for `/dev/null`.
    path: Option<String>,
    /// The timestamp is the Unix epoch: plain `diff -N` marks an absent file that way.
    epoch: bool,
}

/// Lines of a `diff --git` header that carry one value each.
#[derive(Debug, Default)]
struct GitHeader {
    names: Option<(String, String)>,
    old_mode: Option<u32>,
    new_mode: Option<u32>,
    index_mode: Option<u32>,
    new_file: bool,
    deleted_file: bool,
    rename_from: Option<Sourced<String>>,
    rename_to: Option<Sourced<String>>,
    copy_from: Option<Sourced<String>>,
    copy_to: Option<Sourced<String>>,
    minus: Option<Sourced<HeaderName>>,
    plus: Option<Sourced<HeaderName>>,
    binary: bool,
}

impl<'a> Parser<'a> {
    fn new(input: &'a [u8]) -> Parser<'a> {
        Parser {
            lines: Lines::new(input),
            next: 0,
            last_hunk_line: None,
        }
    }

    fn peek(&mut self) -> Option<&'a [u8]> {
        self.lines.get(0).map(|(_, line)| line)
    }

    fn peek_second(&mut self) -> Option<&'a [u8]> {
        self.lines.get(1).map(|(_, line)| line)
    }

    /// The 1-based number of the next unread line.
    fn line_number(&self) -> usize {
        self.next + 1
    }

    fn advance(&mut self) {
        self.lines.advance();
        self.next += 1;
    }

    /// The next unread line with its offset, now read.
    fn take(&mut self) -> Option<(usize, &'a [u8])> {
        self.next += 1;
        self.lines.take()
    }

    fn error_here(&self, problem: ParseProblem) -> ParseError {
        error_at(self.line_number(), problem)
    }

    fn at_plain_header(&mut self) -> bool {
        self.peek().is_some_and(|line| line.starts_with(b"--- "))
            && self
                .peek_second()
                .is_some_and(|line| line.starts_with(b"+++ "))
    }

    fn patch<H: Hunks<'a>>(&mut self) -> Result<Vec<File<H>>, ParseError> {
        let mut files = Vec::new();
        // Mail headers and the commit message precede the first file patch in
        // `git format-patch` output, and the next mail follows a signature.
        let mut skipping_mail = true;
        while let Some(line) = self.peek() {
            if let Some(rest) = line.strip_prefix(b"diff --git ") {
                files.push(self.git_file_patch(rest)?);
                skipping_mail = false;
            } else if self.at_plain_header() {
                files.push(self.plain_file_patch()?);
                skipping_mail = false;
            } else if let Some(names) = binary_files_differ(line) {
                files.push(self.plain_binary_file_patch(names)?);
                skipping_mail = false;
            } else if line.starts_with(b"@@ -") {
                return Err(self.error_here(ParseProblem::HunkWithoutFileHeader));
            } else if skipping_mail {
                self.advance();
            } else if line == b"-- " || is_mbox_separator(line) {
                skipping_mail = true;
                self.advance();
            } else if line.is_empty() || line.starts_with(b"diff ") {
                // Blank lines, and the command lines `diff -ruN` prints before a file.
                self.advance();
            } else {
                let side = match line.first() {
                    Some(b'+') => Some("new"),
                    Some(b'-') => Some("old"),
                    Some(b' ') => Some("context"),
                    _ => None,
                };
                let problem = match (side, self.last_hunk_line) {
                    (Some(side), Some(header_line)) => {
                        ParseProblem::ExtraHunkLine { header_line, side }
                    }
                    _ => ParseProblem::UnexpectedLine {
                        found: excerpt(line),
                    },
                };
                return Err(self.error_here(problem));
            }
        }
        if files.is_empty() {
            return Err(ParseError::NoFileChanges);
        }
        Ok(files)
    }

    fn git_file_patch<H: Hunks<'a>>(&mut self, names: &[u8]) -> Result<File<H>, ParseError> {
        self.last_hunk_line = None;
        let header_line = self.line_number();
        let mut header = GitHeader {
            names: path::git_header_names(names)
                .map_err(|problem| error_at(header_line, problem))?,
            ..GitHeader::default()
        };
        self.advance();
        let mut hunks = H::default();
        let mut mode_lines = false;
        while let Some(line) = self.peek() {
            let number = self.line_number();
            let at = |problem| error_at(number, problem);
            if let Some(rest) = line.strip_prefix(b"old mode ") {
                set_once(&mut header.old_mode, parse_mode(rest), "old mode").map_err(at)?;
                mode_lines = true;
            } else if let Some(rest) = line.strip_prefix(b"new mode ") {
                set_once(&mut header.new_mode, parse_mode(rest), "new mode").map_err(at)?;
                mode_lines = true;
            } else if let Some(rest) = line.strip_prefix(b"deleted file mode ") {
                set_once(&mut header.old_mode, parse_mode(rest), "deleted file mode")
                    .map_err(at)?;
                header.deleted_file = true;
            } else if let Some(rest) = line.strip_prefix(b"new file mode ") {
                set_once(&mut header.new_mode, parse_mode(rest), "new file mode").map_err(at)?;
                header.new_file = true;
            } else if let Some(rest) = line
                .strip_prefix(b"rename from ")
                .or_else(|| line.strip_prefix(b"rename old "))
            {
                set_sourced(&mut header.rename_from, rest, number, "rename from")?;
            } else if let Some(rest) = line
                .strip_prefix(b"rename to ")
                .or_else(|| line.strip_prefix(b"rename new "))
            {
                set_sourced(&mut header.rename_to, rest, number, "rename to")?;
            } else if let Some(rest) = line.strip_prefix(b"copy from ") {
                set_sourced(&mut header.copy_from, rest, number, "copy from")?;
            } else if let Some(rest) = line.strip_prefix(b"copy to ") {
                set_sourced(&mut header.copy_to, rest, number, "copy to")?;
            } else if line.starts_with(b"similarity index ")
                || line.starts_with(b"dissimilarity index ")
            {
                // Informational only.
            } else if let Some(rest) = line.strip_prefix(b"index ") {
                // `index OLD..NEW MODE`: the mode is there only when it did not change.
                if let Some(space) = rest.iter().position(|&byte| byte == b' ') {
                    let mode = parse_mode(rest.get(space + 1..).unwrap_or_default());
                    set_once(&mut header.index_mode, mode, "index").map_err(at)?;
                }
            } else if line == b"GIT binary patch" {
                self.advance();
                self.skip_binary_patch()?;
                header.binary = true;
                break;
            } else if binary_files_differ(line).is_some() {
                self.advance();
                header.binary = true;
                break;
            } else if self.at_plain_header() {
                let (minus, plus) = self.names_lines()?;
                header.minus = Some(minus);
                header.plus = Some(plus);
                let hunks_line = self.line_number();
                hunks = self.hunks()?;
                if hunks.is_empty() {
                    let path = header
                        .plus
                        .as_ref()
                        .and_then(|plus| plus.value.path.clone());
                    let path = path.or_else(|| header.minus.as_ref()?.value.path.clone());
                    return Err(error_at(
                        hunks_line,
                        ParseProblem::MissingHunks {
                            path: path.unwrap_or_default(),
                        },
                    ));
                }
                break;
            } else if line.starts_with(b"--- ") {
                return Err(error_at(number + 1, ParseProblem::MissingPlusLine));
            } else if line.starts_with(b"@@") {
                hunks = self.hunks()?;
                break;
            } else {
                break;
            }
            self.advance();
        }
        finish_git_file_patch(header, hunks, mode_lines, header_line)
    }

    /// Reads a `---` line and the `+++` line after it; the caller checked both are there.
    fn names_lines(&mut self) -> Result<(Sourced<HeaderName>, Sourced<HeaderName>), ParseError> {
        let mut read = |prefix: &[u8]| {
            let line = self.line_number();
            let rest = self
                .peek()
                .and_then(|text| text.strip_prefix(prefix))
                .ok_or_else(|| error_at(line, ParseProblem::MissingPlusLine))?;
            let value = header_name(rest).map_err(|problem| error_at(line, problem))?;
            self.advance();
            Ok(Sourced { value, line })
        };
        let minus = read(b"--- ")?;
        let plus = read(b"+++ ")?;
        Ok((minus, plus))
    }

    fn plain_file_patch<H: Hunks<'a>>(&mut self) -> Result<File<H>, ParseError> {
        self.last_hunk_line = None;
        let (minus, plus) = self.names_lines()?;
        let hunks_line = self.line_number();
        let hunks: H = self.hunks()?;
        let creating = minus.value.path.is_none() || minus.value.epoch;
        let deleting = plus.value.path.is_none() || plus.value.epoch;
        let old_path = minus.value.path.filter(|_| !creating);
        let new_path = plus.value.path.filter(|_| !deleting);
        if hunks.is_empty() {
            let path = new_path.or(old_path).unwrap_or_default();
            return Err(error_at(hunks_line, ParseProblem::MissingHunks { path }));
        }
        plain_file(old_path, new_path, hunks, plus.line)
    }

    fn plain_binary_file_patch<H: Hunks<'a>>(
        &mut self,
        names: &[u8],
    ) -> Result<File<H>, ParseError> {
        self.last_hunk_line = None;
        let line = self.line_number();
        let at = |problem| error_at(line, problem);
        // `OLD and NEW`: split at the one ` and ` that exists, else the names are ambiguous.
        let mut separators = names
            .windows(5)
            .enumerate()
            .filter(|(_, window)| *window == b" and ")
            .map(|(at, _)| at);
        let (Some(split), None) = (separators.next(), separators.next()) else {
            return Err(at(ParseProblem::BadBinaryFilesLine {
                found: excerpt(names),
            }));
        };
        let old = binary_name(names.get(..split).unwrap_or_default()).map_err(at)?;
        let new = binary_name(names.get(split + 5..).unwrap_or_default()).map_err(at)?;
        self.advance();
        let mut file = plain_file(old, new, H::default(), line)?;
        file.binary = true;
        Ok(file)
    }

    /// Reads consecutive hunks and checks that they are in order and do not overlap.
    fn hunks<H: Hunks<'a>>(&mut self) -> Result<H, ParseError> {
        let mut hunks = H::default();
        let mut previous: Option<(u64, u64, usize)> = None;
        // A line of the previous hunk is marked `\ No newline at end of file`.
        let mut previous_ends_file = false;
        while let Some(line) = self.peek() {
            if !line.starts_with(b"@@") {
                break;
            }
            let header_line = self.line_number();
            let (hunk, ends_file) = self.hunk(line, &mut hunks)?;
            if previous_ends_file {
                return Err(error_at(header_line, ParseProblem::MisplacedNoNewline));
            }
            previous_ends_file = ends_file;
            let (old_begin, old_end) = span(hunk.old_start, hunk.old_len);
            let (new_begin, new_end) = span(hunk.new_start, hunk.new_len);
            if let Some((previous_old_end, previous_new_end, previous_line)) = previous
                && (old_begin < previous_old_end || new_begin < previous_new_end)
            {
                return Err(error_at(
                    header_line,
                    ParseProblem::HunksOutOfOrder { previous_line },
                ));
            }
            previous = Some((old_end, new_end, header_line));
        }
        Ok(hunks)
    }

    /// One hunk, and whether a line of it was marked `\ No newline at end of file`.
    fn hunk<H: Hunks<'a>>(
        &mut self,
        header: &[u8],
        hunks: &mut H,
    ) -> Result<(HunkHeader, bool), ParseError> {
        let header_line = self.line_number();
        self.last_hunk_line = Some(header_line);
        let bad_header = || {
            error_at(
                header_line,
                ParseProblem::BadHunkHeader {
                    found: excerpt(header),
                },
            )
        };
        let (old_start, old_len, new_start, new_len) =
            parse_hunk_header(header).ok_or_else(bad_header)?;
        if (old_len > 0 && old_start == 0) || (new_len > 0 && new_start == 0) {
            return Err(bad_header());
        }
        self.advance();
        let (mut old_left, mut new_left) = (old_len, new_len);
        let (mut old_ended, mut new_ended) = (false, false);
        // Sized once from the header; a hostile header cannot claim more lines than bytes
        // remain.
        let declared = usize::try_from(u64::from(old_len) + u64::from(new_len)).unwrap_or(0);
        let hunk = HunkHeader {
            old_start,
            old_len,
            new_start,
            new_len,
        };
        hunks.begin(hunk, declared.min(self.lines.remaining() + 2));
        let mut changed = false;
        while old_left > 0 || new_left > 0 {
            if !old_ended && !new_ended {
                let mut left = (old_left, new_left);
                changed |= self.plain_hunk_lines(hunks, &mut left);
                (old_left, new_left) = left;
                if old_left == 0 && new_left == 0 {
                    break;
                }
            }
            let number = self.line_number();
            let truncated = || ParseProblem::TruncatedHunk {
                header_line,
                old_missing: old_left,
                new_missing: new_left,
            };
            // Every line is consumed here but those that end the parse with an error.
            let Some((offset, line)) = self.take() else {
                return Err(error_at(number, truncated()));
            };
            // An empty line has no prefix; its text is the empty slice where it starts.
            let prefix = usize::from(!line.is_empty());
            let text = line.get(prefix..).unwrap_or_default();
            let kind = match line.first() {
                // Some tools strip the space of an empty context line; git accepts that too.
                None | Some(b' ') => LineKind::Context,
                Some(b'+') => LineKind::Added,
                Some(b'-') => LineKind::Removed,
                Some(b'\\') => {
                    mark_no_newline(hunks, &mut old_ended, &mut new_ended)
                        .map_err(|problem| error_at(number, problem))?;
                    continue;
                }
                Some(_) if line.starts_with(b"@@") || line.starts_with(b"diff ") => {
                    return Err(error_at(number, truncated()));
                }
                Some(_) => {
                    return Err(error_at(
                        number,
                        ParseProblem::BadHunkLine {
                            found: excerpt(line),
                        },
                    ));
                }
            };
            changed |= kind != LineKind::Context;
            if in_old(kind) {
                if old_ended {
                    return Err(error_at(number, ParseProblem::MisplacedNoNewline));
                }
                old_left = old_left.checked_sub(1).ok_or_else(|| {
                    error_at(
                        number,
                        ParseProblem::ExtraHunkLine {
                            header_line,
                            side: "old",
                        },
                    )
                })?;
            }
            if in_new(kind) {
                if new_ended {
                    return Err(error_at(number, ParseProblem::MisplacedNoNewline));
                }
                new_left = new_left.checked_sub(1).ok_or_else(|| {
                    error_at(
                        number,
                        ParseProblem::ExtraHunkLine {
                            header_line,
                            side: "new",
                        },
                    )
                })?;
            }
            hunks.line(kind, offset, text, offset + prefix);
        }
        if let Some(line) = self.peek()
            && line.starts_with(b"\\")
        {
            mark_no_newline(hunks, &mut old_ended, &mut new_ended)
                .map_err(|problem| self.error_here(problem))?;
            self.advance();
        }
        if !changed {
            return Err(error_at(header_line, ParseProblem::EmptyHunk));
        }
        Ok((hunk, old_ended || new_ended))
    }

    /// Reads the next lines of a hunk while each is a context, added or removed line that
    /// the counts still `left` (old, new) allow: most lines of most hunks, read here with
    /// none of the bookkeeping the other lines and the errors need. Stops before any other
    /// line (or when the counts are spent), which the caller's general loop then reads
    /// exactly as it would have. Returns whether it read an added or removed line.
    fn plain_hunk_lines<H: Hunks<'a>>(&mut self, hunks: &mut H, left: &mut (u32, u32)) -> bool {
        let mut changed = false;
        if self.lines.ahead_len != 0 {
            return changed;
        }
        let input = self.lines.input;
        // The line splitter's state, in locals while the loop runs (as `Lines::split_next`
        // and `Newlines::next` would update it).
        let (mut block, mut mask) = (self.lines.newlines.block, self.lines.newlines.mask);
        let mut rest = self.lines.rest;
        let mut read = 0;
        let (mut old_left, mut new_left) = *left;
        while old_left > 0 || new_left > 0 {
            let start = rest;
            let kind = match input.get(start) {
                // An empty line (no prefix) is an empty context line.
                Some(b' ' | b'\n') if old_left > 0 && new_left > 0 => {
                    old_left -= 1;
                    new_left -= 1;
                    LineKind::Context
                }
                Some(b'+') if new_left > 0 => {
                    new_left -= 1;
                    LineKind::Added
                }
                Some(b'-') if old_left > 0 => {
                    old_left -= 1;
                    LineKind::Removed
                }
                _ => break,
            };
            // The next newline ends this line.
            let end = loop {
                if mask != 0 {
                    let bit = mask.trailing_zeros() as usize;
                    mask &= mask - 1;
                    break block + bit;
                }
                block += 64;
                if block >= input.len() {
                    break input.len();
                }
                mask = newline_mask(&input[block..]);
            };
            rest = end + 1;
            read += 1;
            let text_start = start + usize::from(end > start);
            hunks.line(
                kind,
                start,
                input.get(text_start..end).unwrap_or_default(),
                text_start,
            );
            changed |= kind != LineKind::Context;
        }
        self.lines.newlines.block = block;
        self.lines.newlines.mask = mask;
        self.lines.rest = rest;
        self.next += read;
        *left = (old_left, new_left);
        changed
    }

    /// Skips the base85 blocks after `GIT binary patch`: the forward change and, as git
    /// writes it, the reverse one, each ended by a blank line.
    fn skip_binary_patch(&mut self) -> Result<(), ParseError> {
        for block in 0..2 {
            let is_block_start =
                |line: &[u8]| line.starts_with(b"literal ") || line.starts_with(b"delta ");
            match self.peek() {
                Some(line) if is_block_start(line) => self.advance(),
                _ if block == 0 => {
                    return Err(self.error_here(ParseProblem::MissingBinaryBlock));
                }
                _ => return Ok(()),
            }
            while let Some(line) = self.peek() {
                self.advance();
                match line.first() {
                    None => break,
                    Some(_) if is_base85_line(line) => {}
                    Some(_) => {
                        return Err(error_at(
                            self.next,
                            ParseProblem::BadBinaryLine {
                                found: excerpt(line),
                            },
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}

fn error_at(line: usize, problem: ParseProblem) -> ParseError {
    ParseError::Invalid { line, problem }
}

fn set_once<T>(
    slot: &mut Option<T>,
    value: Result<T, ParseProblem>,
    header: &'static str,
) -> Result<(), ParseProblem> {
    if slot.is_some() {
        return Err(ParseProblem::DuplicateHeader { header });
    }
    *slot = Some(value?);
    Ok(())
}

fn set_sourced(
    slot: &mut Option<Sourced<String>>,
    rest: &[u8],
    line: usize,
    header: &'static str,
) -> Result<(), ParseError> {
    let value = path::bare_path(rest).map(|value| Sourced { value, line });
    set_once(slot, value, header).map_err(|problem| error_at(line, problem))
}

/// Applies a `\ No newline at end of file` line to the hunk line before it.
fn mark_no_newline<'a>(
    hunks: &mut impl Hunks<'a>,
    old_ended: &mut bool,
    new_ended: &mut bool,
) -> Result<(), ParseProblem> {
    let kind = hunks
        .mark_no_newline()
        .ok_or(ParseProblem::MisplacedNoNewline)?;
    *old_ended |= in_old(kind);
    *new_ended |= in_new(kind);
    Ok(())
}

/// Whether a line of this kind is part of the old file's content.
fn in_old(kind: LineKind) -> bool {
    matches!(kind, LineKind::Context | LineKind::Removed)
}

/// Whether a line of this kind is part of the new file's content.
fn in_new(kind: LineKind) -> bool {
    matches!(kind, LineKind::Context | LineKind::Added)
}

/// The 0-based half-open line range a hunk side covers; an empty side sits after
/// line `start`.
fn span(start: u32, len: u32) -> (u64, u64) {
    let begin = if len == 0 {
        u64::from(start)
    } else {
        u64::from(start).saturating_sub(1)
    };
    (begin, begin + u64::from(len))
}

fn finish_git_file_patch<'a, H: Hunks<'a>>(
    header: GitHeader,
    hunks: H,
    mode_lines: bool,
    header_line: usize,
) -> Result<File<H>, ParseError> {
    let conflict = |detail| error_at(header_line, ParseProblem::ConflictingHeaders { detail });
    let minus_path = header.minus.as_ref().map(|minus| &minus.value.path);
    let plus_path = header.plus.as_ref().map(|plus| &plus.value.path);
    if header.new_file && matches!(minus_path, Some(Some(_))) {
        return Err(conflict(
            "`new file mode` with an old name; expected `--- /dev/null`",
        ));
    }
    if header.deleted_file && matches!(plus_path, Some(Some(_))) {
        return Err(conflict(
            "`deleted file mode` with a new name; expected `+++ /dev/null`",
        ));
    }
    let creating = header.new_file || matches!(minus_path, Some(None));
    let deleting = header.deleted_file || matches!(plus_path, Some(None));
    let renaming = header.rename_from.is_some() || header.rename_to.is_some();
    let copying = header.copy_from.is_some() || header.copy_to.is_some();
    if creating && deleting {
        return Err(conflict("the file is both created and deleted"));
    }
    if (creating || deleting) && (renaming || copying) {
        return Err(conflict(
            "a created or deleted file cannot also be renamed or copied",
        ));
    }
    if renaming && copying {
        return Err(conflict("a file cannot be both renamed and copied"));
    }
    if renaming && (header.rename_from.is_none() || header.rename_to.is_none()) {
        return Err(conflict("`rename from` and `rename to` come in pairs"));
    }
    if copying && (header.copy_from.is_none() || header.copy_to.is_none()) {
        return Err(conflict("`copy from` and `copy to` come in pairs"));
    }
    if mode_lines && (header.old_mode.is_none() || header.new_mode.is_none()) {
        return Err(conflict("`old mode` and `new mode` come in pairs"));
    }

    let (git_old, git_new) = match header.names {
        Some((old, new)) => (
            Some(Sourced {
                value: old,
                line: header_line,
            }),
            Some(Sourced {
                value: new,
                line: header_line,
            }),
        ),
        None => (None, None),
    };
    let name_of = |name: Option<Sourced<HeaderName>>| {
        name.and_then(|name| {
            Some(Sourced {
                value: name.value.path?,
                line: name.line,
            })
        })
    };
    let old_path = if creating {
        None
    } else {
        agreeing_name([
            header.rename_from.or(header.copy_from),
            name_of(header.minus),
            git_old,
        ])?
    };
    let new_path = if deleting {
        None
    } else {
        agreeing_name([
            header.rename_to.or(header.copy_to),
            name_of(header.plus),
            git_new,
        ])?
    };
    if (old_path.is_none() && !creating) || (new_path.is_none() && !deleting) {
        return Err(error_at(header_line, ParseProblem::UnknownPaths));
    }
    let kind = if creating {
        FileChangeKind::Added
    } else if deleting {
        FileChangeKind::Deleted
    } else if renaming {
        FileChangeKind::Renamed
    } else if copying {
        FileChangeKind::Copied
    } else {
        FileChangeKind::Modified
    };
    if kind == FileChangeKind::Modified
        && let (Some(old), Some(new)) = (&old_path, &new_path)
        && old != new
    {
        return Err(error_at(
            header_line,
            ParseProblem::UndeclaredRename {
                old: old.clone(),
                new: new.clone(),
            },
        ));
    }
    let file = File {
        old_mode: header.old_mode.or(header.index_mode.filter(|_| !creating)),
        new_mode: header.new_mode.or(header.index_mode.filter(|_| !deleting)),
        old_path,
        new_path,
        kind,
        binary: header.binary,
        hunks,
    };
    if kind == FileChangeKind::Modified && file.hunks.is_empty() && !file.binary && !mode_lines {
        return Err(error_at(
            header_line,
            ParseProblem::NoChanges {
                path: file.path().to_owned(),
            },
        ));
    }
    Ok(file)
}

/// The first name given, after checking that every other source names the same file.
fn agreeing_name<const N: usize>(
    sources: [Option<Sourced<String>>; N],
) -> Result<Option<String>, ParseError> {
    let mut chosen: Option<Sourced<String>> = None;
    for source in sources.into_iter().flatten() {
        match &chosen {
            None => chosen = Some(source),
            Some(first) if first.value != source.value => {
                // Name the later line, where the reader meets the contradiction.
                let (earlier, later) = if first.line <= source.line {
                    (first.clone(), source)
                } else {
                    (source, first.clone())
                };
                return Err(error_at(
                    later.line,
                    ParseProblem::InconsistentPaths {
                        first: earlier.value,
                        second: later.value,
                    },
                ));
            }
            Some(_) => {}
        }
    }
    Ok(chosen.map(|chosen| chosen.value))
}

/// A file patch from a plain diff, which has no way to say "rename".
fn plain_file<'a, H: Hunks<'a>>(
    old_path: Option<String>,
    new_path: Option<String>,
    hunks: H,
    line: usize,
) -> Result<File<H>, ParseError> {
    let kind = match (&old_path, &new_path) {
        (None, None) => {
            return Err(error_at(
                line,
                ParseProblem::ConflictingHeaders {
                    detail: "the file is both created and deleted",
                },
            ));
        }
        (None, Some(_)) => FileChangeKind::Added,
        (Some(_), None) => FileChangeKind::Deleted,
        (Some(old), Some(new)) if old != new => {
            return Err(error_at(
                line,
                ParseProblem::UndeclaredRename {
                    old: old.clone(),
                    new: new.clone(),
                },
            ));
        }
        (Some(_), Some(_)) => FileChangeKind::Modified,
    };
    Ok(File {
        old_path,
        new_path,
        old_mode: None,
        new_mode: None,
        kind,
        binary: false,
        hunks,
    })
}

/// The name on a `---`/`+++` line: quoted, or up to the tab git and `diff` put before a
/// timestamp (git adds one after names with spaces).
fn header_name(rest: &[u8]) -> Result<HeaderName, ParseProblem> {
    let (raw, tail) = if rest.first() == Some(&b'"') {
        path::unquote(rest)?
    } else {
        match rest.iter().position(|&byte| byte == b'\t') {
            Some(tab) => (
                rest.get(..tab).unwrap_or_default().to_vec(),
                rest.get(tab..).unwrap_or_default(),
            ),
            None => (rest.to_vec(), &[][..]),
        }
    };
    if raw == b"/dev/null" {
        return Ok(HeaderName {
            path: None,
            epoch: false,
        });
    }
    let timestamp = tail.strip_prefix(b"\t").unwrap_or(tail);
    Ok(HeaderName {
        path: Some(path::prefixed_path(&raw)?),
        epoch: is_epoch(timestamp),
    })
}

/// A name from `Binary files OLD and NEW differ`.
fn binary_name(raw: &[u8]) -> Result<Option<String>, ParseProblem> {
    if raw == b"/dev/null" {
        return Ok(None);
    }
    path::prefixed_path(raw).map(Some)
}

/// The `OLD and NEW` part of `Binary files OLD and NEW differ`.
fn binary_files_differ(line: &[u8]) -> Option<&[u8]> {
    line.strip_prefix(b"Binary files ")?
        .strip_suffix(b" differ")
}

/// A data line of a binary patch: a length character (`A`-`Z` for 1-26 bytes, `a`-`z`
/// for 27-52), then five base85 characters per four bytes.
fn is_base85_line(line: &[u8]) -> bool {
    let Some((&length, data)) = line.split_first() else {
        return false;
    };
    let bytes = match length {
        b'A'..=b'Z' => usize::from(length - b'A') + 1,
        b'a'..=b'z' => usize::from(length - b'a') + 27,
        _ => return false,
    };
    data.len() == bytes.div_ceil(4) * 5
        && data
            .iter()
            .all(|byte| byte.is_ascii_alphanumeric() || b"!#$%&()*+-;<=>?@^_`{|}~".contains(byte))
}

/// `From <commit id> <date>`, the line that starts each mail of a format-patch mbox.
fn is_mbox_separator(line: &[u8]) -> bool {
    let Some(rest) = line.strip_prefix(b"From ") else {
        return false;
    };
    let id_len = rest
        .iter()
        .take_while(|byte| byte.is_ascii_hexdigit())
        .count();
    (id_len == 40 || id_len == 64) && rest.get(id_len) == Some(&b' ')
}

/// An octal git mode such as `100644`.
fn parse_mode(text: &[u8]) -> Result<u32, ParseProblem> {
    let bad = || ParseProblem::BadMode {
        found: excerpt(text),
    };
    if text.is_empty() || text.len() > 7 {
        return Err(bad());
    }
    text.iter().try_fold(0u32, |mode, &digit| match digit {
        b'0'..=b'7' => Ok(mode * 8 + u32::from(digit - b'0')),
        _ => Err(bad()),
    })
}

/// `@@ -OLD[,LEN] +NEW[,LEN] @@ anything`, with lengths defaulting to 1.
fn parse_hunk_header(line: &[u8]) -> Option<(u32, u32, u32, u32)> {
    let rest = line.strip_prefix(b"@@ -")?;
    let (old_start, old_len, rest) = parse_range(rest)?;
    let rest = rest.strip_prefix(b" +")?;
    let (new_start, new_len, rest) = parse_range(rest)?;
    rest.strip_prefix(b" @@")?;
    Some((old_start, old_len, new_start, new_len))
}

fn parse_range(text: &[u8]) -> Option<(u32, u32, &[u8])> {
    let (start, rest) = parse_number(text)?;
    match rest.strip_prefix(b",") {
        Some(rest) => {
            let (len, rest) = parse_number(rest)?;
            Some((start, len, rest))
        }
        None => Some((start, 1, rest)),
    }
}

fn parse_number(text: &[u8]) -> Option<(u32, &[u8])> {
    let digits = text.iter().take_while(|byte| byte.is_ascii_digit()).count();
    if digits == 0 {
        return None;
    }
    let (number, rest) = text.split_at_checked(digits)?;
    let value = number.iter().try_fold(0u32, |value, &digit| {
        value.checked_mul(10)?.checked_add(u32::from(digit - b'0'))
    })?;
    Some((value, rest))
}

/// Whether a `diff -u` timestamp (`1970-01-01 00:00:00.000000000 +0000`, in any zone)
/// is the Unix epoch, which `diff -N` writes for a file that does not exist.
fn is_epoch(timestamp: &[u8]) -> bool {
    let Ok(timestamp) = std::str::from_utf8(timestamp) else {
        return false;
    };
    let mut parts = timestamp.split(' ');
    let (Some(date), Some(time), zone, None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let day_seconds: i64 = match date {
        "1970-01-01" => 0,
        "1969-12-31" => -86_400,
        _ => return false,
    };
    let (clock, fraction) = time.split_once('.').unwrap_or((time, "0"));
    if !fraction.bytes().all(|byte| byte == b'0') {
        return false;
    }
    let mut fields = clock.split(':').map(|field| field.parse::<i64>().ok());
    let (Some(Some(hours)), Some(Some(minutes)), Some(Some(seconds)), None) =
        (fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return false;
    };
    let zone_seconds = match zone {
        None => 0,
        Some(zone) => {
            let (sign, digits) = match zone.split_at_checked(1) {
                Some(("+", digits)) => (1, digits),
                Some(("-", digits)) => (-1, digits),
                _ => return false,
            };
            let (Some(zone_hours), Some(zone_minutes)) = (
                digits.get(..2).and_then(|text| text.parse::<i64>().ok()),
                digits.get(2..).and_then(|text| text.parse::<i64>().ok()),
            ) else {
                return false;
            };
            if digits.len() != 4 {
                return false;
            }
            sign * (zone_hours * 3600 + zone_minutes * 60)
        }
    };
    day_seconds + hours * 3600 + minutes * 60 + seconds - zone_seconds == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_timestamps() {
        let check =
            |text: &str, expected: bool| assert_eq!(is_epoch(text.as_bytes()), expected, "{text}");
        check("1970-01-01 00:00:00.000000000 +0000", true);
        check("1970-01-01 00:00:00 +0000", true);
        check("1970-01-01 01:00:00.000000000 +0100", true);
        check("1969-12-31 19:00:00.000000000 -0500", true);
        check("1970-01-01 00:00:01.000000000 +0000", false);
        check("2024-05-01 10:00:00.000000000 +0000", false);
        check("", false);
        check("1970-01-01", false);
    }

    /// The lines as the parser reads them are what splitting at every newline gives, less
    /// the empty piece after a final newline.
    #[test]
    fn lines_split_like_split() {
        let inputs: [&[u8]; 9] = [
            b"",
            b"\n",
            b"a",
            b"a\n",
            b"a\n\n",
            b"\n\na",
            b"a\nb",
            b"a\r\nb\n",
            b"\n\n\n",
        ];
        for input in inputs {
            let mut expected: Vec<&[u8]> = input.split(|&byte| byte == b'\n').collect();
            if expected.last().is_some_and(|last| last.is_empty()) {
                expected.pop();
            }
            let mut lines = Lines::new(input);
            let mut got = Vec::new();
            while let Some((offset, line)) = lines.get(0) {
                assert_eq!(&input[offset..offset + line.len()], line);
                got.push(line);
                lines.advance();
            }
            assert_eq!(got, expected, "{input:?}");
            let mut lines = Lines::new(input);
            assert_eq!(lines.get(1).map(|(_, line)| line), expected.get(1).copied());
        }
    }

    /// Newlines are found 64 bytes at a time: every newline is found wherever it falls
    /// in a block, in the short last block, and after blocks without any, read with
    /// `get` and `advance` or with `take`.
    #[test]
    fn lines_split_like_split_across_blocks() {
        let mut inputs: Vec<Vec<u8>> = Vec::new();
        for length in [63, 64, 65, 127, 128, 129, 200] {
            for newline in 0..length {
                let mut input = vec![b'x'; length];
                input[newline] = b'\n';
                inputs.push(input);
            }
        }
        // Lines of every length from 0 to 150, and one of 10 000 bytes among them.
        let mut mixed = Vec::new();
        for length in (0..150).chain([10_000, 3]) {
            mixed.extend(std::iter::repeat_n(b'y', length));
            mixed.push(b'\n');
        }
        inputs.push(mixed);
        for input in &inputs {
            let mut expected: Vec<(usize, &[u8])> = Vec::new();
            let mut start = 0;
            for line in input.split(|&byte| byte == b'\n') {
                expected.push((start, line));
                start += line.len() + 1;
            }
            if expected.last().is_some_and(|(_, last)| last.is_empty()) {
                expected.pop();
            }
            let mut lines = Lines::new(input);
            let mut got = Vec::new();
            while let Some(line) = lines.get(0) {
                got.push(line);
                lines.advance();
            }
            assert_eq!(got, expected, "{}", String::from_utf8_lossy(input));
            let mut lines = Lines::new(input);
            let taken: Vec<_> = std::iter::from_fn(|| lines.take()).collect();
            assert_eq!(taken, expected, "{}", String::from_utf8_lossy(input));
        }
    }

    #[test]
    fn hunk_headers() {
        let check = |text: &str, expected: Option<(u32, u32, u32, u32)>| {
            assert_eq!(parse_hunk_header(text.as_bytes()), expected, "{text}");
        };
        check("@@ -1,2 +3,4 @@", Some((1, 2, 3, 4)));
        check("@@ -1 +1 @@ fn main()", Some((1, 1, 1, 1)));
        check("@@ -0,0 +1 @@", Some((0, 0, 1, 1)));
        check("@@ -4294967295,1 +1 @@", Some((u32::MAX, 1, 1, 1)));
        check("@@ -4294967296,1 +1 @@", None);
        check("@@ -1,2 +3,4", None);
        check("@@ -a +1 @@", None);
        check("@@@ -1 -1 +1 @@@", None);
    }
}

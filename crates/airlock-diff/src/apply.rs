//! Strict application of one file patch to its base content, as `git apply` without fuzz.

use crate::error::{ApplyError, HunkPlace};
use crate::patch::{FileChangeKind, FilePatch, Hunk, HunkLine, LineKind};

/// Applies one file's hunks to its base content and returns the new content, or `None`
/// when the patch deletes the file.
///
/// `base` is the old file's content (for a rename or copy, the content at `old_path`), or
/// `None` when the file does not exist; a patch that creates a file needs `None`, every
/// other patch needs `Some`. Every hunk's context and removed lines must match the base
/// byte for byte (CRLF and missing final newlines included). A hunk may match away from
/// the line its header states; the nearest match wins, looking first after and then
/// before, as git does. Hunks apply in order and never overlap. As in git, a hunk that
/// starts at line 1 must match at the start of the file and one without trailing context
/// at its end. A deletion must remove the whole content.
///
/// Binary patches are refused: their data is not parsed.
pub fn apply(base: Option<&[u8]>, file: &FilePatch) -> Result<Option<Vec<u8>>, ApplyError> {
    let path = || file.path().to_owned();
    if file.binary {
        return Err(ApplyError::Binary { path: path() });
    }
    let base = match (file.kind, base) {
        (FileChangeKind::Added, None) => &[][..],
        (FileChangeKind::Added, Some(_)) => return Err(ApplyError::AlreadyExists { path: path() }),
        (_, None) => return Err(ApplyError::Missing { path: path() }),
        (_, Some(base)) => base,
    };
    let lines: Vec<&[u8]> = base.split_inclusive(|&byte| byte == b'\n').collect();
    let hashes = LineHashes::new(&lines);
    let mut result = Vec::with_capacity(base.len());
    // Base lines before this index are already in `result` or replaced by a hunk.
    let mut consumed = 0;
    for (index, hunk) in file.hunks.iter().enumerate() {
        let preimage: Vec<&HunkLine> = hunk.lines.iter().filter(|line| line.in_old()).collect();
        let place = hunk_place(hunk, consumed);
        let Some(found) = find_hunk(&lines, &hashes, &preimage, hunk, consumed, place) else {
            return Err(ApplyError::HunkMismatch {
                path: path(),
                hunk: index + 1,
                old_start: hunk.old_start,
                old_len: hunk.old_len,
                new_start: hunk.new_start,
                new_len: hunk.new_len,
                place,
            });
        };
        for line in lines.get(consumed..found).unwrap_or_default() {
            result.extend_from_slice(line);
        }
        for line in hunk.lines.iter().filter(|line| line.in_new()) {
            result.extend_from_slice(&line.text);
            if !line.no_newline_at_end {
                result.push(b'\n');
            }
        }
        consumed = found + preimage.len();
    }
    for line in lines.get(consumed..).unwrap_or_default() {
        result.extend_from_slice(line);
    }
    if file.kind == FileChangeKind::Deleted {
        if !result.is_empty() {
            return Err(ApplyError::DeletionMismatch { path: path() });
        }
        return Ok(None);
    }
    Ok(Some(result))
}

/// Where git lets a hunk match: see `HunkPlace`.
fn hunk_place(hunk: &Hunk, consumed: usize) -> HunkPlace {
    let at_start = hunk.old_start <= 1;
    let trailing_context = hunk
        .lines
        .last()
        .is_some_and(|line| line.kind == LineKind::Context);
    match (at_start, trailing_context) {
        (true, false) => HunkPlace::WholeFile,
        (true, true) => HunkPlace::StartOfFile,
        (false, false) => HunkPlace::EndOfFile,
        (false, true) => HunkPlace::AtOrAfterLine(consumed + 1),
    }
}

/// The base line index where the hunk's old lines match, at or after `consumed`.
fn find_hunk(
    lines: &[&[u8]],
    hashes: &LineHashes,
    preimage: &[&HunkLine],
    hunk: &Hunk,
    consumed: usize,
    place: HunkPlace,
) -> Option<usize> {
    let last_start = lines.len().checked_sub(preimage.len())?;
    if consumed > last_start {
        return None;
    }
    let pattern_hash = sequence_hash(preimage.iter().map(|line| line_hash(line_bytes(line))));
    let matches_at = |start: usize| {
        hashes.window(start, preimage.len()) == pattern_hash
            && lines
                .get(start..start + preimage.len())
                .is_some_and(|window| {
                    window
                        .iter()
                        .zip(preimage)
                        .all(|(base_line, hunk_line)| line_matches(base_line, hunk_line))
                })
    };
    let ends_with_missing_newline = hunk
        .lines
        .iter()
        .rev()
        .find(|line| line.in_new())
        .is_some_and(|line| line.no_newline_at_end);
    let candidate = match place {
        HunkPlace::WholeFile => (consumed == 0 && last_start == 0 && matches_at(0)).then_some(0),
        HunkPlace::StartOfFile => (consumed == 0 && matches_at(0)).then_some(0),
        HunkPlace::EndOfFile => matches_at(last_start).then_some(last_start),
        HunkPlace::AtOrAfterLine(_) => {
            // The stated position, 0-based; an empty old side sits after line `old_start`.
            let stated = if hunk.old_len == 0 {
                hunk.old_start as usize
            } else {
                (hunk.old_start as usize).saturating_sub(1)
            };
            nearest_first(stated.min(lines.len()), consumed, last_start)
                .find(|&start| matches_at(start))
        }
    };
    // New content without a final newline must end the file; a hand-built patch could
    // otherwise join two lines.
    candidate.filter(|&start| !ends_with_missing_newline || start == last_start)
}

/// Candidate positions in `low..=high`: `stated`, then one after, one before, two after,
/// and so on, the order git tries them in.
fn nearest_first(stated: usize, low: usize, high: usize) -> impl Iterator<Item = usize> {
    let reach = stated.abs_diff(low).max(stated.abs_diff(high));
    (0..=reach)
        .flat_map(move |distance| {
            let after = stated.checked_add(distance);
            let before = if distance == 0 {
                None
            } else {
                stated.checked_sub(distance)
            };
            [after, before]
        })
        .flatten()
        .filter(move |start| (low..=high).contains(start))
}

/// The bytes a hunk line stands for in the file.
fn line_bytes(line: &HunkLine) -> impl Iterator<Item = u8> + '_ {
    let newline = if line.no_newline_at_end {
        None
    } else {
        Some(b'\n')
    };
    line.text.iter().copied().chain(newline)
}

fn line_matches(base_line: &[u8], hunk_line: &HunkLine) -> bool {
    match base_line.strip_suffix(b"\n") {
        Some(text) => !hunk_line.no_newline_at_end && text == hunk_line.text.as_slice(),
        None => hunk_line.no_newline_at_end && base_line == hunk_line.text.as_slice(),
    }
}

/// Polynomial hashes of line sequences, so that trying a position costs O(1) instead of
/// O(hunk length). An agent could otherwise send a hunk that differs from a long run of
/// identical lines only in its last line and make every position cost a full comparison:
/// quadratic time. Hash equality is always confirmed by comparing the bytes, so a
/// collision costs time, never correctness.
struct LineHashes {
    /// `prefix[i]` is the hash of the first `i` lines.
    prefix: Vec<u64>,
    /// `powers[i]` is `BASE^i`.
    powers: Vec<u64>,
}

/// The Mersenne prime 2^61 - 1.
const MODULUS: u64 = (1 << 61) - 1;
const BASE: u64 = 0x0123_4567_89ab_cdef % MODULUS;

fn multiply(a: u64, b: u64) -> u64 {
    // The remainder is below MODULUS, so the narrowing cannot lose bits.
    (u128::from(a) * u128::from(b) % u128::from(MODULUS)) as u64
}

fn add(a: u64, b: u64) -> u64 {
    (a + b) % MODULUS
}

/// FNV-1a over a line's bytes, reduced below MODULUS.
fn line_hash(bytes: impl Iterator<Item = u8>) -> u64 {
    let hash = bytes.fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    });
    hash % MODULUS
}

fn sequence_hash(line_hashes: impl Iterator<Item = u64>) -> u64 {
    line_hashes.fold(0, |hash, line| add(multiply(hash, BASE), line))
}

impl LineHashes {
    fn new(lines: &[&[u8]]) -> LineHashes {
        let mut prefix = Vec::with_capacity(lines.len() + 1);
        let mut powers = Vec::with_capacity(lines.len() + 1);
        let (mut hash, mut power) = (0, 1);
        prefix.push(hash);
        powers.push(power);
        for line in lines {
            hash = add(multiply(hash, BASE), line_hash(line.iter().copied()));
            power = multiply(power, BASE);
            prefix.push(hash);
            powers.push(power);
        }
        LineHashes { prefix, powers }
    }

    /// The hash of `len` lines starting at `start`; out of range yields a value no
    /// sequence hash takes.
    fn window(&self, start: usize, len: usize) -> u64 {
        let (Some(&end_hash), Some(&start_hash), Some(&power)) = (
            self.prefix.get(start + len),
            self.prefix.get(start),
            self.powers.get(len),
        ) else {
            return u64::MAX;
        };
        add(end_hash, MODULUS - multiply(start_hash, power))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_first_order() {
        let order: Vec<usize> = nearest_first(5, 3, 8).collect();
        assert_eq!(order, [5, 6, 4, 7, 3, 8]);
        let order: Vec<usize> = nearest_first(0, 0, 2).collect();
        assert_eq!(order, [0, 1, 2]);
        let order: Vec<usize> = nearest_first(9, 2, 4).collect();
        assert_eq!(order, [4, 3, 2]);
    }

    #[test]
    fn window_hash_matches_sequence_hash() {
        let lines: Vec<&[u8]> = vec![b"a\n", b"b\n", b"c\n", b"d"];
        let hashes = LineHashes::new(&lines);
        for start in 0..lines.len() {
            for len in 0..=lines.len() - start {
                let expected = sequence_hash(
                    lines[start..start + len]
                        .iter()
                        .map(|line| line_hash(line.iter().copied())),
                );
                assert_eq!(hashes.window(start, len), expected, "{start} {len}");
            }
        }
    }
}

//! Rendering a git-style unified diff of one file from its old and new content.

use std::ops::Range;

use similar::{Algorithm, DiffOp, DiffTag};

use crate::path::quote;

/// Lines of unchanged context around each change, git's default.
const CONTEXT_LINES: usize = 3;

/// Renders the change from `old` to `new` (`None` = the file is absent) as `git diff`
/// would: a `diff --git` header, `new file mode`/`deleted file mode`/`old mode`+`new mode`
/// and `rename from`/`rename to` lines as needed, `---`/`+++` lines, hunks with three
/// lines of context and `\ No newline at end of file` where a side lacks its final
/// newline. Paths are quoted as git quotes them, so `git apply` and `parse` both read the
/// result back; `apply` of the parsed result to `old` yields exactly `new`.
///
/// The path of an absent side is ignored. Returns an empty diff when nothing changes
/// (same content, path and mode, or both sides absent). Content is compared as bytes;
/// a byte string is returned because content need not be UTF-8.
pub fn render(
    old_path: &str,
    new_path: &str,
    old: Option<&[u8]>,
    new: Option<&[u8]>,
    old_mode: u32,
    new_mode: u32,
) -> Vec<u8> {
    let (old_path, new_path) = match (old, new) {
        (None, None) => return Vec::new(),
        (None, Some(_)) => (new_path, new_path),
        (Some(_), None) => (old_path, old_path),
        (Some(_), Some(_)) => (old_path, new_path),
    };
    let both_exist = old.is_some() && new.is_some();
    let renamed = both_exist && old_path != new_path;
    let mode_changed = both_exist && old_mode != new_mode;
    if old == new && !renamed && !mode_changed {
        return Vec::new();
    }
    let old_lines: Vec<&[u8]> = lines(old.unwrap_or_default());
    let new_lines: Vec<&[u8]> = lines(new.unwrap_or_default());

    let mut out = Vec::new();
    let old_name = quote(&format!("a/{old_path}"));
    let new_name = quote(&format!("b/{new_path}"));
    push_line(&mut out, &format!("diff --git {old_name} {new_name}"));
    match (old, new) {
        (None, _) => push_line(&mut out, &format!("new file mode {new_mode:06o}")),
        (_, None) => push_line(&mut out, &format!("deleted file mode {old_mode:06o}")),
        _ => {}
    }
    if mode_changed {
        push_line(&mut out, &format!("old mode {old_mode:06o}"));
        push_line(&mut out, &format!("new mode {new_mode:06o}"));
    }
    if renamed {
        if old == new {
            push_line(&mut out, "similarity index 100%");
        }
        push_line(&mut out, &format!("rename from {}", quote(old_path)));
        push_line(&mut out, &format!("rename to {}", quote(new_path)));
    }
    let operations = similar::capture_diff_slices(Algorithm::Myers, &old_lines, &new_lines);
    let groups = similar::group_diff_ops(reindex(operations), CONTEXT_LINES);
    if groups.is_empty() {
        return out;
    }
    // Git ends a name containing a space with a tab, so readers know where it stops.
    let tab_if_space = |name: &str| if name.contains(' ') { "\t" } else { "" };
    let minus = match old {
        Some(_) => format!("{old_name}{}", tab_if_space(old_path)),
        None => "/dev/null".to_owned(),
    };
    let plus = match new {
        Some(_) => format!("{new_name}{}", tab_if_space(new_path)),
        None => "/dev/null".to_owned(),
    };
    push_line(&mut out, &format!("--- {minus}"));
    push_line(&mut out, &format!("+++ {plus}"));
    for group in groups {
        push_hunk(&mut out, &group, &old_lines, &new_lines);
    }
    out
}

/// The same operations with positions recomputed from their lengths.
///
/// `similar` 2.7 can report a wrong `new_index` for a `Delete`: old lines `\ x`, `a`,
/// `a`, `a` against new lines `b` ×4, `\ x`, `b`, `\ x` give `Insert` (6 lines), `Equal`
/// (1 line) and a `Delete` at new index 5 where 7 is right, which made a hunk header
/// miscount. The operations' order and lengths are right, so positions follow from them.
fn reindex(operations: Vec<DiffOp>) -> Vec<DiffOp> {
    let (mut old_index, mut new_index) = (0, 0);
    operations
        .into_iter()
        .map(|operation| {
            let (tag, old_range, new_range) = operation.as_tag_tuple();
            let (old_len, new_len) = (old_range.len(), new_range.len());
            let reindexed = match tag {
                DiffTag::Equal => DiffOp::Equal {
                    old_index,
                    new_index,
                    len: old_len,
                },
                DiffTag::Delete => DiffOp::Delete {
                    old_index,
                    old_len,
                    new_index,
                },
                DiffTag::Insert => DiffOp::Insert {
                    old_index,
                    new_index,
                    new_len,
                },
                DiffTag::Replace => DiffOp::Replace {
                    old_index,
                    old_len,
                    new_index,
                    new_len,
                },
            };
            old_index += old_len;
            new_index += new_len;
            reindexed
        })
        .collect()
}

/// Lines with their newline; the last one may lack it.
fn lines(content: &[u8]) -> Vec<&[u8]> {
    content.split_inclusive(|&byte| byte == b'\n').collect()
}

fn push_line(out: &mut Vec<u8>, line: &str) {
    out.extend_from_slice(line.as_bytes());
    out.push(b'\n');
}

fn push_hunk(out: &mut Vec<u8>, group: &[DiffOp], old_lines: &[&[u8]], new_lines: &[&[u8]]) {
    let (Some(first), Some(last)) = (group.first(), group.last()) else {
        return;
    };
    let old_range = first.old_range().start..last.old_range().end;
    let new_range = first.new_range().start..last.new_range().end;
    push_line(
        out,
        &format!(
            "@@ -{} +{} @@",
            hunk_range(&old_range),
            hunk_range(&new_range)
        ),
    );
    for operation in group {
        let (tag, old_range, new_range) = operation.as_tag_tuple();
        match tag {
            DiffTag::Equal => push_lines(out, b' ', old_lines, old_range),
            DiffTag::Delete => push_lines(out, b'-', old_lines, old_range),
            DiffTag::Insert => push_lines(out, b'+', new_lines, new_range),
            DiffTag::Replace => {
                push_lines(out, b'-', old_lines, old_range);
                push_lines(out, b'+', new_lines, new_range);
            }
        }
    }
}

/// `START,COUNT` as git prints it: the count is left out when it is 1, and an empty range
/// starts at the line before it.
fn hunk_range(range: &Range<usize>) -> String {
    match range.len() {
        0 => format!("{},0", range.start),
        1 => format!("{}", range.start + 1),
        len => format!("{},{len}", range.start + 1),
    }
}

fn push_lines(out: &mut Vec<u8>, prefix: u8, lines: &[&[u8]], range: Range<usize>) {
    for line in lines.get(range).unwrap_or_default() {
        out.push(prefix);
        out.extend_from_slice(line);
        if !line.ends_with(b"\n") {
            out.extend_from_slice(b"\n\\ No newline at end of file\n");
        }
    }
}

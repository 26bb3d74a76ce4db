//! Boundary tests for airlock-diff: parsing, strict application, rendering, and the round
//! trip through real `git apply`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use airlock_diff::{
    ApplyError, ChangedRun, FileChangeKind, FilePatch, FilePatchRef, LineKind, Patch, apply, parse,
    parse_ref, parse_runs, render,
};
use proptest::prelude::*;

/// Joins lines into a diff, each ended by a newline.
fn diff(lines: &[&str]) -> Vec<u8> {
    let mut text = lines.join("\n").into_bytes();
    text.push(b'\n');
    text
}

/// One line per file: kind, old and new path, old and new mode (octal), binary flag,
/// lines added and removed, hunk count. `-` stands for an absent value.
fn summary(patch: &Patch) -> String {
    let files: Vec<String> = patch
        .files
        .iter()
        .map(|file| {
            let mode = |mode: Option<u32>| mode.map_or("-".to_owned(), |mode| format!("{mode:o}"));
            format!(
                "{:?} {} {} {} {} {}+{} -{} h{}",
                file.kind,
                file.old_path.as_deref().unwrap_or("-"),
                file.new_path.as_deref().unwrap_or("-"),
                mode(file.old_mode),
                mode(file.new_mode),
                if file.binary { "binary " } else { "" },
                file.lines_added(),
                file.lines_removed(),
                file.hunks.len(),
            )
        })
        .collect();
    files.join("; ")
}

#[track_caller]
fn check(input: &[u8], expected: &str) {
    match parse(input) {
        Ok(patch) => assert_eq!(summary(&patch), expected),
        Err(error) => panic!("expected `{expected}`, got error: {error}"),
    }
}

/// The error's message must start with `line N:` and contain `expected`.
#[track_caller]
fn check_error(input: &[u8], line: usize, expected: &str) {
    match parse(input) {
        Ok(patch) => panic!("expected an error, got `{}`", summary(&patch)),
        Err(error) => {
            let message = error.to_string();
            assert_eq!(error.line(), Some(line), "{message}");
            assert!(
                message.starts_with(&format!("line {line}: ")) && message.contains(expected),
                "`{message}` lacks `{expected}`"
            );
        }
    }
}

/// Applies the only file of `input` to `base`; `expected` is the new content, `None` for a
/// deletion, or `Err` with a fragment of the error message.
#[track_caller]
fn check_apply(input: &[u8], base: Option<&str>, expected: Result<Option<&str>, &str>) {
    let patch = parse(input).unwrap_or_else(|error| panic!("parse: {error}"));
    let [file] = patch.files.as_slice() else {
        panic!("expected one file, got `{}`", summary(&patch));
    };
    let result = apply(base.map(str::as_bytes), file);
    match (result, expected) {
        (Ok(content), Ok(expected)) => assert_eq!(
            content.as_deref().map(String::from_utf8_lossy),
            expected.map(Into::into)
        ),
        (Err(error), Err(expected)) => {
            let message = error.to_string();
            assert!(message.contains(expected), "`{message}` lacks `{expected}`");
        }
        (result, expected) => panic!("got {result:?}, expected {expected:?}"),
    }
}

#[test]
#[rustfmt::skip] // One case per line keeps the table readable.
fn parses_git_diffs() {
    let git = |name: &str| format!("diff --git a/{name} b/{name}");
    check(&diff(&[&git("x"), "index 1111111..2222222 100644", "--- a/x", "+++ b/x", "@@ -1,2 +1,2 @@", " a", "-b", "+c"]), "Modified x x 100644 100644 +1 -1 h1");
    check(&diff(&[&git("n"), "new file mode 100644", "index 0000000..3333333", "--- /dev/null", "+++ b/n", "@@ -0,0 +1,2 @@", "+a", "+b"]), "Added - n - 100644 +2 -0 h1");
    check(&diff(&[&git("e"), "new file mode 100644", "index 0000000..e69de29"]), "Added - e - 100644 +0 -0 h0");
    check(&diff(&[&git("x"), "deleted file mode 100755", "index 2222222..0000000", "--- a/x", "+++ /dev/null", "@@ -1,2 +0,0 @@", "-a", "-b"]), "Deleted x - 100755 - +0 -2 h1");
    check(&diff(&[&git("e"), "deleted file mode 100644", "index e69de29..0000000"]), "Deleted e - 100644 - +0 -0 h0");
    check(&diff(&["diff --git a/old name b/new name", "similarity index 100%", "rename from old name", "rename to new name"]), "Renamed old name new name - - +0 -0 h0");
    check(&diff(&["diff --git a/o b/n", "similarity index 80%", "rename from o", "rename to n", "index 1111111..2222222 100644", "--- a/o", "+++ b/n", "@@ -1,3 +1,3 @@", " a", "-b", "+c", " d"]), "Renamed o n 100644 100644 +1 -1 h1");
    check(&diff(&["diff --git a/o b/c", "similarity index 90%", "copy from o", "copy to c", "--- a/o", "+++ b/c", "@@ -1 +1 @@", "-a", "+b"]), "Copied o c - - +1 -1 h1");
    check(&diff(&[&git("run.sh"), "old mode 100644", "new mode 100755"]), "Modified run.sh run.sh 100644 100755 +0 -0 h0");
    check(&diff(&["diff --git a/o b/n", "old mode 100644", "new mode 100755", "similarity index 100%", "rename from o", "rename to n"]), "Renamed o n 100644 100755 +0 -0 h0");
    check(&diff(&[&git("link"), "new file mode 120000", "index 0000000..4444444", "--- /dev/null", "+++ b/link", "@@ -0,0 +1 @@", "+target", "\\ No newline at end of file"]), "Added - link - 120000 +1 -0 h1");
    check(&diff(&[&git("sub"), "new file mode 160000", "index 0000000..5555555", "--- /dev/null", "+++ b/sub", "@@ -0,0 +1 @@", "+Subproject commit 5555555555555555555555555555555555555555"]), "Added - sub - 160000 +1 -0 h1");
    check(&diff(&[&git("sub"), "index 5555555..6666666 160000", "--- a/sub", "+++ b/sub", "@@ -1 +1 @@", "-Subproject commit 5555555555555555555555555555555555555555", "+Subproject commit 6666666666666666666666666666666666666666"]), "Modified sub sub 160000 160000 +1 -1 h1");
    check(&diff(&[&git("b.bin"), "new file mode 100644", "index 0000000000000000000000000000000000000000..1234567890123456789012345678901234567890", "GIT binary patch", "literal 11", "Scmc~u&B@7UD9<m-NdW*EO9VXt", "", "literal 0", "HcmV?d00001", ""]), "Added - b.bin - 100644 binary +0 -0 h0");
    check(&diff(&[&git("b.bin"), "index 1111111..2222222 100644", "GIT binary patch", "literal 11", "Scmc~u&B@7UD9K1IN(BHJ1_Uht", "", "literal 11", "Scmc~u&B@7UD9<m-NdW*EO9VXt", "", &git("t"), "--- a/t", "+++ b/t", "@@ -1 +1 @@", "-a", "+b"]), "Modified b.bin b.bin 100644 100644 binary +0 -0 h0; Modified t t - - +1 -1 h1");
    check(&diff(&[&git("b.bin"), "index 1111111..2222222 100644", "Binary files a/b.bin and b/b.bin differ"]), "Modified b.bin b.bin 100644 100644 binary +0 -0 h0");
    check(&diff(&[&git("b.bin"), "deleted file mode 100644", "index 1111111..0000000", "Binary files a/b.bin and /dev/null differ"]), "Deleted b.bin - 100644 - binary +0 -0 h0");
    check(&diff(&[&git("x"), "--- a/x", "+++ b/x", "@@ -1 +1 @@ fn section()", "-a", "+b", "@@ -10 +10 @@", "-c", "+d"]), "Modified x x - - +2 -2 h2");
    check(&diff(&[&git("a"), "--- a/a", "+++ b/a", "@@ -1 +1 @@", "-a", "+b", &git("b"), "new file mode 100644", &git("c"), "--- a/c", "+++ b/c", "@@ -1 +1 @@", "-a", "+b"]), "Modified a a - - +1 -1 h1; Added - b - 100644 +0 -0 h0; Modified c c - - +1 -1 h1");
    // `diff.mnemonicPrefix` writes other prefixes; any first component is stripped.
    check(&diff(&["diff --git i/x w/x", "--- i/x", "+++ w/x", "@@ -1 +1 @@", "-a", "+b"]), "Modified x x - - +1 -1 h1");
    check(&diff(&["diff --git a/dir/x b/dir/x", "--- a/dir/x", "+++ b/dir/x", "@@ -1 +1 @@", "-a", "+b"]), "Modified dir/x dir/x - - +1 -1 h1");
    // Without `---` lines the names come from `diff --git`, as git does; equal names with spaces.
    check(&diff(&["diff --git a/has space/x y b/has space/x y", "new file mode 100644"]), "Added - has space/x y - 100644 +0 -0 h0");
    check(&diff(&["diff --git a/x b/x", "@@ -1 +1 @@", "-a", "+b"]), "Modified x x - - +1 -1 h1");
    // The signature line `-- ` is a removed line while the hunk still needs one.
    check(&diff(&[&git("x"), "--- a/x", "+++ b/x", "@@ -1 +1 @@", "-- ", "+x"]), "Modified x x - - +1 -1 h1");
    // An empty line inside a hunk is an empty context line.
    check(&diff(&[&git("x"), "--- a/x", "+++ b/x", "@@ -1,3 +1,3 @@", "", "-a", "+b", ""]), "Modified x x - - +1 -1 h1");
    // Trailing blank lines after the last hunk are not part of it.
    check(&diff(&[&git("x"), "--- a/x", "+++ b/x", "@@ -1 +1 @@", "-a", "+b", "", ""]), "Modified x x - - +1 -1 h1");
    check(b"diff --git a/x b/x\n--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+b", "Modified x x - - +1 -1 h1");
}

#[test]
#[rustfmt::skip] // One case per line keeps the table readable.
fn parses_paths() {
    check(&diff(&[r#"diff --git "a/sp\303\251cial\tname" "b/sp\303\251cial\tname""#, "new file mode 100644", "--- /dev/null", r#"+++ "b/sp\303\251cial\tname""#, "@@ -0,0 +1 @@", "+x"]), "Added - spécial\tname - 100644 +1 -0 h1");
    check(&diff(&[r#"diff --git a/plain "b/q\"uote\\""#, "similarity index 100%", "rename from plain", r#"rename to "q\"uote\\""#]), "Renamed plain q\"uote\\ - - +0 -0 h0");
    check(&diff(&["diff --git a/with space.txt b/with space.txt", "--- a/with space.txt\t", "+++ b/with space.txt\t", "@@ -1 +1 @@", "-a", "+b"]), "Modified with space.txt with space.txt - - +1 -1 h1");
    check(&diff(&["--- a/x\t2024-05-01 10:00:00.000000000 +0200", "+++ b/x\t2024-05-01 11:00:00.000000000 +0200", "@@ -1 +1 @@", "-a", "+b"]), "Modified x x - - +1 -1 h1");
    check("diff --git a/日本 b/日本\nnew file mode 100644\n".as_bytes(), "Added - 日本 - 100644 +0 -0 h0");
    // Paths are returned exactly; judging `..` or `.git/` is the caller's job.
    check(&diff(&["diff --git a/../etc/x b/../etc/x", "new file mode 100644"]), "Added - ../etc/x - 100644 +0 -0 h0");

    check_error(&diff(&["diff --git a/x b/x", r#"--- "a/\377""#, "+++ b/x", "@@ -1 +1 @@", "-a", "+b"]), 2, "not valid UTF-8");
    check_error(b"--- a/\xff\n+++ b/\xff\n@@ -1 +1 @@\n-a\n+b\n", 1, "not valid UTF-8");
    check_error(b"diff --git a/\xc3 b/\xc3\nnew file mode 100644\n", 1, "not valid UTF-8");
    check_error(&diff(&[r#"diff --git "a/x\000y" "b/x\000y""#, "new file mode 100644"]), 1, "NUL");
    check_error(&diff(&["diff --git a/x b/x", "--- a/x", r#"+++ "b/x\000""#, "@@ -1 +1 @@", "-a", "+b"]), 3, "NUL");
    check_error(&diff(&[r#"diff --git "a/x "b/x""#, "new file mode 100644"]), 1, "malformed quoted path");
    check_error(&diff(&[r#"diff --git "a/x\q" "b/x""#, "new file mode 100644"]), 1, "unknown escape");
    check_error(&diff(&["diff --git a/x b/x", "--- a/y", "+++ b/x", "@@ -1 +1 @@", "-a", "+b"]), 2, "file names disagree");
    check_error(&diff(&["diff --git a/x b/x", "rename from x", "rename to y", "--- a/x", "+++ b/z", "@@ -1 +1 @@", "-a", "+b"]), 5, "`y` and `z`");
    check_error(&diff(&["--- a/x.orig", "+++ b/x", "@@ -1 +1 @@", "-a", "+b"]), 2, "without `rename from`");
    check_error(&diff(&["--- x", "+++ x", "@@ -1 +1 @@", "-a", "+b"]), 1, "no leading directory");
    check_error(&diff(&["diff --git a/x y b/z w", "new file mode 100644"]), 1, "cannot tell the file names apart");
}

#[test]
#[rustfmt::skip] // One case per line keeps the table readable.
fn parses_no_newline_and_crlf() {
    let file = |lines: &[&str]| {
        let mut all = vec!["diff --git a/x b/x", "--- a/x", "+++ b/x"];
        all.extend_from_slice(lines);
        diff(&all)
    };
    let marker = "\\ No newline at end of file";
    let no_newline = |input: &[u8]| -> Vec<(String, bool)> {
        let patch = parse(input).unwrap();
        patch.files[0].hunks[0]
            .lines
            .iter()
            .map(|line| (String::from_utf8_lossy(&line.text).into_owned(), line.no_newline_at_end))
            .collect()
    };
    let owned = |items: &[(&str, bool)]| -> Vec<(String, bool)> {
        items.iter().map(|(text, flag)| ((*text).to_owned(), *flag)).collect()
    };
    assert_eq!(no_newline(&file(&["@@ -1 +1 @@", "-a", marker, "+a"])), owned(&[("a", true), ("a", false)]));
    assert_eq!(no_newline(&file(&["@@ -1 +1 @@", "-a", "+b", marker])), owned(&[("a", false), ("b", true)]));
    assert_eq!(no_newline(&file(&["@@ -1 +1 @@", "-a", marker, "+b", marker])), owned(&[("a", true), ("b", true)]));
    assert_eq!(no_newline(&file(&["@@ -1,2 +1,2 @@", "-a", "+b", " c", marker])), owned(&[("a", false), ("b", false), ("c", true)]));
    assert_eq!(no_newline(&file(&["@@ -1 +1 @@", "-a\r", "+b\r"])), owned(&[("a\r", false), ("b\r", false)]));

    check_error(&file(&["@@ -1,2 +1,2 @@", "-a", marker, "-b", "+c", "+d"]), 7, "misplaced `\\ No newline");
    check_error(&file(&["@@ -1,2 +1 @@", " a", marker, "-b"]), 7, "misplaced");
    check_error(&file(&["@@ -1 +1 @@", marker, "-a", "+b"]), 5, "misplaced");
    check_error(&file(&["@@ -1 +1 @@", "-a", "+b", marker, "@@ -5 +5 @@", "-c", "+d"]), 8, "misplaced");
}

#[test]
#[rustfmt::skip] // One case per line keeps the table readable.
fn parses_mail_and_plain_diffs() {
    let mail = diff(&[
        "From 0123456789abcdef0123456789abcdef01234567 Mon Sep 17 00:00:00 2001",
        "From: Agent <agent@example.com>",
        "Date: Wed, 1 May 2024 10:00:00 +0000",
        "Subject: [PATCH 1/2] Change things",
        "",
        "A commit message may say anything, even",
        "+++ or --- or Binary or diff without --git.",
        "---",
        " x | 2 +-",
        " 1 file changed, 1 insertion(+), 1 deletion(-)",
        "",
        "diff --git a/x b/x",
        "index 1111111..2222222 100644",
        "--- a/x",
        "+++ b/x",
        "@@ -1 +1 @@",
        "-a",
        "+b",
        "-- ",
        "2.43.0",
        "",
        "From 89abcdef0123456789abcdef0123456789abcdef Mon Sep 17 00:00:00 2001",
        "From: Agent <agent@example.com>",
        "Subject: [PATCH 2/2] More",
        "",
        "---",
        "diff --git a/x b/x",
        "index 2222222..3333333 100644",
        "--- a/x",
        "+++ b/x",
        "@@ -1 +1 @@",
        "-b",
        "+c",
        "-- ",
        "2.43.0",
        "",
    ]);
    check(&mail, "Modified x x 100644 100644 +1 -1 h1; Modified x x 100644 100644 +1 -1 h1");
    // `--no-signature` mails follow each other directly.
    check(&diff(&["diff --git a/x b/x", "--- a/x", "+++ b/x", "@@ -1 +1 @@", "-a", "+b", "From 0123456789abcdef0123456789abcdef01234567 Mon Sep 17 00:00:00 2001", "Subject: next", "", "diff --git a/y b/y", "new file mode 100644"]), "Modified x x - - +1 -1 h1; Added - y - 100644 +0 -0 h0");
    check(&diff(&["--- a/x", "+++ b/x", "@@ -1 +1 @@", "-a", "+b"]), "Modified x x - - +1 -1 h1");
    check(&diff(&["--- /dev/null", "+++ b/x", "@@ -0,0 +1 @@", "+b"]), "Added - x - - +1 -0 h1");
    check(&diff(&["--- a/x", "+++ /dev/null", "@@ -1 +0,0 @@", "-a"]), "Deleted x - - - +0 -1 h1");
    check(&diff(&["diff -ruN old/x new/x", "--- old/x\t1970-01-01 00:00:00.000000000 +0000", "+++ new/x\t2024-05-01 10:00:00.000000000 +0000", "@@ -0,0 +1 @@", "+b", "diff -ruN old/y new/y", "--- old/y\t2024-05-01 10:00:00.000000000 +0000", "+++ new/y\t1970-01-01 00:00:00.000000000 +0000", "@@ -1 +0,0 @@", "-a"]), "Added - x - - +1 -0 h1; Deleted y - - - +0 -1 h1");
    check(&diff(&["Binary files old/x.png and new/x.png differ"]), "Modified x.png x.png - - binary +0 -0 h0");
    check(&diff(&["Binary files /dev/null and new/x.png differ"]), "Added - x.png - - binary +0 -0 h0");
}

#[test]
#[rustfmt::skip] // One case per line keeps the table readable.
fn rejects_malformed_diffs() {
    let head = ["diff --git a/x b/x", "--- a/x", "+++ b/x"];
    let file = |lines: &[&str]| {
        let mut all = head.to_vec();
        all.extend_from_slice(lines);
        diff(&all)
    };
    assert_eq!(parse(b"").unwrap_err().to_string(), "no file changes found; expected a unified diff such as `git diff` prints");
    assert_eq!(parse(b"hello\nworld\n").unwrap_err(), airlock_diff::ParseError::NoFileChanges);
    assert_eq!(parse(b"\n\n\n").unwrap_err().line(), None);
    check_error(&file(&["@@ -1,3 +1,3 @@", " a", "-b", "+c"]), 8, "hunk starting at line 4 ends early: 1 old and 1 new lines fewer");
    check_error(&file(&["@@ -1,3 +1,3 @@", " a", "-b", "+c", "@@ -9 +9 @@", "-d", "+e"]), 8, "ends early");
    check_error(&file(&["@@ -1,4000000000 +1 @@", "-a", "+b"]), 7, "ends early");
    check_error(&file(&["@@ -1 +1 @@", "-a", "+b", "+c"]), 7, "one new line more than the hunk header at line 4 declares");
    check_error(&file(&["@@ -1 +1 @@", "-a", "+b", " c"]), 7, "one context line more");
    check_error(&file(&["@@ -1,2 +1 @@", "-a", "+b", "+c"]), 7, "one new line more");
    check_error(&file(&["@@ -1 +1 @@", "-a", "+b", "garbage"]), 7, "unexpected line between file patches `garbage`");
    check_error(&file(&["@@ -1 +1 @@", "-a", "*b"]), 6, "unexpected line in hunk `*b`");
    check_error(&file(&["@@ -x +1 @@", "-a", "+b"]), 4, "malformed hunk header `@@ -x +1 @@`; expected `@@ -START[,COUNT] +START[,COUNT] @@`");
    check_error(&file(&["@@ -1 +1", "-a", "+b"]), 4, "malformed hunk header");
    check_error(&file(&["@@ -0,1 +1 @@", "-a", "+b"]), 4, "malformed hunk header");
    check_error(&file(&["@@@ -1 -1 +1 @@@", "-a", "+b"]), 4, "malformed hunk header");
    check_error(&file(&["@@ -1 +1 @@", " a"]), 4, "hunk has no added or removed lines");
    check_error(&file(&["@@ -1,0 +1,0 @@"]), 4, "no added or removed lines");
    check_error(&file(&["@@ -10 +10 @@", "-a", "+b", "@@ -5 +5 @@", "-c", "+d"]), 7, "hunk starts before the hunk at line 4 ends");
    check_error(&file(&["@@ -1,3 +1,3 @@", " a", "-b", "+c", " d", "@@ -3 +3 @@", "-d", "+e"]), 9, "must not overlap");
    check_error(&file(&[]), 4, "file header for `x` is not followed by a hunk");
    check_error(&diff(&["@@ -1 +1 @@", "-a", "+b"]), 1, "hunk header without a file header");
    check_error(&diff(&["diff --git a/x b/x", "index 1111111..2222222 100644"]), 1, "changes nothing");
    check_error(&diff(&["diff --git a/x b/x", "--- a/x", "@@ -1 +1 @@"]), 3, "`---` line not followed by a `+++` line");
    check_error(&diff(&["diff --git a/x b/x", "new file mode 100644", "new file mode 100644"]), 3, "duplicate `new file mode` line");
    check_error(&diff(&["diff --git a/x b/x", "new file mode 10064x"]), 2, "malformed file mode `10064x`");
    check_error(&diff(&["diff --git a/x b/x", "new file mode 100644", "--- a/x", "+++ b/x", "@@ -1 +1 @@", "-a", "+b"]), 1, "`new file mode` with an old name");
    check_error(&diff(&["diff --git a/x b/y", "rename from x", "new file mode 100644"]), 1, "contradictory");
    check_error(&diff(&["diff --git a/x b/x", "old mode 100644"]), 1, "come in pairs");
    check_error(&diff(&["diff --git a/x b/x", "GIT binary patch", "garbage"]), 3, "expected `literal SIZE` or `delta SIZE`");
    check_error(&diff(&["diff --git a/x b/x", "GIT binary patch", "literal 3", "Ac+x!a", "diff --git a/y b/y"]), 5, "malformed binary patch line");
    check_error(&diff(&["Binary files a/x and y and b/x and y differ"]), 1, "cannot tell the file names apart");
    // Control characters in excerpts are escaped, so messages are safe to print.
    check_error(&file(&["@@ -1 +1 @@", "-a", "\u{1b}[2J"]), 6, "`\\u{1b}[2J`");
}

#[test]
fn parses_runs_of_changed_lines() {
    let input = diff(&[
        "diff --git a/x b/x",
        "--- a/x",
        "+++ b/x",
        "@@ -3,5 +3,6 @@ fn f()",
        " a",
        "-b",
        "+c",
        "+d",
        " e",
        "",
        "-f",
        "\\ No newline at end of file",
        "+g",
        "\\ No newline at end of file",
    ]);
    let patch = parse_runs(&input).unwrap();
    let runs = &patch.files[0].runs;
    let text = |run: &ChangedRun| String::from_utf8_lossy(&input[run.span.clone()]).into_owned();
    assert_eq!(
        runs.iter()
            .map(|run| (
                text(run),
                run.new_line,
                run.added,
                run.removed,
                run.text_bytes
            ))
            .collect::<Vec<_>>(),
        [
            ("-b\n+c\n+d".to_owned(), 4, 2, 1, 3),
            ("-f".to_owned(), 8, 0, 1, 1),
            ("+g".to_owned(), 8, 1, 0, 1)
        ]
    );
    assert!(
        runs.iter()
            .all(|run| &input[run.hunk_start..run.hunk_start + 2] == b" a")
    );
    assert_eq!(
        (patch.files[0].lines_added(), patch.files[0].lines_removed()),
        (3, 2)
    );
    assert_eq!(
        parse_runs(b"garbage\n").unwrap_err(),
        parse_ref(b"garbage\n").unwrap_err()
    );
}

#[test]
#[rustfmt::skip] // One case per line keeps the table readable.
fn applies_strictly() {
    let modify = |lines: &[&str]| {
        let mut all = vec!["diff --git a/x b/x", "--- a/x", "+++ b/x"];
        all.extend_from_slice(lines);
        diff(&all)
    };
    let middle = modify(&["@@ -3,3 +3,3 @@", " c", "-d", "+D", " e"]);
    check_apply(&middle, Some("a\nb\nc\nd\ne\nf\n"), Ok(Some("a\nb\nc\nD\ne\nf\n")));
    // Found below or above the stated line, nearest first.
    check_apply(&middle, Some("0\n1\na\nb\nc\nd\ne\nf\n"), Ok(Some("0\n1\na\nb\nc\nD\ne\nf\n")));
    check_apply(&middle, Some("c\nd\ne\n"), Ok(Some("c\nD\ne\n")));
    check_apply(&modify(&["@@ -4,3 +4,3 @@", " c", "-d", "+D", " e"]), Some("c\nd\ne\nx\nx\nx\nc\nd\ne\n"), Ok(Some("c\nd\ne\nx\nx\nx\nc\nD\ne\n")));
    check_apply(&modify(&["@@ -3,3 +3,3 @@", " c", "-d", "+D", " e"]), Some("c\nd\ne\nx\nx\nc\nd\ne\n"), Ok(Some("c\nD\ne\nx\nx\nc\nd\ne\n")));
    check_apply(&middle, Some("a\nb\nc\nX\ne\nf\n"), Err("hunk #1 of `x` (`@@ -3,3 +3,3 @@`) does not apply: its context and removed lines match nowhere at or after line 1"));
    check_apply(&middle, Some("a\nb\nc\nd \ne\nf\n"), Err("does not apply"));
    check_apply(&middle, Some("a\nb\nc\r\nd\r\ne\r\nf\n"), Err("does not apply"));
    let two = modify(&["@@ -1,2 +1,2 @@", "-a", "+A", " b", "@@ -5,2 +5,2 @@", " e", "-f", "+F"]);
    check_apply(&two, Some("a\nb\nc\nd\ne\nf\n"), Ok(Some("A\nb\nc\nd\ne\nF\n")));
    check_apply(&two, Some("a\nb\nc\nd\ne\nX\n"), Err("hunk #2 of `x`"));
    // As in git: a hunk at line 1 must match at the start, one without trailing context at the end.
    check_apply(&modify(&["@@ -1,2 +1,2 @@", "-a", "+A", " b"]), Some("0\na\nb\n"), Err("at the start of the file"));
    check_apply(&modify(&["@@ -2,2 +2,2 @@", " e", "-f", "+F"]), Some("e\nf\ng\n"), Err("at the end of the file"));
    check_apply(&modify(&["@@ -2,2 +2,2 @@", " e", "-f", "+F"]), Some("x\ny\ne\nf\n"), Ok(Some("x\ny\ne\nF\n")));
    // No newline at end, on either side, and CRLF, byte for byte.
    let marker = "\\ No newline at end of file";
    check_apply(&modify(&["@@ -1,2 +1,2 @@", " a", "-b", marker, "+b"]), Some("a\nb"), Ok(Some("a\nb\n")));
    check_apply(&modify(&["@@ -1,2 +1,2 @@", " a", "-b", "+b", marker]), Some("a\nb\n"), Ok(Some("a\nb")));
    check_apply(&modify(&["@@ -1,2 +1,2 @@", " a", "-b", "+b", marker]), Some("a\nb"), Err("does not apply"));
    check_apply(&modify(&["@@ -1,2 +1,2 @@", " a", "-b", marker, "+c", marker]), Some("a\nb"), Ok(Some("a\nc")));
    check_apply(&modify(&["@@ -1,2 +1,2 @@", "-a\r", "+A\r", " b\r"]), Some("a\r\nb\r\n"), Ok(Some("A\r\nb\r\n")));
    check_apply(&modify(&["@@ -1,2 +1,2 @@", "-a\r", "+A\r", " b\r"]), Some("a\nb\n"), Err("does not apply"));

    let create = diff(&["diff --git a/n b/n", "new file mode 100644", "--- /dev/null", "+++ b/n", "@@ -0,0 +1,2 @@", "+a", "+b"]);
    check_apply(&create, None, Ok(Some("a\nb\n")));
    check_apply(&create, Some(""), Err("the patch creates `n`, but it already exists"));
    check_apply(&diff(&["diff --git a/e b/e", "new file mode 100644"]), None, Ok(Some("")));
    check_apply(&middle, None, Err("the patch changes `x`, but it does not exist"));

    let delete = diff(&["diff --git a/x b/x", "deleted file mode 100644", "--- a/x", "+++ /dev/null", "@@ -1,2 +0,0 @@", "-a", "-b"]);
    check_apply(&delete, Some("a\nb\n"), Ok(None));
    check_apply(&delete, Some("a\nb\nc\n"), Err("does not apply"));
    check_apply(&delete, Some("a\nB\n"), Err("does not apply"));
    check_apply(&delete, Some("a\nb"), Err("does not apply"));
    check_apply(&diff(&["diff --git a/e b/e", "deleted file mode 100644"]), Some(""), Ok(None));
    check_apply(&diff(&["diff --git a/e b/e", "deleted file mode 100644"]), Some("content\n"), Err("the patch deletes `e`, but the file has content the patch does not remove"));

    check_apply(&diff(&["diff --git a/o b/n", "similarity index 100%", "rename from o", "rename to n"]), Some("same\n"), Ok(Some("same\n")));
    check_apply(&diff(&["diff --git a/x b/x", "old mode 100644", "new mode 100755"]), Some("same\n"), Ok(Some("same\n")));
    check_apply(&diff(&["diff --git a/b b/b", "index 1111111..2222222 100644", "Binary files a/b and b/b differ"]), Some("\0"), Err("`b` has a binary patch, which cannot be applied as text"));
}

#[test]
fn hand_built_overlapping_hunks_never_overlap() {
    // `parse` rejects such hunks; a hand-built patch must still not apply one hunk twice.
    let single = |lines: &[&str]| {
        let mut all = vec!["--- a/x", "+++ b/x"];
        all.extend_from_slice(lines);
        parse(&diff(&all)).unwrap().files.remove(0)
    };
    let mut file: FilePatch = single(&["@@ -2,3 +2,3 @@", " b", "-c", "+C", " d"]);
    let second = single(&["@@ -2,3 +2,3 @@", " b", "-c", "+X", " d"]);
    file.hunks.extend(second.hunks);
    let error = apply(Some(b"a\nb\nc\nd\ne\n"), &file).unwrap_err();
    assert!(
        matches!(error, ApplyError::HunkMismatch { hunk: 2, .. }),
        "{error}"
    );
    let mut file = single(&["@@ -5,3 +5,3 @@", " e", "-f", "+F", " g"]);
    file.hunks
        .extend(single(&["@@ -2,3 +2,3 @@", " b", "-c", "+C", " d"]).hunks);
    let error = apply(Some(b"a\nb\nc\nd\ne\nf\ng\nh\n"), &file).unwrap_err();
    assert!(error.to_string().contains("hunk #2 of `x`"), "{error}");
}

#[test]
fn apply_is_linear_on_repetitive_content() {
    // A hunk that differs from a long run of equal lines only in its last line would take
    // quadratic time if every position were compared line by line.
    let base = "a\n".repeat(200_000);
    let mut lines = vec!["--- a/x", "+++ b/x", "@@ -2,50001 +2,50001 @@"];
    lines.extend(std::iter::repeat_n(" a", 50_000));
    lines.push("-b");
    lines.push("+c");
    let error = apply(
        Some(base.as_bytes()),
        &parse(&diff(&lines)).unwrap().files[0],
    );
    assert!(matches!(error, Err(ApplyError::HunkMismatch { .. })));
}

#[test]
#[rustfmt::skip] // One case per line keeps the table readable.
fn renders_git_diffs() {
    let check_render = |old: Option<&str>, new: Option<&str>, modes: (u32, u32), expected: &[&str]| {
        let rendered = render("x", "x", old.map(str::as_bytes), new.map(str::as_bytes), modes.0, modes.1);
        let expected = if expected.is_empty() { Vec::new() } else { diff(expected) };
        assert_eq!(String::from_utf8_lossy(&rendered), String::from_utf8_lossy(&expected));
    };
    let normal = (0o100644, 0o100644);
    check_render(Some("a\nb\n"), Some("a\nc\n"), normal, &["diff --git a/x b/x", "--- a/x", "+++ b/x", "@@ -1,2 +1,2 @@", " a", "-b", "+c"]);
    check_render(None, Some("a\n"), (0, 0o100755), &["diff --git a/x b/x", "new file mode 100755", "--- /dev/null", "+++ b/x", "@@ -0,0 +1 @@", "+a"]);
    check_render(Some("a\nb"), None, normal, &["diff --git a/x b/x", "deleted file mode 100644", "--- a/x", "+++ /dev/null", "@@ -1,2 +0,0 @@", "-a", "-b", "\\ No newline at end of file"]);
    check_render(None, Some(""), normal, &["diff --git a/x b/x", "new file mode 100644"]);
    check_render(Some("a"), Some("a\n"), normal, &["diff --git a/x b/x", "--- a/x", "+++ b/x", "@@ -1 +1 @@", "-a", "\\ No newline at end of file", "+a"]);
    check_render(Some("a\n"), Some("a\n"), (0o100644, 0o100755), &["diff --git a/x b/x", "old mode 100644", "new mode 100755"]);
    check_render(Some("a\n"), Some("a\n"), normal, &[]);
    check_render(None, None, normal, &[]);
    let long: String = (1..=20).map(|n| format!("{n}\n")).collect();
    let changed: String = (1..=20)
        .map(|n| match n {
            2 => "two\n".to_owned(),
            18 => "eighteen\n".to_owned(),
            n => format!("{n}\n"),
        })
        .collect();
    check_render(Some(&long), Some(&changed), normal, &["diff --git a/x b/x", "--- a/x", "+++ b/x", "@@ -1,5 +1,5 @@", " 1", "-2", "+two", " 3", " 4", " 5", "@@ -15,6 +15,6 @@", " 15", " 16", " 17", "-18", "+eighteen", " 19", " 20"]);

    let rendered = render("dir/old name", "dir/spé\tcial", Some(b"a\nb\n"), Some(b"a\nc\n"), 0o100644, 0o100644);
    let expected = diff(&[r#"diff --git a/dir/old name "b/dir/sp\303\251\tcial""#, "rename from dir/old name", r#"rename to "dir/sp\303\251\tcial""#, "--- a/dir/old name\t", r#"+++ "b/dir/sp\303\251\tcial""#, "@@ -1,2 +1,2 @@", " a", "-b", "+c"]);
    assert_eq!(String::from_utf8_lossy(&rendered), String::from_utf8_lossy(&expected));
    check(&rendered, "Renamed dir/old name dir/spé\tcial - - +1 -1 h1");
    let pure = render("o", "n", Some(b"a\n"), Some(b"a\n"), 0o100644, 0o100644);
    assert_eq!(pure, diff(&["diff --git a/o b/n", "similarity index 100%", "rename from o", "rename to n"]));
}

/// Lines from a small alphabet, so that old and new share and repeat lines.
fn text() -> impl Strategy<Value = Option<String>> {
    let line = prop::sample::select(vec!["a", "b", "c", "", "a\r", " a", "-- ", "\\ x"]);
    let content =
        (prop::collection::vec(line, 0..12), any::<bool>()).prop_map(|(lines, newline)| {
            let mut text = lines.join("\n");
            if newline && !lines.is_empty() {
                text.push('\n');
            }
            text
        });
    prop::option::weighted(0.9, content)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn render_parse_apply_round_trips(old in text(), new in text(), rename in any::<bool>(), old_mode in prop::sample::select(vec![0o100644u32, 0o100755])) {
        let old_path = "dir/file name.txt";
        let new_path = if rename { "dir/nouveau nom é.txt" } else { old_path };
        let rendered = render(old_path, new_path, old.as_deref().map(str::as_bytes), new.as_deref().map(str::as_bytes), old_mode, 0o100644);
        let unchanged = old == new && (old.is_none() || (!rename && old_mode == 0o100644));
        prop_assert_eq!(rendered.is_empty(), unchanged);
        if unchanged {
            return Ok(());
        }
        let patch = parse(&rendered).map_err(|error| TestCaseError::fail(format!("{error}\n{}", String::from_utf8_lossy(&rendered))))?;
        prop_assert_eq!(patch.files.len(), 1);
        let file = &patch.files[0];
        let applied = apply(old.as_deref().map(str::as_bytes), file).map_err(|error| TestCaseError::fail(format!("{error}\n{}", String::from_utf8_lossy(&rendered))))?;
        prop_assert_eq!(applied, new.clone().map(String::into_bytes));
        let expected_kind = match (&old, &new) {
            (None, _) => FileChangeKind::Added,
            (_, None) => FileChangeKind::Deleted,
            _ if rename => FileChangeKind::Renamed,
            _ => FileChangeKind::Modified,
        };
        prop_assert_eq!(file.kind, expected_kind);
    }

    #[test]
    fn parse_never_panics_on_bytes(input in prop::collection::vec(any::<u8>(), 0..400)) {
        let _ = parse(&input);
    }

    #[test]
    fn parse_and_apply_never_panic_on_diff_like_lines(
        lines in prop::collection::vec(prop::sample::select(vec![
            "diff --git a/x b/x", "diff --git \"a/x\" b/x", "--- a/x", "+++ b/x", "--- /dev/null", "+++ /dev/null",
            "@@ -1 +1 @@", "@@ -0,0 +1,2 @@", "@@ -1,2 +0,0 @@", "@@ -2,3 +2,2 @@", "@@ -4294967295 +1 @@",
            "+a", "-a", " a", "", "\\ No newline at end of file", "-- ", "2.43.0",
            "new file mode 100644", "deleted file mode 100644", "old mode 100644", "new mode 120000",
            "rename from x", "rename to y", "copy from x", "copy to y", "index 1..2 100644",
            "GIT binary patch", "literal 3", "Mcm", "Binary files a/x and b/x differ",
            "From 0123456789abcdef0123456789abcdef01234567 Mon", "garbage",
        ]), 0..40),
        base in text(),
    ) {
        let input = diff(&lines);
        if let Ok(patch) = parse(&input) {
            for file in &patch.files {
                let _ = apply(base.as_deref().map(str::as_bytes), file);
            }
        }
    }

    /// The borrowing parse names every line where it is in the input, and owns up to
    /// exactly what `parse` returns.
    #[test]
    fn parse_ref_points_into_the_input(
        lines in prop::collection::vec(prop::sample::select(vec![
            "diff --git a/x b/x", "--- a/x", "+++ b/x", "--- /dev/null", "+++ /dev/null",
            "@@ -1 +1 @@", "@@ -0,0 +1,2 @@", "@@ -1,2 +0,0 @@", "@@ -1,3 +1,3 @@",
            "+a", "-a", " a", "", "+", "-", " ", "+\r", "\\ No newline at end of file",
            "new file mode 100644", "deleted file mode 100644",
        ]), 0..40),
        final_newline in any::<bool>(),
    ) {
        let mut input = diff(&lines);
        if !final_newline {
            input.pop();
        }
        let borrowed = parse_ref(&input);
        let owned = parse(&input);
        if let Ok(patch) = &borrowed {
            for line in patch.files.iter().flat_map(|file| &file.hunks).flat_map(|hunk| &hunk.lines) {
                prop_assert_eq!(&input[line.offset..line.offset + line.text.len()], line.text);
            }
        }
        prop_assert_eq!(borrowed.map(|patch| patch.into_patch()), owned);
    }

    /// The runs of changed lines are what grouping `parse_ref`'s lines gives, with the
    /// same errors, and every line of a run starts with `+` or `-` in the input; the old
    /// file's length is read from them as from the parsed hunks.
    #[test]
    fn parse_runs_groups_the_changed_lines(
        lines in prop::collection::vec(prop::sample::select(vec![
            "diff --git a/x b/x", "--- a/x", "+++ b/x", "--- /dev/null", "+++ /dev/null",
            "@@ -1 +1 @@", "@@ -0,0 +1,2 @@", "@@ -1,2 +0,0 @@", "@@ -1,3 +1,3 @@", "@@ -7,3 +9,4 @@",
            "+a", "-a", " a", "", "+", "-", " ", "+\r", "+bb", "-ccc", "\\ No newline at end of file",
            "new file mode 100644", "deleted file mode 100644",
        ]), 0..40),
        final_newline in any::<bool>(),
    ) {
        let mut input = diff(&lines);
        if !final_newline {
            input.pop();
        }
        let expected = parse_ref(&input).map(|patch| {
            let lengths = patch.clone().into_patch().files.iter().map(FilePatch::old_lines).collect::<Vec<_>>();
            patch.files.iter().zip(lengths).map(|(file, length)| (file.path().to_owned(), runs_of(&input, file), length)).collect::<Vec<_>>()
        });
        let runs = parse_runs(&input).map(|patch| {
            patch.files.iter().map(|file| (file.path().to_owned(), file.runs.clone(), file.old_lines)).collect::<Vec<_>>()
        });
        if let Ok(files) = &runs {
            for run in files.iter().flat_map(|(_, runs, _)| runs) {
                for line in input[run.span.clone()].split(|&byte| byte == b'\n') {
                    prop_assert!(matches!(line.first(), Some(b'+' | b'-')));
                }
            }
        }
        prop_assert_eq!(runs, expected);
    }

    #[test]
    fn parse_never_panics_on_damaged_renders(old in text(), new in text(), cut in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let rendered = render("x", "y z", old.as_deref().map(str::as_bytes), new.as_deref().map(str::as_bytes), 0o100644, 0o100755);
        if rendered.is_empty() {
            return Ok(());
        }
        let at = cut.index(rendered.len());
        let mut replaced = rendered.clone();
        replaced[at] = byte;
        for damaged in [rendered[..at].to_vec(), replaced] {
            if let Ok(patch) = parse(&damaged) {
                for file in &patch.files {
                    let _ = apply(old.as_deref().map(str::as_bytes), file);
                }
            }
        }
    }
}

/// A fresh empty directory under the system temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "airlock-diff-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let path = std::env::temp_dir().join(name);
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn git_available() -> bool {
    let found = Command::new("git").arg("--version").output().is_ok();
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "git is required for this test: install the `git` package"
        );
        eprintln!("git not found: install the `git` package to run this test");
    }
    found
}

fn git(directory: &Path, args: &[&str]) -> std::process::Output {
    Command::new("git")
        .args(args)
        .current_dir(directory)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .output()
        .unwrap()
}

/// A file's old length is known from a diff when its last hunk shows where the file
/// ended: on diffs by real git, with its default context and others.
#[test]
fn a_file_length_is_read_from_hunks_that_reach_its_end() {
    if !git_available() {
        return;
    }
    let dir = TempDir::new();
    let original: Vec<String> = (1..=40).map(|n| format!("line {n}")).collect();
    let write = |name: &str, lines: &[String], final_newline: bool| {
        let mut text = lines.join("\n");
        if final_newline {
            text.push('\n');
        }
        std::fs::write(dir.0.join(name), text).unwrap();
    };
    let changed = |at: &[usize]| -> Vec<String> {
        let mut lines = original.clone();
        for &n in at {
            lines[n - 1] = format!("changed {n}");
        }
        lines
    };
    // (what, new lines, context lines, the old file ends with a newline, expected)
    type Case<'a> = (&'a str, Vec<String>, u32, bool, Option<u32>);
    let cases: Vec<Case> = vec![
        ("last line changed", changed(&[40]), 3, true, Some(40)),
        ("a line in the middle", changed(&[10]), 3, true, None),
        (
            "two lines before the end",
            changed(&[38]),
            3,
            true,
            Some(40),
        ),
        ("three lines before the end", changed(&[37]), 3, true, None),
        ("first and last", changed(&[1, 40]), 3, true, Some(40)),
        ("gutted", original[..4].to_vec(), 3, true, Some(40)),
        (
            "no context, middle lines",
            changed(&[10, 30]),
            0,
            true,
            None,
        ),
        (
            "more context, near the end",
            changed(&[36]),
            5,
            true,
            Some(40),
        ),
        (
            "more context, not near the end",
            changed(&[34]),
            5,
            true,
            None,
        ),
        ("no final newline, middle", changed(&[10]), 3, false, None),
        (
            "no final newline, near the end",
            changed(&[39]),
            3,
            false,
            Some(40),
        ),
    ];
    for (what, new, context, final_newline, expected) in cases {
        write("old", &original, final_newline);
        write("new", &new, final_newline);
        let output = git(
            &dir.0,
            &["diff", "--no-index", &format!("-U{context}"), "old", "new"],
        );
        // One file's diff, under one name.
        let text = String::from_utf8(output.stdout)
            .unwrap()
            .replace("a/old", "a/f")
            .replace("b/new", "b/f");
        let patch = parse(text.as_bytes()).unwrap();
        let runs = parse_runs(text.as_bytes()).unwrap();
        assert_eq!(patch.files[0].old_lines(), expected, "{what}");
        assert_eq!(runs.files[0].old_lines, expected, "{what}");
    }
}

#[test]
fn git_apply_accepts_rendered_diffs() {
    if !git_available() {
        return;
    }
    type Case<'a> = (&'a str, &'a str, Option<&'a str>, Option<&'a str>, u32, u32);
    let cases: &[Case] = &[
        (
            "x",
            "x",
            Some("a\nb\nc\n"),
            Some("a\nB\nc\n"),
            0o100644,
            0o100644,
        ),
        ("x", "x", Some("a"), Some("a\n"), 0o100644, 0o100644),
        ("x", "x", Some("a\n"), Some("b"), 0o100644, 0o100644),
        (
            "x",
            "x",
            Some("a\r\nb\r\n"),
            Some("a\r\nc\r\n"),
            0o100644,
            0o100644,
        ),
        (
            "new/dir/x",
            "new/dir/x",
            None,
            Some("hello\n"),
            0o100644,
            0o100644,
        ),
        ("e", "e", None, Some(""), 0o100644, 0o100644),
        ("x", "x", Some("bye\n"), None, 0o100644, 0o100644),
        ("e", "e", Some(""), None, 0o100644, 0o100644),
        (
            "run.sh",
            "run.sh",
            Some("echo\n"),
            Some("echo\n"),
            0o100644,
            0o100755,
        ),
        (
            "old name",
            "dir/spé\tcial \"q\"",
            Some("1\n2\n3\n4\n"),
            Some("1\n2\nthree\n4\n"),
            0o100644,
            0o100644,
        ),
        ("o", "n", Some("same\n"), Some("same\n"), 0o100644, 0o100644),
        (
            "with space.txt",
            "with space.txt",
            Some("a\n"),
            Some("b\n"),
            0o100644,
            0o100644,
        ),
    ];
    for &(old_path, new_path, old, new, old_mode, new_mode) in cases {
        let work = TempDir::new();
        let init = git(&work.0, &["init", "--quiet"]);
        assert!(
            init.status.success(),
            "{}",
            String::from_utf8_lossy(&init.stderr)
        );
        if let Some(old) = old {
            let path = work.0.join(old_path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, old).unwrap();
        }
        let rendered = render(
            old_path,
            new_path,
            old.map(str::as_bytes),
            new.map(str::as_bytes),
            old_mode,
            new_mode,
        );
        let patch_file = work.0.join(".git").join("change.patch");
        std::fs::write(&patch_file, &rendered).unwrap();
        let output = git(
            &work.0,
            &["apply", "--whitespace=nowarn", patch_file.to_str().unwrap()],
        );
        let shown = String::from_utf8_lossy(&rendered);
        assert!(
            output.status.success(),
            "git apply refused:\n{shown}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let content = std::fs::read(work.0.join(new_path)).ok();
        assert_eq!(content, new.map(|new| new.as_bytes().to_vec()), "{shown}");
        if old_path != new_path {
            assert!(!work.0.join(old_path).exists(), "{shown}");
        }
        #[cfg(unix)]
        if new.is_some() {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(work.0.join(new_path))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o100 != 0, new_mode == 0o100755, "{shown}");
        }
        // And this crate reads back what git accepted.
        let file = &parse(&rendered).unwrap().files[0];
        let applied = apply(old.map(str::as_bytes), file).unwrap();
        assert_eq!(applied, new.map(|new| new.as_bytes().to_vec()));
    }
}

#[test]
fn reads_real_git_output() {
    if !git_available() {
        return;
    }
    let repo = TempDir::new();
    let run = |args: &[&str]| {
        let output = git(&repo.0, args);
        assert!(
            output.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        output.stdout
    };
    let write = |path: &str, content: &[u8]| std::fs::write(repo.0.join(path), content).unwrap();
    let numbered =
        |count: usize| -> String { (1..=count).map(|n| format!("line {n}\n")).collect() };
    run(&["init", "--quiet"]);
    run(&["config", "user.name", "Agent"]);
    run(&["config", "user.email", "agent@example.com"]);
    write("keep.txt", numbered(20).as_bytes());
    write("gone.txt", b"bye\n");
    write("old name.txt", numbered(10).as_bytes());
    write("run.sh", b"echo hi\n");
    write("data.bin", b"a\0b");
    write("sp\u{e9}cial\ttab.txt", b"x\r\ny\r\n");
    run(&["add", "--all"]);
    run(&["commit", "--quiet", "--message", "base"]);

    write(
        "keep.txt",
        numbered(20).replace("line 5\n", "line five\n").as_bytes(),
    );
    run(&["rm", "--quiet", "gone.txt"]);
    run(&["mv", "old name.txt", "new name.txt"]);
    write(
        "new name.txt",
        numbered(10).replace("line 10\n", "line 10").as_bytes(),
    );
    write("data.bin", b"a\0c");
    write("sp\u{e9}cial\ttab.txt", b"x\r\nz\r\n");
    write("empty.txt", b"");
    #[cfg(unix)]
    std::os::unix::fs::symlink("keep.txt", repo.0.join("link")).unwrap();
    run(&["add", "--all"]);
    // After `add`, which would take the mode back from the work tree.
    run(&["update-index", "--chmod=+x", "run.sh"]);
    let commit = String::from_utf8(run(&["rev-parse", "HEAD"])).unwrap();
    let gitlink = format!("160000,{},sub", commit.trim());
    run(&["update-index", "--add", "--cacheinfo", &gitlink]);
    run(&["commit", "--quiet", "--message", "change"]);

    let diff = run(&["diff", "-M", "--binary", "HEAD~1", "HEAD"]);
    let patch =
        parse(&diff).unwrap_or_else(|error| panic!("{error}\n{}", String::from_utf8_lossy(&diff)));
    let mut files: Vec<String> = summary(&patch).split("; ").map(str::to_owned).collect();
    files.sort();
    let mut expected = vec![
        "Modified data.bin data.bin 100644 100644 binary +0 -0 h0",
        "Added - empty.txt - 100644 +0 -0 h0",
        "Deleted gone.txt - 100644 - +0 -1 h1",
        "Modified keep.txt keep.txt 100644 100644 +1 -1 h1",
        "Renamed old name.txt new name.txt 100644 100644 +1 -1 h1",
        "Modified run.sh run.sh 100644 100755 +0 -0 h0",
        "Modified sp\u{e9}cial\ttab.txt sp\u{e9}cial\ttab.txt 100644 100644 +1 -1 h1",
        "Added - sub - 160000 +1 -0 h1",
    ];
    if cfg!(unix) {
        expected.push("Added - link - 120000 +1 -0 h1");
    }
    expected.sort();
    assert_eq!(files, expected);

    // Every text change applies to the old blob and yields the new one.
    for file in patch
        .files
        .iter()
        .filter(|file| !file.binary && file.new_mode != Some(0o160000))
    {
        let blob = |revision: &str, path: &Option<String>| {
            path.as_ref()
                .map(|path| run(&["cat-file", "blob", &format!("{revision}:{path}")]))
        };
        let old = blob("HEAD~1", &file.old_path);
        let new = blob("HEAD", &file.new_path);
        assert_eq!(apply(old.as_deref(), file).unwrap(), new, "{}", file.path());
    }

    // The same change as a mail reads the same.
    let mail = run(&["format-patch", "--stdout", "-M", "--binary", "HEAD~1"]);
    assert_eq!(parse(&mail).unwrap(), patch);
}

/// The runs of changed lines of a file patch, from its lines: consecutive changed lines
/// with nothing between them in the input.
fn runs_of(input: &[u8], file: &FilePatchRef<'_>) -> Vec<ChangedRun> {
    let mut runs: Vec<ChangedRun> = Vec::new();
    for hunk in &file.hunks {
        let prefix = |line: &airlock_diff::HunkLineRef<'_>| {
            usize::from(line.kind != LineKind::Context || input[line.offset - 1] == b' ')
        };
        let Some(first) = hunk.lines.first() else {
            continue;
        };
        let hunk_start = first.offset - prefix(first);
        let hunk_end = hunk
            .lines
            .last()
            .map_or(0, |last| last.offset + last.text.len());
        let mut new_line = hunk.new_start;
        let mut previous_end: Option<usize> = None;
        for line in &hunk.lines {
            let start = line.offset - prefix(line);
            let end = line.offset + line.text.len();
            if line.kind == LineKind::Context {
                previous_end = None;
                new_line += 1;
                continue;
            }
            let extends = previous_end == Some(start.wrapping_sub(1));
            if !extends {
                runs.push(ChangedRun {
                    span: start..start,
                    hunk_start,
                    hunk_end,
                    new_line,
                    added: 0,
                    removed: 0,
                    text_bytes: 0,
                });
            }
            let run = runs.last_mut().unwrap();
            run.span.end = end;
            run.text_bytes += line.text.len() as u64;
            if line.kind == LineKind::Added {
                run.added += 1;
                new_line += 1;
            } else {
                run.removed += 1;
            }
            previous_end = Some(end);
        }
    }
    runs
}

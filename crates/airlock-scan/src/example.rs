//! Turning a rule's examples into the diffs the test suite scans.

use crate::rule::{ChangeKind, LineSide, Rule, RuleKind};
use crate::schema::MemoryTree;

/// The base tree a rule's examples are scanned with: `examples.schema` as
/// `db/schema.sql`, for rules that read the base tree's schema; `None` for the others.
pub fn example_base(rule: &Rule) -> Option<MemoryTree> {
    let schema = rule.examples.schema.as_ref()?;
    Some(MemoryTree::new([("db/schema.sql", schema.as_bytes())]))
}

/// The diff a rule example stands for (see `Examples` for the example forms).
///
/// Line examples go into `examples.path` (default `src/example.txt`) after one context
/// line; for rules on removed lines the example line is removed instead.
pub fn example_diff(rule: &Rule, example: &str) -> String {
    if example.starts_with("diff --git ") {
        return example.to_owned();
    }
    let path = rule.examples.path.as_deref().unwrap_or("src/example.txt");
    if rule.kind == RuleKind::File {
        let change = rule.examples.change.unwrap_or(ChangeKind::Modified);
        return file_diff(example, change);
    }
    let body: Vec<String> = if let Some(hunk) = example.strip_prefix("@@\n") {
        hunk.lines().map(str::to_owned).collect()
    } else if rule.lines == LineSide::Removed {
        vec![" context".to_owned(), format!("-{example}")]
    } else {
        vec![" context".to_owned(), format!("+{example}")]
    };
    hunk_diff(path, &body)
}

fn hunk_diff(path: &str, body: &[String]) -> String {
    let old_len = body.iter().filter(|line| !line.starts_with('+')).count();
    let new_len = body.iter().filter(|line| !line.starts_with('-')).count();
    let mut diff = format!(
        "diff --git a/{path} b/{path}\n--- a/{path}\n+++ b/{path}\n@@ -1,{old_len} +1,{new_len} @@\n"
    );
    for line in body {
        diff.push_str(line);
        diff.push('\n');
    }
    diff
}

fn file_diff(path: &str, change: ChangeKind) -> String {
    match change {
        ChangeKind::Added => format!(
            "diff --git a/{path} b/{path}\nnew file mode 100644\n--- /dev/null\n+++ b/{path}\n@@ -0,0 +1 @@\n+content\n"
        ),
        ChangeKind::Deleted => format!(
            "diff --git a/{path} b/{path}\ndeleted file mode 100644\n--- a/{path}\n+++ /dev/null\n@@ -1 +0,0 @@\n-content\n"
        ),
        ChangeKind::Renamed | ChangeKind::Copied => {
            let verb = if change == ChangeKind::Renamed {
                "rename"
            } else {
                "copy"
            };
            format!(
                "diff --git a/{path}.orig b/{path}\nsimilarity index 100%\n{verb} from {path}.orig\n{verb} to {path}\n"
            )
        }
        ChangeKind::Modified => hunk_diff(
            path,
            &[" context".to_owned(), "-old".to_owned(), "+new".to_owned()],
        ),
    }
}

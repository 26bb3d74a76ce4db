//! Inline allow comments: `airlock:allow RULE-ID reason text`.

const MARKER: &[u8] = b"airlock:allow";

/// The reason of an `airlock:allow` comment on `line` naming `rule_id` or `category`,
/// if there is one. The reason is the rest of the comment without comment closers;
/// a missing reason is recorded as such rather than treated as no allow.
pub(crate) fn inline_allow(line: &[u8], rule_id: &str, category: &str) -> Option<String> {
    let start = find(line, MARKER)? + MARKER.len();
    let rest = String::from_utf8_lossy(&line[start..]);
    let rest = rest.trim_start();
    let (named, reason) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
    if named != rule_id && named != category {
        return None;
    }
    let reason = reason
        .trim()
        .trim_end_matches("*/")
        .trim_end_matches("-->")
        .trim_end_matches("#}")
        .trim_end_matches("%>")
        .trim();
    Some(if reason.is_empty() {
        "(no reason given)".to_owned()
    } else {
        reason.chars().take(500).collect()
    })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

#[cfg(test)]
mod tests {
    use super::inline_allow;

    fn check(line: &str, expected: Option<&str>) {
        assert_eq!(
            inline_allow(line.as_bytes(), "secret.generic", "secret").as_deref(),
            expected,
            "{line}"
        );
    }

    #[test]
    fn allows() {
        check(
            "x = 1 # airlock:allow secret.generic fixture key",
            Some("fixture key"),
        );
        check(
            "/* airlock:allow secret test vector */",
            Some("test vector"),
        );
        check("// airlock:allow secret.generic", Some("(no reason given)"));
        check("// airlock:allow sql-injection.concat nope", None);
        check("// airlock:allow secret.generic-other nope", None);
        check("plain line", None);
    }
}

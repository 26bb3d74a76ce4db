//! The text of a Slack-compatible notification: one short line per audit entry,
//!
//! ```text
//! [airlock] review.requested chg_01J… by agent bot: needs 2 approvals; missing: 1 from @payments
//! ```
//!
//! built from the entry's `kind`, `change_id`, `actor.type` and `actor.name`, then
//! `decision.summary`, `approval.method` and `approval.reason`, `details.summary`,
//! `details.reason` and `details.missing` (a string or a list), each left out when absent.
//!
//! Much of this text is controlled by agents (a change's title, a summary). So every
//! field is cleaned (control and bidirectional-override characters become spaces,
//! runs of spaces shrink to one, each field is capped), and Slack's three control
//! characters are escaped as Slack documents (`&` → `&amp;`, `<` → `&lt;`, `>` →
//! `&gt;`): without a raw `<`, text cannot form a mention (`<!channel>`, `<@U123>`) or a
//! disguised link (`<http://x|label>`). A URL written out plainly stays visible as what
//! it is. The whole text is capped at `MAX_TEXT_CHARS` characters.

use serde_json::Value;

/// The longest text sent, in characters (Slack advises at most 4,000).
pub(crate) const MAX_TEXT_CHARS: usize = 3_000;
/// The longest kind, change id, actor type or actor name shown.
const MAX_NAME_CHARS: usize = 100;
/// The longest summary, reason or list of missing items shown.
const MAX_PART_CHARS: usize = 1_000;

/// The notification text for one entry (a JSON object), escaped for Slack.
pub(crate) fn slack_text(entry: &Value) -> String {
    let field = |path: &[&str], max_chars: usize| -> Option<String> {
        let mut value = entry;
        for key in path {
            value = value.get(key)?;
        }
        let text = match value {
            Value::String(text) => text.clone(),
            Value::Array(items) => items
                .iter()
                .map(|item| match item {
                    Value::String(text) => text.clone(),
                    other => other.to_string(),
                })
                .collect::<Vec<_>>()
                .join(", "),
            Value::Null => return None,
            other => other.to_string(),
        };
        let cleaned = clean(&text, max_chars);
        (!cleaned.is_empty()).then_some(cleaned)
    };

    let mut text = String::from("[airlock] ");
    text.push_str(
        &field(&["kind"], MAX_NAME_CHARS).unwrap_or_else(|| "(entry without a kind)".to_owned()),
    );
    if let Some(change_id) = field(&["change_id"], MAX_NAME_CHARS) {
        text.push(' ');
        text.push_str(&change_id);
    }
    if let Some(name) = field(&["actor", "name"], MAX_NAME_CHARS) {
        text.push_str(" by ");
        if let Some(actor_type) = field(&["actor", "type"], MAX_NAME_CHARS) {
            text.push_str(&actor_type);
            text.push(' ');
        }
        text.push_str(&name);
    }

    let mut parts: Vec<String> = Vec::new();
    parts.extend(field(&["decision", "summary"], MAX_PART_CHARS));
    if let Some(method) = field(&["approval", "method"], MAX_NAME_CHARS) {
        parts.push(match field(&["approval", "reason"], MAX_PART_CHARS) {
            Some(reason) => format!("approval: {method} ({reason})"),
            None => format!("approval: {method}"),
        });
    }
    parts.extend(field(&["details", "summary"], MAX_PART_CHARS));
    parts.extend(
        field(&["details", "reason"], MAX_PART_CHARS).map(|reason| format!("reason: {reason}")),
    );
    parts.extend(
        field(&["details", "missing"], MAX_PART_CHARS).map(|missing| format!("missing: {missing}")),
    );
    if !parts.is_empty() {
        text.push_str(": ");
        text.push_str(&parts.join("; "));
    }
    escape_capped(&text, MAX_TEXT_CHARS)
}

/// One line of plain text: control characters and bidirectional overrides (which could
/// make text read differently from what it is) become spaces, runs of white space one
/// space, and text beyond `max_chars` characters is cut and marked with `…`.
fn clean(text: &str, max_chars: usize) -> String {
    let words = text.split(|character: char| {
        character.is_whitespace()
            || character.is_control()
            || matches!(
                character,
                '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
            )
    });
    let cleaned = words
        .filter(|word| !word.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    if cleaned.chars().count() <= max_chars {
        return cleaned;
    }
    let mut cut: String = cleaned.chars().take(max_chars.saturating_sub(1)).collect();
    cut.truncate(cut.trim_end().len());
    cut.push('…');
    cut
}

/// Escapes `&`, `<` and `>` as Slack asks, within `max_chars` characters of output: an
/// escape is never cut in half, and a cut text ends in `…`.
fn escape_capped(text: &str, max_chars: usize) -> String {
    let mut escaped = String::with_capacity(text.len() + 16);
    let mut count = 0;
    let mut characters = text.chars().peekable();
    while let Some(character) = characters.next() {
        let piece = match character {
            '&' => "&amp;",
            '<' => "&lt;",
            '>' => "&gt;",
            _ => "",
        };
        let piece_chars = if piece.is_empty() { 1 } else { piece.len() };
        // Room for the `…` unless this is the last character.
        let reserve = usize::from(characters.peek().is_some());
        if count + piece_chars + reserve > max_chars {
            escaped.push('…');
            return escaped;
        }
        if piece.is_empty() {
            escaped.push(character);
        } else {
            escaped.push_str(piece);
        }
        count += piece_chars;
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_review_request_reads_as_one_line() {
        let entry = json!({
            "kind": "review.requested",
            "change_id": "chg_01",
            "actor": {"type": "agent", "name": "bot"},
            "details": {"summary": "needs 2 approvals", "missing": ["1 from @payments", "1 more"]},
        });
        assert_eq!(
            slack_text(&entry),
            "[airlock] review.requested chg_01 by agent bot: needs 2 approvals; \
             missing: 1 from @payments, 1 more"
        );
    }

    #[test]
    fn every_field_is_optional_and_in_a_fixed_order() {
        assert_eq!(slack_text(&json!({})), "[airlock] (entry without a kind)");
        let entry = json!({
            "kind": "change.break_glass",
            "actor": {"name": "alice"},
            "decision": {"summary": "urgent fix", "outcome": "approved"},
            "approval": {"method": "break_glass", "reason": "prod is down"},
            "details": {"reason": "incident 42", "missing": "a review", "summary": null},
        });
        assert_eq!(
            slack_text(&entry),
            "[airlock] change.break_glass by alice: urgent fix; approval: break_glass \
             (prod is down); reason: incident 42; missing: a review"
        );
        let entry = json!({"kind": "review.expired", "approval": {"method": "human"}});
        assert_eq!(
            slack_text(&entry),
            "[airlock] review.expired: approval: human"
        );
    }

    #[test]
    fn agent_text_cannot_mention_link_or_break_lines() {
        let entry = json!({
            "kind": "review.requested",
            "actor": {"type": "agent", "name": "<@U123>"},
            "details": {"summary": "Fix <!channel> & <http://evil.example|docs>\n[airlock] \u{202e}fake"},
        });
        assert_eq!(
            slack_text(&entry),
            "[airlock] review.requested by agent &lt;@U123&gt;: Fix &lt;!channel&gt; &amp; \
             &lt;http://evil.example|docs&gt; [airlock] fake"
        );
    }

    #[test]
    fn length_is_capped_without_cutting_an_escape() {
        let entry = json!({"kind": "review.requested", "details": {"summary": "x".repeat(5000)}});
        let text = slack_text(&entry);
        assert!(text.chars().count() < MAX_TEXT_CHARS, "{}", text.len());
        assert!(text.ends_with("x…"), "{text}");

        for length in 0..12 {
            let capped = escape_capped("a<b&c>d", length);
            assert!(
                capped.chars().count() <= length.max(1),
                "{length}: {capped}"
            );
            let without_ellipsis = capped.trim_end_matches('…');
            assert!(
                "a&lt;b&amp;c&gt;d".starts_with(without_ellipsis),
                "{length}: {capped}"
            );
        }
        assert_eq!(escape_capped("a<b", 6), "a&lt;b");
        assert_eq!(escape_capped("a<b", 5), "a…");
        let long_summary = format!("{}<", "y".repeat(MAX_TEXT_CHARS));
        let text = escape_capped(&long_summary, MAX_TEXT_CHARS);
        assert_eq!(text.chars().count(), MAX_TEXT_CHARS);
        assert!(text.ends_with('…'));
    }

    #[test]
    fn cleaning_collapses_white_space_and_caps_fields() {
        assert_eq!(clean("  a \t\r\n b  ", 100), "a b");
        assert_eq!(clean("abcdef", 4), "abc…");
        assert_eq!(clean("abc", 3), "abc");
        assert_eq!(clean("abcd", 3), "ab…");
        assert_eq!(clean("a bcd", 3), "a…");
        assert_eq!(clean("\u{7}", 3), "");
    }
}

//! `KindFilter`: which entries a sink delivers, by their top-level `kind`.
//!
//! Patterns are exact kinds (`review.requested`) or a prefix ending in `.*`
//! (`review.*`, which matches `review.requested` and `review.x.y` but not `review` or
//! `reviews.x`), plus the preset word `notifications` (`NOTIFICATION_KINDS`).

use crate::SinkRecord;
use crate::entry::kind_of;

/// The preset word that `KindFilter::parse` expands to `NOTIFICATION_KINDS`.
pub const NOTIFICATIONS_PRESET: &str = "notifications";

/// The kinds a person may have to act on: the review notifications, and the deployment
/// alerts (a failed staging or deployment, a rollback, a rollback that needs a person).
pub const NOTIFICATION_KINDS: &[&str] = &[
    "review.requested",
    "review.reminder",
    "review.escalated",
    "review.rejected",
    "review.expired",
    "change.break_glass",
    "post_review.overdue",
    "staging.failed",
    "deploy.failed",
    "rollback.started",
    "rollback.completed",
    "rollback.escalated",
    "watch.regression",
    "drift.exceeded",
];

/// The longest pattern accepted; kinds are short dotted words.
const MAX_PATTERN_LEN: usize = 128;

/// A set of kind patterns. An entry matches when its top-level `kind` is a string that
/// one pattern matches; an entry without a string `kind` (or that is not JSON) matches
/// nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KindFilter {
    /// Exact kinds, and prefixes kept with their trailing `.` (from `review.*`).
    exact: Vec<String>,
    prefixes: Vec<String>,
}

impl KindFilter {
    /// Parses patterns as written in `kinds = [...]`. The list must not be empty (leave
    /// the filter out to deliver every entry). The error says which pattern is wrong and
    /// what is accepted.
    pub fn parse<S: AsRef<str>>(patterns: &[S]) -> Result<KindFilter, String> {
        if patterns.is_empty() {
            return Err(format!(
                "is empty, so nothing would be delivered; {} (or leave `kinds` out to \
                 deliver every entry)",
                accepted_patterns()
            ));
        }
        let mut filter = KindFilter {
            exact: Vec::new(),
            prefixes: Vec::new(),
        };
        for pattern in patterns {
            let pattern = pattern.as_ref();
            if pattern == NOTIFICATIONS_PRESET {
                for kind in NOTIFICATION_KINDS {
                    filter.add_exact(kind);
                }
            } else if let Some(prefix) = pattern.strip_suffix(".*")
                && is_words(prefix, 1)
            {
                let prefix = format!("{prefix}.");
                if !filter.prefixes.contains(&prefix) {
                    filter.prefixes.push(prefix);
                }
            } else if is_words(pattern, 2) {
                filter.add_exact(pattern);
            } else {
                let shown: String = pattern.chars().take(MAX_PATTERN_LEN).collect();
                return Err(format!(
                    "`{}` is not a kind pattern; {}",
                    shown.escape_debug(),
                    accepted_patterns()
                ));
            }
        }
        Ok(filter)
    }

    /// True when `kind` is one of the exact kinds or starts with one of the prefixes.
    pub fn matches(&self, kind: &str) -> bool {
        self.exact.iter().any(|exact| exact == kind)
            || self.prefixes.iter().any(|prefix| kind.starts_with(prefix))
    }

    /// True when the record's entry has a string `kind` that `matches`.
    pub fn matches_record(&self, record: &SinkRecord) -> bool {
        kind_of(record).is_some_and(|kind| self.matches(&kind))
    }

    /// The patterns after expansion of the preset, exact kinds first, without repeats:
    /// `["review.requested", …, "deploy.*"]`.
    pub fn patterns(&self) -> Vec<String> {
        self.exact
            .iter()
            .cloned()
            .chain(self.prefixes.iter().map(|prefix| format!("{prefix}*")))
            .collect()
    }

    fn add_exact(&mut self, kind: &str) {
        if !self.exact.iter().any(|exact| exact == kind) {
            self.exact.push(kind.to_owned());
        }
    }
}

fn accepted_patterns() -> String {
    format!(
        "accepted: a list of exact kinds such as \"review.requested\", prefixes ending in \
         \".*\" such as \"review.*\", or the preset \"{NOTIFICATIONS_PRESET}\" ({}); a kind \
         is two or more dot-separated words of lowercase letters, digits, '_' and '-'",
        NOTIFICATION_KINDS.join(", ")
    )
}

/// At least `min_words` dot-separated, non-empty words of lowercase ASCII letters,
/// digits, `_` and `-`.
fn is_words(text: &str, min_words: usize) -> bool {
    (1..=MAX_PATTERN_LEN).contains(&text.len())
        && text.split('.').count() >= min_words
        && text.split('.').all(|word| {
            !word.is_empty()
                && word.bytes().all(|byte| {
                    byte.is_ascii_lowercase()
                        || byte.is_ascii_digit()
                        || byte == b'_'
                        || byte == b'-'
                })
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::leaf_hash;

    #[test]
    fn exact_prefix_and_preset() {
        let filter = KindFilter::parse(&["notifications", "token.*", "change.merged"]).unwrap();
        for kind in NOTIFICATION_KINDS {
            assert!(filter.matches(kind), "{kind}");
        }
        assert!(filter.matches("token.created"));
        assert!(filter.matches("token.a.b"));
        assert!(filter.matches("change.merged"));
        assert!(!filter.matches("token"));
        assert!(!filter.matches("tokens.created"));
        assert!(!filter.matches("review.approved"));
        assert!(!filter.matches("change.break_glass.x"));
        assert!(!filter.matches("Review.requested"));
        assert!(!filter.matches(""));
        assert_eq!(filter.patterns().len(), NOTIFICATION_KINDS.len() + 2);
        assert_eq!(filter.patterns().last().unwrap(), "token.*");
    }

    #[test]
    fn repeats_are_harmless() {
        let filter =
            KindFilter::parse(&["review.*", "review.*", "notifications", "review.requested"])
                .unwrap();
        assert_eq!(filter.patterns().len(), NOTIFICATION_KINDS.len() + 1);
    }

    #[test]
    fn bad_patterns_are_refused_with_what_is_accepted() {
        for pattern in [
            "",
            "*",
            "review*",
            "*.requested",
            "review.*.x",
            "review.",
            ".review",
            "a..b",
            "Review.requested",
            "review requested",
            "review.**",
            ".*",
            "notification",
        ] {
            let message = KindFilter::parse(&[pattern]).unwrap_err();
            assert!(
                message.contains("is not a kind pattern"),
                "{pattern}: {message}"
            );
            assert!(message.contains("\"review.*\""), "{message}");
            assert!(message.contains("\"notifications\""), "{message}");
            assert!(message.contains("post_review.overdue"), "{message}");
        }
        let message = KindFilter::parse::<&str>(&[]).unwrap_err();
        assert!(message.contains("is empty"), "{message}");
        let message = KindFilter::parse(&["a\nb"]).unwrap_err();
        assert!(message.contains("`a\\nb`"), "{message}");
    }

    #[test]
    fn records_match_on_their_top_level_kind_only() {
        let filter = KindFilter::parse(&["review.*"]).unwrap();
        let record = |entry: &str| SinkRecord {
            index: 0,
            leaf_hash: leaf_hash(entry.as_bytes()),
            entry: entry.as_bytes().into(),
        };
        assert!(filter.matches_record(&record(r#"{"kind":"review.requested"}"#)));
        assert!(!filter.matches_record(&record(r#"{"details":{"kind":"review.x"}}"#)));
        assert!(!filter.matches_record(&record(r#"{"kind":7}"#)));
        assert!(!filter.matches_record(&record("not json")));
    }
}

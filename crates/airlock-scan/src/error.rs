//! Why rules could not be loaded or a diff could not be scanned.

use thiserror::Error;

/// A rule file or rule that is not accepted; names the rule and key.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RuleError {
    #[error("{file}: {message}")]
    Toml { file: String, message: String },
    #[error("rule `{id}`: key `{key}`: {reason}")]
    InvalidRule {
        id: String,
        key: &'static str,
        reason: String,
    },
    #[error("rule `{id}` is defined twice; rule ids must be unique")]
    DuplicateRule { id: String },
    #[error("no rule `{id}`; severity overrides must name an existing rule")]
    UnknownRule { id: String },
    #[error("rule `{id}`: {key} `{pattern}` does not compile: {reason}")]
    BadPattern {
        id: String,
        key: &'static str,
        pattern: String,
        reason: String,
    },
}

/// The scanner could not run on this input. Findings are never errors.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ScanError {
    // The parser's message is part of this one rather than a `source`, so that callers
    // printing either the message or the whole chain show it exactly once.
    #[error("the input is not a unified diff: {0}")]
    Parse(airlock_diff::ParseError),
    #[error("the diff is {size} bytes; at most {limit} bytes are scanned")]
    TooLarge { size: usize, limit: usize },
    #[error("allowlist path glob `{glob}` does not compile: {reason}")]
    BadAllowGlob { glob: String, reason: String },
}

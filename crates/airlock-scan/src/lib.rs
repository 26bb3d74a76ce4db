//! The dangerous-change scanner: finds what airlock's threat model fears in the change an
//! agent proposes (secrets, injections, destructive operations, schema changes without a
//! migration, CI and gate tampering, weakened tests, mass deletions, insecure
//! configuration, unsafe deserialization, dependency changes), before anything runs.
//!
//! Pure: no I/O; the built-in rules are embedded at build time. Rules are data (TOML, see
//! `Rule`); a `Scanner` compiles a `RulePack` once into a keyword prefilter
//! (Aho-Corasick) and one multi-pattern regex that find candidate rules per line, then
//! confirms each candidate with its own regex, captures and value checks. Diffs are
//! hostile input: no input panics, work per line is bounded by scanning long lines in
//! windows, and a finding never carries a raw secret (a masked preview and a one-way
//! fingerprint only).

mod allow;
mod error;
mod example;
mod glob;
mod rule;
mod scanner;
mod value;

pub use error::{RuleError, ScanError};
pub use example::example_diff;
pub use rule::{
    Category, ChangeKind, Examples, LineSide, Rule, RuleKind, RulePack, Severity, ValueFilter,
};
pub use scanner::{Finding, MassDeletionThresholds, ScanOptions, ScanReport, ScanStats, Scanner};

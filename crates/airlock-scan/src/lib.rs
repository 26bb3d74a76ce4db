//! The dangerous-change scanner: finds what airlock's threat model fears in the change an
//! agent proposes (secrets, injections, destructive operations, schema changes without a
//! migration, CI and gate tampering, weakened tests, mass deletions, insecure
//! configuration, unsafe deserialization, dependency changes), before anything runs.
//!
//! Pure: no I/O; the built-in rules are embedded at build time. Rules are data (TOML, see
//! `Rule`); a `Scanner` compiles a `RulePack` once. From each rule's keywords, pattern
//! and confirm regexes it derives literals one of which every match must contain, and
//! a scan reads the diff in place (`airlock_diff::parse_runs`), searches each run of
//! changed lines for those literals in one pass (with AVX2 where the CPU has it), and runs
//! a rule's regexes only on the lines that hold one; lines longer than a window, and the
//! tests' reference, go through a keyword automaton and one multi-pattern regex instead.
//! Both find exactly the same. Diffs are hostile input: no input panics, work per line is
//! bounded by scanning long lines in windows, and a finding never carries a raw secret (a
//! masked preview and a one-way fingerprint only).

mod allow;
#[cfg(test)]
mod equivalence;
mod error;
mod example;
mod glob;
mod literals;
mod prefilter;
mod rule;
mod scanner;
mod schema;
mod value;

pub use error::{RuleError, ScanError};
pub use example::{example_base, example_diff};
pub use rule::{
    BlockScope, Category, ChangeKind, Examples, LineSide, Rule, RuleKind, RulePack, Severity,
    ValueFilter,
};
pub use scanner::{Finding, MassDeletionThresholds, ScanOptions, ScanReport, ScanStats, Scanner};
pub use schema::{BaseTree, MemoryTree};

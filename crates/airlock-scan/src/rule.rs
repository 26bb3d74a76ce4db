//! Rules as data: the finding categories, severities, the TOML rule format and the pack
//! of built-in and user rules.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::RuleError;

/// What a finding is about. The kebab-case names are a public contract (CLI JSON, SARIF
/// rule tags, policy input) and never change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Category {
    Secret,
    SqlInjection,
    CommandInjection,
    DestructiveOp,
    SchemaContract,
    CiTamper,
    GateTamper,
    TestWeakening,
    MassDeletion,
    InsecureConfig,
    UnsafeDeserialization,
    DependencyChange,
}

impl Category {
    /// Every category, in the order of the threat model.
    pub const ALL: [Category; 12] = [
        Category::Secret,
        Category::SqlInjection,
        Category::CommandInjection,
        Category::DestructiveOp,
        Category::SchemaContract,
        Category::CiTamper,
        Category::GateTamper,
        Category::TestWeakening,
        Category::MassDeletion,
        Category::InsecureConfig,
        Category::UnsafeDeserialization,
        Category::DependencyChange,
    ];

    /// The contract name, e.g. `sql-injection`.
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Secret => "secret",
            Category::SqlInjection => "sql-injection",
            Category::CommandInjection => "command-injection",
            Category::DestructiveOp => "destructive-op",
            Category::SchemaContract => "schema-contract",
            Category::CiTamper => "ci-tamper",
            Category::GateTamper => "gate-tamper",
            Category::TestWeakening => "test-weakening",
            Category::MassDeletion => "mass-deletion",
            Category::InsecureConfig => "insecure-config",
            Category::UnsafeDeserialization => "unsafe-deserialization",
            Category::DependencyChange => "dependency-change",
        }
    }

    /// The category with this contract name.
    pub fn parse(name: &str) -> Option<Category> {
        Category::ALL.into_iter().find(|c| c.as_str() == name)
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How bad a finding is. Ordered: `Low < Medium < High < Critical`; by default `High` and
/// above block a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Severity {
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a rule looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RuleKind {
    /// `pattern` is matched against lines (added ones unless `lines` says otherwise).
    Line,
    /// Fires once per file whose path passes the filters and whose change is one of
    /// `changes`; the line is 0.
    File,
    /// `pattern` has a `value` group (and optionally a `key` group): fires when a value on a
    /// removed line is lowered, or removed, by the added lines of the same file
    /// (coverage thresholds).
    NumericDecrease,
    /// As `NumericDecrease`, but fires when a value on a removed line is raised by the
    /// added lines (a test's tolerance widened); a value removed is not reported.
    NumericIncrease,
    /// Many files deleted in one change; thresholds come from `ScanOptions`.
    MassDeletionFiles,
    /// Several source files deleted (not docs, data or generated files), their code not
    /// moved elsewhere, while the change removes more than it adds: a module or a
    /// layer taken out; thresholds come from `ScanOptions`.
    MassDeletionSourceFiles,
    /// Most of the changed lines removed across several files; thresholds come from
    /// `ScanOptions`.
    MassDeletionLines,
    /// One file kept but gutted: most of its lines removed, few added, and the code not
    /// moved elsewhere in the change; thresholds come from `ScanOptions`.
    MassDeletionFile,
    /// An added SQL statement names a column the base tree's schema does not have
    /// (`schema.rs`); runs only when the scan is given the base tree.
    UnknownColumn,
}

impl RuleKind {
    /// Whether the rule compares a number on removed lines with its replacement.
    pub fn compares_numbers(self) -> bool {
        matches!(self, RuleKind::NumericDecrease | RuleKind::NumericIncrease)
    }
}

/// The block `unless_block` and `in_block` read around a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BlockScope {
    /// The nearest: from the first less indented line above.
    #[default]
    Nearest,
    /// Through headers that are bare indented keys (`rules:`, `only:`) up to the first
    /// that is not: the CI job holding the line.
    Job,
}

/// Which side of a line rule's file is matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LineSide {
    #[default]
    Added,
    Removed,
    Both,
}

impl LineSide {
    pub(crate) fn added(self) -> bool {
        matches!(self, LineSide::Added | LineSide::Both)
    }
    pub(crate) fn removed(self) -> bool {
        matches!(self, LineSide::Removed | LineSide::Both)
    }
}

/// The kinds of file change a `file` rule reacts to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ChangeKind {
    Added,
    Deleted,
    Modified,
    Renamed,
    Copied,
}

impl From<airlock_diff::FileChangeKind> for ChangeKind {
    fn from(kind: airlock_diff::FileChangeKind) -> Self {
        match kind {
            airlock_diff::FileChangeKind::Added => ChangeKind::Added,
            airlock_diff::FileChangeKind::Deleted => ChangeKind::Deleted,
            airlock_diff::FileChangeKind::Modified => ChangeKind::Modified,
            airlock_diff::FileChangeKind::Renamed => ChangeKind::Renamed,
            airlock_diff::FileChangeKind::Copied => ChangeKind::Copied,
        }
    }
}

/// Checks applied to the matched value (the `secret` group, or the whole match) to drop
/// the classic false positives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ValueFilter {
    /// `REPLACE_ME`, `changeme`, `example`, `xxxx`, `<...>`, `${...}`, `{{...}}`, `dummy`,
    /// `test`, `your_...` and friends.
    Placeholder,
    /// The value, or the line, reads from the environment or a vault.
    Environment,
    /// A UUID.
    Uuid,
    /// 32, 40, 64 or 128 hex digits (hashes, git SHAs) unless the name is strongly secret.
    Hash,
    /// `data:` URIs, lockfile integrity hashes (`sha512-...`) and stored password
    /// hashes (`$2b$12$...`, `pbkdf2_sha256$...`).
    Encoded,
    /// A plain identifier such as `password_hash` or `bearer`: a name, not a credential.
    Identifier,
    /// The value contains a digit: random credentials of 16 or more characters almost
    /// always do, while code (`this.authService.currentToken`) rarely does.
    HasDigit,
    /// The value is base64 that decodes to a credential: a URL with a password, a
    /// `password=` pair, a private key (a Kubernetes Secret's `data:`).
    DecodedCredential,
    /// The value is the same text as the `name` group, when the pattern has one: an
    /// assertion comparing a value with itself (`expect(total).toBe(total)`).
    SameAsName,
}

/// Positive and negative examples that the test suite checks for every rule.
///
/// An example is, by kind: for `line` rules, the text of one added line (or, starting
/// with `@@\n`, a hunk body whose lines start with `+`, `-` or a space); for `file` rules,
/// a path changed as `change` says; for any rule, a whole diff starting with `diff --git `.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Examples {
    #[serde(default)]
    pub positive: Vec<String>,
    #[serde(default)]
    pub negative: Vec<String>,
    /// The file the line examples are put in; `src/example.txt` when absent.
    #[serde(default)]
    pub path: Option<String>,
    /// The change made to the file of `file` rule examples; `modified` when absent.
    #[serde(default)]
    pub change: Option<ChangeKind>,
    /// The base tree's `db/schema.sql` the examples of an `unknown-column` rule are
    /// scanned against (`example_base`).
    #[serde(default)]
    pub schema: Option<String>,
}

/// One rule, as written in a rule file.
///
/// Patterns are byte regexes in `regex-automata` syntax with Unicode off: `\w`, `\b`, `\s`
/// are ASCII, `.` is any byte but newline. A `secret` named group marks the value that is
/// masked, fingerprinted, filtered and measured for entropy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// `category.name`, e.g. `secret.aws-access-key-id`; unique in a pack.
    pub id: String,
    pub category: Category,
    pub severity: Severity,
    /// Why this matters, one sentence.
    pub message: String,
    /// How to fix it, one sentence.
    pub remediation: String,
    #[serde(default = "default_kind")]
    pub kind: RuleKind,
    /// Lowercase literals, one of which must occur in a line before `pattern` is tried;
    /// empty means the rule is tried on every line of its files.
    #[serde(default)]
    pub keywords: Vec<String>,
    #[serde(default)]
    pub pattern: Option<String>,
    /// Further regexes that must all match the line for a match to count.
    #[serde(default)]
    pub confirm: Vec<String>,
    /// Regexes any of which, matching the line, discards the match.
    #[serde(default)]
    pub reject: Vec<String>,
    /// Path globs the rule applies to (all paths when empty). A glob without `/` matches
    /// the file name in any directory; `**` crosses directories. `@tests` stands for
    /// the test files of the common frameworks (`TEST_PATHS`) and `@docs` for
    /// documentation (`DOC_PATHS`), here and in `exclude_paths`.
    #[serde(default)]
    pub paths: Vec<String>,
    /// Path globs the rule never applies to.
    #[serde(default)]
    pub exclude_paths: Vec<String>,
    #[serde(default)]
    pub lines: LineSide,
    /// For rules on removed lines: fire only when the file loses more matching lines than
    /// it gains (one finding per file).
    #[serde(default)]
    pub net: bool,
    /// For `file` rules: the changes that fire; for line rules, the changes whose lines
    /// are read (`modified`: a line added to a file that was there before). All when
    /// empty.
    #[serde(default)]
    pub changes: Vec<ChangeKind>,
    /// Minimum Shannon entropy (bits per byte) of the value.
    #[serde(default)]
    pub entropy_min: Option<f64>,
    /// Minimum length in bytes of the value.
    #[serde(default)]
    pub min_length: Option<usize>,
    #[serde(default)]
    pub filters: Vec<ValueFilter>,
    /// The finding is dropped when the change also touches a migration directory.
    #[serde(default)]
    pub unless_migration: bool,
    /// The rule does not apply to a file with an added line matching this regex
    /// (`kind: SealedSecret`: its values are ciphertext, meant to be committed).
    #[serde(default)]
    pub unless_file: Option<String>,
    /// An added line's match does not count when a line of the block holding it (the
    /// nearest less indented line above, the block's lines below it, as far as the hunk
    /// shows them) matches this regex (`allow_failure` on a link-check job).
    #[serde(default)]
    pub unless_block: Option<String>,
    /// An added line's match counts only when a line of the block holding it matches
    /// this regex (a source glob under `paths-ignore`).
    #[serde(default)]
    pub in_block: Option<String>,
    #[serde(default)]
    pub block_scope: BlockScope,
    /// An added line's match counts only when its hunk removes a line matching this
    /// regex and adds none: the line takes its place (a failing check turned into a log
    /// line).
    #[serde(default)]
    pub replaces: Option<String>,
    #[serde(default)]
    pub examples: Examples,
}

fn default_kind() -> RuleKind {
    RuleKind::Line
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    #[serde(default)]
    rule: Vec<Rule>,
    /// Severity overrides by rule id.
    #[serde(default)]
    severity: BTreeMap<String, Severity>,
}

/// The built-in rule files, embedded in the binary.
const BUILTIN_RULE_FILES: &[(&str, &str)] = &[
    ("secret.toml", include_str!("../rules/secret.toml")),
    (
        "sql-injection.toml",
        include_str!("../rules/sql-injection.toml"),
    ),
    (
        "command-injection.toml",
        include_str!("../rules/command-injection.toml"),
    ),
    (
        "destructive-op.toml",
        include_str!("../rules/destructive-op.toml"),
    ),
    (
        "schema-contract.toml",
        include_str!("../rules/schema-contract.toml"),
    ),
    ("ci-tamper.toml", include_str!("../rules/ci-tamper.toml")),
    (
        "gate-tamper.toml",
        include_str!("../rules/gate-tamper.toml"),
    ),
    (
        "test-weakening.toml",
        include_str!("../rules/test-weakening.toml"),
    ),
    (
        "mass-deletion.toml",
        include_str!("../rules/mass-deletion.toml"),
    ),
    (
        "insecure-config.toml",
        include_str!("../rules/insecure-config.toml"),
    ),
    (
        "unsafe-deserialization.toml",
        include_str!("../rules/unsafe-deserialization.toml"),
    ),
    (
        "dependency-change.toml",
        include_str!("../rules/dependency-change.toml"),
    ),
];

/// An ordered set of rules with unique ids.
#[derive(Debug, Clone, Default)]
pub struct RulePack {
    rules: Vec<Rule>,
}

impl RulePack {
    /// The rules shipped with airlock. The embedded files are checked by the test suite, so
    /// this cannot fail in a released build; it panics only if an embedded file is broken.
    pub fn builtin() -> RulePack {
        let mut pack = RulePack::default();
        for (name, text) in BUILTIN_RULE_FILES {
            if let Err(error) = pack.add_file(name, text) {
                // The embedded rules are fixed at build time and tested; a broken file is a
                // build defect, not an input error.
                panic!("embedded rule file {name} is invalid: {error}");
            }
        }
        pack
    }

    /// This pack plus the rules and `[severity]` overrides of one user rule file.
    ///
    /// Fails, naming the rule and key, on TOML errors, unknown keys, a duplicate id, an id
    /// whose prefix is not its category, a rule kind without the fields it needs, or an
    /// override of an unknown rule.
    pub fn with_extra(mut self, toml_text: &str) -> Result<RulePack, RuleError> {
        self.add_file("user rules", toml_text)?;
        Ok(self)
    }

    /// Sets the severity of one rule.
    pub fn override_severity(
        &mut self,
        rule_id: &str,
        severity: Severity,
    ) -> Result<(), RuleError> {
        match self.rules.iter_mut().find(|rule| rule.id == rule_id) {
            Some(rule) => {
                rule.severity = severity;
                Ok(())
            }
            None => Err(RuleError::UnknownRule {
                id: rule_id.to_owned(),
            }),
        }
    }

    /// The rules, in load order (for SARIF rule metadata and documentation).
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The rule with this id.
    pub fn rule(&self, id: &str) -> Option<&Rule> {
        self.rules.iter().find(|rule| rule.id == id)
    }

    fn add_file(&mut self, file: &str, text: &str) -> Result<(), RuleError> {
        let parsed: RuleFile = toml::from_str(text).map_err(|error| RuleError::Toml {
            file: file.to_owned(),
            message: error.to_string(),
        })?;
        for mut rule in parsed.rule {
            expand_path_sets(&mut rule)?;
            validate(&rule)?;
            if self.rule(&rule.id).is_some() {
                return Err(RuleError::DuplicateRule { id: rule.id });
            }
            self.rules.push(rule);
        }
        for (id, severity) in parsed.severity {
            self.override_severity(&id, severity)?;
        }
        Ok(())
    }
}

/// Test files, by the names and directories of the common test frameworks: what a
/// rule's `paths` or `exclude_paths` name as `@tests`.
pub const TEST_PATHS: &[&str] = &[
    "**/test/**",
    "**/tests/**",
    "**/Tests/**",
    "**/spec/**",
    "**/__tests__/**",
    "**/*.Tests/**",
    "**/*Tests/**",
    "test_*.py",
    "*_test.py",
    "tests.py",
    "*_test.go",
    "*.test.*",
    "*.spec.*",
    "*Test.java",
    "*Tests.java",
    "*IT.java",
    "*Test.kt",
    "*Tests.kt",
    "*Spec.kt",
    "*Test.scala",
    "*Spec.scala",
    "*Suite.scala",
    "*Test.php",
    "*Test.cs",
    "*Tests.cs",
    "*Test.swift",
    "*Tests.swift",
    "*_spec.rb",
    "*_test.rb",
    "*_test.exs",
    "*_test.rs",
    "*_test.dart",
    "*Spec.hs",
    "*_spec.lua",
    "*.bats",
    "t/**/*.t",
];

/// Documentation: prose that quotes code without running it; what a rule's `paths` or
/// `exclude_paths` name as `@docs`.
pub const DOC_PATHS: &[&str] = &["*.md", "*.markdown", "*.rst", "*.adoc", "docs/**", "doc/**"];

/// Replaces each named path set (`@tests`, `@docs`) in a rule's path globs with its globs.
fn expand_path_sets(rule: &mut Rule) -> Result<(), RuleError> {
    for (key, globs) in [
        ("paths", &mut rule.paths),
        ("exclude_paths", &mut rule.exclude_paths),
    ] {
        if !globs.iter().any(|glob| glob.starts_with('@')) {
            continue;
        }
        let mut expanded = Vec::with_capacity(globs.len() + TEST_PATHS.len());
        for glob in globs.drain(..) {
            match glob.as_str() {
                "@tests" => expanded.extend(TEST_PATHS.iter().map(|&path| path.to_owned())),
                "@docs" => expanded.extend(DOC_PATHS.iter().map(|&path| path.to_owned())),
                _ if glob.starts_with('@') => {
                    return Err(RuleError::InvalidRule {
                        id: rule.id.clone(),
                        key,
                        reason: format!("unknown path set `{glob}`; accepted: `@tests`, `@docs`"),
                    });
                }
                _ => expanded.push(glob),
            }
        }
        *globs = expanded;
    }
    Ok(())
}

fn validate(rule: &Rule) -> Result<(), RuleError> {
    let invalid = |key: &'static str, reason: String| RuleError::InvalidRule {
        id: rule.id.clone(),
        key,
        reason,
    };
    let prefix = format!("{}.", rule.category.as_str());
    if !rule.id.starts_with(&prefix) || rule.id.len() == prefix.len() {
        return Err(invalid(
            "id",
            format!("must be `{prefix}NAME` for category `{}`", rule.category),
        ));
    }
    if let Some(keyword) = rule
        .keywords
        .iter()
        .find(|k| k.is_empty() || k.to_ascii_lowercase() != **k)
    {
        return Err(invalid(
            "keywords",
            format!("`{keyword}` must be a non-empty lowercase literal"),
        ));
    }
    let needs_pattern = rule.kind == RuleKind::Line || rule.kind.compares_numbers();
    if needs_pattern && rule.pattern.is_none() {
        return Err(invalid("pattern", "required for this kind".to_owned()));
    }
    if !needs_pattern && rule.pattern.is_some() {
        return Err(invalid(
            "pattern",
            "only `line`, `numeric-decrease` and `numeric-increase` rules have one".to_owned(),
        ));
    }
    if rule.examples.positive.is_empty() {
        return Err(invalid(
            "examples.positive",
            "every rule needs at least one positive example".to_owned(),
        ));
    }
    Ok(())
}

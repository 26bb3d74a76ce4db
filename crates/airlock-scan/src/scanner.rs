//! The engine: rules compiled once into a line prefilter (`prefilter`), then a single
//! pass over the diff, read in place, that confirms each line's candidate rules.
//!
//! The diff is parsed into runs of changed lines (`airlock_diff::parse_runs`): offsets into
//! the input, no record per line. Each run is searched in one go for the triggers of the
//! rules that apply to its file; a literal found names its line from its place in the
//! input, and only the lines holding one are numbered and confirmed, so most lines cost
//! nothing beyond the search. Runs with a line longer than `WINDOW`, and files with rules
//! that are candidates on every line, are scanned line by line. Lines longer than
//! `WINDOW`, and the reference scan the tests compare against, use the plain engine
//! instead: a keyword Aho-Corasick automaton and one multi-pattern regex over every
//! changed line.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, Hasher, RandomState};
use std::ops::Range;
use std::sync::{Arc, Mutex, OnceLock};

use aho_corasick::{AhoCorasick, AhoCorasickBuilder};
#[cfg(test)]
use airlock_diff::LineKind;
use airlock_diff::{ChangedRun, FileChangeKind, FileRuns};
use memchr::{memchr, memchr_iter, memrchr};
use regex_automata::hybrid;
use regex_automata::meta::Regex;
use regex_automata::nfa::thompson;
use regex_automata::util::syntax;
use regex_automata::{Input, MatchKind, PatternSet};
use serde::{Deserialize, Serialize};

use crate::allow::inline_allow;
use crate::error::{RuleError, ScanError};
use crate::glob::{GlobMatches, GlobSet, glob_to_regex};
use crate::prefilter::{LiteralSink, Prefilter, RunHits, Searcher, Trigger};
use crate::rule::{BlockScope, Category, ChangeKind, Rule, RuleKind, RulePack, Severity};
use crate::schema::{BaseTree, Schema};
use crate::value::{entropy, fingerprint, line_excerpt, masked_preview, passes_filters};

/// Lines longer than this are scanned in overlapping windows of this size, so the work per
/// regex call stays bounded whatever the line (minified code, a 10 MB blob on one line).
const WINDOW: usize = 4096;
/// Overlap between windows: a match shorter than this is never cut in two.
const WINDOW_OVERLAP: usize = 512;
/// Matches of one rule confirmed per window; more on one line add nothing for a reviewer.
const MATCHES_PER_WINDOW: usize = 8;
/// Removed-line matches kept per file while waiting to see whether they were only moved.
const PENDING_PER_FILE: usize = 256;
/// A statement that goes on past its first line is read over at most this many more
/// new-side lines, and this many bytes in all (`join_statement`).
const STATEMENT_LINES: usize = 10;
const STATEMENT_BYTES: usize = 1024;
/// Lines after the first looked at for a statement's continuation, removed ones included.
const STATEMENT_REACH: usize = 16;
/// Lines looked at each way for the block holding a line (`Around::block_matches`).
const BLOCK_REACH: usize = 32;
/// Changed lines above a call looked at for the values of its arguments.
const SUBSTITUTION_REACH: usize = 6;
/// Values put in for names on one line, at most.
const SUBSTITUTIONS: usize = 4;

/// The rules that watch the gate's own files, which also watch `ScanOptions::gate_paths`.
const GATE_RULES: [&str; 4] = [
    "gate-tamper.config-changed",
    "gate-tamper.config-deleted",
    "gate-tamper.gate-line-removed",
    "gate-tamper.policy-loosened",
];
/// The rule for a line of the gate's own files removed or rewritten.
const GATE_LINE_RULE: &str = "gate-tamper.gate-line-removed";
/// Rules for a check removed from CI: not reported when another file of the change
/// runs the same command (`moved_checks`).
const MOVABLE_CHECK_RULES: [&str; 2] = ["ci-tamper.check-removed", "ci-tamper.hook-removed"];
/// The rule for policies other than the gate's.
const OTHER_POLICY_RULE: &str = "gate-tamper.policy-changed";
/// The rules whose matches tell which tables a file creates and drops (`Scanner::record`).
const CREATE_TABLE_RULE: &str = "schema-contract.ddl-outside-migration";
/// Net rules that say less than another when both fire on a file: exact assertions
/// "loosened" are only removed when assertions are removed.
const SUBSUMED_NET_RULES: [(&str, &str); 2] = [
    (
        "test-weakening.assertions-removed",
        "test-weakening.exact-assertions-loosened",
    ),
    (
        "test-weakening.assertions-removed",
        "test-weakening.expected-refusal-removed",
    ),
];
const DROP_TABLE_RULE: &str = "destructive-op.drop-table";
/// The rule for a deleted test file, at medium when the code it tests goes with it.
const TEST_FILE_DELETED_RULE: &str = "test-weakening.test-file-deleted";

/// One thing the scanner found. Data, never an error; it never holds a raw secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    pub rule: String,
    pub category: Category,
    pub severity: Severity,
    /// The file, as the diff names it (the old path for a deletion).
    pub path: String,
    /// The 1-based line in the new file; for a removed line, the new line where the
    /// removal happened; 0 for findings about a whole file or change.
    pub line: u32,
    pub message: String,
    pub remediation: String,
    /// Stable across line moves: rule, path and matched content, hashed.
    pub fingerprint: String,
    /// For secrets, a masked value showing at most a third of it; otherwise a short
    /// excerpt of the line or a summary of the change.
    pub preview: Option<String>,
    /// Why the finding is allowed (an inline `airlock:allow` reason or an allowlist);
    /// an allowed finding is kept but never blocks.
    pub allowed: Option<String>,
}

impl Finding {
    /// Whether this finding rejects a change at `threshold` (`High` by default).
    pub fn blocks(&self, threshold: Severity) -> bool {
        self.allowed.is_none() && self.severity >= threshold
    }
}

/// Counters about one scan.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ScanStats {
    pub files: u32,
    pub binary_files: u32,
    pub added_lines: u64,
    pub removed_lines: u64,
    /// Bytes of added and removed lines looked at.
    pub bytes_scanned: u64,
    /// Lines longer than the window size, scanned in windows.
    pub long_lines: u64,
    /// More findings than `ScanOptions::max_findings`; the rest were dropped.
    pub findings_truncated: bool,
}

/// The result of scanning one diff: findings sorted by path, line and rule.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ScanReport {
    pub findings: Vec<Finding>,
    pub stats: ScanStats,
}

impl ScanReport {
    /// The findings that reject the change at `threshold`.
    pub fn blocking(&self, threshold: Severity) -> impl Iterator<Item = &Finding> {
        self.findings
            .iter()
            .filter(move |finding| finding.blocks(threshold))
    }
}

/// Thresholds of the mass-deletion rules (`[scan.mass_deletion]` in airlock.toml).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MassDeletionThresholds {
    /// Deleted files (lockfiles, vendored and generated files not counted) that fire
    /// `mass-deletion.files`.
    pub min_deleted_files: usize,
    /// `mass-deletion.source-files` fires when at least this many source files are
    /// deleted (not docs, data or generated files, their code not moved elsewhere) …
    pub min_deleted_source_files: usize,
    /// … holding at least this many lines in all, while the change removes more lines
    /// than it adds.
    pub min_deleted_source_lines: usize,
    /// `mass-deletion.lines` fires when at least this many lines are removed …
    pub min_removed_lines: usize,
    /// … making up at least this percentage of all added and removed lines …
    pub min_removed_percent: u8,
    /// … across at least this many files.
    pub min_files: usize,
    /// `mass-deletion.file-gutted` fires for a file kept with at least this many lines
    /// removed, no more than a tenth as many added, while the whole change removes at
    /// least twice what it adds (the code did not move to another file).
    pub min_gutted_lines: usize,
}

impl Default for MassDeletionThresholds {
    fn default() -> Self {
        MassDeletionThresholds {
            min_deleted_files: 5,
            min_deleted_source_files: 3,
            min_deleted_source_lines: 40,
            min_removed_lines: 300,
            min_removed_percent: 90,
            min_files: 3,
            min_gutted_lines: 200,
        }
    }
}

/// What one scan allows and how far it goes.
#[derive(Debug, Clone, PartialEq)]
pub struct ScanOptions {
    /// Path globs whose findings are allowed.
    pub allow_paths: Vec<String>,
    /// Rule ids or category names whose findings are allowed.
    pub allow_rules: Vec<String>,
    /// Finding fingerprints that are allowed.
    pub allow_fingerprints: Vec<String>,
    /// Directories holding schema migrations, matched at the root or below any directory
    /// (`migrations/` covers `app/migrations/0002.py`). A change touching one satisfies
    /// the `schema-contract` rules.
    pub migration_dirs: Vec<String>,
    /// Files of the gate's own configuration besides those the rules name (the review
    /// policy airlock.toml points at): every rule of `GATE_RULES` watches them (a change
    /// is `gate-tamper.config-changed`, a line removed or rewritten
    /// `gate-tamper.gate-line-removed`...). Paths from the repository root.
    pub gate_paths: Vec<String>,
    pub mass_deletion: MassDeletionThresholds,
    /// Findings kept; more set `ScanStats::findings_truncated`.
    pub max_findings: usize,
    /// Larger inputs are refused with `ScanError::TooLarge`.
    pub max_input_bytes: usize,
}

impl Default for ScanOptions {
    fn default() -> Self {
        ScanOptions {
            allow_paths: Vec::new(),
            allow_rules: Vec::new(),
            allow_fingerprints: Vec::new(),
            migration_dirs: [
                "migrations/",
                "Migrations/",
                "migration/",
                "db/migrate/",
                "alembic/versions/",
                "prisma/migrations/",
                "drizzle/",
                "sql/migrations/",
                "db/migrations/",
                "conf/evolutions/",
                "db/changelog/",
                "liquibase/",
                "flyway/",
            ]
            .map(str::to_owned)
            .to_vec(),
            gate_paths: Vec::new(),
            mass_deletion: MassDeletionThresholds::default(),
            max_findings: 1000,
            max_input_bytes: 512 * 1024 * 1024,
        }
    }
}

/// A rule pack compiled for scanning. Build once, scan many diffs; `Scanner` is `Sync`.
/// It keeps the literal searches it builds for each kind of file it meets, at most 64 of
/// them (a few MiB), for the scans that follow.
#[derive(Debug)]
pub struct Scanner {
    rules: Vec<Rule>,
    compiled: Vec<CompiledRule>,
    /// Keyword prefilter over all line rules' keywords (ASCII case-insensitive).
    keywords: AhoCorasick,
    /// Rules listing each keyword, by keyword pattern index.
    keyword_rules: Vec<Vec<usize>>,
    /// Line rules without keywords: candidates on every line.
    keywordless_rules: Vec<usize>,
    /// One regex holding every line rule's pattern, to learn in one pass which rules match.
    all_patterns: Regex,
    /// Rule index of each pattern of `all_patterns`.
    pattern_rules: Vec<usize>,
    /// Which rules can fire on which lines, before any regex runs.
    prefilter: Prefilter,
    /// The distinct glob lists of the rules' `paths` and `exclude_paths`.
    path_globs: GlobSet,
    /// The rule that reports tables created outside a migration, and the one that
    /// reports tables dropped: a table dropped after the same file created it is the
    /// rollback of a new table (a migration's `down`), no data lost (`record`).
    create_table_rule: Option<usize>,
    drop_table_rule: Option<usize>,
    /// The rules of `GATE_RULES`, and the one for other policies, which a configured
    /// gate file is not reported by.
    gate_rules: Vec<usize>,
    other_policy_rule: Option<usize>,
    /// The rule for a removed line of the gate's own files, whose settings are compared.
    gate_line_rule: Option<usize>,
    /// The rules with an `unless_file`.
    unless_file_rules: Vec<usize>,
    /// The line rules with `changes`: they read only the files changed so.
    line_rules_by_change: Vec<usize>,
    /// Scratch space of finished scans, for the next ones: its lazy DFAs' caches keep
    /// the states they built.
    scratch_pool: Mutex<Vec<LineScratch>>,
}

#[derive(Debug)]
struct CompiledRule {
    pattern: Option<Regex>,
    /// The pattern as a lazy DFA, to learn whether a candidate line matches it at all
    /// (`LineMatcher`).
    matcher: Option<LineMatcher>,
    /// Group index of `secret` or `value`, and of `name` and `key`.
    value_group: Option<usize>,
    name_group: Option<usize>,
    key_group: Option<usize>,
    confirm: Vec<Regex>,
    reject: Vec<Regex>,
    unless_file: Option<Regex>,
    unless_block: Option<Regex>,
    in_block: Option<Regex>,
    replaces: Option<Regex>,
    /// Index in `Scanner::path_globs` (a list of the set) of the rule's `paths` and
    /// `exclude_paths`.
    include: Option<usize>,
    exclude: Option<usize>,
}

impl CompiledRule {
    /// Whether the rule's `paths` and `exclude_paths` let it apply to a path whose glob
    /// lists `matched` holds (`GlobSet::matching`).
    fn applies_to(&self, matched: &GlobMatches) -> bool {
        let matches = |index: usize| matched.lists[index];
        self.include.is_none_or(matches) && !self.exclude.is_some_and(matches)
    }
}

/// A rule's pattern as a forward lazy DFA, to learn whether a line holds a match: on a
/// line of source code it answers in about half the time of the full regex's
/// `is_match`, which takes a cache from a pool and picks a strategy on every call. The
/// regex, with its captures, runs only on the lines this says match. It gives up on
/// input that keeps its cache thrashing, and the full regex answers instead.
#[derive(Debug)]
struct LineMatcher {
    dfa: hybrid::dfa::DFA,
}

impl LineMatcher {
    fn new(pattern: &str) -> Result<LineMatcher, String> {
        let dfa = hybrid::dfa::Builder::new()
            .syntax(syntax::Config::new().unicode(false).utf8(false))
            .thompson(thompson::Config::new().utf8(false))
            .configure(
                hybrid::dfa::Config::new()
                    .match_kind(MatchKind::LeftmostFirst)
                    // As the full regex's own lazy DFA does.
                    .minimum_cache_clear_count(Some(3))
                    .minimum_bytes_per_state(Some(10)),
            )
            .build(pattern)
            .map_err(|error| error.to_string())?;
        Ok(LineMatcher { dfa })
    }

    /// Whether `text` holds a match; `None` if the DFA gave up.
    fn is_match(&self, cache: &mut Option<hybrid::dfa::Cache>, text: &[u8]) -> Option<bool> {
        let cache = cache.get_or_insert_with(|| self.dfa.create_cache());
        let input = Input::new(text).earliest(true);
        self.dfa
            .try_search_fwd(cache, &input)
            .ok()
            .map(|found| found.is_some())
    }
}

fn build_regex(patterns: &[&str]) -> Result<Regex, String> {
    Regex::builder()
        .syntax(syntax::Config::new().unicode(false).utf8(false))
        .configure(
            Regex::config()
                .utf8_empty(false)
                .auto_prefilter(false)
                .match_kind(MatchKind::LeftmostFirst),
        )
        .build_many(patterns)
        .map_err(|error| error.to_string())
}

fn build_set(patterns: &[&str]) -> Result<Regex, String> {
    Regex::builder()
        .syntax(syntax::Config::new().unicode(false).utf8(false))
        .configure(Regex::config().utf8_empty(false).match_kind(MatchKind::All))
        .build_many(patterns)
        .map_err(|error| error.to_string())
}

/// One glob list of a rule: its globs, and the rule and key it was written under, to
/// name them when it does not compile.
type GlobList<'a> = (&'a Rule, &'static str, &'a [String]);

/// The distinct glob lists of the rules' `paths` and `exclude_paths` in one `GlobSet`:
/// a file's path is matched once for every list.
fn path_globs(lists: &[GlobList<'_>]) -> Result<GlobSet, RuleError> {
    let globs: Vec<&[String]> = lists.iter().map(|(_, _, globs)| *globs).collect();
    GlobSet::new(&globs).map_err(|(list, reason)| {
        let (rule, key, globs) = lists[list];
        RuleError::BadPattern {
            id: rule.id.clone(),
            key,
            pattern: globs.join(", "),
            reason,
        }
    })
}

/// A comment line: `#` (not `#!`, `#[`, `#{`), `//`, `/*`, `*` (inside a block comment),
/// `--` and a space (SQL).
const COMMENT_LINE: &str = r"^\s*(?:#(?:[^!\[{]|$)|//|/\*|\*(?:\s|/|$)|--(?:\s|$))";

/// Whether a rule's category judges code that runs: its rules never match a comment
/// line (a commented-out call runs nothing, and a comment saying what was removed is no
/// threat). Secrets are found in comments too.
fn judges_code(category: Category) -> bool {
    matches!(
        category,
        Category::SqlInjection
            | Category::CommandInjection
            | Category::UnsafeDeserialization
            | Category::DestructiveOp
    )
}

fn compile_rule(rule: &Rule) -> Result<CompiledRule, RuleError> {
    let bad = |key: &'static str, pattern: &str, reason: String| RuleError::BadPattern {
        id: rule.id.clone(),
        key,
        pattern: pattern.to_owned(),
        reason,
    };
    let pattern = match &rule.pattern {
        Some(text) => Some(build_regex(&[text]).map_err(|reason| bad("pattern", text, reason))?),
        None => None,
    };
    let matcher = match &rule.pattern {
        Some(text) => Some(LineMatcher::new(text).map_err(|reason| bad("pattern", text, reason))?),
        None => None,
    };
    let group = |name: &str| {
        pattern.as_ref().and_then(|regex| {
            regex
                .group_info()
                .to_index(regex_automata::PatternID::ZERO, name)
        })
    };
    let value_group = group("secret").or_else(|| group("value"));
    if rule.kind.compares_numbers() && group("value").is_none() {
        return Err(RuleError::InvalidRule {
            id: rule.id.clone(),
            key: "pattern",
            reason: "a numeric-decrease or numeric-increase pattern needs a `value` group"
                .to_owned(),
        });
    }
    let compile_all = |key: &'static str, texts: &[String]| -> Result<Vec<Regex>, RuleError> {
        texts
            .iter()
            .map(|text| build_regex(&[text]).map_err(|reason| bad(key, text, reason)))
            .collect()
    };
    let compile_optional = |key: &'static str, text: &Option<String>| {
        text.as_ref()
            .map(|text| build_regex(&[text]).map_err(|reason| bad(key, text, reason)))
            .transpose()
    };
    Ok(CompiledRule {
        include: None,
        exclude: None,
        value_group,
        name_group: group("name"),
        key_group: group("key"),
        pattern,
        matcher,
        confirm: compile_all("confirm", &rule.confirm)?,
        unless_file: compile_optional("unless_file", &rule.unless_file)?,
        unless_block: compile_optional("unless_block", &rule.unless_block)?,
        in_block: compile_optional("in_block", &rule.in_block)?,
        replaces: compile_optional("replaces", &rule.replaces)?,
        reject: {
            let mut reject = compile_all("reject", &rule.reject)?;
            if judges_code(rule.category) && rule.kind == RuleKind::Line {
                reject.push(
                    build_regex(&[COMMENT_LINE])
                        .map_err(|reason| bad("reject", COMMENT_LINE, reason))?,
                );
            }
            reject
        },
    })
}

/// Which side of the diff a line is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Added,
    Removed,
}

/// A match on a removed line, kept until the end of its file to see whether the same
/// line was added elsewhere in the file (a move, not a removal).
#[derive(Debug)]
struct PendingRemoval {
    rule: usize,
    line: u32,
    text_hash: u64,
    /// For a line of the gate's own configuration, the setting it held (`setting`).
    setting: Option<Setting>,
    excerpt: String,
    content: Vec<u8>,
    allowed: Option<String>,
}

#[derive(Debug, Default)]
struct NetCount {
    removed: u32,
    added: u32,
    first_line: u32,
    excerpt: String,
    content: Vec<u8>,
    /// What each removed line matched, the first `PENDING_PER_FILE` (`moved_checks`).
    removed_contents: Vec<Vec<u8>>,
}

#[derive(Debug)]
struct NumericValue {
    rule: usize,
    key: Vec<u8>,
    value: f64,
    line: u32,
    excerpt: String,
}

/// What one file accumulates while its lines are scanned.
#[derive(Debug, Default)]
struct FileState {
    /// Hashes of the file's added lines, filled before `finish_file` when it has removals
    /// to compare with them.
    added_hashes: HashSet<u64>,
    /// The settings the file's added lines hold, when a removed line of the gate's own
    /// configuration is to be compared with them.
    added_settings: Vec<Setting>,
    /// A list setting whose added lines are still open (`sinks = [` and its items).
    open_list: Option<Setting>,
    pending_removals: Vec<PendingRemoval>,
    net: HashMap<usize, NetCount>,
    numeric_old: Vec<NumericValue>,
    numeric_new: Vec<NumericValue>,
    /// Tables that added lines of the file create, lowercase, without quotes or schema.
    created_tables: Vec<Vec<u8>>,
}

/// Scratch space reused across lines of one scan.
#[derive(Debug)]
struct LineScratch {
    /// `marks[rule] == generation` marks the rule as a candidate for the current window.
    marks: Vec<u32>,
    /// `set_marks[set] == generation`: a literal of the prefilter set is on the line.
    set_marks: Vec<u32>,
    generation: u32,
    candidates: Vec<usize>,
    matched: PatternSet,
    /// Text offsets of the lines of the current run, and the literals found on them.
    run_lines: Vec<(usize, usize)>,
    run_hits: RunHits,
    /// The literals a run's search found, and the lines holding them with their text
    /// span and number (`place_literals`).
    found: Vec<Found>,
    hit_lines: Vec<(usize, usize, u32)>,
    /// A statement joined into one line after a `+` (`Scanner::scan_statement`), and
    /// the literals found on it.
    statement: Vec<u8>,
    statement_hits: RunHits,
    /// The current file's plan.
    file: FilePlan,
    /// The current line's candidates that may take a value from a name.
    sinks: Vec<usize>,
    /// Each rule's `LineMatcher` cache, made when the rule first runs.
    matcher_caches: Vec<Option<hybrid::dfa::Cache>>,
}

impl FileState {
    /// Notes an added line for the removed lines to be compared with; with
    /// `settings`, the setting it holds too (`setting`).
    fn add_line(&mut self, text: &[u8], settings: bool) {
        self.added_hashes.insert(text_hash(text));
        if !settings {
            return;
        }
        if let Some((key, mut value)) = self.open_list.take() {
            // An item line of a list written over several lines, up to its `]`.
            value.extend(setting_value(text));
            if value.len() > MAX_LIST_SETTING {
                return;
            }
            if brackets_closed(&value) {
                self.added_settings.push((key, value));
            } else {
                self.open_list = Some((key, value));
            }
        } else if let Some(setting) = setting(text) {
            if setting.1.starts_with(b"[") && !brackets_closed(&setting.1) {
                self.open_list = Some(setting);
            } else {
                self.added_settings.push(setting);
            }
        }
    }
}

impl LineScratch {
    /// A fresh generation: no rule or set marked.
    fn next_generation(&mut self) -> u32 {
        self.generation = self.generation.wrapping_add(1);
        if self.generation == 0 {
            self.marks.fill(0);
            self.set_marks.fill(0);
            self.generation = 1;
        }
        self.generation
    }
}

/// The facts about one file that the change-set rules need.
#[derive(Debug)]
struct FileSummary<'a> {
    path: &'a str,
    old_path: Option<&'a str>,
    new_path: Option<&'a str>,
    kind: FileChangeKind,
    added: usize,
    removed: usize,
    /// How many lines the file had, when the diff shows where it ended.
    old_lines: Option<usize>,
    /// A deleted file, or one most of whose lines go, whose lines the change adds
    /// elsewhere (`mark_moved`).
    moved: bool,
}

/// Everything one scan accumulates.
#[derive(Debug)]
struct ScanState {
    findings: Vec<Finding>,
    stats: ScanStats,
    max_findings: usize,
    gate_paths: Vec<String>,
    /// Thresholds removed from a file without a replacement there, each with its rule, key
    /// and value: reported at the end unless another file sets them as high.
    thresholds_removed: Vec<(Finding, usize, Vec<u8>, f64)>,
    /// Every threshold the change adds: rule, key, value.
    thresholds_added: Vec<(usize, Vec<u8>, f64)>,
    /// Checks removed from a CI file, with the commands matched (`moved_checks`).
    checks_removed: Vec<(Finding, Vec<Vec<u8>>)>,
    /// Findings a line moved within the change does not make, with their line's side
    /// and hash: test-weakening markers added (a skip, an `only`), and schema-contract
    /// lines added or removed (an entity's annotations moved with its class). Reported
    /// at the end unless the change has the same line on the other side (`moved_lines`).
    movable: Vec<(Finding, Side, u64)>,
}

impl ScanState {
    fn new(options: &ScanOptions) -> ScanState {
        ScanState {
            findings: Vec::new(),
            stats: ScanStats::default(),
            max_findings: options.max_findings,
            gate_paths: options.gate_paths.clone(),
            thresholds_removed: Vec::new(),
            thresholds_added: Vec::new(),
            checks_removed: Vec::new(),
            movable: Vec::new(),
        }
    }

    fn push(&mut self, finding: Finding) {
        if self.findings.len() < self.max_findings {
            self.findings.push(finding);
        } else {
            self.stats.findings_truncated = true;
        }
    }

    fn full(&self) -> bool {
        self.findings.len() >= self.max_findings
    }
}

/// A hash of a line's words: lines that differ only in their whitespace (re-indented,
/// re-aligned) or a trailing comma hash alike. The words are hashed one space apart, the trimmed line in
/// one piece when it is so already (most are); the keys are the process's own, so that
/// a change cannot be crafted to make a line it adds hash as one it removes.
fn text_hash(text: &[u8]) -> u64 {
    static KEYS: OnceLock<RandomState> = OnceLock::new();
    let mut hasher = KEYS.get_or_init(RandomState::new).build_hasher();
    // A list item gains a comma when another is appended after it.
    let text = text.trim_ascii();
    let text = text.strip_suffix(b",").unwrap_or(text).trim_ascii_end();
    let spaced = text
        .windows(2)
        .all(|pair| !pair[1].is_ascii_whitespace() || (pair[1] == b' ' && pair[0] != b' '));
    if spaced {
        hasher.write(text);
    } else {
        let words = text
            .split(u8::is_ascii_whitespace)
            .filter(|word| !word.is_empty());
        for (index, word) in words.enumerate() {
            if index > 0 {
                hasher.write_u8(b' ');
            }
            hasher.write(word);
        }
    }
    hasher.finish()
}

impl Scanner {
    /// Compiles every rule of `pack`. Fails naming the rule and the pattern that does not
    /// compile, or the numeric rule without a `value` group.
    pub fn new(pack: &RulePack) -> Result<Scanner, RuleError> {
        let rules = pack.rules().to_vec();
        let mut compiled = rules
            .iter()
            .map(compile_rule)
            .collect::<Result<Vec<_>, _>>()?;
        // Many rules share a glob list (CI files, test files, one language); each list
        // is matched once per file.
        let mut glob_lists: Vec<GlobList<'_>> = Vec::new();
        let mut glob_index: HashMap<&[String], usize> = HashMap::new();
        for (rule, compiled_rule) in rules.iter().zip(&mut compiled) {
            for (key, globs) in [
                ("paths", &rule.paths),
                ("exclude_paths", &rule.exclude_paths),
            ] {
                if globs.is_empty() {
                    continue;
                }
                let index = *glob_index.entry(globs.as_slice()).or_insert_with(|| {
                    glob_lists.push((rule, key, globs));
                    glob_lists.len() - 1
                });
                if key == "paths" {
                    compiled_rule.include = Some(index);
                } else {
                    compiled_rule.exclude = Some(index);
                }
            }
        }
        let path_globs = path_globs(&glob_lists)?;
        let mut keyword_index: HashMap<&str, usize> = HashMap::new();
        let mut keyword_list: Vec<&str> = Vec::new();
        let mut keyword_rules: Vec<Vec<usize>> = Vec::new();
        let mut keywordless_rules = Vec::new();
        let mut patterns: Vec<&str> = Vec::new();
        let mut pattern_rules = Vec::new();
        for (index, rule) in rules.iter().enumerate() {
            let Some(pattern) = rule.pattern.as_deref() else {
                continue;
            };
            patterns.push(pattern);
            pattern_rules.push(index);
            if rule.keywords.is_empty() {
                keywordless_rules.push(index);
            }
            for keyword in &rule.keywords {
                let slot = *keyword_index.entry(keyword.as_str()).or_insert_with(|| {
                    keyword_list.push(keyword.as_str());
                    keyword_rules.push(Vec::new());
                    keyword_list.len() - 1
                });
                keyword_rules[slot].push(index);
            }
        }
        let keywords = AhoCorasickBuilder::new()
            .ascii_case_insensitive(true)
            .build(&keyword_list)
            .map_err(|error| RuleError::InvalidRule {
                id: "(all rules)".to_owned(),
                key: "keywords",
                reason: error.to_string(),
            })?;
        let all_patterns = build_set(&patterns).map_err(|reason| RuleError::BadPattern {
            id: "(all rules)".to_owned(),
            key: "pattern",
            pattern: "(the combined pattern set)".to_owned(),
            reason,
        })?;
        let prefilter = Prefilter::new(&rules);
        let create_table_rule = rules.iter().position(|rule| rule.id == CREATE_TABLE_RULE);
        let drop_table_rule = rules.iter().position(|rule| rule.id == DROP_TABLE_RULE);
        let gate_rules = (0..rules.len())
            .filter(|&rule| GATE_RULES.contains(&rules[rule].id.as_str()))
            .collect();
        let other_policy_rule = rules.iter().position(|rule| rule.id == OTHER_POLICY_RULE);
        let gate_line_rule = rules.iter().position(|rule| rule.id == GATE_LINE_RULE);
        let unless_file_rules = (0..rules.len())
            .filter(|&rule| rules[rule].unless_file.is_some())
            .collect();
        let line_rules_by_change = (0..rules.len())
            .filter(|&rule| rules[rule].kind != RuleKind::File && !rules[rule].changes.is_empty())
            .collect();
        Ok(Scanner {
            rules,
            compiled,
            keywords,
            keyword_rules,
            keywordless_rules,
            all_patterns,
            pattern_rules,
            prefilter,
            path_globs,
            create_table_rule,
            drop_table_rule,
            gate_rules,
            other_policy_rule,
            gate_line_rule,
            unless_file_rules,
            line_rules_by_change,
            scratch_pool: Mutex::new(Vec::new()),
        })
    }

    /// The rules this scanner applies.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Scans one unified diff.
    ///
    /// An empty (or blank) input is an empty change: no findings. Anything else that is
    /// not a diff, or a diff larger than `options.max_input_bytes`, is an error. Time is
    /// linear in the input and memory is bounded by the parsed diff plus
    /// `options.max_findings` findings.
    pub fn scan(&self, diff: &[u8], options: &ScanOptions) -> Result<ScanReport, ScanError> {
        self.scan_in(diff, options, None)
    }

    /// Scans one unified diff as `scan` does and, given the tree the change applies to,
    /// also checks the SQL statements of the added lines against the schema that tree's
    /// SQL files declare (`schema-contract.unknown-column`).
    pub fn scan_in(
        &self,
        diff: &[u8],
        options: &ScanOptions,
        base: Option<&dyn BaseTree>,
    ) -> Result<ScanReport, ScanError> {
        if let Some(early) = early_report(diff, options) {
            return early;
        }
        let patch = airlock_diff::parse_runs(diff).map_err(ScanError::Parse)?;
        let mut state = ScanState::new(options);
        let mut scratch = self.take_scratch();
        let mut summaries: Vec<FileSummary<'_>> = patch
            .files
            .iter()
            .map(|file| self.scan_file(diff, file, &mut scratch, &mut state))
            .collect();
        let lines = |index: usize| changed_lines(diff, &patch.files[index].runs).collect();
        mark_moved(&mut summaries, lines);
        self.drop_moved_deletions(&summaries, &options.gate_paths, &mut state);
        moved_checks(&summaries, &mut state, lines);
        moved_lines(&summaries, &mut state, lines);
        if let Some(base) = base {
            self.unknown_columns(diff, &patch.files, base, options, &mut scratch, &mut state);
        }
        self.return_scratch(scratch);
        self.finish_scan(&summaries, options, base, state)
    }

    /// `schema-contract.unknown-column` (and any rule of its kind): the added lines of
    /// the files it applies to, checked against the base tree's schema. The schema is
    /// read only when the change adds a line that may hold a statement.
    fn unknown_columns(
        &self,
        input: &[u8],
        files: &[FileRuns],
        base: &dyn BaseTree,
        options: &ScanOptions,
        scratch: &mut LineScratch,
        state: &mut ScanState,
    ) {
        let rules: Vec<usize> = (0..self.rules.len())
            .filter(|&rule| self.rules[rule].kind == RuleKind::UnknownColumn)
            .collect();
        if rules.is_empty() {
            return;
        }
        let migration_dirs = migration_dirs(&options.migration_dirs);
        let mut schema: Option<Option<Schema>> = None;
        let mut plan = std::mem::take(&mut scratch.file);
        for file in files.iter().filter(|file| !file.binary) {
            let path = file.path();
            self.fill_applies(
                path,
                file.old_path.as_deref(),
                file.kind,
                &options.gate_paths,
                &mut plan,
            );
            for &rule in rules.iter().filter(|&&rule| plan.applies[rule]) {
                for run in &file.runs {
                    let mut number = run.new_line;
                    for (start, end) in raw_lines(input, run.span.clone()) {
                        if input[start] != b'+' {
                            continue;
                        }
                        let text = &input[start + 1..end];
                        let line = number;
                        number = number.saturating_add(1);
                        if !may_hold_statement(text) {
                            continue;
                        }
                        let schema = schema.get_or_insert_with(|| {
                            Schema::from_tree(base, |path| is_migration_path(path, &migration_dirs))
                        });
                        let Some(schema) = schema else {
                            scratch.file = plan;
                            return;
                        };
                        for column in schema.unknown_columns(&String::from_utf8_lossy(text)) {
                            let mut finding = self.finding(rule, path, line, column.as_bytes());
                            finding.preview =
                                Some(format!("{column} is not in the base tree's schema"));
                            state.push(finding);
                        }
                    }
                }
            }
        }
        scratch.file = plan;
    }

    /// Scratch space from the pool, or new.
    fn take_scratch(&self) -> LineScratch {
        let pooled = self
            .scratch_pool
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .pop();
        pooled.unwrap_or_else(|| self.scratch())
    }

    /// Keeps scratch space for the next scan; at most one per thread that scans at
    /// once, so the pool holds no more than were ever in use together.
    fn return_scratch(&self, scratch: LineScratch) {
        self.scratch_pool
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(scratch);
    }

    fn scratch(&self) -> LineScratch {
        LineScratch {
            matcher_caches: (0..self.rules.len()).map(|_| None).collect(),
            sinks: Vec::new(),
            marks: vec![0; self.rules.len()],
            set_marks: vec![0; self.prefilter.set_count()],
            generation: 0,
            candidates: Vec::new(),
            matched: PatternSet::new(self.all_patterns.pattern_len()),
            run_lines: Vec::new(),
            run_hits: Vec::new(),
            found: Vec::new(),
            hit_lines: Vec::new(),
            statement: Vec::new(),
            statement_hits: Vec::new(),
            file: FilePlan::default(),
        }
    }

    /// The change-set rules, then the migration exemption, allowlists, order and
    /// duplicates: everything after the files have been read.
    fn finish_scan(
        &self,
        files: &[FileSummary<'_>],
        options: &ScanOptions,
        base: Option<&dyn BaseTree>,
        mut state: ScanState,
    ) -> Result<ScanReport, ScanError> {
        for (finding, rule, key, value) in std::mem::take(&mut state.thresholds_removed) {
            let kept = state
                .thresholds_added
                .iter()
                .any(|(added_rule, added_key, added)| {
                    *added_rule == rule && *added_key == key && *added >= value
                });
            if !kept {
                state.push(finding);
            }
        }
        feature_removed_with_tests(files, &mut state.findings);
        self.mass_deletion(files, options, base, &mut state);
        let mut findings = state.findings;
        let unless_migration = |finding: &Finding| {
            self.rules
                .iter()
                .any(|rule| rule.id == finding.rule && rule.unless_migration)
        };
        // Most scans have no finding a migration would clear: the paths are only read
        // for those that do.
        if findings.iter().any(unless_migration) {
            let migration_dirs = migration_dirs(&options.migration_dirs);
            let migration_in_change = files.iter().any(|file| {
                [file.old_path, file.new_path]
                    .into_iter()
                    .flatten()
                    .any(|path| is_migration_path(path, &migration_dirs))
            });
            if migration_in_change {
                findings.retain(|finding| !unless_migration(finding));
            }
        }
        apply_allowlists(&mut findings, options)?;
        findings.sort_by(|a, b| {
            (&a.path, a.line, &a.rule, &a.fingerprint).cmp(&(
                &b.path,
                b.line,
                &b.rule,
                &b.fingerprint,
            ))
        });
        findings.dedup_by(|a, b| {
            a.rule == b.rule
                && a.path == b.path
                && a.line == b.line
                && a.fingerprint == b.fingerprint
        });
        Ok(ScanReport {
            findings,
            stats: state.stats,
        })
    }

    fn finding(&self, rule: usize, path: &str, line: u32, content: &[u8]) -> Finding {
        let rule_data = &self.rules[rule];
        Finding {
            rule: rule_data.id.clone(),
            category: rule_data.category,
            severity: rule_data.severity,
            path: path.to_owned(),
            line,
            message: rule_data.message.clone(),
            remediation: rule_data.remediation.clone(),
            fingerprint: fingerprint(&rule_data.id, path, content),
            preview: None,
            allowed: None,
        }
    }

    /// Which rules apply to a file: its path passes the rule's globs or, for a rename or
    /// copy, its old path does, and a line rule's `changes` take the file's change. A
    /// configured gate file (`gate_paths`) is one of the files the gate's own rules
    /// watch, and not reported as any policy. Fills `plan.applies`.
    fn fill_applies(
        &self,
        path: &str,
        old_path: Option<&str>,
        kind: FileChangeKind,
        gate_paths: &[String],
        plan: &mut FilePlan,
    ) {
        plan.applies.clear();
        plan.applies.resize(self.rules.len(), false);
        self.add_path_rules(path, plan);
        if let Some(old) = old_path.filter(|old| *old != path) {
            self.add_path_rules(old, plan);
        }
        if is_gate_path(path, gate_paths)
            || old_path.is_some_and(|old| is_gate_path(old, gate_paths))
        {
            for &rule in &self.gate_rules {
                plan.applies[rule] = true;
            }
            if let Some(rule) = self.other_policy_rule {
                plan.applies[rule] = false;
            }
        }
        let change = ChangeKind::from(kind);
        for &rule in &self.line_rules_by_change {
            let rule_data = &self.rules[rule];
            plan.applies[rule] &= rule_data.changes.contains(&change);
        }
    }

    /// Marks in `plan.applies` the rules whose `paths` and `exclude_paths` let them apply
    /// to `path`.
    fn add_path_rules(&self, path: &str, plan: &mut FilePlan) {
        self.path_globs.matching(path, &mut plan.glob_matches);
        for (slot, compiled) in plan.applies.iter_mut().zip(&self.compiled) {
            *slot |= compiled.applies_to(&plan.glob_matches);
        }
    }

    /// Findings of the `file` rules for one file patch. A file renamed to a path a rule
    /// does not watch is gone from the place it watched: the rule's `deleted` fires too
    /// (a workflow, a test file or airlock.toml moved aside); so it does for a configured
    /// gate file moved anywhere else, since airlock reads it at its one path.
    fn file_rules(
        &self,
        path: &str,
        old_path: Option<&str>,
        kind: FileChangeKind,
        applies: &[bool],
        state: &mut ScanState,
    ) {
        let change = ChangeKind::from(kind);
        let moved_from = old_path.filter(|old| change == ChangeKind::Renamed && *old != path);
        for (index, rule) in self.rules.iter().enumerate() {
            if rule.kind != RuleKind::File || !applies[index] {
                continue;
            }
            let (change, preview) = if rule.changes.is_empty() || rule.changes.contains(&change) {
                (change, format!("{} {path}", change_verb(change)))
            } else if let Some(old) = moved_from
                && rule.changes.contains(&ChangeKind::Deleted)
                && (!self.watches(index, path, &state.gate_paths)
                    || (is_gate_path(old, &state.gate_paths)
                        && !is_gate_path(path, &state.gate_paths)))
            {
                (ChangeKind::Deleted, format!("moved {old} to {path}"))
            } else {
                continue;
            };
            let mut finding = self.finding(index, path, 0, format!("{change:?}").as_bytes());
            finding.preview = Some(preview);
            state.push(finding);
        }
    }

    /// Whether `rule` applies to `path`: by its globs, or as a rule of the gate's own
    /// files on a configured gate file.
    fn watches(&self, rule: usize, path: &str, gate_paths: &[String]) -> bool {
        let compiled = &self.compiled[rule];
        let mut matched = GlobMatches::default();
        self.path_globs.matching(path, &mut matched);
        compiled.applies_to(&matched)
            || (is_gate_path(path, gate_paths) && self.gate_rules.contains(&rule))
    }

    /// Whether a match of `rule` on a line of this side counts for anything.
    fn counts_on_side(&self, rule: usize, side: Side) -> bool {
        let rule_data = &self.rules[rule];
        match side {
            Side::Added => {
                rule_data.lines.added() || rule_data.net || rule_data.kind.compares_numbers()
            }
            Side::Removed => rule_data.lines.removed() || rule_data.kind.compares_numbers(),
        }
    }

    /// Scans one file's runs of changed lines. A run is searched in one go for the
    /// triggers of the rules that apply to the file; only the lines holding one are
    /// looked at further, found from the literal's place in the input. A run with a line
    /// longer than `WINDOW`, or in a file with rules the prefilter cannot rule out on any
    /// line, is scanned line by line instead.
    fn scan_file<'a>(
        &self,
        input: &[u8],
        file: &'a FileRuns,
        scratch: &mut LineScratch,
        state: &mut ScanState,
    ) -> FileSummary<'a> {
        let path = file.path();
        state.stats.files += 1;
        let summary = FileSummary {
            path,
            old_path: file.old_path.as_deref(),
            new_path: file.new_path.as_deref(),
            kind: file.kind,
            added: file.lines_added(),
            removed: file.lines_removed(),
            old_lines: file.old_lines.map(|lines| lines as usize),
            moved: false,
        };
        let mut plan = std::mem::take(&mut scratch.file);
        self.fill_applies(
            path,
            file.old_path.as_deref(),
            file.kind,
            &state.gate_paths,
            &mut plan,
        );
        self.file_rules(
            path,
            file.old_path.as_deref(),
            file.kind,
            &plan.applies,
            state,
        );
        if file.binary {
            state.stats.binary_files += 1;
            scratch.file = plan;
            return summary;
        }
        plan.fill(self);
        let first = state.findings.len();
        state.stats.added_lines += summary.added as u64;
        state.stats.removed_lines += summary.removed as u64;
        let line_by_line = !plan.always_added.is_empty() || !plan.always_removed.is_empty();
        let mut file_state = FileState::default();
        for run in &file.runs {
            let mut scan = RunScan {
                input,
                path,
                run,
                plan: &plan,
                file_state: &mut file_state,
            };
            if state.full() {
                // Every line of the run would only mark the report truncated.
                state.stats.findings_truncated = true;
            } else if line_by_line || has_long_line(input, run) {
                self.scan_run_lines(&mut scan, scratch, state);
            } else {
                self.scan_run_hits(&mut scan, scratch, state);
            }
        }
        scratch.file = plan;
        if !file_state.pending_removals.is_empty() {
            // Only removals are ever compared with the added lines; most files have none
            // pending, so the added lines are hashed only when needed.
            let settings = file_state
                .pending_removals
                .iter()
                .any(|pending| pending.setting.is_some());
            for (_, text) in changed_lines(input, &file.runs).filter(|(added, _)| *added) {
                file_state.add_line(text, settings);
            }
        }
        self.finish_file(path, file_state, state);
        self.drop_unless_file(first, state, || {
            changed_lines(input, &file.runs)
                .filter(|(added, _)| *added)
                .map(|(_, text)| text)
                .collect()
        });
        summary
    }

    /// Drops the findings of `file` rules on deleting a file (`test-file-deleted`) for a
    /// deleted file whose code the change adds again (`FileSummary::moved`) in a file the
    /// same rule watches: a test file moved to another directory, shown as a deletion
    /// and an addition, deletes no test.
    fn drop_moved_deletions(
        &self,
        summaries: &[FileSummary<'_>],
        gate_paths: &[String],
        state: &mut ScanState,
    ) {
        for summary in summaries {
            if summary.kind != FileChangeKind::Deleted || !summary.moved {
                continue;
            }
            let kept = |rule: usize| {
                summaries.iter().any(|other| {
                    other.kind != FileChangeKind::Deleted
                        && other.added > 0
                        && self.watches(rule, other.path, gate_paths)
                })
            };
            state.findings.retain(|finding| {
                let Some(index) = self.rules.iter().position(|rule| rule.id == finding.rule) else {
                    return true;
                };
                let rule = &self.rules[index];
                finding.path != summary.path
                    || rule.kind != RuleKind::File
                    || !rule.changes.contains(&ChangeKind::Deleted)
                    || !kept(index)
            });
        }
    }

    /// The findings of one file from `first` on, less those of rules that do not apply
    /// to a file with an added line matching their `unless_file` (a SealedSecret's
    /// ciphertext is meant to be committed). `added`: the file's added lines.
    fn drop_unless_file<'a>(
        &self,
        first: usize,
        state: &mut ScanState,
        added: impl FnOnce() -> Vec<&'a [u8]>,
    ) {
        let unless = |finding: &Finding| {
            self.unless_file_rules
                .iter()
                .find(|&&rule| self.rules[rule].id == finding.rule)
        };
        if self.unless_file_rules.is_empty()
            || !state.findings[first..]
                .iter()
                .any(|finding| unless(finding).is_some())
        {
            return;
        }
        let added = added();
        let excluded: Vec<usize> = self
            .unless_file_rules
            .iter()
            .copied()
            .filter(|&rule| {
                let regex = self.compiled[rule].unless_file.as_ref();
                regex.is_some_and(|regex| added.iter().any(|line| regex.is_match(*line)))
            })
            .collect();
        let mut index = first;
        while index < state.findings.len() {
            if unless(&state.findings[index]).is_some_and(|rule| excluded.contains(rule)) {
                state.findings.remove(index);
            } else {
                index += 1;
            }
        }
    }

    /// Scans a run through its lines that hold a trigger literal of a rule that counts
    /// on their side: the search reports each literal with its place, which names its
    /// line; the run's other lines cost nothing more. The counters come out as if every
    /// line had been scanned one by one.
    fn scan_run_hits(
        &self,
        scan: &mut RunScan<'_>,
        scratch: &mut LineScratch,
        state: &mut ScanState,
    ) {
        let (input, run) = (scan.input, scan.run);
        let Some(searcher) = &scan.plan.searcher else {
            state.stats.bytes_scanned += run.text_bytes;
            return;
        };
        let mut found = std::mem::take(&mut scratch.found);
        found.clear();
        searcher.search(&self.prefilter, input, run.span.clone(), &mut found);
        let mut hits = std::mem::take(&mut scratch.run_hits);
        let mut lines = std::mem::take(&mut scratch.hit_lines);
        place_literals(input, run, &found, &mut lines, &mut hits);
        scratch.found = found;
        let mut next_hit = 0;
        let mut bytes = run.text_bytes;
        for (position, &(text_start, text_end, number)) in lines.iter().enumerate() {
            let count = hits[next_hit..]
                .iter()
                .take_while(|(hit_line, _)| *hit_line as usize == position)
                .count();
            let line_hits = &hits[next_hit..next_hit + count];
            next_hit += count;
            let side = match input[text_start - 1] {
                b'+' => Side::Added,
                _ => Side::Removed,
            };
            if !self.line_candidates(side, line_hits, scan.plan, scratch) {
                continue;
            }
            let line = LineAt {
                path: scan.path,
                text: &input[text_start..text_end],
                around: Around::in_run(input, run, side, text_start..text_end),
                side,
                number,
            };
            self.confirm_candidates(&line, line_hits, scratch, scan.file_state, state, None);
            self.scan_statement(&line, scan.plan, scratch, scan.file_state, state);
            if state.full() {
                // Line by line, the lines after this one would each only mark the report
                // truncated, their bytes not scanned.
                bytes = raw_lines(input, run.span.start..text_end)
                    .map(|(start, end)| (end - start - 1) as u64)
                    .sum();
                if text_end < run.span.end {
                    state.stats.findings_truncated = true;
                }
                break;
            }
        }
        state.stats.bytes_scanned += bytes;
        scratch.run_hits = hits;
        scratch.hit_lines = lines;
    }

    /// Scans a run one line at a time, every line through `scan_candidates`: for runs
    /// with a long line, and files with rules that are candidates on every line.
    fn scan_run_lines(
        &self,
        scan: &mut RunScan<'_>,
        scratch: &mut LineScratch,
        state: &mut ScanState,
    ) {
        let (input, run) = (scan.input, scan.run);
        let mut hits = std::mem::take(&mut scratch.run_hits);
        hits.clear();
        scratch.run_lines.clear();
        scratch
            .run_lines
            .extend(raw_lines(input, run.span.clone()).map(|(start, end)| (start + 1, end)));
        if let Some(searcher) = &scan.plan.searcher {
            searcher.scan_run(&self.prefilter, input, &scratch.run_lines, &mut hits);
        }
        let mut new_line = run.new_line;
        let mut next_hit = 0;
        for position in 0..scratch.run_lines.len() {
            let (text_start, text_end) = scratch.run_lines[position];
            let count = hits[next_hit..]
                .iter()
                .take_while(|(hit_line, _)| *hit_line as usize == position)
                .count();
            let line_hits = &hits[next_hit..next_hit + count];
            next_hit += count;
            let text = &input[text_start..text_end];
            let side = match input[text_start - 1] {
                b'+' => Side::Added,
                _ => Side::Removed,
            };
            let line = LineAt {
                path: scan.path,
                text,
                around: Around::in_run(input, run, side, text_start..text_end),
                side,
                number: new_line,
            };
            self.scan_candidates(line, line_hits, scan.plan, scratch, scan.file_state, state);
            if side == Side::Added {
                new_line = new_line.saturating_add(1);
            }
        }
        scratch.run_hits = hits;
    }

    /// Scans one changed line: the rules the prefilter names for it (`hits`), and the
    /// rules it cannot rule out, are confirmed exactly. A line longer than `WINDOW` goes
    /// to the plain engine, window by window.
    fn scan_candidates(
        &self,
        line: LineAt<'_>,
        hits: &[(u32, u32)],
        plan: &FilePlan,
        scratch: &mut LineScratch,
        file_state: &mut FileState,
        state: &mut ScanState,
    ) {
        let text = line.text;
        if text.len() > WINDOW {
            self.scan_line(&line, &plan.applies, scratch, file_state, state);
            return;
        }
        if state.full() {
            state.stats.findings_truncated = true;
            return;
        }
        state.stats.bytes_scanned += text.len() as u64;
        if self.line_candidates(line.side, hits, plan, scratch) {
            self.confirm_candidates(&line, hits, scratch, file_state, state, None);
            self.scan_statement(&line, plan, scratch, file_state, state);
        }
    }

    /// Fills `scratch.candidates` with the rules the literals found on a line (`hits`)
    /// trigger and the rules never ruled out, those that count on the line's side, in
    /// rule order; whether there is any.
    fn line_candidates(
        &self,
        side: Side,
        hits: &[(u32, u32)],
        plan: &FilePlan,
        scratch: &mut LineScratch,
    ) -> bool {
        let (side_rules, always) = match side {
            Side::Added => (&plan.added, &plan.always_added),
            Side::Removed => (&plan.removed, &plan.always_removed),
        };
        let generation = scratch.next_generation();
        scratch.candidates.clear();
        for &(_, literal) in hits {
            for &set in self.prefilter.literal_sets(literal) {
                if scratch.set_marks[set as usize] == generation {
                    continue;
                }
                scratch.set_marks[set as usize] = generation;
                for &rule in self.prefilter.set_rules(set) {
                    if side_rules[rule] && scratch.marks[rule] != generation {
                        scratch.marks[rule] = generation;
                        scratch.candidates.push(rule);
                    }
                }
            }
        }
        scratch.candidates.extend_from_slice(always);
        // The plain engine confirms rules in rule order; so does this, so that findings
        // beyond `max_findings` are dropped alike.
        scratch.candidates.sort_unstable();
        !scratch.candidates.is_empty()
    }

    /// Runs the candidate rules of `scratch.candidates` on a line: the rule's other
    /// literal checks, then its regexes. With `touching`, the line is a statement
    /// joined from several or read with values in place of names (`scan_statement`):
    /// only the rules that read statements run, and a match counts only where it
    /// overlaps `touching` (for an empty range at `b`: starts before `b` and ends after
    /// it), and while the rule has not reported the line.
    fn confirm_candidates(
        &self,
        line: &LineAt<'_>,
        hits: &[(u32, u32)],
        scratch: &mut LineScratch,
        file_state: &mut FileState,
        state: &mut ScanState,
        touching: Option<&Range<usize>>,
    ) {
        let text = line.text;
        for &rule in &scratch.candidates {
            if touching.is_some()
                && (!self.reads_statements(rule) || self.reported(rule, line, state))
            {
                continue;
            }
            let rule_plan = &self.prefilter.plans[rule];
            if let Some(keywords) = &rule_plan.keywords {
                let implied = hits
                    .iter()
                    .any(|(_, literal)| rule_plan.keyword_literals.binary_search(literal).is_ok());
                if !implied && !keywords.is_match(text) {
                    continue;
                }
            }
            if !rule_plan.also.iter().all(|check| check.is_match(text)) {
                continue;
            }
            let compiled = &self.compiled[rule];
            let (Some(pattern), Some(matcher)) = (&compiled.pattern, &compiled.matcher) else {
                continue;
            };
            let matches = matcher
                .is_match(&mut scratch.matcher_caches[rule], text)
                .unwrap_or_else(|| pattern.is_match(text));
            if matches {
                self.confirm(rule, line, text, touching, file_state, state);
            }
        }
    }

    /// Whether a rule is matched on statements joined from several lines too: the rules
    /// that report a line matching them, not those that count or compare lines.
    fn reads_statements(&self, rule: usize) -> bool {
        let rule = &self.rules[rule];
        rule.kind == RuleKind::Line && !rule.net
    }

    /// A statement that goes on past an added line (an open bracket, a trailing `+`,
    /// `,` or `\`, a next line starting with `)` or `WHERE`...) is read again, joined into
    /// one line with the lines that continue it in the new file (`join_statement`). Only
    /// called for a line with candidates of its own: the fast path visits no other.
    /// The rules the statement's literals trigger are matched on it, and a match that
    /// starts on the first line and ends past it is reported on the first line, unless
    /// the rule already reported that line. So a call whose dangerous argument sits on
    /// the next line (`fmt.Sprintf(` then the SQL, `jwt.sign(` then the key) is judged
    /// as the statement it is.
    ///
    /// A statement that starts on an added line above, one without candidates of its own
    /// (`db.query(\`` then the SQL and its values), is read from there too
    /// (`Around::statement_start`). And a call whose arguments are names assigned just
    /// above is read with their values in their place (`scan_substituted`).
    fn scan_statement(
        &self,
        line: &LineAt<'_>,
        plan: &FilePlan,
        scratch: &mut LineScratch,
        file_state: &mut FileState,
        state: &mut ScanState,
    ) {
        if line.side != Side::Added || line.text.len() > WINDOW || state.full() {
            return;
        }
        // The line's own candidates that may take a value from a name
        // (`scan_substituted`), before the statement's replace them.
        scratch.sinks.clear();
        scratch.sinks.extend(
            scratch.candidates.iter().copied().filter(|&rule| {
                self.reads_statements(rule) && judges_code(self.rules[rule].category)
            }),
        );
        self.scan_statement_from(line, plan, scratch, file_state, state);
        if let Some((text, around, back)) = line.around.statement_start(line.text) {
            // Read from each line that continues it, or from its first line already if
            // that has candidates of its own: the same match is reported once
            // (`reported`).
            if text.len() <= WINDOW {
                let first = LineAt {
                    path: line.path,
                    text,
                    around,
                    side: Side::Added,
                    number: line.number.saturating_sub(back),
                };
                self.scan_statement_from(&first, plan, scratch, file_state, state);
            }
        }
        self.scan_substituted(line, scratch, file_state, state);
    }

    /// Reads the statement that starts with the added line `line`, when it goes on past
    /// it (`scan_statement`).
    fn scan_statement_from(
        &self,
        line: &LineAt<'_>,
        plan: &FilePlan,
        scratch: &mut LineScratch,
        file_state: &mut FileState,
        state: &mut ScanState,
    ) {
        let mut statement = std::mem::take(&mut scratch.statement);
        if join_statement(line.text, line.around.following(), &mut statement) {
            // The statement's own literals name its candidates: a rule's trigger may sit
            // on a line that continues it (`cors({` then `credentials: true`).
            let mut hits = std::mem::take(&mut scratch.statement_hits);
            hits.clear();
            if let Some(searcher) = &plan.searcher {
                let text = (1, statement.len());
                searcher.scan_run(&self.prefilter, &statement, &[text], &mut hits);
            }
            if self.line_candidates(Side::Added, &hits, plan, scratch) {
                let joined = LineAt {
                    path: line.path,
                    text: &statement[1..],
                    // Its first line's: for an `airlock:allow` above it.
                    around: line.around,
                    side: line.side,
                    number: line.number,
                };
                let boundary = line.text.len();
                let crossing = boundary..boundary;
                self.confirm_candidates(
                    &joined,
                    &hits,
                    scratch,
                    file_state,
                    state,
                    Some(&crossing),
                );
            }
            scratch.statement_hits = hits;
        }
        scratch.statement = statement;
    }

    /// A call whose arguments are names that the added lines just above assign (`root
    /// = settings.MEDIA_ROOT`, then `shutil.rmtree(root)`), or parameters of the function
    /// around it that a call in the hunk passes values for (`def reset(root):` …
    /// `reset(settings.MEDIA_ROOT)`), is read again with each value in its name's place:
    /// a value held in a variable is judged as if written in the call. The rules read it
    /// with are the line's own candidates of the code categories (`scratch.sinks`): the
    /// call is on this line; a rule the value alone triggers judges the line that assigns
    /// it. Only matches that touch a value count.
    fn scan_substituted(
        &self,
        line: &LineAt<'_>,
        scratch: &mut LineScratch,
        file_state: &mut FileState,
        state: &mut ScanState,
    ) {
        if scratch.sinks.is_empty() {
            return;
        }
        let text = line.text;
        let names = bare_arguments(text).count().min(SUBSTITUTIONS);
        if names == 0 {
            return;
        }
        // Without allocating: this runs on many lines, and finds values on few.
        let mut values: [(&[u8], &[u8]); SUBSTITUTIONS] = [(&[], &[]); SUBSTITUTIONS];
        let mut found = 0;
        let mut reach = SUBSTITUTION_REACH;
        line.around.changed_before(|prefix, earlier, _| {
            reach -= 1;
            if prefix == b'+'
                && let Some((name, value)) = assignment(earlier)
                && bare_arguments(text).any(|range| &text[range] == name)
                && !values[..found].iter().any(|(known, _)| *known == name)
            {
                values[found] = (name, value);
                found += 1;
            }
            found < names && reach > 0
        });
        if found < names
            && let Some((function, parameters)) = line.around.enclosing_definition(text)
        {
            // Names that are parameters of the function around the call take the values
            // a call of it in the hunk passes (`resetUploads(config.uploadsDir)`).
            for (index, parameter) in split_arguments(parameters).enumerate() {
                let parameter = parameter_name(parameter);
                if found < SUBSTITUTIONS
                    && !parameter.is_empty()
                    && bare_arguments(text).any(|range| &text[range] == parameter)
                    && !values[..found].iter().any(|(known, _)| *known == parameter)
                    && let Some(value) = line.around.call_argument(function, index)
                {
                    values[found] = (parameter, value);
                    found += 1;
                }
            }
        }
        let values = &values[..found];
        if values.is_empty() {
            return;
        }
        let mut rewritten = std::mem::take(&mut scratch.statement);
        rewritten.clear();
        let mut touching: Option<Range<usize>> = None;
        let mut copied = 0;
        for range in bare_arguments(text) {
            let Some((_, value)) = values
                .iter()
                .find(|(name, _)| *name == &text[range.clone()])
            else {
                continue;
            };
            rewritten.extend_from_slice(&text[copied..range.start]);
            let start = rewritten.len();
            rewritten.extend_from_slice(value);
            let end = rewritten.len();
            touching = Some(touching.map_or(start..end, |seen| seen.start..end));
            copied = range.end;
        }
        rewritten.extend_from_slice(&text[copied..]);
        if let Some(touching) = touching
            && rewritten.len() <= WINDOW
        {
            let reread = LineAt {
                path: line.path,
                text: &rewritten,
                around: line.around,
                side: line.side,
                number: line.number,
            };
            scratch.candidates.clone_from(&scratch.sinks);
            self.confirm_candidates(&reread, &[], scratch, file_state, state, Some(&touching));
        }
        scratch.statement = rewritten;
    }

    fn scan_line(
        &self,
        line: &LineAt<'_>,
        applies: &[bool],
        scratch: &mut LineScratch,
        file_state: &mut FileState,
        state: &mut ScanState,
    ) {
        if state.full() {
            state.stats.findings_truncated = true;
            return;
        }
        let text = line.text;
        state.stats.bytes_scanned += text.len() as u64;
        if text.len() > WINDOW {
            state.stats.long_lines += 1;
        }
        let mut start = 0;
        loop {
            let end = (start + WINDOW).min(text.len());
            self.scan_window(line, &text[start..end], applies, scratch, file_state, state);
            if end == text.len() {
                break;
            }
            start = end - WINDOW_OVERLAP;
        }
    }

    fn scan_window(
        &self,
        line: &LineAt<'_>,
        window: &[u8],
        applies: &[bool],
        scratch: &mut LineScratch,
        file_state: &mut FileState,
        state: &mut ScanState,
    ) {
        let generation = scratch.next_generation();
        scratch.candidates.clear();
        let mark = |rule: usize, scratch: &mut LineScratch| {
            if applies[rule] && scratch.marks[rule] != generation {
                scratch.marks[rule] = generation;
                scratch.candidates.push(rule);
            }
        };
        for &rule in &self.keywordless_rules {
            mark(rule, scratch);
        }
        for hit in self.keywords.find_overlapping_iter(window) {
            for &rule in &self.keyword_rules[hit.pattern().as_usize()] {
                mark(rule, scratch);
            }
        }
        if scratch.candidates.is_empty() {
            return;
        }
        scratch.matched.clear();
        self.all_patterns
            .which_overlapping_matches(&Input::new(window), &mut scratch.matched);
        for pattern in scratch.matched.iter() {
            let rule = self.pattern_rules[pattern.as_usize()];
            if scratch.marks[rule] == generation {
                self.confirm(rule, line, window, None, file_state, state);
            }
        }
    }

    /// Runs one candidate rule on one window with captures and records what it finds.
    /// With `touching` (see `confirm_candidates`), only matches that overlap it count,
    /// and only while the rule has not reported the line yet.
    fn confirm(
        &self,
        rule: usize,
        line: &LineAt<'_>,
        window: &[u8],
        touching: Option<&Range<usize>>,
        file_state: &mut FileState,
        state: &mut ScanState,
    ) {
        let rule_data = &self.rules[rule];
        let compiled = &self.compiled[rule];
        if !self.counts_on_side(rule, line.side)
            || compiled.reject.iter().any(|regex| regex.is_match(window))
            || !compiled.confirm.iter().all(|regex| regex.is_match(window))
            || (rule_data.category == Category::SqlInjection
                && interpolates_fixed_values(line, window))
            || (rule_data.category == Category::CommandInjection && quoted_for_shell(line, window))
        {
            return;
        }
        let Some(pattern) = &compiled.pattern else {
            return;
        };
        if let Some(block) = &compiled.unless_block
            && line.side == Side::Added
            && pattern.is_match(window)
            && line
                .around
                .block_matches(line.text, block, rule_data.block_scope)
        {
            return;
        }
        if let Some(block) = &compiled.in_block
            && !(line.side == Side::Added
                && line
                    .around
                    .block_matches(line.text, block, rule_data.block_scope))
        {
            return;
        }
        if let Some(replaced) = &compiled.replaces
            && !(line.side == Side::Added && line.around.replaces(replaced))
        {
            return;
        }
        for captures in pattern.captures_iter(window).take(MATCHES_PER_WINDOW) {
            let Some(whole) = captures.get_match() else {
                continue;
            };
            if let Some(touching) = touching {
                let overlaps = whole.start() < touching.end && whole.end() > touching.start;
                if !overlaps || self.reported(rule, line, state) {
                    continue;
                }
            }
            let value_span = compiled
                .value_group
                .and_then(|group| captures.get_group(group))
                .unwrap_or(whole.span());
            let value = &window[value_span.range()];
            let name = compiled
                .name_group
                .and_then(|group| captures.get_group(group))
                .map(|span| &window[span.range()]);
            if rule_data.min_length.is_some_and(|min| value.len() < min)
                || rule_data
                    .entropy_min
                    .is_some_and(|min| entropy(value) < min)
                || !passes_filters(&rule_data.filters, value, name, window)
            {
                continue;
            }
            let matched = &window[whole.range()];
            self.record(
                rule,
                line,
                value,
                matched,
                captures
                    .get_group(compiled.key_group.unwrap_or(usize::MAX))
                    .map(|span| &window[span.range()]),
                file_state,
                state,
            );
        }
    }

    /// Whether `rule` has reported `line` already: the findings of the line's file are
    /// the last ones.
    fn reported(&self, rule: usize, line: &LineAt<'_>, state: &ScanState) -> bool {
        let id = &self.rules[rule].id;
        state
            .findings
            .iter()
            .rev()
            .take_while(|finding| finding.path == line.path)
            .any(|finding| finding.line == line.number && finding.rule == *id)
    }

    #[allow(clippy::too_many_arguments)] // One call site; a struct would only rename them.
    fn record(
        &self,
        rule: usize,
        line: &LineAt<'_>,
        value: &[u8],
        matched: &[u8],
        key: Option<&[u8]>,
        file_state: &mut FileState,
        state: &mut ScanState,
    ) {
        let rule_data = &self.rules[rule];
        if line.side == Side::Added {
            if Some(rule) == self.create_table_rule {
                file_state
                    .created_tables
                    .extend(tables_after(line.text, b"create table"));
            } else if Some(rule) == self.drop_table_rule
                && tables_after(line.text, b"drop table")
                    .next()
                    .is_some_and(|table| file_state.created_tables.contains(&table))
            {
                // The rollback of a table the file creates above (a migration's `down`).
                return;
            }
        }
        let is_secret = rule_data.category == Category::Secret;
        let content = if is_secret { value } else { matched };
        // An agent must not be able to silence the rules that watch the gate itself, nor
        // a critical finding (a live credential, a wiped root) with a comment it writes
        // in the same change: those are allowed only by the repository's configuration.
        let allowable =
            rule_data.category != Category::GateTamper && rule_data.severity < Severity::Critical;
        let allowed = || {
            if !allowable {
                return None;
            }
            inline_allow(line.text, &rule_data.id, rule_data.category.as_str()).or_else(|| {
                line.around.previous().and_then(|previous| {
                    inline_allow(previous, &rule_data.id, rule_data.category.as_str())
                })
            })
        };
        let preview = || {
            if is_secret {
                masked_preview(value)
            } else {
                line_excerpt(line.text)
            }
        };
        if rule_data.kind.compares_numbers() {
            let Some(number) = std::str::from_utf8(value)
                .ok()
                .and_then(|text| text.parse::<f64>().ok())
            else {
                return;
            };
            let entry = NumericValue {
                rule,
                key: threshold_key(key.unwrap_or_default()),
                value: number,
                line: line.number,
                excerpt: preview(),
            };
            match line.side {
                Side::Removed => file_state.numeric_old.push(entry),
                Side::Added => file_state.numeric_new.push(entry),
            }
            return;
        }
        if rule_data.net {
            let count = file_state.net.entry(rule).or_default();
            match line.side {
                Side::Added => count.added += 1,
                Side::Removed => {
                    if count.removed == 0 {
                        count.first_line = line.number;
                        count.excerpt = preview();
                        count.content = content.to_vec();
                    }
                    count.removed += 1;
                    if count.removed_contents.len() < PENDING_PER_FILE {
                        count.removed_contents.push(content.to_vec());
                    }
                }
            }
            return;
        }
        match line.side {
            // A line of the gate's own files moved or re-aligned within its hunk adds
            // nothing to the gate.
            Side::Added
                if rule_data.category == Category::GateTamper
                    && line
                        .around
                        .find_in_hunk(Side::Removed, |removed| {
                            (text_hash(removed) == text_hash(line.text)).then_some(())
                        })
                        .is_some() => {}
            Side::Added => {
                let mut finding = self.finding(rule, line.path, line.number, content);
                finding.preview = Some(preview());
                finding.allowed = allowed();
                if matches!(
                    rule_data.category,
                    Category::TestWeakening | Category::SchemaContract
                ) && state.movable.len() < state.max_findings
                {
                    state
                        .movable
                        .push((finding, Side::Added, text_hash(line.text)));
                } else {
                    state.push(finding);
                }
            }
            Side::Removed => {
                if file_state.pending_removals.len() < PENDING_PER_FILE {
                    file_state.pending_removals.push(PendingRemoval {
                        rule,
                        line: line.number,
                        text_hash: text_hash(line.text),
                        setting: (Some(rule) == self.gate_line_rule)
                            .then(|| setting(line.text))
                            .flatten(),
                        excerpt: preview(),
                        content: content.to_vec(),
                        allowed: inline_allow(
                            line.text,
                            &rule_data.id,
                            rule_data.category.as_str(),
                        ),
                    });
                }
            }
        }
    }

    fn finish_file(&self, path: &str, file_state: FileState, state: &mut ScanState) {
        for pending in file_state.pending_removals {
            if file_state.added_hashes.contains(&pending.text_hash) {
                continue;
            }
            // A setting of the gate changed to ask for at least as much.
            if let Some((key, old)) = &pending.setting
                && file_state
                    .added_settings
                    .iter()
                    .any(|(added_key, new)| added_key == key && tightens(key, old, new))
            {
                continue;
            }
            let mut finding = self.finding(pending.rule, path, pending.line, &pending.content);
            finding.preview = Some(pending.excerpt);
            finding.allowed = pending.allowed;
            if MOVABLE_CHECK_RULES.contains(&self.rules[pending.rule].id.as_str()) {
                state.checks_removed.push((finding, vec![pending.content]));
            } else if self.rules[pending.rule].category == Category::SchemaContract
                && state.movable.len() < state.max_findings
            {
                state
                    .movable
                    .push((finding, Side::Removed, pending.text_hash));
            } else {
                state.push(finding);
            }
        }
        let mut net: Vec<(usize, NetCount)> = file_state.net.into_iter().collect();
        net.sort_by_key(|(rule, _)| *rule);
        let fires = |count: &NetCount| count.removed > count.added;
        let fired: Vec<&str> = net
            .iter()
            .filter(|(_, count)| fires(count))
            .map(|(rule, _)| self.rules[*rule].id.as_str())
            .collect();
        let subsumed = |rule: &str| {
            SUBSUMED_NET_RULES
                .iter()
                .any(|(wider, narrower)| *narrower == rule && fired.contains(wider))
        };
        for (rule, count) in &net {
            let (rule, count) = (*rule, count);
            if fires(count) && !subsumed(&self.rules[rule].id) {
                let mut finding = self.finding(rule, path, count.first_line, &count.content);
                finding.preview = Some(format!(
                    "{} removed, {} added; first removed: {}",
                    count.removed, count.added, count.excerpt
                ));
                if MOVABLE_CHECK_RULES.contains(&self.rules[rule].id.as_str()) {
                    state
                        .checks_removed
                        .push((finding, count.removed_contents.clone()));
                } else {
                    state.push(finding);
                }
            }
        }
        // The n-th removed value of a rule and key is compared with the n-th added one:
        // `rtol=1e-6, atol=1e-9` tightened to `rtol=1e-7, atol=1e-10` pairs rtol with rtol.
        for (index, old) in file_state.numeric_old.iter().enumerate() {
            let same = |other: &&NumericValue| other.rule == old.rule && other.key == old.key;
            let rank = file_state.numeric_old[..index].iter().filter(same).count();
            let replacement = file_state.numeric_new.iter().filter(same).nth(rank);
            let raises = self.rules[old.rule].kind == RuleKind::NumericIncrease;
            match replacement {
                Some(new) if (new.value > old.value) == raises && new.value != old.value => {
                    let mut finding = self.finding(old.rule, path, new.line, &old.key);
                    finding.preview = Some(format!("{} → {}", old.excerpt, new.excerpt));
                    state.push(finding);
                }
                // Gone from this file: lowered, unless another file of the change sets it
                // as high (`--cov-fail-under=85` moved from the CI file into a script).
                None if !raises => {
                    let mut finding = self.finding(old.rule, path, old.line, &old.key);
                    finding.preview = Some(format!("removed: {}", old.excerpt));
                    state
                        .thresholds_removed
                        .push((finding, old.rule, old.key.clone(), old.value));
                }
                _ => {}
            }
        }
        state.thresholds_added.extend(
            file_state
                .numeric_new
                .into_iter()
                .map(|new| (new.rule, new.key, new.value)),
        );
    }

    fn mass_deletion(
        &self,
        files: &[FileSummary<'_>],
        options: &ScanOptions,
        base: Option<&dyn BaseTree>,
        state: &mut ScanState,
    ) {
        let thresholds = &options.mass_deletion;
        let counted: Vec<&FileSummary<'_>> = files
            .iter()
            .filter(|file| !is_generated_path(file.path))
            .collect();
        // Test fixtures' data, replaced by factories or regenerated, is no work lost.
        let fixture_data = |path: &str| {
            is_data_path(path)
                && path
                    .split('/')
                    .any(|part| matches!(part, "fixtures" | "__fixtures__" | "testdata"))
        };
        let deleted: Vec<&str> = counted
            .iter()
            .filter(|file| {
                file.kind == FileChangeKind::Deleted && !file.moved && !fixture_data(file.path)
            })
            .map(|file| file.path)
            .collect();
        let deleted_source: Vec<&FileSummary<'_>> = counted
            .iter()
            .copied()
            .filter(|file| {
                file.kind == FileChangeKind::Deleted
                    && !file.moved
                    && file.removed > 0
                    && !is_data_path(file.path)
            })
            .collect();
        let deleted_source_lines: usize = deleted_source.iter().map(|file| file.removed).sum();
        let deleted_source_paths: Vec<&str> = deleted_source.iter().map(|file| file.path).collect();
        let (mut removed, mut added, mut files_with_removals) = (0usize, 0usize, Vec::new());
        for file in &counted {
            removed += file.removed;
            added += file.added;
            if file.removed > 0 {
                files_with_removals.push(file.path);
            }
        }
        let files_fire = deleted.len() >= thresholds.min_deleted_files;
        let lines_fire = removed >= thresholds.min_removed_lines
            && removed * 100 >= usize::from(thresholds.min_removed_percent) * (removed + added)
            && files_with_removals.len() >= thresholds.min_files;
        for (index, rule) in self.rules.iter().enumerate() {
            let (fires, paths, preview) = match rule.kind {
                RuleKind::MassDeletionFiles => (
                    files_fire,
                    &deleted,
                    format!("{} files deleted", deleted.len()),
                ),
                // Below the thresholds of the two rules above, which report the same.
                RuleKind::MassDeletionSourceFiles => (
                    !files_fire
                        && !lines_fire
                        && deleted_source.len() >= thresholds.min_deleted_source_files
                        && deleted_source_lines >= thresholds.min_deleted_source_lines
                        && added < removed,
                    &deleted_source_paths,
                    format!(
                        "{} source files of {deleted_source_lines} lines deleted; the change adds {added} lines",
                        deleted_source.len()
                    ),
                ),
                RuleKind::MassDeletionLines => (
                    lines_fire,
                    &files_with_removals,
                    format!(
                        "{removed} lines removed and {added} added across {} files",
                        files_with_removals.len()
                    ),
                ),
                RuleKind::MassDeletionFile => {
                    for file in &counted {
                        if file.kind != FileChangeKind::Modified
                            || file.moved
                            || file.added * 10 > file.removed
                            || is_data_path(file.path)
                        {
                            continue;
                        }
                        // Below the threshold, a file is gutted when the base tree, or
                        // the diff where its hunks reach the file's end, shows that most
                        // of it went.
                        let base_lines = (file.removed < thresholds.min_gutted_lines
                            && file.removed >= GUTTED_FLOOR_LINES)
                            .then(|| {
                                base.and_then(|base| line_count(base, file))
                                    .or(file.old_lines)
                            })
                            .flatten();
                        let gutted = file.removed >= thresholds.min_gutted_lines
                            || base_lines.is_some_and(|lines| {
                                file.removed * 100 >= GUTTED_SHARE_PERCENT * lines
                            });
                        if gutted {
                            let preview = match base_lines {
                                Some(lines) => format!(
                                    "{} of its {lines} lines removed and {} added; the file is kept",
                                    file.removed, file.added
                                ),
                                None => format!(
                                    "{} lines removed and {} added; the file is kept",
                                    file.removed, file.added
                                ),
                            };
                            let mut finding = self.finding(index, file.path, 0, preview.as_bytes());
                            finding.preview = Some(preview);
                            state.push(finding);
                        }
                    }
                    continue;
                }
                _ => continue,
            };
            if fires {
                let directory = common_directory(paths);
                let mut finding = self.finding(index, &directory, 0, preview.as_bytes());
                finding.preview = Some(format!("{preview} under {directory}"));
                state.push(finding);
            }
        }
    }
}

/// The report for an input that is too large (an error) or blank (no findings), before
/// any parsing.
fn early_report(diff: &[u8], options: &ScanOptions) -> Option<Result<ScanReport, ScanError>> {
    if diff.len() > options.max_input_bytes {
        return Some(Err(ScanError::TooLarge {
            size: diff.len(),
            limit: options.max_input_bytes,
        }));
    }
    diff.trim_ascii()
        .is_empty()
        .then(|| Ok(ScanReport::default()))
}

/// Searchers a scan keeps at hand (`FilePlan::recent`).
const RECENT_SEARCHERS: usize = 8;

/// Which rules can fire on each side of one file's lines, as the prefilter needs it.
/// Kept in `LineScratch` and refilled for each file, so a file costs no allocation.
#[derive(Debug, Default)]
struct FilePlan {
    /// The rule applies to the file's path (or old path).
    applies: Vec<bool>,
    /// The rule applies to the file and a match on an added line counts.
    added: Vec<bool>,
    /// The rule applies to the file and a match on a removed line counts.
    removed: Vec<bool>,
    /// Rules of `added` (`removed`) the prefilter cannot rule out on any line.
    always_added: Vec<usize>,
    always_removed: Vec<usize>,
    /// A bit per rule whose trigger is searched for in this file.
    searched: Vec<u64>,
    /// The search for those triggers; `None` when there is nothing to search for.
    searcher: Option<Arc<Searcher>>,
    /// The searchers this scan used last, by `searched`: files of a few kinds alternate
    /// in a diff, and this spares the shared cache's lock and hashing for each file.
    recent: Vec<(Vec<u64>, Arc<Searcher>)>,
    /// Scratch of `Scanner::add_path_rules`: which glob lists match the path.
    glob_matches: GlobMatches,
}

impl FilePlan {
    /// Fills everything from `applies`; the searcher is kept when the previous file
    /// searched for the same triggers.
    fn fill(&mut self, scanner: &Scanner) {
        let rules = self.applies.len();
        self.added.clear();
        self.added.resize(rules, false);
        self.removed.clear();
        self.removed.resize(rules, false);
        self.always_added.clear();
        self.always_removed.clear();
        let previous = std::mem::take(&mut self.searched);
        self.searched.resize(rules.div_ceil(64), 0);
        for (rule, rule_plan) in scanner.prefilter.plans.iter().enumerate() {
            if !self.applies[rule] || rule_plan.trigger == Trigger::Never {
                continue;
            }
            self.added[rule] = scanner.counts_on_side(rule, Side::Added);
            self.removed[rule] = scanner.counts_on_side(rule, Side::Removed);
            match rule_plan.trigger {
                Trigger::Always => {
                    if self.added[rule] {
                        self.always_added.push(rule);
                    }
                    if self.removed[rule] {
                        self.always_removed.push(rule);
                    }
                }
                _ if self.added[rule] || self.removed[rule] => {
                    self.searched[rule / 64] |= 1 << (rule % 64);
                }
                _ => {}
            }
        }
        if self.searched.iter().all(|&word| word == 0) {
            self.searcher = None;
        } else if self.searcher.is_none() || previous != self.searched {
            let recent = self
                .recent
                .iter()
                .find(|(searched, _)| *searched == self.searched);
            let searcher = match recent {
                Some((_, searcher)) => Arc::clone(searcher),
                None => {
                    let searcher = scanner.prefilter.searcher(&self.searched);
                    if self.recent.len() == RECENT_SEARCHERS {
                        self.recent.remove(0);
                    }
                    self.recent
                        .push((self.searched.clone(), Arc::clone(&searcher)));
                    searcher
                }
            };
            self.searcher = Some(searcher);
        }
    }
}

/// One run of changed lines being scanned, and where its findings go.
struct RunScan<'a> {
    input: &'a [u8],
    path: &'a str,
    run: &'a ChangedRun,
    plan: &'a FilePlan,
    file_state: &'a mut FileState,
}

/// Marks the deleted files, and the kept files that lose most of their lines, whose
/// removed lines (most of those not blank) the change adds elsewhere: files merged into
/// one, a module moved under another name, functions moved out of a file. Their code is
/// moved, not lost: they count neither as deleted files nor as gutted ones, and a test
/// file moved is not a test file deleted (`Scanner::drop_moved_deletions`). `lines(index)`:
/// the changed lines of a file, whether added, and their text.
fn mark_moved<'a>(
    summaries: &mut [FileSummary<'_>],
    lines: impl Fn(usize) -> Vec<(bool, &'a [u8])>,
) {
    let gutted = |file: &FileSummary<'_>| {
        file.kind == FileChangeKind::Modified
            && file.removed >= GUTTED_FLOOR_LINES
            && file.added * 10 <= file.removed
    };
    let judged = |file: &FileSummary<'_>| {
        (file.kind == FileChangeKind::Deleted && !is_generated_path(file.path)) || gutted(file)
    };
    if !summaries.iter().any(judged) {
        return;
    }
    // Code moved into another file loses its trailing `;` or `,` as often as not.
    let key = |text: &[u8]| {
        let text = text.trim_ascii();
        text_hash(
            text.strip_suffix(b";")
                .or_else(|| text.strip_suffix(b","))
                .unwrap_or(text),
        )
    };
    let mut added = HashSet::new();
    for index in 0..summaries.len() {
        for (is_added, text) in lines(index) {
            let text = text.trim_ascii();
            if is_added && !text.is_empty() {
                added.insert(key(text));
            }
        }
    }
    for (index, summary) in summaries.iter_mut().enumerate() {
        if !judged(summary) {
            continue;
        }
        let (mut total, mut found) = (0usize, 0usize);
        for (_, text) in lines(index).into_iter().filter(|(is_added, _)| !is_added) {
            let text = text.trim_ascii();
            if !text.is_empty() {
                total += 1;
                found += usize::from(added.contains(&key(text)));
            }
        }
        summary.moved = total > 0 && found * 2 > total;
    }
}

/// Reports the findings of lines that may have moved (`ScanState::movable`) unless the
/// change has the same line, whitespace aside, on the other side in any file: a skip
/// with its issue link moved from one test file to another weakens nothing, and an
/// entity moved to another package with its `@Column` annotations changes no schema.
fn moved_lines<'a>(
    summaries: &[FileSummary<'_>],
    state: &mut ScanState,
    lines: impl Fn(usize) -> Vec<(bool, &'a [u8])>,
) {
    let movable = std::mem::take(&mut state.movable);
    if movable.is_empty() {
        return;
    }
    let (mut added, mut removed) = (HashSet::new(), HashSet::new());
    for (is_added, text) in (0..summaries.len()).flat_map(&lines) {
        if is_added { &mut added } else { &mut removed }.insert(text_hash(text));
    }
    for (finding, side, hash) in movable {
        let other_side = match side {
            Side::Added => &removed,
            Side::Removed => &added,
        };
        if !other_side.contains(&hash) {
            state.push(finding);
        }
    }
}

/// Reports the checks removed from a CI file (`ScanState::checks_removed`) unless
/// another file of the change adds lines running every command removed (`pytest` moved
/// from the workflow into `ci/run-tests.sh`), or the same file adds the command split
/// into two or more narrower targets (`make test` into `make unit-test` and `make
/// integration-test`, `split_target`); one narrower target alone may run less. `lines(index)` as for `mark_moved`.
fn moved_checks<'a>(
    summaries: &[FileSummary<'_>],
    state: &mut ScanState,
    lines: impl Fn(usize) -> Vec<(bool, &'a [u8])>,
) {
    let removed = std::mem::take(&mut state.checks_removed);
    if removed.is_empty() {
        return;
    }
    let added: Vec<(&str, Vec<u8>)> = summaries
        .iter()
        .enumerate()
        .filter(|(_, file)| runs_commands(file.path))
        .flat_map(|(index, file)| {
            lines(index)
                .into_iter()
                .filter(|(is_added, _)| *is_added)
                .map(move |(_, text)| (file.path, text.to_ascii_lowercase()))
        })
        .collect();
    for (finding, commands) in removed {
        let moved = commands.iter().all(|command| {
            let command = command.to_ascii_lowercase();
            let elsewhere = || {
                added.iter().any(|(path, text)| {
                    *path != finding.path
                        && text
                            .windows(command.len())
                            .any(|window| window == command.as_slice())
                })
            };
            let split = || {
                added
                    .iter()
                    .filter(|(path, text)| *path == finding.path && split_target(&command, text))
                    .nth(1)
                    .is_some()
            };
            !command.is_empty() && (elsewhere() || split())
        });
        if !moved {
            state.push(finding);
        }
    }
}

/// Whether `text` runs `command` (a tool and a target: `make test`, `npm run lint`)
/// with a narrower target in its last word's place: one of the target's parts split at
/// `-`, `_`, `:` or `.` (`make unit-test`, `npm run test:unit`).
fn split_target(command: &[u8], text: &[u8]) -> bool {
    fn words(text: &[u8]) -> Vec<&[u8]> {
        text.split(u8::is_ascii_whitespace)
            .filter(|word| !word.is_empty())
            .collect()
    }
    let (command, text) = (words(command), words(text));
    let Some((target, tool)) = command.split_last() else {
        return false;
    };
    if tool.is_empty() {
        return false;
    }
    text.windows(command.len()).any(|run| {
        let (narrower, prefix) = run.split_last().expect("a run of at least two words");
        prefix == tool
            && narrower != target
            && narrower
                .split(|byte| b"-_:.".contains(byte))
                .any(|part| part == *target)
    })
}

/// Whether a file runs commands as CI would: a shell script, a make or task file, a CI
/// configuration. A test file that imports `pytest` runs no check.
fn runs_commands(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    [".sh", ".bash", ".mk", ".yml", ".yaml", ".ps1"]
        .iter()
        .any(|suffix| name.ends_with(suffix))
        || [
            "Makefile",
            "justfile",
            "Justfile",
            "Taskfile",
            "Jenkinsfile",
            "tox.ini",
            "noxfile.py",
            "package.json",
        ]
        .contains(&name)
        || [
            "ci/",
            "scripts/",
            "bin/",
            ".github/",
            ".gitlab/",
            ".circleci/",
            ".buildkite/",
        ]
        .iter()
        .any(|dir| has_prefix_at_component(path, dir) || path.starts_with(dir))
}

/// A test file deleted together with the code it tests (`tests/test_export.py` with
/// `app/export.py`, `GiftWrap.test.tsx` with `GiftWrap.tsx`) is a feature removed, not
/// a test weakened: reported at medium, for a reviewer to confirm the feature is gone.
fn feature_removed_with_tests(files: &[FileSummary<'_>], findings: &mut [Finding]) {
    let subjects: Vec<String> = files
        .iter()
        .filter(|file| file.kind == FileChangeKind::Deleted)
        .filter_map(|file| match tested_subject(file.path) {
            None => Some(file_stem(file.path)),
            Some(_) => None,
        })
        .collect();
    if subjects.is_empty() {
        return;
    }
    for finding in findings
        .iter_mut()
        .filter(|finding| finding.rule == TEST_FILE_DELETED_RULE)
    {
        if let Some(subject) = tested_subject(&finding.path)
            && subjects.contains(&subject)
        {
            finding.severity = finding.severity.min(Severity::Medium);
            finding.message = format!(
                "{} The code it tests is deleted with it: a feature removed.",
                finding.message
            );
        }
    }
}

/// A file's name without its extensions, lower case, without `_`, `-` and `.`.
fn file_stem(path: &str) -> String {
    let name = path.rsplit('/').next().unwrap_or(path);
    let stem = name.split('.').next().unwrap_or(name);
    normalized_name(stem)
}

fn normalized_name(name: &str) -> String {
    name.chars()
        .filter(|c| !matches!(c, '_' | '-' | '.'))
        .flat_map(char::to_lowercase)
        .collect()
}

/// What a test file's name says it tests: `test_export.py`, `export_test.go`,
/// `export_spec.rb`, `ExportTest.java` and `export.test.ts` all test `export`. `None`
/// for a name without a test marker.
fn tested_subject(path: &str) -> Option<String> {
    let name = path.rsplit('/').next().unwrap_or(path).to_ascii_lowercase();
    let stem = name
        .rsplit_once('.')
        .map_or(name.as_str(), |(stem, _)| stem);
    let stem = ["test_", "test-"]
        .iter()
        .find_map(|prefix| stem.strip_prefix(prefix))
        .or_else(|| {
            [
                ".test", ".spec", "_test", "-test", "_spec", "-spec", "tests", "test", "spec",
            ]
            .iter()
            .find_map(|suffix| stem.strip_suffix(suffix))
        })?;
    let subject = normalized_name(stem);
    (subject.len() >= 3).then_some(subject)
}

/// A `key = value` line's key and value (TOML, Rego's `:=`), lower case, without
/// quotes or a trailing comment. `None` for other lines and for conditional Rego values.
type Setting = (Vec<u8>, Vec<u8>);

fn setting(line: &[u8]) -> Option<Setting> {
    let line = line.trim_ascii();
    if line.starts_with(b"#") {
        return None;
    }
    let Some(at) = memchr(b'=', line) else {
        return owner_line(line);
    };
    if line.get(at + 1) == Some(&b'=') {
        return None;
    }
    let key = line[..at]
        .strip_suffix(b":")
        .unwrap_or(&line[..at])
        .trim_ascii();
    let key = key.strip_prefix(b"default ").unwrap_or(key).trim_ascii();
    let value = setting_value(&line[at + 1..]);
    if key.is_empty() || value.is_empty() || value.windows(4).any(|w| w == b" if ") {
        return None;
    }
    Some((unquote(key), value))
}

/// The longest list setting, written over several lines, compared item by item.
const MAX_LIST_SETTING: usize = 4096;

/// A setting's value as `setting` compares it: without a trailing comment or quotes,
/// lower case.
fn setting_value(text: &[u8]) -> Vec<u8> {
    unquote(text[..memchr(b'#', text).unwrap_or(text.len())].trim_ascii())
}

fn unquote(text: &[u8]) -> Vec<u8> {
    text.iter()
        .copied()
        .filter(|byte| !matches!(byte, b'"' | b'\'' | b'`'))
        .collect::<Vec<u8>>()
        .to_ascii_lowercase()
}

/// Whether a list value opened with `[` is closed.
fn brackets_closed(value: &[u8]) -> bool {
    let opened = value.iter().filter(|&&byte| byte == b'[').count();
    let closed = value.iter().filter(|&&byte| byte == b']').count();
    closed >= opened
}

/// A CODEOWNERS line as a setting: `owners PATTERN` → its owners, sorted, one space
/// apart (`/modules/db/ @acme/dba @acme/platform`). Every word after the pattern must be
/// an owner (`@name`, `@org/team`, an email address).
fn owner_line(line: &[u8]) -> Option<Setting> {
    let mut words = line
        .split(u8::is_ascii_whitespace)
        .filter(|word| !word.is_empty());
    let pattern = words.next()?;
    let mut owners: Vec<Vec<u8>> = words.map(<[u8]>::to_ascii_lowercase).collect();
    if pattern.starts_with(b"[")
        || owners.is_empty()
        || !owners.iter().all(|owner| owner.contains(&b'@'))
    {
        return None;
    }
    owners.sort();
    owners.dedup();
    let mut key = b"owners ".to_vec();
    key.extend_from_slice(pattern);
    Some((key, owners.join(&b' ')))
}

/// Whether a setting of the gate changed from `old` to `new` asks for at least as much:
/// as many approvals or more, a blocking severity or a mass-deletion threshold as low
/// or lower, a sandbox as strict or stricter, the scan kept on, a check's timeout as
/// long or longer; for the rollout, limits (`max_*`, ratios, budgets, tolerances) as
/// low or lower, soaks and watch periods as long or longer, every canary step kept,
/// rollback kept on, a judge as binding; a CODEOWNERS pattern keeping every owner it
/// had (each owner's approval is required); audit sinks and required or protected
/// lists keeping every entry they had; a command gaining targets after those it had. A review SLA may take any duration: it decides
/// when a waiting review is escalated or expires, and neither approves it. A key with
/// a unit (`timeout_seconds`, `period_hours`) is judged as the key without it. Other
/// settings are not judged: their change blocks.
fn tightens(key: &[u8], old: &[u8], new: &[u8]) -> bool {
    if let Some((key, seconds)) = key_with_unit(key) {
        let in_seconds = |text: &[u8]| {
            let amount = std::str::from_utf8(text).ok()?.parse::<f64>().ok()?;
            Some(format!("{}s", amount * seconds).into_bytes())
        };
        return match (in_seconds(old), in_seconds(new)) {
            (Some(old), Some(new)) => tightens(key, &old, &new),
            _ => false,
        };
    }
    let plain = |text: &[u8]| std::str::from_utf8(text).ok()?.parse::<f64>().ok();
    let duration = |text: &[u8]| -> Option<f64> {
        let text = std::str::from_utf8(text).ok()?;
        let split = text.find(|c: char| !c.is_ascii_digit() && c != '.')?;
        let (amount, unit) = text.split_at(split);
        let seconds = match unit {
            "ms" => 0.001,
            "s" => 1.0,
            "m" | "min" => 60.0,
            "h" => 3600.0,
            "d" => 86400.0,
            _ => return None,
        };
        Some(amount.parse::<f64>().ok()? * seconds)
    };
    // A number, or a duration in seconds: limits are written either way.
    let number = |text: &[u8]| plain(text).or_else(|| duration(text));
    let ends_with_any = |suffixes: &[&str]| suffixes.iter().any(|s| key.ends_with(s.as_bytes()));
    let rank = |text: &[u8], order: &[&str]| order.iter().position(|item| item.as_bytes() == text);
    let at_least = |low: Option<f64>, high: Option<f64>| matches!((low, high), (Some(low), Some(high)) if high >= low);
    if let Some(setting) = key.strip_suffix(b"_by_risk") {
        // `sla_by_risk = { high = "2h" }`: each risk's value compared as the setting's.
        let table = |text: &[u8]| -> Vec<Setting> {
            let inner = text.trim_ascii();
            let inner = inner.strip_prefix(b"{").unwrap_or(inner);
            let inner = inner.strip_suffix(b"}").unwrap_or(inner);
            inner
                .split(|&byte| byte == b',')
                .filter_map(self::setting)
                .collect()
        };
        let new = table(new);
        table(old).iter().all(|(risk, old)| {
            new.iter()
                .any(|(other, new)| other == risk && tightens(setting, old, new))
        })
    } else if key.ends_with(b"approvals") || key.ends_with(b"approvals_count") {
        at_least(number(old), number(new))
    } else if key == b"sla" || key.ends_with(b"_sla") {
        duration(old).is_some() && duration(new).is_some()
    } else if key.ends_with(b"sinks")
        || ["required_", "protected_", "deny", "blocked_"]
            .iter()
            .any(|prefix| key.starts_with(prefix.as_bytes()))
    {
        let items = |text: &[u8]| -> Option<Vec<Vec<u8>>> {
            let inner = text.trim_ascii().strip_prefix(b"[")?.strip_suffix(b"]")?;
            Some(
                inner
                    .split(|&byte| byte == b',')
                    .map(|item| item.trim_ascii().to_vec())
                    .filter(|item| !item.is_empty())
                    .collect(),
            )
        };
        match (items(old), items(new)) {
            (Some(old), Some(new)) => old.iter().all(|item| new.contains(item)),
            _ => at_least(number(old), number(new)),
        }
    } else if key.starts_with(b"min_") {
        at_least(number(new), number(old))
    } else if key == b"blocking" {
        let order = ["low", "medium", "high", "critical"];
        matches!((rank(old, &order), rank(new, &order)), (Some(old), Some(new)) if new <= old)
    } else if key == b"sandbox" {
        let order = ["off", "best-effort", "required", "strict"];
        matches!((rank(old, &order), rank(new, &order)), (Some(old), Some(new)) if new >= old)
    } else if key == b"trust" {
        let order = ["shadow", "advisory", "enforcing"];
        matches!((rank(old, &order), rank(new, &order)), (Some(old), Some(new)) if new >= old)
    } else if key.starts_with(b"max_")
        || ends_with_any(&["_ratio", "_increase", "_budget", "_regression", "tolerance"])
    {
        at_least(number(new), number(old))
    } else if key == b"period"
        || key == b"soak"
        || key == b"timeout"
        || ends_with_any(&["_period", "_soak", "_timeout"])
    {
        at_least(number(old), number(new))
    } else if key == b"steps" {
        let steps = |text: &[u8]| -> Option<Vec<u64>> {
            let inner = text.trim_ascii().strip_prefix(b"[")?.strip_suffix(b"]")?;
            std::str::from_utf8(inner)
                .ok()?
                .split(',')
                .map(|step| step.trim().trim_end_matches('%').parse().ok())
                .collect()
        };
        matches!((steps(old), steps(new)), (Some(old), Some(new))
            if old.last() == new.last() && old.iter().all(|step| new.contains(step)))
    } else if key.starts_with(b"owners ") {
        let owners = |text: &[u8]| -> Vec<Vec<u8>> {
            text.split(|&byte| byte == b' ')
                .map(<[u8]>::to_vec)
                .collect()
        };
        let new = owners(new);
        owners(old).iter().all(|owner| new.contains(owner))
    } else if let Some(extra) = new
        .strip_prefix(old)
        .and_then(|rest| rest.strip_prefix(b" "))
    {
        // A command that only gains targets or paths after the ones it had: `make test`
        // into `make test test-contract`. A first one (`pytest` into `pytest
        // tests/unit`) narrows it; a flag may deselect.
        let words = |text: &'_ [u8]| -> Vec<Vec<u8>> {
            text.split(u8::is_ascii_whitespace)
                .filter(|word| !word.is_empty())
                .map(<[u8]>::to_vec)
                .collect()
        };
        let plain = |word: &Vec<u8>| {
            !word.starts_with(b"-")
                && word
                    .iter()
                    .all(|byte| byte.is_ascii_alphanumeric() || b"_./:-".contains(byte))
        };
        let had_target = words(old)
            .iter()
            .skip(1)
            .any(|word| !word.starts_with(b"-"));
        let extra = words(extra);
        had_target && !extra.is_empty() && extra.iter().all(plain)
    } else {
        matches!(
            key,
            b"enabled" | b"rollback" | b"auto_rollback" | b"rollback_on_failure"
        ) && new == b"true"
    }
}

/// A setting key that names its unit of time (`timeout_seconds`, `period_hours`): the
/// key without it and the unit in seconds.
fn key_with_unit(key: &[u8]) -> Option<(&[u8], f64)> {
    const UNITS: [(&str, f64); 11] = [
        ("_ms", 0.001),
        ("_millis", 0.001),
        ("_seconds", 1.0),
        ("_secs", 1.0),
        ("_sec", 1.0),
        ("_minutes", 60.0),
        ("_mins", 60.0),
        ("_hours", 3600.0),
        ("_hrs", 3600.0),
        ("_days", 86400.0),
        ("_weeks", 604_800.0),
    ];
    UNITS.iter().find_map(|(unit, seconds)| {
        key.strip_suffix(unit.as_bytes())
            .filter(|base| !base.is_empty())
            .map(|base| (base, *seconds))
    })
}

/// The key a threshold is compared by: `--cov-fail-under`, `--fail-under` and
/// `fail_under` are one setting.
fn threshold_key(key: &[u8]) -> Vec<u8> {
    let key = key.to_ascii_lowercase();
    let start = key.iter().take_while(|&&byte| byte == b'-').count();
    let key: Vec<u8> = key[start..]
        .iter()
        .map(|&byte| if byte == b'-' { b'_' } else { byte })
        .collect();
    match key.strip_prefix(b"cov_") {
        Some(rest) => rest.to_vec(),
        None => key,
    }
}

/// Whether `path` is one of the configured gate files (`ScanOptions::gate_paths`).
fn is_gate_path(path: &str, gate_paths: &[String]) -> bool {
    gate_paths
        .iter()
        .any(|gate| gate.trim_start_matches("./") == path)
}

/// Whether a line may hold a SQL statement in a string: a quote, and a statement's
/// first word in any case.
fn may_hold_statement(text: &[u8]) -> bool {
    memchr::memchr3(b'"', b'\'', b'`', text).is_some()
        && ["select", "insert", "update", "delete"].iter().any(|word| {
            text.windows(word.len())
                .any(|window| window.eq_ignore_ascii_case(word.as_bytes()))
        })
}

/// Whether a line of the run is longer than `WINDOW`: never in a run no longer than
/// that, the common case; else its newlines tell.
fn has_long_line(input: &[u8], run: &ChangedRun) -> bool {
    run.span.len() > WINDOW
        && raw_lines(input, run.span.clone()).any(|(start, end)| end - start - 1 > WINDOW)
}

/// The lines of `span` (a run of changed lines, or part of one) as (start, end): from
/// the prefix character to the newline or the span's end.
/// The changed lines of runs: whether each is added, and its text.
fn changed_lines<'a>(
    input: &'a [u8],
    runs: &'a [ChangedRun],
) -> impl Iterator<Item = (bool, &'a [u8])> + 'a {
    runs.iter()
        .flat_map(|run| raw_lines(input, run.span.clone()))
        .map(|(start, end)| (input[start] == b'+', &input[start + 1..end]))
}

fn raw_lines(input: &[u8], span: Range<usize>) -> impl Iterator<Item = (usize, usize)> + '_ {
    let end = span.end;
    let mut start = span.start;
    std::iter::from_fn(move || {
        if start >= end {
            return None;
        }
        let line_end = memchr(b'\n', &input[start..end]).map_or(end, |at| start + at);
        let line = (start, line_end);
        start = line_end + 1;
        Some(line)
    })
}

/// A literal a search found: (a byte of it, where it starts, its length, the literal).
type Found = (usize, usize, usize, u32);

impl LiteralSink for Vec<Found> {
    fn found(&mut self, inside: usize, start: usize, len: usize, literal: u32) {
        self.push((inside, start, len, literal));
    }
}

/// Places the literals found in a run on its lines, walking the run's newlines once up
/// to the last line holding one: `lines` gets each line that holds a literal in its text
/// (after the prefix character), as (text start, text end, new-side number), and `hits`
/// the literals as (index in `lines`, literal).
fn place_literals(
    input: &[u8],
    run: &ChangedRun,
    found: &[Found],
    lines: &mut Vec<(usize, usize, u32)>,
    hits: &mut RunHits,
) {
    lines.clear();
    hits.clear();
    if found.is_empty() {
        return;
    }
    let span = run.span.clone();
    let mut newlines = memchr_iter(b'\n', &input[span.clone()]).map(|at| span.start + at);
    // The current line, from its prefix character, and its new-side number.
    let mut line_start = span.start;
    let mut line_end = newlines.next().unwrap_or(span.end);
    let mut number = run.new_line;
    for &(inside, start, len, literal) in found {
        // Literals come in order of `inside`, a byte of the literal, never a newline.
        while inside > line_end && line_end < span.end {
            if input[line_start] == b'+' {
                number = number.saturating_add(1);
            }
            line_start = line_end + 1;
            line_end = newlines.next().unwrap_or(span.end);
        }
        // The literal must lie in the line's text, after its prefix character.
        if start <= line_start || start + len > line_end {
            continue;
        }
        let text = (line_start + 1, line_end, number);
        if lines.last() != Some(&text) {
            lines.push(text);
        }
        hits.push((u32::try_from(lines.len() - 1).unwrap_or(u32::MAX), literal));
    }
}

/// Where a changed line sits in its hunk, for what reads the lines around it: an
/// `airlock:allow` written on its own line above, a statement that goes on over several
/// lines. Looked for in the input only when something asks.
#[derive(Debug, Clone, Copy)]
enum Around<'a> {
    /// In the input: the hunk's lines run from `hunk_start` (its first line's prefix
    /// character) to `hunk_end`, the line from `start` (its prefix character) to `end`
    /// (its newline, or the hunk's end).
    Input {
        input: &'a [u8],
        hunk_start: usize,
        hunk_end: usize,
        start: usize,
        end: usize,
    },
    /// The `index`th line of a parsed hunk (the reference scan).
    #[cfg(test)]
    Parsed {
        lines: &'a [airlock_diff::HunkLine],
        index: usize,
    },
    /// A removed line: nothing around it is read.
    Removed,
}

impl<'a> Around<'a> {
    /// Where a changed line of `run` sits, its text at `text` in `input`.
    fn in_run(input: &'a [u8], run: &ChangedRun, side: Side, text: Range<usize>) -> Around<'a> {
        match side {
            Side::Added => Around::Input {
                input,
                hunk_start: run.hunk_start,
                hunk_end: run.hunk_end,
                start: text.start - 1,
                end: text.end,
            },
            Side::Removed => Around::Removed,
        }
    }

    /// The new-side line before this one, passing over removed lines.
    fn previous(self) -> Option<&'a [u8]> {
        self.previous_with_place().map(|(text, _)| text)
    }

    /// The new-side line before this one, passing over removed lines and `\ No newline
    /// at end of file`, with where it is.
    fn previous_with_place(self) -> Option<(&'a [u8], Around<'a>)> {
        match self {
            Around::Input {
                input,
                hunk_start,
                hunk_end,
                start,
                ..
            } => {
                let mut end = start;
                while end > hunk_start {
                    let line_end = end - 1;
                    let line_start = memrchr(b'\n', &input[hunk_start..line_end])
                        .map_or(hunk_start, |at| hunk_start + at + 1);
                    let around = Around::Input {
                        input,
                        hunk_start,
                        hunk_end,
                        start: line_start,
                        end: line_end,
                    };
                    match input[line_start..line_end].first() {
                        // An empty line is an empty context line.
                        None => return Some((&input[line_end..line_end], around)),
                        Some(b' ' | b'+') => {
                            return Some((&input[line_start + 1..line_end], around));
                        }
                        _ => end = line_start,
                    }
                }
                None
            }
            #[cfg(test)]
            Around::Parsed { lines, index } => lines[..index]
                .iter()
                .enumerate()
                .rev()
                .find(|(_, line)| line.kind != LineKind::Removed)
                .map(|(at, line)| (&line.text[..], Around::Parsed { lines, index: at })),
            Around::Removed => None,
        }
    }

    /// Whether `regex` matches a new-side line of the block holding this line (`text`):
    /// the line itself, the nearest less indented line above it (the block's header: a
    /// CI job, a step) and the lines from there to the next less indented line below, as
    /// far as the hunk shows them and at most `BLOCK_REACH` lines each way, or the
    /// larger block `scope` asks for.
    fn block_matches(self, text: &[u8], regex: &Regex, scope: BlockScope) -> bool {
        let through_keys = scope == BlockScope::Job;
        if regex.is_match(text) {
            return true;
        }
        let bare_key = |line: &[u8]| {
            let line = line.trim_ascii();
            line.strip_suffix(b":").is_some_and(|key| {
                !key.is_empty()
                    && key
                        .iter()
                        .all(|byte| byte.is_ascii_alphanumeric() || b"_-.".contains(byte))
            })
        };
        let mut indent = indentation(text);
        let blank = |line: &[u8]| line.trim_ascii().is_empty();
        let mut around = self;
        for _ in 0..BLOCK_REACH {
            let Some((earlier, before)) = around.previous_with_place() else {
                break;
            };
            if !blank(earlier) {
                if regex.is_match(earlier) {
                    return true;
                }
                if indentation(earlier) < indent {
                    if !(through_keys && indentation(earlier) > 0 && bare_key(earlier)) {
                        break;
                    }
                    indent = indentation(earlier);
                }
            }
            around = before;
        }
        self.following()
            .lines()
            .take(BLOCK_REACH)
            .flatten()
            .filter(|line| !blank(line))
            .take_while(|line| indentation(line) >= indent)
            .any(|line| regex.is_match(line))
    }

    /// Whether this line's hunk removes a line matching `regex` and adds none: what the
    /// line takes the place of (`t.Errorf` turned into `t.Logf`).
    fn replaces(self, regex: &Regex) -> bool {
        let matching = |line: &[u8]| regex.is_match(line).then_some(());
        self.find_in_hunk_lines(HunkLines::Removed, matching)
            .is_some()
            && self
                .find_in_hunk_lines(HunkLines::Added, matching)
                .is_none()
    }

    /// The lines after this one in its hunk.
    fn following(self) -> Following<'a> {
        match self {
            Around::Input {
                input,
                hunk_end,
                end,
                ..
            } => Following::Input(&input[(end + 1).min(hunk_end)..hunk_end]),
            #[cfg(test)]
            Around::Parsed { lines, index } => Following::Parsed(&lines[index + 1..]),
            Around::Removed => Following::Input(&[]),
        }
    }

    /// Visits the changed lines before this one, nearest first, as (prefix character,
    /// text, where), at most `STATEMENT_REACH` of them and while `visit` says to go on; a
    /// context line ends them.
    fn changed_before(self, mut visit: impl FnMut(u8, &'a [u8], Around<'a>) -> bool) {
        match self {
            Around::Input {
                input,
                hunk_start,
                hunk_end,
                start,
                ..
            } => {
                let mut line_start = start;
                for _ in 0..STATEMENT_REACH {
                    if line_start <= hunk_start {
                        break;
                    }
                    let end = line_start - 1;
                    let start = memrchr(b'\n', &input[hunk_start..end])
                        .map_or(hunk_start, |at| hunk_start + at + 1);
                    // An empty line is an empty context line.
                    let prefix = if start < end { input[start] } else { b' ' };
                    let around = Around::Input {
                        input,
                        hunk_start,
                        hunk_end,
                        start,
                        end,
                    };
                    if !matches!(prefix, b'+' | b'-' | b'\\')
                        || !visit(prefix, &input[(start + 1).min(end)..end], around)
                    {
                        break;
                    }
                    line_start = start;
                }
            }
            #[cfg(test)]
            Around::Parsed { lines, index } => {
                for (at, line) in lines[..index]
                    .iter()
                    .enumerate()
                    .rev()
                    .take(STATEMENT_REACH)
                {
                    let prefix = match line.kind {
                        LineKind::Added => b'+',
                        LineKind::Removed => b'-',
                        LineKind::Context => break,
                    };
                    if !visit(prefix, &line.text, Around::Parsed { lines, index: at }) {
                        break;
                    }
                }
            }
            Around::Removed => {}
        }
    }

    /// The first of the lines of this line's hunk on `side` (the new side: added and
    /// context lines, itself included; the old side: removed lines) for which `visit`
    /// has an answer, and the answer.
    fn find_in_hunk<T>(self, side: Side, visit: impl FnMut(&'a [u8]) -> Option<T>) -> Option<T> {
        let lines = match side {
            Side::Added => HunkLines::NewSide,
            Side::Removed => HunkLines::Removed,
        };
        self.find_in_hunk_lines(lines, visit)
    }

    /// As `find_in_hunk`, over the lines of this line's hunk that `lines` names.
    fn find_in_hunk_lines<T>(
        self,
        lines: HunkLines,
        visit: impl FnMut(&'a [u8]) -> Option<T>,
    ) -> Option<T> {
        let wanted = |prefix: Option<&u8>| match lines {
            HunkLines::NewSide => matches!(prefix, Some(b' ' | b'+')),
            HunkLines::Added => prefix == Some(&b'+'),
            HunkLines::Removed => prefix == Some(&b'-'),
        };
        match self {
            Around::Input {
                input,
                hunk_start,
                hunk_end,
                ..
            } => input[hunk_start..hunk_end]
                .split(|&byte| byte == b'\n')
                .filter(|line| wanted(line.first()))
                .map(|line| &line[1..])
                .find_map(visit),
            #[cfg(test)]
            Around::Parsed { lines: parsed, .. } => parsed
                .iter()
                .filter(|line| {
                    wanted(Some(match line.kind {
                        LineKind::Added => &b'+',
                        LineKind::Removed => &b'-',
                        LineKind::Context => &b' ',
                    }))
                })
                .map(|line| &line.text[..])
                .find_map(visit),
            Around::Removed => None,
        }
    }

    /// The function definition this line (`text`) is in: the nearest new-side line above
    /// it, at most `STATEMENT_REACH` lines up, that defines a function
    /// (`function_definition`) and is indented less. Its name and parameter list.
    fn enclosing_definition(self, text: &[u8]) -> Option<(&'a [u8], &'a [u8])> {
        let indent = indentation(text);
        let mut around = self;
        for _ in 0..STATEMENT_REACH {
            let (earlier, before) = around.previous_with_place()?;
            if let Some(definition) = function_definition(earlier) {
                return (indentation(earlier) < indent).then_some(definition);
            }
            around = before;
        }
        None
    }

    /// What a call of `function` on a new-side line of this line's hunk passes as its
    /// `index`th argument, written whole on that line: the first such call's.
    fn call_argument(self, function: &[u8], index: usize) -> Option<&'a [u8]> {
        self.find_in_hunk(Side::Added, |line| {
            if function_definition(line).is_some() {
                return None;
            }
            let mut from = 0;
            while let Some(at) = memchr::memmem::find(&line[from..], function).map(|at| from + at) {
                from = at + function.len();
                let before = at.checked_sub(1).map(|before| line[before]);
                if before.is_some_and(|byte| byte.is_ascii_alphanumeric() || byte == b'_')
                    || line.get(from) != Some(&b'(')
                {
                    continue;
                }
                let arguments = call_arguments(&line[from + 1..])?;
                let value = split_arguments(arguments).nth(index)?.trim_ascii();
                return (!value.is_empty() && value.len() <= STATEMENT_BYTES).then_some(value);
            }
            None
        })
    }

    /// Where the statement holding this added line (`text`) starts, when it starts on
    /// an added line before it: going back over added lines (and removed ones, which
    /// are no part of it) while each continues into the next (`continues`, `leads`), at
    /// most `STATEMENT_LINES - 1` lines back. The first line's text, where it is, and how
    /// many lines back it is.
    fn statement_start(self, text: &'a [u8]) -> Option<(&'a [u8], Around<'a>, u32)> {
        if !may_continue_above(text.trim_ascii()) {
            return None;
        }
        let mut later = text;
        let mut start = None;
        let mut back = 0;
        self.changed_before(|prefix, earlier, around| match prefix {
            b'+' => {
                if !(continues(bracket_depth(earlier), earlier) || leads(later.trim_ascii_start()))
                {
                    return false;
                }
                back += 1;
                later = earlier;
                start = Some((earlier, around, back));
                (back as usize) < STATEMENT_LINES - 1
            }
            // Removed lines, and `\ No newline at end of file`, are passed over.
            _ => true,
        });
        start
    }
}

/// Which lines of a hunk `Around::find_in_hunk_lines` reads.
#[derive(Debug, Clone, Copy)]
enum HunkLines {
    /// Added and context lines.
    NewSide,
    Added,
    Removed,
}

/// One line being scanned, with where it is.
#[derive(Debug)]
struct LineAt<'a> {
    path: &'a str,
    text: &'a [u8],
    around: Around<'a>,
    side: Side,
    number: u32,
}

/// The lines that follow a changed line in its hunk.
#[derive(Debug, Clone, Copy)]
enum Following<'a> {
    /// The rest of the hunk in the input, from the next line's prefix character.
    Input(&'a [u8]),
    /// The hunk's next lines, as the reference scan has them.
    #[cfg(test)]
    Parsed(&'a [airlock_diff::HunkLine]),
}

/// The names that are whole arguments of a call or items of a list on `line`
/// (`rmtree(root)`, `{"sh", "-c", script}`), outside string literals.
fn bare_arguments(line: &[u8]) -> impl Iterator<Item = Range<usize>> + '_ {
    let is_start = |byte: u8| byte.is_ascii_alphabetic() || byte == b'_' || byte == b'$';
    let is_inner = |byte: u8| byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'$';
    let mut at = 0;
    let mut quote: Option<u8> = None;
    std::iter::from_fn(move || {
        while at < line.len() {
            let byte = line[at];
            if let Some(open) = quote {
                at += if byte == b'\\' { 2 } else { 1 };
                if byte == open {
                    quote = None;
                }
                continue;
            }
            if matches!(byte, b'"' | b'\'' | b'`') {
                quote = Some(byte);
                at += 1;
                continue;
            }
            if !is_start(byte) || (at > 0 && is_inner(line[at - 1])) {
                at += 1;
                continue;
            }
            let start = at;
            while at < line.len() && is_inner(line[at]) {
                at += 1;
            }
            let leading = line[..start].trim_ascii_end();
            let before = leading.last();
            let after = line[at..].trim_ascii_start().first();
            // `${name}` and `#{name}` interpolate into a string the line may have opened
            // above: no argument.
            let interpolated =
                before == Some(&b'{') && matches!(leading.iter().nth_back(1), Some(b'$' | b'#'));
            if matches!(before, Some(b'(' | b',' | b'[' | b'{'))
                && matches!(after, Some(b')' | b',' | b']' | b'}'))
                && !interpolated
            {
                return Some(start..at);
            }
        }
        None
    })
}

/// Values interpolated into one statement judged at most.
const INTERPOLATIONS: usize = 8;

/// Whether the command a shell runs on this line (`text`) is built only from values
/// quoted for the shell (`shlex.quote(x)`) or fixed: the values the line interpolates,
/// or, when the call's first argument is a name, the value the nearest added line above
/// assigns it (a literal, or a string whose every interpolation is quoted). False when
/// there is nothing to judge.
fn quoted_for_shell(line: &LineAt<'_>, text: &[u8]) -> bool {
    const QUOTING: [&[u8]; 5] = [
        b"shlex.quote(",
        b"pipes.quote(",
        b"quote(",
        b"shellescape(",
        b"escapeshellarg(",
    ];
    // A positional `{}` is filled by an argument not followed here: not judged quoted.
    let quoted = |value: &[u8]| {
        let value = value.trim_ascii();
        !value.is_empty()
            && (QUOTING.iter().any(|call| value.starts_with(call))
                || value.iter().all(u8::is_ascii_digit))
    };
    // Every value interpolated into `value`, or passed to its format, is quoted; or it
    // has none.
    let all_quoted = |value: &[u8]| {
        interpolations(value)
            .chain(format_arguments(value))
            .all(quoted)
    };
    if interpolations(text)
        .chain(format_arguments(text))
        .next()
        .is_some()
    {
        return all_quoted(text);
    }
    let Some(first) = bare_arguments(text).next() else {
        return false;
    };
    let name = &text[first];
    let mut judged = None;
    line.around.changed_before(|prefix, earlier, _| {
        if prefix == b'+'
            && let Some((assigned, value)) = assignment(earlier)
            && assigned == name
        {
            let value = value.trim_ascii();
            let string = value
                .strip_prefix(b"f")
                .unwrap_or(value)
                .first()
                .is_some_and(|byte| matches!(byte, b'"' | b'\''));
            judged = Some(fixed_value(value) || (string && all_quoted(value)));
            return false;
        }
        true
    });
    judged == Some(true)
}

/// Whether every value a statement (`text`, on `line`) interpolates is fixed by the
/// program: each is a number (`{len(args)}`), or a name whose nearest assignment in the
/// added lines above is a string literal, a choice between literals (`"DESC" if desc
/// else "ASC"`), or a lookup in a constant or allow-list mapping
/// (`SORT_COLUMNS.get(key, "created_at")`). Text made of such values cannot carry input
/// into SQL. Fragments joined into a clause are not judged fixed: what they were built
/// from is not followed. False when nothing interpolated is found.
fn interpolates_fixed_values(line: &LineAt<'_>, text: &[u8]) -> bool {
    let mut names: [&[u8]; INTERPOLATIONS] = [&[]; INTERPOLATIONS];
    let mut count = 0;
    // Values fixed where they are written (`+ (desc ? " DESC" : "")`).
    let mut inline = false;
    for value in interpolations(text).chain(format_arguments(text)) {
        let numeric = [b"len(" as &[u8], b"int(", b"str(len(", b"float("]
            .iter()
            .any(|call| value.starts_with(call));
        if numeric {
            continue;
        }
        if let Some(group) = value.strip_prefix(b"(").and_then(|v| v.strip_suffix(b")"))
            && fixed_value(group)
        {
            inline = true;
            continue;
        }
        let is_name = !value.is_empty()
            && value
                .iter()
                .all(|byte| byte.is_ascii_alphanumeric() || *byte == b'_');
        if !is_name || count == INTERPOLATIONS {
            return false;
        }
        names[count] = value;
        count += 1;
    }
    if count == 0 {
        return inline;
    }
    let names = &names[..count];
    // The nearest assignment of each name decides it.
    let mut fixed: [Option<bool>; INTERPOLATIONS] = [None; INTERPOLATIONS];
    line.around.changed_before(|prefix, earlier, _| {
        if prefix == b'+'
            && let Some((name, value)) = assignment(earlier)
        {
            for (at, known) in names.iter().enumerate() {
                if *known == name && fixed[at].is_none() {
                    fixed[at] = Some(fixed_value(value));
                }
            }
        }
        fixed[..count].iter().any(Option::is_none)
    });
    fixed[..count].iter().all(|fixed| *fixed == Some(true))
}

/// The values a line interpolates into strings, as written: `{name}`, `${name}` and
/// `#{name}` (up to a format spec), and the names a `+` concatenates (`"… BY " + col`).
fn interpolations(text: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut at = 0;
    std::iter::from_fn(move || {
        while at < text.len() {
            let byte = text[at];
            at += 1;
            if byte == b'{'
                && text.get(at) != Some(&b'{')
                && text.get(at.wrapping_sub(2)) != Some(&b'{')
            {
                let start = at;
                let mut depth = 0usize;
                while at < text.len() {
                    match text[at] {
                        b'(' | b'[' => depth += 1,
                        b')' | b']' => depth = depth.saturating_sub(1),
                        b'}' | b':' | b'!' if depth == 0 => break,
                        _ => {}
                    }
                    at += 1;
                }
                return Some(text[start..at.min(text.len())].trim_ascii());
            }
            if byte == b'+' {
                let rest = &text[at..];
                let gap = rest.len() - rest.trim_ascii_start().len();
                let operand = &rest[gap..];
                match operand.first() {
                    // A literal, a number, `+=`, `++`: nothing that comes from elsewhere.
                    None | Some(b'"' | b'\'' | b'`' | b'=' | b'+' | b'0'..=b'9') => continue,
                    // `+ (desc ? " DESC" : "")`: the group, judged whole.
                    Some(b'(') => {
                        let mut depth = 0usize;
                        let length = operand
                            .iter()
                            .position(|&byte| {
                                match byte {
                                    b'(' => depth += 1,
                                    b')' => depth -= 1,
                                    _ => {}
                                }
                                depth == 0
                            })
                            .map_or(operand.len(), |end| end + 1);
                        at += gap + length;
                        return Some(&operand[..length]);
                    }
                    _ => {}
                }
                let length = operand
                    .iter()
                    .take_while(|byte| byte.is_ascii_alphanumeric() || **byte == b'_')
                    .count();
                let after = operand[length..].trim_ascii_start().first();
                if length > 0 && matches!(after, None | Some(b'+' | b')' | b';' | b',')) {
                    at += gap + length;
                    return Some(&operand[..length]);
                }
                // Anything else (`req.query.id`, `user["name"]`, a call): a value the
                // caller cannot judge fixed.
                let length = operand
                    .iter()
                    .position(|byte| byte.is_ascii_whitespace() || matches!(byte, b'+' | b';'))
                    .unwrap_or(operand.len());
                at += gap + length;
                return Some(&operand[..length]);
            }
        }
        None
    })
}

/// The values a format call fills its `%s` placeholders with: the arguments after the
/// format string of Go's `fmt.Sprintf(…)` and Java's `String.format(…)`.
fn format_arguments(text: &[u8]) -> impl Iterator<Item = &[u8]> {
    [b"Sprintf(" as &[u8], b"String.format("]
        .into_iter()
        .filter_map(|call| {
            let at = memchr::memmem::find(text, call)?;
            call_arguments(&text[at + call.len()..])
        })
        .flat_map(|arguments| split_arguments(arguments).skip(1).map(<[u8]>::trim_ascii))
}

/// Whether an assigned value is fixed by the program (`interpolates_fixed_values`).
fn fixed_value(value: &[u8]) -> bool {
    let value = value.trim_ascii();
    let literal = |text: &[u8]| {
        let text = text.trim_ascii();
        text.len() >= 2
            && matches!(text[0], b'"' | b'\'')
            && text.last() == Some(&text[0])
            && !text[1..text.len() - 1]
                .iter()
                .any(|byte| matches!(byte, b'"' | b'\'' | b'{' | b'$' | b'%' | b'#' | b'\\'))
    };
    if literal(value) {
        return true;
    }
    // `desc ? " DESC" : ""`
    if let Some(choice) = memchr(b'?', value)
        && let Some(otherwise) = memrchr(b':', value)
        && choice < otherwise
    {
        return literal(&value[choice + 1..otherwise]) && literal(&value[otherwise + 1..]);
    }
    // `"DESC" if desc else "ASC"`
    if let (Some(choice), Some(otherwise)) = (
        memchr::memmem::find(value, b" if "),
        memchr::memmem::rfind(value, b" else "),
    ) && choice < otherwise
    {
        return literal(&value[..choice]) && literal(&value[otherwise + 6..]);
    }
    // `SORT_COLUMNS.get(key, "created_at")`, `ALLOWED_ORDER[key]`
    let length = value
        .iter()
        .take_while(|byte| byte.is_ascii_alphanumeric() || **byte == b'_')
        .count();
    let (mapping, rest) = value.split_at(length);
    let constant = length > 1
        && mapping
            .iter()
            .all(|byte| byte.is_ascii_uppercase() || byte.is_ascii_digit() || *byte == b'_');
    let lower = mapping.to_ascii_lowercase();
    let allow_list = [
        "allow",
        "valid",
        "whitelist",
        "column",
        "sortable",
        "order_by",
    ]
    .iter()
    .any(|word| memchr::memmem::find(&lower, word.as_bytes()).is_some());
    (constant || allow_list) && (rest.starts_with(b".get(") || rest.starts_with(b"["))
}

/// The width of a line's leading whitespace.
fn indentation(line: &[u8]) -> usize {
    line.len() - line.trim_ascii_start().len()
}

/// The length of the name `text` starts with: letters, digits, `_` and `$` (PHP and
/// JavaScript names).
fn name_length(text: &[u8]) -> usize {
    text.iter()
        .take_while(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'$'))
        .count()
}

/// The name and parameter list of a function a line starts to define, in the languages
/// that name definitions with a keyword: `function resetUploads(dir) {`, `async def
/// purge(root: Path, days=7):`, `pub fn wipe(dir: &Path) {`, `func (s *Store) clean(dir
/// string) error {`, `fun drop(dir: File)`, `def purge(dir)` (Ruby, Scala, Elixir),
/// and arrow functions bound to a name (`const wipe = async (dir) => {`).
fn function_definition(line: &[u8]) -> Option<(&[u8], &[u8])> {
    const MODIFIERS: [&[u8]; 10] = [
        b"export ",
        b"default ",
        b"async ",
        b"pub ",
        b"pub(crate) ",
        b"static ",
        b"private ",
        b"public ",
        b"protected ",
        b"override ",
    ];
    const KEYWORDS: [&[u8]; 6] = [b"function ", b"def ", b"fn ", b"func ", b"fun ", b"defp "];
    let mut rest = line.trim_ascii_start();
    while let Some(modifier) = MODIFIERS.iter().find(|modifier| rest.starts_with(modifier)) {
        rest = rest[modifier.len()..].trim_ascii_start();
    }
    let (name, after) = if let Some(keyword) = KEYWORDS.iter().find(|k| rest.starts_with(k)) {
        let mut rest = rest[keyword.len()..].trim_ascii_start();
        if rest.first() == Some(&b'(') {
            // A Go method's receiver.
            let receiver = call_arguments(&rest[1..])?;
            rest = rest[receiver.len() + 2..].trim_ascii_start();
        }
        let length = name_length(rest);
        (&rest[..length], &rest[length..])
    } else {
        // `const name = (params) =>`, `let name = async (params) =>`.
        let rest = [b"const " as &[u8], b"let ", b"var "]
            .iter()
            .find_map(|binding| rest.strip_prefix(*binding))?
            .trim_ascii_start();
        let length = name_length(rest);
        let value = rest[length..]
            .trim_ascii_start()
            .strip_prefix(b"=")?
            .trim_ascii_start();
        let value = value
            .strip_prefix(b"async")
            .unwrap_or(value)
            .trim_ascii_start();
        let parameters = call_arguments(value.strip_prefix(b"(")?)?;
        // `=>` next, or after a return type (`): Promise<void> =>`).
        let after = &value[parameters.len() + 2..];
        let arrow = memchr::memmem::find(after, b"=>")?;
        let typed = after[..arrow].trim_ascii();
        let return_type = typed.is_empty() || typed.starts_with(b":") && !typed.contains(&b'(');
        return (length > 0 && return_type).then_some((&rest[..length], parameters));
    };
    // Generic parameters: `fn wipe<P: AsRef<Path>>(dir: P)`.
    let after = match after.first() {
        Some(b'<') => &after[after.iter().position(|&byte| byte == b'(')?..],
        _ => after,
    };
    let parameters = call_arguments(after.strip_prefix(b"(")?)?;
    (!name.is_empty()).then_some((name, parameters))
}

/// The text of a call's arguments, `text` starting right after its `(`: up to the
/// matching `)` on the same line, outside string literals.
fn call_arguments(text: &[u8]) -> Option<&[u8]> {
    let mut depth = 0usize;
    let mut quote: Option<u8> = None;
    let mut at = 0;
    while at < text.len() {
        let byte = text[at];
        match quote {
            Some(open) => {
                if byte == b'\\' {
                    at += 1;
                } else if byte == open {
                    quote = None;
                }
            }
            None => match byte {
                b'"' | b'\'' | b'`' => quote = Some(byte),
                b'(' | b'[' | b'{' => depth += 1,
                b')' | b']' | b'}' if depth == 0 => {
                    return (byte == b')').then_some(&text[..at]);
                }
                b')' | b']' | b'}' => depth -= 1,
                _ => {}
            },
        }
        at += 1;
    }
    None
}

/// The arguments (or parameters) of a list, split at its top-level commas (brackets,
/// generics' angle brackets and string literals kept whole). None for an empty list.
fn split_arguments(list: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut depth = 0usize;
    let mut quote: Option<u8> = None;
    let mut escaped = false;
    let mut start = 0;
    let mut at = 0;
    let mut done = list.trim_ascii().is_empty();
    std::iter::from_fn(move || {
        if done {
            return None;
        }
        while at < list.len() {
            let byte = list[at];
            at += 1;
            if let Some(open) = quote {
                if escaped {
                    escaped = false;
                } else if byte == b'\\' {
                    escaped = true;
                } else if byte == open {
                    quote = None;
                }
                continue;
            }
            match byte {
                b'"' | b'\'' | b'`' => quote = Some(byte),
                b'(' | b'[' | b'{' | b'<' => depth += 1,
                b')' | b']' | b'}' | b'>' => depth = depth.saturating_sub(1),
                b',' if depth == 0 => {
                    let item = &list[start..at - 1];
                    start = at;
                    return Some(item);
                }
                _ => {}
            }
        }
        done = true;
        Some(&list[start..])
    })
}

/// The name a parameter declares: `dir`, `dir: &Path`, `mut dir: PathBuf`, `dir string`,
/// `$dir`, `root=None`, `*paths`. Empty for a pattern (`{ dir }`) or `self`.
fn parameter_name(parameter: &[u8]) -> &[u8] {
    let mut text = parameter.trim_ascii();
    for prefix in [b"mut " as &[u8], b"&", b"*", b"..."] {
        text = text.strip_prefix(prefix).unwrap_or(text).trim_ascii_start();
    }
    let name = &text[..name_length(text)];
    if name == b"self" || name.first().is_some_and(u8::is_ascii_digit) {
        return &[];
    }
    name
}

/// The name a line assigns and the value, written whole on the line: `root =
/// settings.MEDIA_ROOT`, `String script = "cd " + dir;`, `const filter: Where = {};`,
/// `cmd := exec.Command(...)`, `$cmd = "ls " . $dir;`. Not a comparison, a compound
/// assignment, a keyword argument, nor a value that goes on to the next line.
fn assignment(line: &[u8]) -> Option<(&[u8], &[u8])> {
    let line = line.trim_ascii();
    let equals = memchr(b'=', line)?;
    let after = line.get(equals + 1).copied();
    let before = equals.checked_sub(1).map(|at| line[at]);
    if matches!(after, Some(b'=' | b'>' | b'~'))
        || matches!(
            before,
            Some(
                b'=' | b'!'
                    | b'<'
                    | b'>'
                    | b'+'
                    | b'-'
                    | b'*'
                    | b'/'
                    | b'%'
                    | b'&'
                    | b'|'
                    | b'^'
                    | b'.'
                    | b'?'
            )
        )
    {
        return None;
    }
    let mut left = &line[..equals];
    if let Some(stripped) = left.strip_suffix(b":") {
        left = stripped;
    }
    // A type annotation after the name: `filter: Prisma.Where`.
    let left = match memchr(b':', left) {
        Some(colon) => &left[..colon],
        None => left,
    };
    let declaration_byte =
        |byte: &u8| byte.is_ascii_alphanumeric() || b" \t_$<>[].,?".contains(byte);
    if !left.iter().all(declaration_byte) {
        return None;
    }
    // Several names take one value only in Go's `col, ok := columns[key]` and `rows, err
    // := …`: the first holds it. Values listed for each (`a, b = 1, 2`) are not read.
    let value = line[equals + 1..].trim_ascii();
    let left = match memchr(b',', left) {
        Some(comma) if split_arguments(value).nth(1).is_none() => &left[..comma],
        Some(_) => return None,
        None => left,
    };
    let name = left
        .trim_ascii()
        .rsplit(|byte| byte.is_ascii_whitespace())
        .next()?;
    let valid = name
        .first()
        .is_some_and(|byte| byte.is_ascii_alphabetic() || b"_$".contains(byte))
        && name
            .iter()
            .all(|byte| byte.is_ascii_alphanumeric() || b"_$".contains(byte));
    let value = value.strip_suffix(b";").unwrap_or(value).trim_ascii_end();
    let continued = value
        .last()
        .is_none_or(|byte| b"([{,+\\".contains(byte) || (*byte == b'.' && !value.ends_with(b"..")));
    (valid && !continued && value.len() <= STATEMENT_BYTES).then_some((name, value))
}

/// Joins into `out`, after a `+` (so that the literal search reads it as a changed line),
/// the statement that starts with the added line `first` and goes on
/// over the new-side lines (added or context) that follow it in its hunk, each trimmed
/// and after one space, passing over removed lines: while a `(` or `[` is open, a line
/// ends with a character that continues it (`(` `[` `,` `+` `%` `=` `.` `\`), or the next
/// one starts with one that does (`leads`). At most
/// `STATEMENT_LINES` lines are joined, `STATEMENT_BYTES` bytes in all, and
/// `STATEMENT_REACH` lines looked at. Whether the statement goes on past `first`.
fn join_statement<'a>(first: &'a [u8], following: Following<'a>, out: &mut Vec<u8>) -> bool {
    out.clear();
    let mut depth = bracket_depth(first);
    if !continues(depth, first) {
        // Most lines end their statement: decide from the next line's first bytes, as
        // the loop below would, without walking the lines.
        if let Following::Input(rest) = following
            && let Some((b'+' | b' ', after)) = rest.split_first()
        {
            let next = &after[..memchr(b'\n', after).unwrap_or(after.len())];
            let next = next.trim_ascii_start();
            if !leads(next) && !adjacent_literals(first, next) {
                return false;
            }
        }
    }
    let mut last = first;
    let mut extend = |next: &'a [u8]| {
        let next = next.trim_ascii_start();
        if !(continues(depth, last) || leads(next) || adjacent_literals(last, next)) {
            return false;
        }
        let next = next.trim_ascii_end();
        if out.len().max(1 + first.len()) + next.len() > STATEMENT_BYTES {
            return false;
        }
        if out.is_empty() {
            out.push(b'+');
            out.extend_from_slice(first);
        }
        out.push(b' ');
        out.extend_from_slice(next);
        depth += bracket_depth(next);
        last = next;
        true
    };
    join_lines(following.lines(), &mut extend) > 0
}

impl<'a> Following<'a> {
    /// Each line that follows: `Some(text)` on the new side, `None` removed.
    fn lines(self) -> Box<dyn Iterator<Item = Option<&'a [u8]>> + 'a> {
        match self {
            Following::Input(rest) => Box::new(
                raw_lines(rest, 0..rest.len())
                    .map(|(start, end)| &rest[start..end])
                    // `\ No newline at end of file` is no line of either side.
                    .filter(|line| line.first() != Some(&b'\\'))
                    .map(|line| match line.split_first() {
                        Some((b'-', _)) => None,
                        Some((_, text)) => Some(text),
                        // An empty line is an empty context line.
                        None => Some(line),
                    }),
            ),
            #[cfg(test)]
            Following::Parsed(lines) => Box::new(
                lines
                    .iter()
                    .map(|line| (line.kind != LineKind::Removed).then_some(&line.text[..])),
            ),
        }
    }
}

/// Feeds `extend` the new-side lines among the first `STATEMENT_REACH` of `lines`, at
/// most `STATEMENT_LINES` of them, until it refuses one; how many it took.
fn join_lines<'a>(
    lines: impl Iterator<Item = Option<&'a [u8]>>,
    extend: &mut impl FnMut(&'a [u8]) -> bool,
) -> usize {
    lines
        .take(STATEMENT_REACH)
        .flatten()
        .take(STATEMENT_LINES)
        .take_while(|&line| extend(line))
        .count()
}

/// Opened minus closed round and square brackets on a line.
fn bracket_depth(text: &[u8]) -> i32 {
    // 32 bytes at a time into a byte-wide sum, without branches, so that the compiler
    // runs it on vectors.
    let step = |sum: i8, &byte: &u8| {
        sum + i8::from(byte == b'(') + i8::from(byte == b'[')
            - i8::from(byte == b')')
            - i8::from(byte == b']')
    };
    let mut chunks = text.chunks_exact(32);
    let mut depth: i32 = (&mut chunks)
        .map(|chunk| i32::from(chunk.iter().fold(0, step)))
        .sum();
    depth += i32::from(chunks.remainder().iter().fold(0, step));
    depth
}

/// Whether a (trimmed) line goes on with the statement before it: it starts with a
/// closing bracket, an operator (`.name`, `+ `, `? `, `||`, `&&`), a string's closing
/// quote, or a SQL clause's first word (a query written over several lines of a string).
fn leads(line: &[u8]) -> bool {
    const CLAUSES: [&[u8]; 13] = [
        b"WHERE",
        b"AND",
        b"OR",
        b"SET",
        b"FROM",
        b"VALUES",
        b"JOIN",
        b"ON",
        b"ORDER",
        b"GROUP",
        b"LIMIT",
        b"RETURNING",
        b"LEFT",
    ];
    let second = line.get(1).copied().unwrap_or(b' ');
    match line.first() {
        Some(b')' | b']' | b'`') => true,
        // A method chain, a concatenation, a ternary, a condition: not a list item of a
        // document, nor a changed line quoted from a diff.
        Some(b'.') => second.is_ascii_alphabetic() || second == b'_',
        Some(b'+' | b'?') => second.is_ascii_whitespace() || matches!(second, b'"' | b'\''),
        Some(b'|') => second == b'|',
        Some(b'&') => second == b'&',
        Some(b'"' | b'\'') => line.starts_with(b"\"\"\"") || line.starts_with(b"\'\'\'"),
        // Python's %-formatting of the string above: `% (kind, ids)`.
        Some(b'%') => {
            second == b' '
                && line.get(2).is_some_and(|byte| {
                    matches!(byte, b'(' | b'[' | b'{' | b'_') || byte.is_ascii_alphabetic()
                })
        }
        // The `state: absent` of an Ansible task whose `path:` is the line above.
        Some(b's') => line.starts_with(b"state: absent") || line.starts_with(b"state=absent"),
        Some(b'A'..=b'Z') => {
            let word = line
                .split(|byte| !byte.is_ascii_uppercase())
                .next()
                .unwrap_or(line);
            CLAUSES.contains(&word)
                && line
                    .get(word.len())
                    .is_none_or(|byte| !byte.is_ascii_alphanumeric() && *byte != b'_')
        }
        _ => false,
    }
}

/// The tables named after each `words` (`create table`, `drop table`, any case) on a
/// line, past `IF [NOT] EXISTS`: lowercase, without quotes, brackets or schema.
fn tables_after(line: &[u8], words: &[u8]) -> impl Iterator<Item = Vec<u8>> {
    let lower = line.to_ascii_lowercase();
    let mut names = Vec::new();
    let mut from = 0;
    while let Some(at) = memchr::memmem::find(&lower[from..], words) {
        let mut rest = lower[from + at + words.len()..].trim_ascii_start();
        for skip in [&b"if not exists"[..], b"if exists"] {
            if let Some(after) = rest.strip_prefix(skip) {
                rest = after.trim_ascii_start();
            }
        }
        let name: Vec<u8> = rest
            .iter()
            .copied()
            .take_while(|&byte| {
                byte.is_ascii_alphanumeric()
                    || matches!(byte, b'_' | b'.' | b'"' | b'`' | b'[' | b']')
            })
            .filter(|byte| !matches!(byte, b'"' | b'`' | b'[' | b']'))
            .collect();
        let table = name.rsplit(|&byte| byte == b'.').next().unwrap_or_default();
        if !table.is_empty() {
            names.push(table.to_vec());
        }
        from += at + words.len();
    }
    names.into_iter()
}

/// Whether a (trimmed) line may go on with a statement opened above it, by its own
/// looks: it leads (`leads`), starts with a string (`"`, `f"`, `$"`...) or a SQL verb,
/// ends with `,` (an argument, an item), or closes a bracket and opens none. Only
/// from such a line is the statement's start looked for above it
/// (`Around::statement_start`); the rest pay nothing for it.
fn may_continue_above(line: &[u8]) -> bool {
    const VERBS: [&[u8]; 5] = [b"SELECT ", b"INSERT ", b"UPDATE ", b"DELETE ", b"WITH "];
    // Most lines are decided by their last byte and their first two.
    let (Some(&first), Some(&last)) = (line.first(), line.last()) else {
        return false;
    };
    let second = line.get(1).copied().unwrap_or(b' ');
    let closes = match last {
        b',' => return true,
        b')' | b']' => true,
        b';' => matches!(line.get(line.len().wrapping_sub(2)), Some(b')' | b']')),
        _ => false,
    };
    matches!(first, b'"' | b'\'')
        || (matches!(first, b'f' | b'r' | b'b' | b'u' | b'$' | b'@') && matches!(second, b'"' | b'\''))
        || (matches!(first, b'S' | b'I' | b'U' | b'D' | b'W')
            && VERBS.iter().any(|verb| line.starts_with(verb)))
        || leads(line)
        // Closes a call or a list it does not open: `shell=True)`.
        || (closes && memchr::memchr2(b'(', b'[', line).is_none())
}

/// A line ending with a string literal and the next starting with one: literals the
/// language joins into one (`"SELECT … "` then `"WHERE … '%s'" % region`).
fn adjacent_literals(line: &[u8], next: &[u8]) -> bool {
    matches!(line.trim_ascii_end().last(), Some(b'"' | b'\''))
        && matches!(next.first(), Some(b'"' | b'\''))
}

/// Whether a statement goes on after `line`, with `depth` brackets open after it.
fn continues(depth: i32, line: &[u8]) -> bool {
    let line = line.trim_ascii_end();
    // Python's `except …:` goes on with its handler's first line.
    let handler = || line.ends_with(b":") && line.trim_ascii_start().starts_with(b"except");
    depth > 0
        || handler()
        || matches!(
            line.last(),
            Some(b'(' | b'[' | b',' | b'+' | b'%' | b'=' | b'.' | b'\\')
        )
        // PL/pgSQL's `EXECUTE` with the SQL it runs on the lines below.
        || line
            .len()
            .checked_sub(b"EXECUTE".len())
            .is_some_and(|start| {
                line[start..].eq_ignore_ascii_case(b"EXECUTE")
                    && line[..start]
                        .last()
                        .is_none_or(|byte| !byte.is_ascii_alphanumeric() && *byte != b'_')
            })
}

fn change_verb(change: ChangeKind) -> &'static str {
    match change {
        ChangeKind::Added => "added",
        ChangeKind::Deleted => "deleted",
        ChangeKind::Modified => "modified",
        ChangeKind::Renamed => "renamed to",
        ChangeKind::Copied => "copied to",
    }
}

/// The migration directories as `is_migration_path` takes them: without the slashes
/// around them, and none empty. Done once per scan rather than for each path.
fn migration_dirs(configured: &[String]) -> Vec<&str> {
    configured
        .iter()
        .map(|dir| dir.trim_matches('/'))
        .filter(|dir| !dir.is_empty())
        .collect()
}

fn is_migration_path(path: &str, migration_dirs: &[&str]) -> bool {
    migration_dirs.iter().any(|dir| has_directory(path, dir))
}

/// Whether `path` has the directory `dir` (one or more components) at its root or below
/// any directory: `dir/…` or `…/dir/…`. Called per file of every scan, so it allocates
/// nothing.
fn has_directory(path: &str, dir: &str) -> bool {
    let (path, dir) = (path.as_bytes(), dir.as_bytes());
    std::iter::once(0)
        .chain(memchr_iter(b'/', path).map(|slash| slash + 1))
        .any(|at| path[at..].starts_with(dir) && path.get(at + dir.len()) == Some(&b'/'))
}

/// Whether `path` starts with `prefix` at its root or right after any `/`.
fn has_prefix_at_component(path: &str, prefix: &str) -> bool {
    path.starts_with(prefix)
        || path.match_indices('/').any(|(slash, _)| {
            path.get(slash + 1..)
                .is_some_and(|rest| rest.starts_with(prefix))
        })
}

/// Lockfiles, vendored and generated files (build output, compiled assets, coverage
/// reports, code generators' output), an IDE's project files, and the release-note
/// fragments a release compiles into its changelog and removes: large mechanical
/// deletions that say nothing about lost work.
fn is_generated_path(path: &str) -> bool {
    const NAMES: &[&str] = &[
        "package-lock.json",
        "yarn.lock",
        "pnpm-lock.yaml",
        "Cargo.lock",
        "go.sum",
        "poetry.lock",
        "Gemfile.lock",
        "composer.lock",
        "Pipfile.lock",
        "uv.lock",
    ];
    // Directories, by one path component or two in a row (`coverage/lcov-report`).
    const DIRECTORIES: &[&str] = &[
        "vendor",
        "node_modules",
        "dist",
        "build",
        "__snapshots__",
        "third_party",
        "htmlcov",
        "newsfragments",
        "changelog.d",
        ".changeset",
        ".idea",
    ];
    const NESTED: &[(&str, &str)] = &[
        ("coverage", "lcov-report"),
        ("docs", "_build"),
        ("public", "assets"),
        ("public", "packs"),
        ("public", "build"),
    ];
    // Code generators' output (protobuf, gRPC, Kubernetes deepcopy).
    const SUFFIXES: &[&str] = &[
        ".min.js",
        ".snap",
        ".pb.go",
        "_grpc.pb.go",
        "_pb2.py",
        "_pb2_grpc.py",
        "_pb2.pyi",
        ".pb.cc",
        ".pb.h",
        "_pb.js",
        "_pb.d.ts",
        "_generated.go",
    ];
    let (directories, name) = path.rsplit_once('/').unwrap_or(("", path));
    if NAMES.contains(&name)
        || SUFFIXES.iter().any(|suffix| name.ends_with(suffix))
        || name.starts_with("zz_generated")
    {
        return true;
    }
    let mut parent = "";
    directories.split('/').any(|directory| {
        let generated = DIRECTORIES.contains(&directory) || NESTED.contains(&(parent, directory));
        parent = directory;
        generated
    })
}

/// When the file's length is known (from the base tree, or from a diff whose hunks reach
/// the file's end), a file kept with at least this many lines removed, making up at least
/// this percentage of it, is gutted whatever `min_gutted_lines` says.
const GUTTED_FLOOR_LINES: usize = 30;
const GUTTED_SHARE_PERCENT: usize = 66;

/// The number of lines of a changed file in the base tree, if it has the file.
fn line_count(base: &dyn BaseTree, file: &FileSummary<'_>) -> Option<usize> {
    let text = base.read(&[file.path]).pop().flatten()?;
    let newlines = memchr_iter(b'\n', &text).count();
    Some(newlines + usize::from(!text.is_empty() && !text.ends_with(b"\n")))
}

/// Documentation and data files, whose wholesale removal is no code gutted.
fn is_data_path(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    let extension = name.rsplit_once('.').map_or("", |(_, extension)| extension);
    [
        "md", "rst", "txt", "csv", "tsv", "json", "jsonl", "snap", "svg", "po", "pot",
    ]
    .iter()
    .any(|data| extension.eq_ignore_ascii_case(data))
}

/// The deepest directory containing every path, or `.`.
fn common_directory(paths: &[&str]) -> String {
    let mut prefix: Option<Vec<&str>> = None;
    for path in paths {
        let mut parts: Vec<&str> = path.split('/').collect();
        parts.pop();
        prefix = Some(match prefix {
            None => parts,
            Some(current) => current
                .iter()
                .zip(&parts)
                .take_while(|(a, b)| a == b)
                .map(|(a, _)| *a)
                .collect(),
        });
    }
    match prefix {
        Some(parts) if !parts.is_empty() => parts.join("/"),
        _ => ".".to_owned(),
    }
}

fn apply_allowlists(findings: &mut [Finding], options: &ScanOptions) -> Result<(), ScanError> {
    let path_globs = if options.allow_paths.is_empty() {
        None
    } else {
        let regexes: Vec<String> = options
            .allow_paths
            .iter()
            .map(|glob| glob_to_regex(glob))
            .collect();
        let refs: Vec<&str> = regexes.iter().map(String::as_str).collect();
        Some(
            build_regex(&refs).map_err(|reason| ScanError::BadAllowGlob {
                glob: options.allow_paths.join(", "),
                reason,
            })?,
        )
    };
    for finding in findings
        .iter_mut()
        .filter(|finding| finding.allowed.is_none())
    {
        if options
            .allow_rules
            .iter()
            .any(|rule| *rule == finding.rule || rule == finding.category.as_str())
        {
            finding.allowed = Some("allowlisted rule".to_owned());
        } else if options.allow_fingerprints.contains(&finding.fingerprint) {
            finding.allowed = Some("allowlisted fingerprint".to_owned());
        } else if let Some(regex) = &path_globs
            && let Some(matched) = regex.search(&Input::new(&finding.path))
        {
            finding.allowed = Some(format!(
                "allowlisted path `{}`",
                options.allow_paths[matched.pattern().as_usize()]
            ));
        }
    }
    Ok(())
}

/// The plain engine, kept as the reference the tests hold `Scanner::scan` to: an owned
/// parse, every changed line through the keyword automaton and the combined regex, the
/// added lines hashed as they come.
#[cfg(test)]
impl Scanner {
    pub(crate) fn scan_reference(
        &self,
        diff: &[u8],
        options: &ScanOptions,
    ) -> Result<ScanReport, ScanError> {
        if let Some(early) = early_report(diff, options) {
            return early;
        }
        let patch = airlock_diff::parse(diff).map_err(ScanError::Parse)?;
        let mut state = ScanState::new(options);
        let mut scratch = self.scratch();
        let mut summaries: Vec<FileSummary<'_>> = patch
            .files
            .iter()
            .map(|file| self.scan_file_reference(file, &mut scratch, &mut state))
            .collect();
        let lines = |index: usize| {
            patch.files[index]
                .hunks
                .iter()
                .flat_map(|hunk| &hunk.lines)
                .filter(|line| line.kind != LineKind::Context)
                .map(|line| (line.kind == LineKind::Added, &line.text[..]))
                .collect()
        };
        mark_moved(&mut summaries, lines);
        self.drop_moved_deletions(&summaries, &options.gate_paths, &mut state);
        moved_checks(&summaries, &mut state, lines);
        moved_lines(&summaries, &mut state, lines);
        self.finish_scan(&summaries, options, None, state)
    }

    fn scan_file_reference<'a>(
        &self,
        file: &'a airlock_diff::FilePatch,
        scratch: &mut LineScratch,
        state: &mut ScanState,
    ) -> FileSummary<'a> {
        let path = file.path();
        state.stats.files += 1;
        let summary = FileSummary {
            path,
            old_path: file.old_path.as_deref(),
            new_path: file.new_path.as_deref(),
            kind: file.kind,
            added: file.lines_added(),
            removed: file.lines_removed(),
            old_lines: file.old_lines().map(|lines| lines as usize),
            moved: false,
        };
        let mut plan = FilePlan::default();
        self.fill_applies(
            path,
            file.old_path.as_deref(),
            file.kind,
            &state.gate_paths,
            &mut plan,
        );
        plan.fill(self);
        let applies = &plan.applies;
        self.file_rules(path, file.old_path.as_deref(), file.kind, applies, state);
        if file.binary {
            state.stats.binary_files += 1;
            return summary;
        }
        let first = state.findings.len();
        let mut file_state = FileState::default();
        for hunk in &file.hunks {
            let mut new_line = hunk.new_start;
            for (index, line) in hunk.lines.iter().enumerate() {
                match line.kind {
                    LineKind::Context => new_line = new_line.saturating_add(1),
                    LineKind::Added => {
                        state.stats.added_lines += 1;
                        file_state.add_line(&line.text, true);
                        let at = LineAt {
                            path,
                            text: &line.text,
                            around: Around::Parsed {
                                lines: &hunk.lines,
                                index,
                            },
                            side: Side::Added,
                            number: new_line,
                        };
                        self.scan_line(&at, applies, scratch, &mut file_state, state);
                        // As the fast path: only from a line with candidates of its own.
                        let hits = self.reference_hits(&plan, &line.text);
                        if self.line_candidates(Side::Added, &hits, &plan, scratch) {
                            self.scan_statement(&at, &plan, scratch, &mut file_state, state);
                        }
                        new_line = new_line.saturating_add(1);
                    }
                    LineKind::Removed => {
                        state.stats.removed_lines += 1;
                        let at = LineAt {
                            path,
                            text: &line.text,
                            around: Around::Removed,
                            side: Side::Removed,
                            number: new_line,
                        };
                        self.scan_line(&at, applies, scratch, &mut file_state, state);
                    }
                }
            }
        }
        self.finish_file(path, file_state, state);
        self.drop_unless_file(first, state, || {
            file.hunks
                .iter()
                .flat_map(|hunk| &hunk.lines)
                .filter(|line| line.kind == LineKind::Added)
                .map(|line| &line.text[..])
                .collect()
        });
        summary
    }

    /// The trigger literals on one line, searched for on their own.
    fn reference_hits(&self, plan: &FilePlan, text: &[u8]) -> RunHits {
        let mut hits = RunHits::new();
        if let Some(searcher) = &plan.searcher {
            let input = [b"+", text].concat();
            searcher.scan_run(&self.prefilter, &input, &[(1, input.len())], &mut hits);
        }
        hits
    }
}

#[cfg(test)]
mod tests {
    use super::{
        assignment, call_arguments, common_directory, fixed_value, format_arguments,
        function_definition, has_directory, interpolations, is_generated_path, is_migration_path,
        migration_dirs, parameter_name, split_arguments, text_hash,
    };

    /// Servers share one scanner between worker threads; its searcher cache must not
    /// change that.
    #[test]
    fn function_definitions_and_call_arguments() {
        let definition = |line: &str| {
            function_definition(line.as_bytes()).map(|(name, parameters)| {
                let names: Vec<String> = split_arguments(parameters)
                    .map(|p| String::from_utf8_lossy(parameter_name(p)).into_owned())
                    .collect();
                (String::from_utf8_lossy(name).into_owned(), names)
            })
        };
        let expect = |name: &str, parameters: &[&str]| {
            Some((
                name.to_string(),
                parameters.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
            ))
        };
        assert_eq!(
            definition("function resetUploads(dir) {"),
            expect("resetUploads", &["dir"])
        );
        assert_eq!(
            definition("  export async function purge(dir, { force } = {}) {"),
            expect("purge", &["dir", ""])
        );
        assert_eq!(
            definition("    async def purge(self, root: Path, days=7) -> None:"),
            expect("purge", &["", "root", "days"])
        );
        assert_eq!(
            definition("pub fn wipe<P: AsRef<Path>>(mut dir: P, keep: &[String]) {"),
            expect("wipe", &["dir", "keep"])
        );
        assert_eq!(
            definition("func (s *Store) clean(dir string, n int) error {"),
            expect("clean", &["dir", "n"])
        );
        assert_eq!(
            definition("const wipe = async (dir: string): Promise<void> => {"),
            expect("wipe", &["dir"])
        );
        assert_eq!(definition("def purge"), None);
        assert_eq!(definition("const x = (a + b) * 2;"), None);
        assert_eq!(definition("purge(dir)"), None);
        assert_eq!(definition("function broken(dir {"), None);

        let arguments = |text: &str| -> Vec<String> {
            call_arguments(text.as_bytes())
                .map(|list| {
                    split_arguments(list)
                        .map(|a| String::from_utf8_lossy(a.trim_ascii()).into_owned())
                        .collect()
                })
                .unwrap_or_default()
        };
        assert_eq!(
            arguments("a, f(b, c), \"x, y\", [1, 2]) + 1"),
            ["a", "f(b, c)", "\"x, y\"", "[1, 2]"]
        );
        assert_eq!(arguments(") rest"), Vec::<String>::new());
        assert_eq!(arguments("a, (b"), Vec::<String>::new());
        assert_eq!(arguments("a]"), Vec::<String>::new());
    }

    #[test]
    fn interpolated_values_and_fixed_ones() {
        let found = |text: &str| -> Vec<String> {
            interpolations(text.as_bytes())
                .map(|value| String::from_utf8_lossy(value).into_owned())
                .collect()
        };
        assert_eq!(
            found(r#"f"ORDER BY {sort} {direction!r} LIMIT ${len(args)} {{x}}""#),
            ["sort", "direction", "len(args)"]
        );
        assert_eq!(
            found(r#""SELECT * FROM t ORDER BY " + col + " DESC""#),
            ["col"]
        );
        assert_eq!(found(r#"`WHERE id = ${id}`"#), ["id"]);
        assert_eq!(found("a + 1"), Vec::<String>::new());
        assert_eq!(
            found(r#""WHERE a = ?" + (active ? " AND b" : "") + " ORDER BY c" + req.query.id"#),
            [r#"(active ? " AND b" : "")"#, "req.query.id"]
        );
        assert_eq!(found(r#"sql += " AND a = ?""#), Vec::<String>::new());
        let formatted = |text: &str| -> Vec<String> {
            format_arguments(text.as_bytes())
                .map(|value| String::from_utf8_lossy(value).into_owned())
                .collect()
        };
        assert_eq!(
            formatted(r#"q := fmt.Sprintf("SELECT id FROM t ORDER BY %s %s", col, dir)"#),
            ["col", "dir"]
        );
        assert_eq!(
            formatted(r#"String.format("DELETE FROM %s WHERE id = ?", table(name))"#),
            ["table(name)"]
        );
        assert_eq!(
            assignment(b"col, ok := sortColumns[key]"),
            Some((&b"col"[..], &b"sortColumns[key]"[..]))
        );
        assert_eq!(assignment(b"a, b = 1, 2"), None);
        for value in [
            r#""created_at""#,
            r#""DESC" if desc else "ASC""#,
            r#"active ? " AND active = true" : """#,
            r#"SORT_COLUMNS.get(request.args.get("sort"), "created_at")"#,
            "allowed_columns[key]",
        ] {
            assert!(fixed_value(value.as_bytes()), "{value}");
        }
        for value in [
            r#"request.args.get("sort")"#,
            r#""DESC" if desc else direction"#,
            r#"active ? " AND owner = " + owner : """#,
            r#"f"{col}""#,
            "columns_for(user)[0]",
            r#"" AND ".join(clauses)"#,
        ] {
            assert!(!fixed_value(value.as_bytes()), "{value}");
        }
    }

    #[test]
    fn scanner_is_shared_across_threads() {
        fn shared<T: Send + Sync + std::panic::RefUnwindSafe>() {}
        shared::<super::Scanner>();
    }

    #[test]
    fn paths() {
        let configured = vec![
            "migrations/".to_owned(),
            "/db/migrate/".to_owned(),
            "/".to_owned(),
        ];
        let dirs = migration_dirs(&configured);
        assert_eq!(dirs, ["migrations", "db/migrate"]);
        assert!(is_migration_path("app/migrations/0002_x.py", &dirs));
        assert!(is_migration_path("db/migrate/2024_add.rb", &dirs));
        assert!(!is_migration_path("app/models.py", &dirs));
        assert_eq!(text_hash(b"  a = b(c)  "), text_hash(b"a\t=  b(c)"));
        assert_eq!(text_hash(b"a b"), text_hash(b"a \r\n b"));
        assert_ne!(text_hash(b"a b"), text_hash(b"ab"));
        assert_ne!(text_hash(b"a b c"), text_hash(b"a bc"));
        assert!(is_generated_path("web/package-lock.json"));
        assert!(is_generated_path("vendor/x/y.go"));
        assert!(!is_generated_path("src/vendors.py"));
        assert!(has_directory("a/db/migrate/x.rb", "db/migrate"));
        assert!(has_directory("db/migrate/x.rb", "db/migrate"));
        assert!(!has_directory("xdb/migrate/x.rb", "db/migrate"));
        assert!(!has_directory("a/db/migrate", "db/migrate"));
        assert!(is_generated_path("a/vendor/x.go"));
        assert!(!is_generated_path("a/xvendor/x.go"));
        assert!(is_generated_path("htmlcov/index.html"));
        assert!(is_generated_path("newsfragments/1234.bugfix.rst"));
        assert!(!is_generated_path("src/coverage/report.py"));
        assert!(is_generated_path("gen/pb/orders/v1/orders.pb.go"));
        assert!(is_generated_path("public/assets/application-3f2a9c.css"));
        assert!(!is_generated_path("src/assets/logo.svg"));
        assert_eq!(common_directory(&["a/b/c.py", "a/b/d/e.py"]), "a/b");
        assert_eq!(common_directory(&["x.py", "a/y.py"]), ".");
    }
}

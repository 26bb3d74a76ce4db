//! The engine: rules compiled once into a keyword prefilter and one multi-pattern regex,
//! then a single pass over the parsed diff that confirms candidates rule by rule.

use std::collections::{HashMap, HashSet};
use std::hash::{DefaultHasher, Hash, Hasher};

use aho_corasick::{AhoCorasick, AhoCorasickBuilder};
use airlock_diff::{FilePatch, LineKind};
use regex_automata::meta::Regex;
use regex_automata::util::syntax;
use regex_automata::{Input, MatchKind, PatternSet};
use serde::{Deserialize, Serialize};

use crate::allow::inline_allow;
use crate::error::{RuleError, ScanError};
use crate::glob::glob_to_regex;
use crate::rule::{Category, ChangeKind, Rule, RuleKind, RulePack, Severity};
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

/// Thresholds of the mass-deletion rules.
#[derive(Debug, Clone, PartialEq)]
pub struct MassDeletionThresholds {
    /// Deleted files (lockfiles, vendored and generated files not counted) that fire
    /// `mass-deletion.files`.
    pub min_deleted_files: usize,
    /// `mass-deletion.lines` fires when at least this many lines are removed …
    pub min_removed_lines: usize,
    /// … making up at least this share of all added and removed lines …
    pub min_removed_share: f64,
    /// … across at least this many files.
    pub min_files: usize,
}

impl Default for MassDeletionThresholds {
    fn default() -> Self {
        MassDeletionThresholds {
            min_deleted_files: 10,
            min_removed_lines: 300,
            min_removed_share: 0.9,
            min_files: 3,
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
                "migration/",
                "db/migrate/",
                "alembic/versions/",
                "prisma/migrations/",
                "sql/migrations/",
                "db/migrations/",
            ]
            .map(str::to_owned)
            .to_vec(),
            mass_deletion: MassDeletionThresholds::default(),
            max_findings: 1000,
            max_input_bytes: 512 * 1024 * 1024,
        }
    }
}

/// A rule pack compiled for scanning. Build once, scan many diffs; `Scanner` is `Sync`.
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
}

#[derive(Debug)]
struct CompiledRule {
    pattern: Option<Regex>,
    /// Group index of `secret` or `value`, and of `name` and `key`.
    value_group: Option<usize>,
    name_group: Option<usize>,
    key_group: Option<usize>,
    confirm: Vec<Regex>,
    reject: Vec<Regex>,
    include: Option<Regex>,
    exclude: Option<Regex>,
}

fn build_regex(patterns: &[&str]) -> Result<Regex, String> {
    Regex::builder()
        .syntax(syntax::Config::new().unicode(false).utf8(false))
        .configure(
            Regex::config()
                .utf8_empty(false)
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

fn compile_globs(
    rule: &Rule,
    key: &'static str,
    globs: &[String],
) -> Result<Option<Regex>, RuleError> {
    if globs.is_empty() {
        return Ok(None);
    }
    let regexes: Vec<String> = globs.iter().map(|glob| glob_to_regex(glob)).collect();
    let refs: Vec<&str> = regexes.iter().map(String::as_str).collect();
    build_regex(&refs)
        .map(Some)
        .map_err(|reason| RuleError::BadPattern {
            id: rule.id.clone(),
            key,
            pattern: globs.join(", "),
            reason,
        })
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
    let group = |name: &str| {
        pattern.as_ref().and_then(|regex| {
            regex
                .group_info()
                .to_index(regex_automata::PatternID::ZERO, name)
        })
    };
    let value_group = group("secret").or_else(|| group("value"));
    if rule.kind == RuleKind::NumericDecrease && group("value").is_none() {
        return Err(RuleError::InvalidRule {
            id: rule.id.clone(),
            key: "pattern",
            reason: "a numeric-decrease pattern needs a `value` group".to_owned(),
        });
    }
    let compile_all = |key: &'static str, texts: &[String]| -> Result<Vec<Regex>, RuleError> {
        texts
            .iter()
            .map(|text| build_regex(&[text]).map_err(|reason| bad(key, text, reason)))
            .collect()
    };
    Ok(CompiledRule {
        value_group,
        name_group: group("name"),
        key_group: group("key"),
        pattern,
        confirm: compile_all("confirm", &rule.confirm)?,
        reject: compile_all("reject", &rule.reject)?,
        include: compile_globs(rule, "paths", &rule.paths)?,
        exclude: compile_globs(rule, "exclude_paths", &rule.exclude_paths)?,
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
    added_hashes: HashSet<u64>,
    pending_removals: Vec<PendingRemoval>,
    net: HashMap<usize, NetCount>,
    numeric_old: Vec<NumericValue>,
    numeric_new: Vec<NumericValue>,
}

/// Scratch space reused across lines of one scan.
#[derive(Debug)]
struct LineScratch {
    /// `marks[rule] == generation` marks the rule as a candidate for the current window.
    marks: Vec<u32>,
    generation: u32,
    candidates: Vec<usize>,
    matched: PatternSet,
}

/// Everything one scan accumulates.
#[derive(Debug)]
struct ScanState {
    findings: Vec<Finding>,
    stats: ScanStats,
    max_findings: usize,
}

impl ScanState {
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

fn text_hash(text: &[u8]) -> u64 {
    let mut hasher = DefaultHasher::new();
    text.trim_ascii().hash(&mut hasher);
    hasher.finish()
}

impl Scanner {
    /// Compiles every rule of `pack`. Fails naming the rule and the pattern that does not
    /// compile, or the numeric rule without a `value` group.
    pub fn new(pack: &RulePack) -> Result<Scanner, RuleError> {
        let rules = pack.rules().to_vec();
        let compiled = rules
            .iter()
            .map(compile_rule)
            .collect::<Result<Vec<_>, _>>()?;
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
        Ok(Scanner {
            rules,
            compiled,
            keywords,
            keyword_rules,
            keywordless_rules,
            all_patterns,
            pattern_rules,
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
        if diff.len() > options.max_input_bytes {
            return Err(ScanError::TooLarge {
                size: diff.len(),
                limit: options.max_input_bytes,
            });
        }
        if diff.trim_ascii().is_empty() {
            return Ok(ScanReport::default());
        }
        let patch = airlock_diff::parse(diff).map_err(ScanError::Parse)?;
        let mut state = ScanState {
            findings: Vec::new(),
            stats: ScanStats::default(),
            max_findings: options.max_findings,
        };
        let mut scratch = LineScratch {
            marks: vec![0; self.rules.len()],
            generation: 0,
            candidates: Vec::new(),
            matched: PatternSet::new(self.all_patterns.pattern_len()),
        };
        for file in &patch.files {
            self.scan_file(file, &mut scratch, &mut state);
        }
        self.mass_deletion(&patch.files, options, &mut state);

        let migration_in_change = patch.files.iter().any(|file| {
            [file.old_path.as_deref(), file.new_path.as_deref()]
                .into_iter()
                .flatten()
                .any(|path| is_migration_path(path, &options.migration_dirs))
        });
        let mut findings = state.findings;
        if migration_in_change {
            findings.retain(|finding| {
                !self
                    .rules
                    .iter()
                    .any(|rule| rule.id == finding.rule && rule.unless_migration)
            });
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

    fn path_applies(&self, rule: usize, path: &str) -> bool {
        let compiled = &self.compiled[rule];
        compiled
            .include
            .as_ref()
            .is_none_or(|include| include.is_match(path))
            && !compiled
                .exclude
                .as_ref()
                .is_some_and(|exclude| exclude.is_match(path))
    }

    fn scan_file(&self, file: &FilePatch, scratch: &mut LineScratch, state: &mut ScanState) {
        let path = file.path();
        state.stats.files += 1;
        let applies: Vec<bool> = (0..self.rules.len())
            .map(|rule| {
                self.path_applies(rule, path)
                    || file
                        .old_path
                        .as_deref()
                        .is_some_and(|old| old != path && self.path_applies(rule, old))
            })
            .collect();
        let change = ChangeKind::from(file.kind);
        for (index, rule) in self.rules.iter().enumerate() {
            if rule.kind == RuleKind::File
                && applies[index]
                && (rule.changes.is_empty() || rule.changes.contains(&change))
            {
                let mut finding = self.finding(index, path, 0, format!("{change:?}").as_bytes());
                finding.preview = Some(format!("{} {path}", change_verb(change)));
                state.push(finding);
            }
        }
        if file.binary {
            state.stats.binary_files += 1;
            return;
        }
        let mut file_state = FileState::default();
        for hunk in &file.hunks {
            let mut new_line = hunk.new_start;
            let mut previous: Option<&[u8]> = None;
            for line in &hunk.lines {
                match line.kind {
                    LineKind::Context => {
                        previous = Some(&line.text);
                        new_line = new_line.saturating_add(1);
                    }
                    LineKind::Added => {
                        state.stats.added_lines += 1;
                        file_state.added_hashes.insert(text_hash(&line.text));
                        self.scan_line(
                            LineAt {
                                path,
                                text: &line.text,
                                previous,
                                side: Side::Added,
                                number: new_line,
                            },
                            &applies,
                            scratch,
                            &mut file_state,
                            state,
                        );
                        previous = Some(&line.text);
                        new_line = new_line.saturating_add(1);
                    }
                    LineKind::Removed => {
                        state.stats.removed_lines += 1;
                        self.scan_line(
                            LineAt {
                                path,
                                text: &line.text,
                                previous: None,
                                side: Side::Removed,
                                number: new_line,
                            },
                            &applies,
                            scratch,
                            &mut file_state,
                            state,
                        );
                    }
                }
            }
        }
        self.finish_file(path, file_state, state);
    }

    fn scan_line(
        &self,
        line: LineAt<'_>,
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
            self.scan_window(
                &line,
                &text[start..end],
                applies,
                scratch,
                file_state,
                state,
            );
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
        scratch.generation = scratch.generation.wrapping_add(1);
        if scratch.generation == 0 {
            scratch.marks.fill(0);
            scratch.generation = 1;
        }
        let generation = scratch.generation;
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
                self.confirm(rule, line, window, file_state, state);
            }
        }
    }

    /// Runs one candidate rule on one window with captures and records what it finds.
    fn confirm(
        &self,
        rule: usize,
        line: &LineAt<'_>,
        window: &[u8],
        file_state: &mut FileState,
        state: &mut ScanState,
    ) {
        let rule_data = &self.rules[rule];
        let compiled = &self.compiled[rule];
        let counts_on_side = match line.side {
            Side::Added => {
                rule_data.lines.added()
                    || rule_data.net
                    || rule_data.kind == RuleKind::NumericDecrease
            }
            Side::Removed => {
                rule_data.lines.removed() || rule_data.kind == RuleKind::NumericDecrease
            }
        };
        if !counts_on_side
            || compiled.reject.iter().any(|regex| regex.is_match(window))
            || !compiled.confirm.iter().all(|regex| regex.is_match(window))
        {
            return;
        }
        let Some(pattern) = &compiled.pattern else {
            return;
        };
        for captures in pattern.captures_iter(window).take(MATCHES_PER_WINDOW) {
            let Some(whole) = captures.get_match() else {
                continue;
            };
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
        let is_secret = rule_data.category == Category::Secret;
        let content = if is_secret { value } else { matched };
        // An agent must not be able to silence the rules that watch the gate itself.
        let allowable = rule_data.category != Category::GateTamper;
        let allowed = || {
            if !allowable {
                return None;
            }
            inline_allow(line.text, &rule_data.id, rule_data.category.as_str()).or_else(|| {
                line.previous.and_then(|previous| {
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
        if rule_data.kind == RuleKind::NumericDecrease {
            let Some(number) = std::str::from_utf8(value)
                .ok()
                .and_then(|text| text.parse::<f64>().ok())
            else {
                return;
            };
            let entry = NumericValue {
                rule,
                key: key.unwrap_or_default().to_ascii_lowercase(),
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
                }
            }
            return;
        }
        match line.side {
            Side::Added => {
                let mut finding = self.finding(rule, line.path, line.number, content);
                finding.preview = Some(preview());
                finding.allowed = allowed();
                state.push(finding);
            }
            Side::Removed => {
                if file_state.pending_removals.len() < PENDING_PER_FILE {
                    file_state.pending_removals.push(PendingRemoval {
                        rule,
                        line: line.number,
                        text_hash: text_hash(line.text),
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
            let mut finding = self.finding(pending.rule, path, pending.line, &pending.content);
            finding.preview = Some(pending.excerpt);
            finding.allowed = pending.allowed;
            state.push(finding);
        }
        let mut net: Vec<(usize, NetCount)> = file_state.net.into_iter().collect();
        net.sort_by_key(|(rule, _)| *rule);
        for (rule, count) in net {
            if count.removed > count.added {
                let mut finding = self.finding(rule, path, count.first_line, &count.content);
                finding.preview = Some(format!(
                    "{} removed, {} added; first removed: {}",
                    count.removed, count.added, count.excerpt
                ));
                state.push(finding);
            }
        }
        for old in &file_state.numeric_old {
            let replacement = file_state
                .numeric_new
                .iter()
                .find(|new| new.rule == old.rule && new.key == old.key);
            let (line, preview) = match replacement {
                Some(new) if new.value < old.value => {
                    (new.line, format!("{} → {}", old.excerpt, new.excerpt))
                }
                Some(_) => continue,
                None => (old.line, format!("removed: {}", old.excerpt)),
            };
            let mut finding = self.finding(old.rule, path, line, &old.key);
            finding.preview = Some(preview);
            state.push(finding);
        }
    }

    fn mass_deletion(&self, files: &[FilePatch], options: &ScanOptions, state: &mut ScanState) {
        let thresholds = &options.mass_deletion;
        let counted: Vec<&FilePatch> = files
            .iter()
            .filter(|file| !is_generated_path(file.path()))
            .collect();
        let deleted: Vec<&str> = counted
            .iter()
            .filter(|file| file.kind == airlock_diff::FileChangeKind::Deleted)
            .map(|file| file.path())
            .collect();
        let (mut removed, mut added, mut files_with_removals) = (0usize, 0usize, Vec::new());
        for file in &counted {
            let file_removed = file.lines_removed();
            removed += file_removed;
            added += file.lines_added();
            if file_removed > 0 {
                files_with_removals.push(file.path());
            }
        }
        for (index, rule) in self.rules.iter().enumerate() {
            let (fires, paths, preview) = match rule.kind {
                RuleKind::MassDeletionFiles => (
                    deleted.len() >= thresholds.min_deleted_files,
                    &deleted,
                    format!("{} files deleted", deleted.len()),
                ),
                RuleKind::MassDeletionLines => (
                    removed >= thresholds.min_removed_lines
                        && removed as f64
                            >= thresholds.min_removed_share * (removed + added) as f64
                        && files_with_removals.len() >= thresholds.min_files,
                    &files_with_removals,
                    format!(
                        "{removed} lines removed and {added} added across {} files",
                        files_with_removals.len()
                    ),
                ),
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

/// One line being scanned, with where it is.
#[derive(Debug)]
struct LineAt<'a> {
    path: &'a str,
    text: &'a [u8],
    /// The new-side line just before an added line, for `airlock:allow` on its own line.
    previous: Option<&'a [u8]>,
    side: Side,
    number: u32,
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

fn is_migration_path(path: &str, migration_dirs: &[String]) -> bool {
    migration_dirs.iter().any(|dir| {
        let dir = dir.trim_matches('/');
        !dir.is_empty()
            && (path.starts_with(&format!("{dir}/")) || path.contains(&format!("/{dir}/")))
    })
}

/// Lockfiles, vendored and generated files: large mechanical deletions that say nothing
/// about lost work.
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
    const DIRECTORIES: &[&str] = &[
        "vendor/",
        "node_modules/",
        "dist/",
        "build/",
        "__snapshots__/",
        "third_party/",
    ];
    let name = path.rsplit('/').next().unwrap_or(path);
    NAMES.contains(&name)
        || name.ends_with(".min.js")
        || name.ends_with(".snap")
        || DIRECTORIES
            .iter()
            .any(|dir| path.starts_with(dir) || path.contains(&format!("/{dir}")))
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

#[cfg(test)]
mod tests {
    use super::{common_directory, is_generated_path, is_migration_path};

    #[test]
    fn paths() {
        let dirs = vec!["migrations/".to_owned(), "db/migrate/".to_owned()];
        assert!(is_migration_path("app/migrations/0002_x.py", &dirs));
        assert!(is_migration_path("db/migrate/2024_add.rb", &dirs));
        assert!(!is_migration_path("app/models.py", &dirs));
        assert!(is_generated_path("web/package-lock.json"));
        assert!(is_generated_path("vendor/x/y.go"));
        assert!(!is_generated_path("src/vendors.py"));
        assert_eq!(common_directory(&["a/b/c.py", "a/b/d/e.py"]), "a/b");
        assert_eq!(common_directory(&["x.py", "a/y.py"]), ".");
    }
}

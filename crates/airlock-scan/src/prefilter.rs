//! The line prefilter: which rules can fire on which changed lines, found by one pass over
//! the bytes of the changed lines, before any rule's regex runs.
//!
//! A line rule fires only when one of its keywords, its pattern and each of its confirm
//! regexes all match the line, and each of these implies a short list of literals one of
//! which the line must contain (`literals::necessary_literals`). For each rule the list
//! least likely to occur in source code is its trigger: a line is a candidate for the
//! rule only if it holds a literal of the trigger. On a candidate line the rule's other
//! lists are checked with a small search each, then its regexes run, exactly as the plain
//! engine runs them; so the prefilter decides only how much work is done, never what is
//! found.
//!
//! The search reads the text in four-byte windows with ASCII letters folded to lower
//! case. The first three bytes of a window and the low three bits of its fourth, hashed,
//! select a byte of a 64 KiB table, set for the searched windows (a three-byte literal
//! sets the eight slots its possible fourth bytes fall in). The few windows flagged are
//! verified against the literals that contain them. A table lookup per byte is slower
//! than SIMD literal search on a few patterns, but its cost does not grow with the number
//! of literals (hundreds here), where Aho-Corasick automata and Teddy slow down to a
//! fraction; a keyword automaton over every line cost four times as much.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use aho_corasick::{AhoCorasick, AhoCorasickBuilder};
use regex_automata::util::syntax;

use crate::literals::{
    CASELESS, Literal, LiteralSet, Symbol, caseless_symbol, necessary_literals, set_cost,
    symbol_byte, window_cost,
};
use crate::rule::Rule;

/// Bits of the window table index: 64 KiB, half of it in the first-level cache.
const TABLE_BITS: u32 = 16;
/// Sets bit 5 of every byte: folds ASCII upper case onto lower case (and some
/// punctuation onto other punctuation, which only costs a verification).
const FOLD_32: u32 = 0x2020_2020;
const FOLD_64: u64 = 0x2020_2020_2020_2020;
/// Shortest literal the window search handles; a rule whose lists all have shorter
/// literals is tried on every line of its files.
const MIN_LITERAL: usize = 3;

/// When a rule is a candidate for a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Trigger {
    /// When a literal of this set is on the line.
    Set(u32),
    /// On every line of its files: nothing short enough to search for is known.
    Always,
    /// Never: not a line rule.
    Never,
}

/// How the prefilter treats one rule.
#[derive(Debug)]
pub(crate) struct RulePlan {
    pub(crate) trigger: Trigger,
    /// The rule's keywords, unless every trigger literal holds one.
    pub(crate) keywords: Option<LiteralCheck>,
    /// Trigger literals that hold a keyword: when one is on the line, so is a keyword.
    pub(crate) keyword_literals: Vec<u32>,
    /// Other lists a literal of which must be on the line, checked only on the rule's
    /// candidate lines.
    pub(crate) also: Vec<LiteralCheck>,
}

/// A check that a line holds one of a list of literals, ASCII case-insensitively: for a
/// list with case-sensitive literals a weaker test, but one every line holding a literal
/// passes.
#[derive(Debug)]
pub(crate) enum LiteralCheck {
    /// One byte that is not a letter (`+` of string concatenation).
    Byte(u8),
    Any(AhoCorasick),
}

impl LiteralCheck {
    /// A check for `literals` (bytes, letters compared caseless). A literal that holds
    /// another is left out: a line with it holds the other too.
    fn new(literals: &[Vec<u8>]) -> Option<LiteralCheck> {
        let folded: Vec<Vec<u8>> = literals.iter().map(|l| l.to_ascii_lowercase()).collect();
        let mut minimal: Vec<&Vec<u8>> = folded
            .iter()
            .filter(|literal| {
                !folded.iter().any(|other| {
                    !other.is_empty()
                        && other.len() < literal.len()
                        && literal
                            .windows(other.len())
                            .any(|piece| piece == other.as_slice())
                })
            })
            .collect();
        minimal.sort();
        minimal.dedup();
        if let [only] = minimal.as_slice()
            && let [byte] = only.as_slice()
            && !byte.is_ascii_alphabetic()
        {
            return Some(LiteralCheck::Byte(*byte));
        }
        // Small literal lists; building cannot fail on them.
        AhoCorasickBuilder::new()
            .ascii_case_insensitive(true)
            .build(minimal)
            .ok()
            .map(LiteralCheck::Any)
    }

    pub(crate) fn is_match(&self, text: &[u8]) -> bool {
        match self {
            LiteralCheck::Byte(byte) => text.contains(byte),
            LiteralCheck::Any(search) => search.is_match(text),
        }
    }
}

#[derive(Debug)]
struct PrefilterLiteral {
    symbols: Literal,
    /// The sets this literal belongs to.
    sets: Vec<u32>,
    /// Where its searched window starts: the four-symbol window least likely to occur in
    /// code, which keeps verifications rare. 0 for a three-symbol literal.
    window: u8,
}

/// The compiled prefilter of a rule pack.
#[derive(Debug)]
pub(crate) struct Prefilter {
    literals: Vec<PrefilterLiteral>,
    /// The literals of each set, and the rules it triggers.
    set_literals: Vec<Vec<u32>>,
    set_rules: Vec<Vec<usize>>,
    pub(crate) plans: Vec<RulePlan>,
    /// Searchers by the rules whose triggers they look for. Files of one kind (`*.py`
    /// outside tests, say) share the rules that apply to them, so a few searchers serve
    /// a whole repository; a literal of a rule that does not apply is never searched for.
    searchers: Mutex<HashMap<Vec<u64>, Arc<Searcher>>>,
}

/// Searchers kept per scanner (about 70 KiB each); more kinds of files than this are each
/// searched with a searcher built for the file.
const MAX_SEARCHERS: usize = 64;

/// A search for the trigger literals of some rules.
#[derive(Debug)]
pub(crate) struct Searcher {
    /// At the slots of searched windows (`table_index`): `LONG` for a window of a longer
    /// literal, `SHORT` for a three-byte literal, so that a flagged window is looked up
    /// only where it can be.
    table: Box<[u8; 1 << TABLE_BITS]>,
    /// Folded four-byte windows of literals of four or more bytes → (literal, offset of
    /// the window in the literal).
    long: WindowMap,
    /// Folded three-byte literals → (literal, 0).
    short: WindowMap,
}

/// Where the literals found by `scan_run` are: (index of the line in the run, literal).
pub(crate) type RunHits = Vec<(u32, u32)>;

/// The table slot of a folded window: its first three bytes and the low three bits of
/// its fourth. Leaving out the rest of the fourth byte lets a three-byte literal take 8
/// slots rather than 128; a table lookup, unlike a bit test, needs no variable shift, which
/// costs more than the lookup on x86.
fn table_index(window: u32) -> usize {
    // Multiplicative hashing: the top bits of the product depend on every bit below.
    usize::from(((window & 0x07ff_ffff).wrapping_mul(0x9E37_79B1) >> (32 - TABLE_BITS)) as u16)
}

const LONG: u8 = 1;
const SHORT: u8 = 2;

fn flagged(table: &[u8; 1 << TABLE_BITS], window: u32) -> u8 {
    table[table_index(window)]
}

fn fold_symbol(symbol: Symbol) -> u8 {
    symbol_byte(symbol) | 0x20
}

fn folded_window(symbols: &[Symbol]) -> u32 {
    symbols.iter().rev().fold(0u32, |window, &symbol| {
        window << 8 | u32::from(fold_symbol(symbol))
    })
}

/// Whether `literal` occurs at `at` in `text`: caseless letters in either case, every
/// other symbol exactly.
fn literal_at(text: &[u8], at: usize, literal: &[Symbol]) -> bool {
    let Some(slice) = text.get(at..at + literal.len()) else {
        return false;
    };
    slice.iter().zip(literal).all(|(&byte, &symbol)| {
        if symbol & CASELESS != 0 {
            byte | 0x20 == symbol_byte(symbol)
        } else {
            byte == symbol_byte(symbol)
        }
    })
}

/// Whether a keyword (lowercase, matched caseless) occurs in `literal` wherever the
/// literal occurs: at some offset every symbol of the literal can only be the keyword's
/// byte in one case or the other.
fn literal_implies_keyword(literal: &[Symbol], keyword: &[u8]) -> bool {
    keyword.len() <= literal.len()
        && literal.windows(keyword.len()).any(|window| {
            window
                .iter()
                .zip(keyword)
                .all(|(&symbol, &byte)| symbol_byte(symbol).to_ascii_lowercase() == byte)
        })
}

impl Prefilter {
    /// Plans every rule of the pack. Patterns have compiled already, so they parse.
    pub(crate) fn new(rules: &[Rule]) -> Prefilter {
        let config = syntax::Config::new().unicode(false).utf8(false);
        let necessary = |pattern: &str| {
            syntax::parse_with(pattern, &config)
                .ok()
                .and_then(|hir| necessary_literals(&hir))
                .map(line_literals)
        };
        let mut sets = SetTable::default();
        let mut plans = Vec::with_capacity(rules.len());
        for (index, rule) in rules.iter().enumerate() {
            let Some(pattern) = rule.pattern.as_deref() else {
                plans.push(RulePlan {
                    trigger: Trigger::Never,
                    keywords: None,
                    keyword_literals: Vec::new(),
                    also: Vec::new(),
                });
                continue;
            };
            let keywords: Option<LiteralSet> = (!rule.keywords.is_empty()).then(|| {
                let mut set: LiteralSet = rule
                    .keywords
                    .iter()
                    .map(|keyword| keyword.bytes().map(caseless_symbol).collect())
                    .collect();
                set.sort_unstable();
                set.dedup();
                set
            });
            let mut lists: Vec<LiteralSet> = Vec::new();
            lists.extend(necessary(pattern));
            lists.extend(rule.confirm.iter().filter_map(|text| necessary(text)));
            let searchable = |set: &LiteralSet| set.iter().all(|l| l.len() >= MIN_LITERAL);
            let trigger_list = keywords
                .iter()
                .chain(&lists)
                .filter(|set| searchable(set))
                .min_by(|a, b| set_cost(a).total_cmp(&set_cost(b)))
                .cloned();
            // A keyword must be on the line unless every trigger literal holds one.
            let keywords_implied = trigger_list.as_ref().is_some_and(|trigger| {
                trigger.iter().all(|literal| {
                    rule.keywords
                        .iter()
                        .any(|keyword| literal_implies_keyword(literal, keyword.as_bytes()))
                })
            });
            let keyword_texts: Vec<Vec<u8>> = rule
                .keywords
                .iter()
                .map(|k| k.as_bytes().to_vec())
                .collect();
            let keywords = if keywords_implied || keyword_texts.is_empty() {
                None
            } else {
                LiteralCheck::new(&keyword_texts)
            };
            let mut also: Vec<LiteralCheck> = Vec::new();
            for list in &lists {
                if Some(list) != trigger_list.as_ref() && !list.is_empty() {
                    let texts: Vec<Vec<u8>> = list
                        .iter()
                        .map(|literal| literal.iter().map(|&symbol| symbol_byte(symbol)).collect())
                        .collect();
                    also.extend(LiteralCheck::new(&texts));
                }
            }
            let trigger = match trigger_list {
                Some(list) => {
                    let id = sets.intern(list);
                    sets.rules[id as usize].push(index);
                    Trigger::Set(id)
                }
                None => Trigger::Always,
            };
            plans.push(RulePlan {
                trigger,
                keywords,
                keyword_literals: Vec::new(),
                also,
            });
        }

        let mut literal_ids: HashMap<Literal, u32> = HashMap::new();
        let mut literals: Vec<PrefilterLiteral> = Vec::new();
        let mut set_literals = Vec::with_capacity(sets.sets.len());
        for (set_id, set) in sets.sets.iter().enumerate() {
            let mut ids = Vec::with_capacity(set.len());
            for literal in set {
                let id = *literal_ids.entry(literal.clone()).or_insert_with(|| {
                    let window = literal
                        .windows(4)
                        .enumerate()
                        .map(|(offset, window)| (window_cost(window), offset))
                        .min_by(|a, b| a.0.total_cmp(&b.0))
                        .map_or(0, |(_, offset)| offset);
                    literals.push(PrefilterLiteral {
                        symbols: literal.clone(),
                        sets: Vec::new(),
                        window: u8::try_from(window).unwrap_or(0),
                    });
                    u32::try_from(literals.len() - 1).unwrap_or(u32::MAX)
                });
                literals[id as usize]
                    .sets
                    .push(u32::try_from(set_id).unwrap_or(u32::MAX));
                ids.push(id);
            }
            set_literals.push(ids);
        }
        for (plan, rule) in plans.iter_mut().zip(rules) {
            if let (Some(_), Trigger::Set(set)) = (&plan.keywords, plan.trigger) {
                plan.keyword_literals = set_literals[set as usize]
                    .iter()
                    .copied()
                    .filter(|&id| {
                        rule.keywords.iter().any(|keyword| {
                            literal_implies_keyword(
                                &literals[id as usize].symbols,
                                keyword.as_bytes(),
                            )
                        })
                    })
                    .collect();
                plan.keyword_literals.sort_unstable();
            }
        }
        Prefilter {
            literals,
            set_literals,
            set_rules: sets.rules,
            plans,
            searchers: Mutex::new(HashMap::new()),
        }
    }

    /// The searcher for the triggers of `rules` (a bit per rule index).
    pub(crate) fn searcher(&self, rules: &[u64]) -> Arc<Searcher> {
        // A poisoned lock only means another scan panicked while inserting; the map
        // itself is always whole.
        let mut searchers = self
            .searchers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(searcher) = searchers.get(rules) {
            return Arc::clone(searcher);
        }
        let searcher = Arc::new(self.build_searcher(rules));
        if searchers.len() < MAX_SEARCHERS {
            searchers.insert(rules.to_vec(), Arc::clone(&searcher));
        }
        searcher
    }

    fn build_searcher(&self, rules: &[u64]) -> Searcher {
        let mut wanted = vec![false; self.literals.len()];
        for (rule, plan) in self.plans.iter().enumerate() {
            let selected = rules
                .get(rule / 64)
                .is_some_and(|word| word >> (rule % 64) & 1 == 1);
            if let (true, Trigger::Set(set)) = (selected, plan.trigger) {
                for &literal in &self.set_literals[set as usize] {
                    wanted[literal as usize] = true;
                }
            }
        }
        let mut table = Box::new([0u8; 1 << TABLE_BITS]);
        let mut long: Vec<(u32, u32, u8)> = Vec::new();
        let mut short: Vec<(u32, u32, u8)> = Vec::new();
        for (id, literal) in self.literals.iter().enumerate() {
            if !wanted[id] {
                continue;
            }
            let id = u32::try_from(id).unwrap_or(u32::MAX);
            let symbols = &literal.symbols;
            if symbols.len() > MIN_LITERAL {
                let offset = usize::from(literal.window);
                let window = folded_window(&symbols[offset..offset + 4]);
                table[table_index(window)] |= LONG;
                long.push((window, id, literal.window));
            } else {
                let prefix = folded_window(symbols);
                for low_bits in 0..8u32 {
                    table[table_index(prefix | low_bits << 24)] |= SHORT;
                }
                short.push((prefix, id, 0));
            }
        }
        Searcher {
            table,
            long: WindowMap::new(long),
            short: WindowMap::new(short),
        }
    }

    /// How many literal sets the plans use.
    pub(crate) fn set_count(&self) -> usize {
        self.set_rules.len()
    }

    /// The rules a set triggers.
    pub(crate) fn set_rules(&self, set: u32) -> &[usize] {
        &self.set_rules[set as usize]
    }

    /// The sets a literal belongs to.
    pub(crate) fn literal_sets(&self, literal: u32) -> &[u32] {
        &self.literals[literal as usize].sets
    }

    /// The symbols of a literal.
    fn literal(&self, literal: u32) -> &[Symbol] {
        &self.literals[literal as usize].symbols
    }
}

impl Searcher {
    /// Finds the searched literals on consecutive lines of `input`: `lines` holds each
    /// line's text as (start, end) offsets, in order; the bytes between them (prefix
    /// characters, newlines) are read too but nothing found across them counts. Appends
    /// (line index, literal) to `hits` in line order.
    pub(crate) fn scan_run(
        &self,
        prefilter: &Prefilter,
        input: &[u8],
        lines: &[(usize, usize)],
        hits: &mut RunHits,
    ) {
        let (Some(first), Some(last)) = (lines.first(), lines.last()) else {
            return;
        };
        let mut run = RunState {
            prefilter,
            input,
            lines,
            line: 0,
            hits,
        };
        let (start, end) = (first.0, last.1);
        let table = &*self.table;
        let mut at = start;
        while at < end {
            if let Some(bytes) = input.get(at..at + 8) {
                let mut eight = [0u8; 8];
                eight.copy_from_slice(bytes);
                let word = u64::from_le_bytes(eight) | FOLD_64;
                // Five windows per eight-byte read; branch once for all of them.
                let mut any = 0u8;
                for shift in 0..5 {
                    any |= flagged(table, (word >> (8 * shift)) as u32);
                }
                if any != 0 {
                    for shift in 0..5 {
                        let window = (word >> (8 * shift)) as u32;
                        let kinds = flagged(table, window);
                        if at + shift < end && kinds != 0 {
                            self.verify(&mut run, at + shift, window, kinds);
                        }
                    }
                }
                at += 5;
            } else {
                // The last bytes of the input: pad with a newline, which no literal holds.
                let mut four = [b'\n'; 4];
                for (slot, byte) in four.iter_mut().zip(&input[at..]) {
                    *slot = *byte;
                }
                let window = u32::from_le_bytes(four) | FOLD_32;
                let kinds = flagged(table, window);
                if kinds != 0 {
                    self.verify(&mut run, at, window, kinds);
                }
                at += 1;
            }
        }
    }

    /// Checks the literals that hold the folded `window` found at `at`.
    fn verify(&self, run: &mut RunState<'_, '_>, at: usize, window: u32, kinds: u8) {
        if kinds & LONG != 0 {
            for &(literal, offset) in self.long.get(window) {
                if let Some(start) = at.checked_sub(usize::from(offset)) {
                    self.found(run, at, start, literal);
                }
            }
        }
        if kinds & SHORT != 0 {
            for &(literal, _) in self.short.get(window & 0x00ff_ffff) {
                self.found(run, at, at, literal);
            }
        }
    }

    fn found(&self, run: &mut RunState<'_, '_>, at: usize, start: usize, literal: u32) {
        let symbols = run.prefilter.literal(literal);
        if !literal_at(run.input, start, symbols) {
            return;
        }
        // Windows come in increasing order, so the line holding `at` only moves forward.
        while run.line < run.lines.len() && run.lines[run.line].1 < at {
            run.line += 1;
        }
        let Some(&(line_start, line_end)) = run.lines.get(run.line) else {
            return;
        };
        if start >= line_start && start + symbols.len() <= line_end {
            run.hits
                .push((u32::try_from(run.line).unwrap_or(u32::MAX), literal));
        }
    }
}

/// The literal sets of all plans, each stored once.
#[derive(Debug, Default)]
struct SetTable {
    ids: HashMap<LiteralSet, u32>,
    sets: Vec<LiteralSet>,
    /// The rules each set triggers.
    rules: Vec<Vec<usize>>,
}

impl SetTable {
    fn intern(&mut self, set: LiteralSet) -> u32 {
        if let Some(&id) = self.ids.get(&set) {
            return id;
        }
        let id = u32::try_from(self.sets.len()).unwrap_or(u32::MAX);
        self.ids.insert(set.clone(), id);
        self.sets.push(set);
        self.rules.push(Vec::new());
        id
    }
}

struct RunState<'a, 'h> {
    prefilter: &'a Prefilter,
    input: &'a [u8],
    lines: &'a [(usize, usize)],
    /// The line the last window fell in.
    line: usize,
    hits: &'h mut RunHits,
}

/// The literals of a set that can be on a line: a line never holds a newline.
fn line_literals(mut set: LiteralSet) -> LiteralSet {
    set.retain(|literal| !literal.contains(&Symbol::from(b'\n')));
    set
}

/// A small open-addressing map from a folded window to its entries.
#[derive(Debug)]
struct WindowMap {
    /// 0 marks an empty slot: a folded window always has bit 5 set in its low byte.
    keys: Vec<u32>,
    /// Range of `entries` for the key in the same slot.
    ranges: Vec<(u32, u32)>,
    entries: Vec<(u32, u8)>,
    mask: usize,
}

impl WindowMap {
    fn new(mut items: Vec<(u32, u32, u8)>) -> WindowMap {
        items.sort_unstable();
        let distinct = items
            .windows(2)
            .filter(|pair| pair[0].0 != pair[1].0)
            .count()
            + 1;
        let slots = (distinct * 2).next_power_of_two().max(16);
        let mut map = WindowMap {
            keys: vec![0; slots],
            ranges: vec![(0, 0); slots],
            entries: Vec::with_capacity(items.len()),
            mask: slots - 1,
        };
        let mut index = 0;
        while index < items.len() {
            let key = items[index].0;
            let begin = map.entries.len();
            while index < items.len() && items[index].0 == key {
                map.entries.push((items[index].1, items[index].2));
                index += 1;
            }
            let mut slot = table_index(key) & map.mask;
            while map.keys[slot] != 0 {
                slot = (slot + 1) & map.mask;
            }
            map.keys[slot] = key;
            map.ranges[slot] = (
                u32::try_from(begin).unwrap_or(u32::MAX),
                u32::try_from(map.entries.len()).unwrap_or(u32::MAX),
            );
        }
        map
    }

    fn get(&self, key: u32) -> &[(u32, u8)] {
        let mut slot = table_index(key) & self.mask;
        loop {
            match self.keys[slot] {
                0 => return &[],
                found if found == key => {
                    let (begin, end) = self.ranges[slot];
                    return &self.entries[begin as usize..end as usize];
                }
                _ => slot = (slot + 1) & self.mask,
            }
        }
    }
}

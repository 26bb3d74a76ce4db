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
//! case, at every second byte. The first three bytes of a window and the low three bits
//! of its fourth, hashed, select a byte of a 64 KiB table, set for the searched windows;
//! the slot's high bits hold a fingerprint (another hash) of the windows that set it, so
//! a window of text that only shares the slot is not flagged. Every literal is given two
//! windows, one byte apart, so that wherever it starts one of them falls on a searched
//! position: two adjacent windows of the literal when it is five bytes or longer; for a
//! shorter one, windows reaching past its end or before its start, of which only the
//! literal's bytes are known (the table slots of every byte that may fill the rest are
//! set). The few windows flagged are verified against the literals they may belong to.
//! The table's cost does not grow with the number of literals (hundreds here), where
//! Aho-Corasick automata and Teddy slow down to a fraction; a keyword automaton over
//! every line cost eight times as much.
//!
//! Where the CPU has AVX2, sixteen windows are hashed at once in vector registers and
//! looked up with two gathers (`flag_blocks_avx2`); elsewhere, and for the last bytes of
//! the input, a portable loop reads three windows per eight-byte load. Both flag exactly
//! the same windows, which the tests check on random text. A search covers a span of the
//! input (a run of changed lines) and reports each literal with its place
//! (`LiteralSink`): the caller decides which line it is on.

use std::collections::HashMap;
use std::ops::Range;
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
            LiteralCheck::Byte(byte) => memchr::memchr(*byte, text).is_some(),
            LiteralCheck::Any(search) => search.is_match(text),
        }
    }
}

/// The symbols one position of a searched literal accepts: one, or several where the
/// literals it stands for differ (`\s` of a rule's regex expands to six literals that
/// differ in one byte).
type SymbolClass = Vec<Symbol>;

/// A searched literal: literals of the same sets that differ only where a regex had a
/// small class, searched and verified as one. The literals it stands for are every choice
/// of one symbol per position, exactly the literals merged into it (`group_literals`).
#[derive(Debug)]
struct PrefilterLiteral {
    classes: Vec<SymbolClass>,
    /// The literal as `Pattern::matches_at` compares it.
    pattern: Pattern,
    /// The sets this literal belongs to.
    sets: Vec<u32>,
    /// Where the first of its two searched windows starts (the second starts a byte
    /// later): for a literal of five symbols or more, the pair of adjacent four-symbol
    /// windows least likely to occur in code, which keeps verifications rare; 0 for a
    /// shorter one.
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
    /// At the slots of searched windows (`table_index`): `WHOLE`, `HEAD` or `TAIL` for
    /// the kind of window, so that a flagged window is looked up only where it can be.
    table: Box<Table>,
    /// Folded four-byte windows wholly inside a literal → (literal, offset of the window
    /// in the literal).
    whole: WindowMap,
    /// Windows whose last byte follows the literal, by their first three folded bytes →
    /// (literal, offset of the window in the literal).
    head: WindowMap,
    /// Windows whose first byte precedes the literal, by their last three folded bytes
    /// → (literal, -1).
    tail: WindowMap,
}

/// Where the literals found by `scan_run` are: (index of the line in the run, literal).
pub(crate) type RunHits = Vec<(u32, u32)>;

/// The table slot of a folded window: its first three bytes and the low three bits of
/// its fourth. Leaving out the rest of the fourth byte lets a three-byte literal take 8
/// slots rather than 128; a table lookup, unlike a bit test, needs no variable shift, which
/// costs more than the lookup on x86.
fn table_index(window: u32) -> usize {
    // Multiplicative hashing: the top bits of the product depend on every bit below.
    usize::from(((window & 0x07ff_ffff).wrapping_mul(HASH_MULTIPLIER) >> (32 - TABLE_BITS)) as u16)
}

/// The multiplier of `table_index` (the golden ratio's, as in Fibonacci hashing).
const HASH_MULTIPLIER: u32 = 0x9E37_79B1;

/// Slots of the window table.
const TABLE_SLOTS: usize = 1 << TABLE_BITS;

/// The window table: a byte per slot, and three bytes of padding so that the vector loop
/// may read any slot as the first byte of four (`Search::blocks_avx2`).
type Table = [u8; TABLE_SLOTS + 3];

/// Kinds of flagged windows, the low bits of a table slot.
const WHOLE: u8 = 1;
const HEAD: u8 = 2;
const TAIL: u8 = 4;
const KINDS: u8 = WHOLE | HEAD | TAIL;
/// The high five bits of a slot: the fingerprint of the windows that set it, or 0 when
/// windows with different fingerprints did (or the only one has fingerprint 0). A window
/// hashed to a set slot is flagged only if the slot's fingerprint is its own or 0: most
/// windows of text that merely share a slot with a searched window are not flagged,
/// and their lookups in the window maps are saved.
const FINGERPRINT: u8 = !KINDS;

/// The multiplier of `fingerprint`, another odd constant than `table_index`'s, so that the
/// two hashes of a window are unrelated.
const FINGERPRINT_MULTIPLIER: u32 = 0x85EB_CA6B;

/// A window's fingerprint, in the high five bits of a byte: from the same bits of the
/// window as `table_index`.
fn fingerprint(window: u32) -> u8 {
    (((window & 0x07ff_ffff).wrapping_mul(FINGERPRINT_MULTIPLIER) >> 24) as u8) & FINGERPRINT
}

/// Sets the slot of `window` for a searched window of `kind`.
fn mark(table: &mut Table, window: u32, kind: u8) {
    let slot = &mut table[table_index(window)];
    let print = fingerprint(window);
    *slot = if *slot == 0 || *slot & FINGERPRINT == print {
        *slot | kind | print
    } else {
        // Another fingerprint: the slot flags every window hashed to it.
        (*slot | kind) & KINDS
    };
}

/// Searched windows start this many bytes apart.
const STRIDE: usize = 2;
/// Windows are searched no further into a literal than this, so that a window's offset
/// in its literal, and the next one's, fit an `i8` (`WindowMap` entries).
const MAX_WINDOW_OFFSET: usize = 126;

/// The kinds of searched windows `window` may be: none for most windows of text.
fn flagged(table: &Table, window: u32) -> u8 {
    let slot = table[table_index(window)];
    let print = slot & FINGERPRINT;
    if print == 0 || print == fingerprint(window) {
        slot & KINDS
    } else {
        0
    }
}

fn fold_symbol(symbol: Symbol) -> u8 {
    symbol_byte(symbol) | 0x20
}

fn folded_window(symbols: &[Symbol]) -> u32 {
    symbols.iter().rev().fold(0u32, |window, &symbol| {
        window << 8 | u32::from(fold_symbol(symbol))
    })
}

/// Every literal a run of classes stands for: one symbol from each.
fn expand(classes: &[SymbolClass]) -> Vec<Literal> {
    classes.iter().fold(vec![Vec::new()], |prefixes, class| {
        prefixes
            .iter()
            .flat_map(|prefix| {
                class.iter().map(move |&symbol| {
                    let mut literal = prefix.clone();
                    literal.push(symbol);
                    literal
                })
            })
            .collect()
    })
}

/// The folded windows of every literal that `classes` (at most four) stand for.
fn folded_windows(classes: &[SymbolClass]) -> Vec<u32> {
    let mut windows: Vec<u32> = expand(classes).iter().map(|l| folded_window(l)).collect();
    windows.sort_unstable();
    windows.dedup();
    windows
}

/// Merges literals that differ at one position only into one literal with a class
/// there, until no two can be merged: `R × {a}` and `R × {b}` are `R × {a, b}`, so the
/// result stands for exactly the literals given. Every merged literal is verified once
/// per flagged window where its parts were verified one by one (`\sfrom\s`: 36 times).
fn group_literals(literals: Vec<Literal>) -> Vec<Vec<SymbolClass>> {
    let mut groups: Vec<Vec<SymbolClass>> = literals
        .into_iter()
        .map(|literal| literal.into_iter().map(|symbol| vec![symbol]).collect())
        .collect();
    let longest = groups.iter().map(Vec::len).max().unwrap_or(0);
    loop {
        let mut merged = false;
        for position in 0..longest {
            // Groups by everything but `position` (left empty), merged there.
            let mut index: HashMap<Vec<SymbolClass>, usize> = HashMap::new();
            let mut out: Vec<Vec<SymbolClass>> = Vec::with_capacity(groups.len());
            for group in groups {
                if group.len() <= position {
                    out.push(group);
                    continue;
                }
                let mut rest = group.clone();
                rest[position] = Vec::new();
                if let Some(&at) = index.get(&rest) {
                    let class = &mut out[at][position];
                    class.extend_from_slice(&group[position]);
                    class.sort_unstable();
                    class.dedup();
                    merged = true;
                } else {
                    index.insert(rest, out.len());
                    out.push(group);
                }
            }
            groups = out;
        }
        if !merged {
            return groups;
        }
    }
}

/// A literal laid out for verifying a flagged window: most flagged windows are not the
/// literal (another literal sharing the window, or a hash collision), so it is compared
/// eight bytes at a time rather than symbol by symbol.
#[derive(Debug)]
struct Pattern {
    len: usize,
    /// Its first eight bytes, which decide most verifications.
    head: Piece,
    /// Pieces covering the rest, by offset (the last may overlap the one before).
    rest: Box<[(usize, Piece)]>,
    /// Positions of several symbols, which the pieces leave out, with the bytes each
    /// accepts (a bit per byte).
    classes: Box<[(usize, [u64; 4])]>,
}

/// Eight bytes of a literal (fewer at the end of one shorter than eight).
#[derive(Debug, Clone, Copy)]
struct Piece {
    /// Each symbol's byte, lowercase for a caseless letter.
    bytes: u64,
    /// `0x20` at a caseless letter: or'ed into the text, it folds upper case onto lower.
    fold: u64,
    /// `0xff` at the bytes that belong to the literal.
    mask: u64,
}

impl Piece {
    /// The piece for the first eight positions of `classes`; a position of several
    /// symbols is left to `Pattern::classes`.
    fn new(classes: &[SymbolClass]) -> Piece {
        let (mut bytes, mut fold, mut mask) = ([0u8; 8], [0u8; 8], [0u8; 8]);
        for (index, class) in classes.iter().take(8).enumerate() {
            let &[symbol] = class.as_slice() else {
                continue;
            };
            bytes[index] = symbol_byte(symbol);
            fold[index] = if symbol & CASELESS != 0 { 0x20 } else { 0 };
            mask[index] = 0xff;
        }
        Piece {
            bytes: u64::from_le_bytes(bytes),
            fold: u64::from_le_bytes(fold),
            mask: u64::from_le_bytes(mask),
        }
    }

    /// Whether the piece is at the start of `text`, which may end sooner than eight
    /// bytes on (the piece is then not there unless it is shorter).
    fn matches(&self, text: &[u8]) -> bool {
        let mut eight = [0u8; 8];
        match text.first_chunk::<8>() {
            Some(first) => eight = *first,
            None => eight[..text.len()].copy_from_slice(text),
        }
        ((u64::from_le_bytes(eight) | self.fold) ^ self.bytes) & self.mask == 0
    }
}

impl Pattern {
    fn new(literal: &[SymbolClass]) -> Pattern {
        let len = literal.len();
        let rest = (8..len)
            .step_by(8)
            .map(|offset| {
                let offset = offset.min(len - 8);
                (offset, Piece::new(&literal[offset..]))
            })
            .collect();
        let classes = literal
            .iter()
            .enumerate()
            .filter(|(_, class)| class.len() > 1)
            .map(|(offset, class)| {
                let mut accepted = [0u64; 4];
                for &symbol in class {
                    let byte = symbol_byte(symbol);
                    let cases = if symbol & CASELESS != 0 {
                        [byte, byte.to_ascii_uppercase()]
                    } else {
                        [byte, byte]
                    };
                    for byte in cases {
                        accepted[usize::from(byte >> 6)] |= 1 << (byte & 63);
                    }
                }
                (offset, accepted)
            })
            .collect();
        Pattern {
            len,
            head: Piece::new(literal),
            rest,
            classes,
        }
    }

    /// Whether the literal occurs at `at` in `text`: caseless letters in either case,
    /// every other symbol exactly.
    fn matches_at(&self, text: &[u8], at: usize) -> bool {
        let Some(found) = text.get(at..).filter(|found| found.len() >= self.len) else {
            return false;
        };
        self.head.matches(found)
            && self
                .rest
                .iter()
                .all(|(offset, piece)| piece.matches(&found[*offset..]))
            && self.classes.iter().all(|(offset, accepted)| {
                let byte = found[*offset];
                accepted[usize::from(byte >> 6)] >> (byte & 63) & 1 == 1
            })
    }
}

/// A literal as classes of one symbol each.
fn singletons(literal: &[Symbol]) -> Vec<SymbolClass> {
    literal.iter().map(|&symbol| vec![symbol]).collect()
}

/// Whether a keyword (lowercase, matched caseless) occurs in `literal` wherever the
/// literal occurs: at some offset every symbol of the literal can only be the keyword's
/// byte in one case or the other.
fn literal_implies_keyword(literal: &[SymbolClass], keyword: &[u8]) -> bool {
    keyword.len() <= literal.len()
        && literal.windows(keyword.len()).any(|window| {
            window.iter().zip(keyword).all(|(class, &byte)| {
                class
                    .iter()
                    .all(|&symbol| symbol_byte(symbol).to_ascii_lowercase() == byte)
            })
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
                    rule.keywords.iter().any(|keyword| {
                        literal_implies_keyword(&singletons(literal), keyword.as_bytes())
                    })
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

        // Each distinct literal with the sets holding it, in first-seen order.
        let mut membership: HashMap<&Literal, usize> = HashMap::new();
        let mut distinct: Vec<(&Literal, Vec<u32>)> = Vec::new();
        for (set_id, set) in sets.sets.iter().enumerate() {
            let set_id = u32::try_from(set_id).unwrap_or(u32::MAX);
            for literal in set {
                let at = *membership.entry(literal).or_insert_with(|| {
                    distinct.push((literal, Vec::new()));
                    distinct.len() - 1
                });
                distinct[at].1.push(set_id);
            }
        }
        // Literals of the same sets merge where they differ in a class; a merged literal
        // found on a line means one of its parts is, and so do all of its sets.
        let mut by_sets: Vec<(Vec<u32>, Vec<Literal>)> = Vec::new();
        for (literal, literal_sets) in distinct {
            match by_sets.iter_mut().find(|(sets, _)| *sets == literal_sets) {
                Some((_, group)) => group.push(literal.clone()),
                None => by_sets.push((literal_sets, vec![literal.clone()])),
            }
        }
        let mut literals: Vec<PrefilterLiteral> = Vec::new();
        let mut set_literals: Vec<Vec<u32>> = vec![Vec::new(); sets.sets.len()];
        for (literal_sets, group) in by_sets {
            for classes in group_literals(group) {
                // Two adjacent windows are searched; the pair flagged least often.
                let costs: Vec<f64> = classes
                    .windows(4)
                    .map(|window| expand(window).iter().map(|w| window_cost(w)).sum())
                    .collect();
                let window = costs
                    .windows(2)
                    .take(MAX_WINDOW_OFFSET)
                    .enumerate()
                    .map(|(offset, pair)| (pair[0] + pair[1], offset))
                    .min_by(|a, b| a.0.total_cmp(&b.0))
                    .map_or(0, |(_, offset)| offset);
                let id = u32::try_from(literals.len()).unwrap_or(u32::MAX);
                for &set in &literal_sets {
                    set_literals[set as usize].push(id);
                }
                literals.push(PrefilterLiteral {
                    pattern: Pattern::new(&classes),
                    classes,
                    sets: literal_sets.clone(),
                    window: u8::try_from(window).unwrap_or(0),
                });
            }
        }
        for (plan, rule) in plans.iter_mut().zip(rules) {
            if let (Some(_), Trigger::Set(set)) = (&plan.keywords, plan.trigger) {
                plan.keyword_literals = set_literals[set as usize]
                    .iter()
                    .copied()
                    .filter(|&id| {
                        rule.keywords.iter().any(|keyword| {
                            literal_implies_keyword(
                                &literals[id as usize].classes,
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
        let mut table: Box<Table> = Box::new([0u8; TABLE_SLOTS + 3]);
        let mut whole: Vec<(u32, u32, i8)> = Vec::new();
        let mut head: Vec<(u32, u32, i8)> = Vec::new();
        let mut tail: Vec<(u32, u32, i8)> = Vec::new();
        for (id, literal) in self.literals.iter().enumerate() {
            if !wanted[id] {
                continue;
            }
            let id = u32::try_from(id).unwrap_or(u32::MAX);
            // The windows of every literal the merged one stands for.
            let classes = &literal.classes;
            match classes.len() {
                // Literals are at least `MIN_LITERAL` (3) long.
                0..=3 => {
                    // At the literal, its three symbols and any fourth byte; a byte
                    // before it, any byte and the literal (whose last byte only counts
                    // with its low three bits in the table index).
                    for key in folded_windows(classes) {
                        for low_bits in 0..8u32 {
                            mark(&mut table, key | low_bits << 24, HEAD);
                        }
                        head.push((key, id, 0));
                        for byte in 0..=u8::MAX {
                            mark(&mut table, key << 8 | u32::from(byte | 0x20), TAIL);
                        }
                        tail.push((key, id, -1));
                    }
                }
                4 => {
                    for key in folded_windows(classes) {
                        mark(&mut table, key, WHOLE);
                        whole.push((key, id, 0));
                    }
                    for key in folded_windows(&classes[1..]) {
                        for low_bits in 0..8u32 {
                            mark(&mut table, key | low_bits << 24, HEAD);
                        }
                        head.push((key, id, 1));
                    }
                }
                _ => {
                    for offset in [literal.window, literal.window + 1] {
                        let at = usize::from(offset);
                        for key in folded_windows(&classes[at..at + 4]) {
                            mark(&mut table, key, WHOLE);
                            // At most `MAX_WINDOW_OFFSET`: positive as an `i8`.
                            whole.push((key, id, offset.cast_signed()));
                        }
                    }
                }
            }
        }
        Searcher {
            table,
            whole: WindowMap::new(whole),
            head: WindowMap::new(head),
            tail: WindowMap::new(tail),
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

    /// A literal, as the search verifies it.
    fn pattern(&self, literal: u32) -> &Pattern {
        &self.literals[literal as usize].pattern
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
        self.scan_run_with(Engine::detect(), prefilter, input, lines, hits);
    }

    /// `scan_run` with the window loop chosen by the caller.
    pub(crate) fn scan_run_with(
        &self,
        engine: Engine,
        prefilter: &Prefilter,
        input: &[u8],
        lines: &[(usize, usize)],
        hits: &mut RunHits,
    ) {
        let (Some(first), Some(last)) = (lines.first(), lines.last()) else {
            return;
        };
        let mut run = RunState {
            lines,
            line: 0,
            hits,
        };
        self.search_with(engine, prefilter, input, first.0..last.1, &mut run);
    }

    /// Finds every searched literal that has a searched window starting in `span` (so
    /// every literal that lies wholly inside it, and some that reach past its end) and
    /// reports each occurrence to `sink`, in increasing order of the window that found it.
    pub(crate) fn search<S: LiteralSink>(
        &self,
        prefilter: &Prefilter,
        input: &[u8],
        span: Range<usize>,
        sink: &mut S,
    ) {
        self.search_with(Engine::detect(), prefilter, input, span, sink);
    }

    /// `search` with the window loop chosen by the caller: the tests hold the vector
    /// loop to the portable one.
    pub(crate) fn search_with<S: LiteralSink>(
        &self,
        engine: Engine,
        prefilter: &Prefilter,
        input: &[u8],
        span: Range<usize>,
        sink: &mut S,
    ) {
        let mut search = Search {
            searcher: self,
            prefilter,
            input,
            sink,
        };
        let end = span.end.min(input.len());
        // The AVX2 check is the standard library's cached answer: it costs a load, and
        // keeps the vector loop sound whoever chose the engine.
        #[cfg(target_arch = "x86_64")]
        let at = if engine == Engine::Avx2 && std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2 (checked just above).
            unsafe { search.blocks_avx2(span.start, end) }
        } else {
            span.start
        };
        #[cfg(not(target_arch = "x86_64"))]
        let at = {
            let Engine::Portable = engine;
            span.start
        };
        search.windows(at, end);
    }
}

/// The window loop in use: the portable one, or the vector one where the CPU has it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Engine {
    Portable,
    #[cfg(target_arch = "x86_64")]
    Avx2,
}

#[cfg(test)]
thread_local! {
    /// Set by tests that run whole scans with the portable loop, as on a CPU without AVX2.
    pub(crate) static FORCE_PORTABLE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

impl Engine {
    /// The fastest loop this CPU runs (the answer is cached by the standard library).
    pub(crate) fn detect() -> Engine {
        #[cfg(test)]
        if FORCE_PORTABLE.with(std::cell::Cell::get) {
            return Engine::Portable;
        }
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            return Engine::Avx2;
        }
        Engine::Portable
    }
}

/// What receives the literals a search finds (already verified against the text).
pub(crate) trait LiteralSink {
    /// `literal`, `len` bytes long, occurs at `start`; `inside` is one of its bytes (the
    /// found window's first byte or the literal's), never smaller than the previous
    /// call's.
    fn found(&mut self, inside: usize, start: usize, len: usize, literal: u32);
}

/// One search over a span of the input.
struct Search<'a, S> {
    searcher: &'a Searcher,
    prefilter: &'a Prefilter,
    input: &'a [u8],
    sink: &'a mut S,
}

impl<S: LiteralSink> Search<'_, S> {
    /// The portable loop over the windows starting at `at`, `at + 2`, … before `end`:
    /// three windows per eight-byte read, each looked up in the table.
    fn windows(&mut self, mut at: usize, end: usize) {
        let table = &*self.searcher.table;
        let input = self.input;
        while at < end {
            if let Some(bytes) = input.get(at..at + 8) {
                let mut eight = [0u8; 8];
                eight.copy_from_slice(bytes);
                let word = u64::from_le_bytes(eight) | FOLD_64;
                // Three windows per eight-byte read; branch once for all of them.
                // A set slot is enough to look closer (`flagged`).
                let mut any = 0u8;
                for shift in [0, 2, 4] {
                    any |= table[table_index((word >> (8 * shift)) as u32)];
                }
                if any != 0 {
                    for shift in [0, 2, 4] {
                        let window = (word >> (8 * shift)) as u32;
                        let kinds = flagged(table, window);
                        if at + shift < end && kinds != 0 {
                            self.verify(at + shift, window, kinds);
                        }
                    }
                }
                at += 3 * STRIDE;
            } else {
                // The last bytes of the input: pad with a newline, which no literal holds.
                let window = window_at(input, at);
                let kinds = flagged(table, window);
                if kinds != 0 {
                    self.verify(at, window, kinds);
                }
                at += STRIDE;
            }
        }
    }

    /// The vector loop: `flag_blocks_avx2` marks the flagged windows of up to `CHUNK`
    /// blocks of 32 bytes, then the marked ones are looked at closer. Returns where it
    /// stopped: the portable loop does the windows whose block would read past the end
    /// of the input (the last 40 bytes).
    ///
    /// # Safety
    /// The CPU must have AVX2.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn blocks_avx2(&mut self, mut at: usize, end: usize) -> usize {
        let table = &*self.searcher.table;
        let mut flags = [0u32; CHUNK];
        loop {
            let blocks = flag_blocks_avx2(table, self.input, at, end, &mut flags);
            for (block, &block_flags) in flags[..blocks].iter().enumerate() {
                let mut block_flags = block_flags;
                while block_flags != 0 {
                    let position = at + 32 * block + STRIDE * block_flags.trailing_zeros() as usize;
                    block_flags &= block_flags - 1;
                    let window = window_at(self.input, position);
                    let kinds = flagged(table, window);
                    if kinds != 0 {
                        self.verify(position, window, kinds);
                    }
                }
            }
            at += 32 * blocks;
            if blocks < CHUNK {
                return at.min(end);
            }
        }
    }

    /// Checks the literals whose windows may be the folded `window` found at `at`.
    fn verify(&mut self, at: usize, window: u32, kinds: u8) {
        let searcher = self.searcher;
        if kinds & WHOLE != 0 {
            for &(literal, offset) in searcher.whole.get(window) {
                self.found(at, offset, literal);
            }
        }
        if kinds & HEAD != 0 {
            for &(literal, offset) in searcher.head.get(window & 0x00ff_ffff) {
                self.found(at, offset, literal);
            }
        }
        if kinds & TAIL != 0 {
            for &(literal, offset) in searcher.tail.get(window >> 8) {
                self.found(at, offset, literal);
            }
        }
    }

    /// Reports `literal` if it starts `offset` bytes before the window at `at` (after it,
    /// for a negative offset).
    fn found(&mut self, at: usize, offset: i8, literal: u32) {
        let Some(start) = at.checked_sub_signed(isize::from(offset)) else {
            return;
        };
        let pattern = self.prefilter.pattern(literal);
        if pattern.matches_at(self.input, start) {
            // A byte of the literal: the window's first byte, or the literal's when the
            // window starts before it. Windows come in increasing order, a stride apart,
            // so this only moves forward.
            self.sink.found(at.max(start), start, pattern.len, literal);
        }
    }
}

/// Bytes a vector block reads: windows at 0, 2, …, 30, in four 16-byte loads 8 bytes
/// apart.
#[cfg(target_arch = "x86_64")]
const BLOCK_READ: usize = 40;

/// Blocks `flag_blocks_avx2` looks at per call.
#[cfg(target_arch = "x86_64")]
const CHUNK: usize = 16;

/// Hashes the sixteen windows of each 32-byte block from `at` (windows at `at`, `at + 2`,
/// …) in AVX2 registers and looks them up in `table` with two gathers, for up to `CHUNK`
/// blocks that start before `end` and whose reads stay inside `input`. Sets in
/// `flags[block]` a bit per window that starts before `end` and that `flagged` would
/// flag (bit `i`: the window at `at + 32 * block + 2 * i`) and returns how many blocks
/// it did.
///
/// Only code compiled for AVX2 may call it (the compiler holds callers to that). Not
/// inlined: a function that calls nothing keeps its constants in registers.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline(never)]
fn flag_blocks_avx2(
    table: &Table,
    input: &[u8],
    at: usize,
    end: usize,
    flags: &mut [u32; CHUNK],
) -> usize {
    use std::arch::x86_64::{
        __m128i, _mm_loadu_si128, _mm256_and_si256, _mm256_andnot_si256, _mm256_castsi256_ps,
        _mm256_cmpeq_epi32, _mm256_i32gather_epi32, _mm256_movemask_ps, _mm256_mullo_epi32,
        _mm256_or_si256, _mm256_set_m128i, _mm256_set1_epi32, _mm256_setr_epi8,
        _mm256_setzero_si256, _mm256_shuffle_epi8, _mm256_srli_epi32,
    };
    // Each 128-bit lane holds 16 bytes, the second lane starting 8 bytes after the first;
    // this picks the four-byte windows at 0, 2, 4 and 6 of each.
    let windows = _mm256_setr_epi8(
        0, 1, 2, 3, 2, 3, 4, 5, 4, 5, 6, 7, 6, 7, 8, 9, 0, 1, 2, 3, 2, 3, 4, 5, 4, 5, 6, 7, 6, 7,
        8, 9,
    );
    let fold = _mm256_set1_epi32(FOLD_32.cast_signed());
    let keep = _mm256_set1_epi32(0x07ff_ffff);
    let multiplier = _mm256_set1_epi32(HASH_MULTIPLIER.cast_signed());
    let print_multiplier = _mm256_set1_epi32(FINGERPRINT_MULTIPLIER.cast_signed());
    let kinds = _mm256_set1_epi32(i32::from(KINDS));
    let prints = _mm256_set1_epi32(i32::from(FINGERPRINT));
    let zero = _mm256_setzero_si256();
    let mut blocks = 0;
    while blocks < CHUNK {
        let start = at + 32 * blocks;
        if start >= end {
            break;
        }
        let Some(block) = input.get(start..start + BLOCK_READ) else {
            break;
        };
        // The windows that start before `end`: all sixteen but in the last block.
        let wanted = match (end - start).div_ceil(STRIDE) {
            16.. => u32::MAX,
            count => (1 << count) - 1,
        };
        let mut block_flags = 0u32;
        for half in 0..2 {
            // In bounds: `block` holds 40 bytes, these read 16 at 16 * half and
            // 16 * half + 8 (at most 40).
            let low = block[16 * half..].as_ptr().cast::<__m128i>();
            let high = block[16 * half + 8..].as_ptr().cast::<__m128i>();
            // SAFETY: both reads are 16 bytes inside `block` (above); unaligned loads
            // accept any address.
            let bytes = unsafe { _mm256_set_m128i(_mm_loadu_si128(high), _mm_loadu_si128(low)) };
            let window = _mm256_or_si256(_mm256_shuffle_epi8(bytes, windows), fold);
            let kept = _mm256_and_si256(window, keep);
            // `table_index` and `fingerprint`, lane by lane.
            let index = _mm256_srli_epi32::<{ 32 - TABLE_BITS as i32 }>(_mm256_mullo_epi32(
                kept, multiplier,
            ));
            let print = _mm256_and_si256(
                _mm256_srli_epi32::<24>(_mm256_mullo_epi32(kept, print_multiplier)),
                prints,
            );
            // SAFETY: each index is below 2^TABLE_BITS (a 32-bit lane shifted right by
            // 32 - TABLE_BITS), and each gather reads four bytes from the table's start
            // plus the index: the table has three bytes of padding after its last slot
            // for this.
            let slots = unsafe { _mm256_i32gather_epi32::<1>(table.as_ptr().cast::<i32>(), index) };
            // `flagged`, lane by lane: the slot has a kind, and its fingerprint is 0 or
            // the window's. Windows that merely share a slot cost no branch here.
            let slot_print = _mm256_and_si256(slots, prints);
            let print_fits = _mm256_or_si256(
                _mm256_cmpeq_epi32(slot_print, zero),
                _mm256_cmpeq_epi32(slot_print, print),
            );
            let no_kind = _mm256_cmpeq_epi32(_mm256_and_si256(slots, kinds), zero);
            let hit = _mm256_andnot_si256(no_kind, print_fits);
            block_flags |=
                _mm256_movemask_ps(_mm256_castsi256_ps(hit)).cast_unsigned() << (8 * half);
        }
        flags[blocks] = block_flags & wanted;
        blocks += 1;
    }
    blocks
}

/// The folded window at `at`, padded with newlines past the end of `input`.
fn window_at(input: &[u8], at: usize) -> u32 {
    let four = match input.get(at..at + 4) {
        Some(&[a, b, c, d]) => [a, b, c, d],
        _ => {
            let mut four = [b'\n'; 4];
            for (slot, byte) in four.iter_mut().zip(input.get(at..).unwrap_or_default()) {
                *slot = *byte;
            }
            four
        }
    };
    u32::from_le_bytes(four) | FOLD_32
}

impl LiteralSink for RunState<'_, '_> {
    /// Keeps the literal if it lies on one line of the run.
    fn found(&mut self, inside: usize, start: usize, len: usize, literal: u32) {
        while self.line < self.lines.len() && self.lines[self.line].1 < inside {
            self.line += 1;
        }
        let Some(&(line_start, line_end)) = self.lines.get(self.line) else {
            return;
        };
        if start >= line_start && start + len <= line_end {
            self.hits
                .push((u32::try_from(self.line).unwrap_or(u32::MAX), literal));
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
    /// (literal, offset of the window in the literal).
    entries: Vec<(u32, i8)>,
    mask: usize,
}

impl WindowMap {
    fn new(mut items: Vec<(u32, u32, i8)>) -> WindowMap {
        items.sort_unstable();
        // Two parts of a merged literal may share a window, in the same place.
        items.dedup();
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

    fn get(&self, key: u32) -> &[(u32, i8)] {
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

#[cfg(test)]
mod tests {
    use super::{
        CASELESS, Engine, LiteralSink, Prefilter, Trigger, expand, group_literals, symbol_byte,
    };
    use crate::literals::{Literal, caseless_symbol, exact_symbol};
    use crate::rule::RulePack;

    /// Merging is exact: the merged literals stand for the literals given, no more (a
    /// literal found that is none of them would make a rule a candidate for nothing) and
    /// no fewer (one missing would lose findings).
    #[test]
    fn merged_literals_stand_for_exactly_their_parts() {
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let alphabet = [b'a', b'b', b' ', b'\t', b'X'];
        for round in 0..500 {
            let count = 1 + next() % 40;
            let mut literals: Vec<Literal> = (0..count)
                .map(|_| {
                    let len = 3 + next() % 4;
                    (0..len)
                        .map(|_| {
                            let byte = alphabet[(next() % 5) as usize];
                            if next() % 2 == 0 {
                                caseless_symbol(byte)
                            } else {
                                exact_symbol(byte)
                            }
                        })
                        .collect()
                })
                .collect();
            let mut expanded: Vec<Literal> = group_literals(literals.clone())
                .iter()
                .flat_map(|classes| expand(classes))
                .collect();
            literals.sort_unstable();
            literals.dedup();
            expanded.sort_unstable();
            assert_eq!(expanded, literals, "round {round}");
        }
        // `\sfrom\s` without the newline: 25 literals, one merged literal.
        let spaces = [b' ', b'\t', b'\r', 0x0b, 0x0c];
        let mut literals = Vec::new();
        for before in spaces {
            for after in spaces {
                let mut literal = vec![exact_symbol(before)];
                literal.extend(b"from".iter().map(|&byte| caseless_symbol(byte)));
                literal.push(exact_symbol(after));
                literals.push(literal);
            }
        }
        assert_eq!(group_literals(literals).len(), 1);
    }

    /// Windows are searched at every second byte only: each literal of the built-in
    /// rules must still be found at either parity, at a line's start and at the input's
    /// end, with caseless letters in upper case, and not across a line break.
    #[test]
    fn every_literal_is_found_wherever_it_starts() {
        let pack = RulePack::builtin();
        let prefilter = Prefilter::new(pack.rules());
        let searcher = prefilter.build_searcher(&vec![u64::MAX; pack.rules().len().div_ceil(64)]);
        let parts = prefilter
            .literals
            .iter()
            .enumerate()
            .flat_map(|(id, literal)| {
                expand(&literal.classes)
                    .into_iter()
                    .map(move |part| (u32::try_from(id).unwrap(), part))
            });
        for (id, part) in parts {
            let text: Vec<u8> = part
                .iter()
                .map(|&symbol| match symbol & CASELESS {
                    0 => symbol_byte(symbol),
                    _ => symbol_byte(symbol).to_ascii_uppercase(),
                })
                .collect();
            for (engine, pad) in engines()
                .into_iter()
                .flat_map(|e| (0..4).map(move |p| (e, p)))
            {
                // `+<pad><literal>\n+<pad><literal>`: the second line ends the input.
                let mut input = Vec::new();
                let mut lines = Vec::new();
                for _ in 0..2 {
                    input.push(b'+');
                    let start = input.len();
                    input.extend(std::iter::repeat_n(b'.', pad));
                    input.extend_from_slice(&text);
                    lines.push((start, input.len()));
                    input.push(b'\n');
                }
                input.pop();
                let mut hits = Vec::new();
                searcher.scan_run_with(engine, &prefilter, &input, &lines, &mut hits);
                assert!(
                    hits.contains(&(0, id)) && hits.contains(&(1, id)),
                    "{:?} after {pad} bytes: {hits:?}",
                    String::from_utf8_lossy(&text)
                );
                // Cut in two by a line break, it is on neither line.
                let cut = pad + text.len() / 2 + 1;
                let split = [(1, cut), (cut + 2, lines[0].1 + 2)];
                let mut joined = input[..lines[0].1].to_vec();
                joined.splice(cut..cut, *b"\n+");
                let mut hits = Vec::new();
                searcher.scan_run_with(engine, &prefilter, &joined, &split, &mut hits);
                assert!(
                    hits.iter().all(|&(_, literal)| literal != id),
                    "{:?} cut after {cut} bytes: {hits:?}",
                    String::from_utf8_lossy(&text)
                );
            }
        }
    }

    /// The window loops this CPU can run: the portable one always.
    fn engines() -> Vec<Engine> {
        let mut engines = vec![Engine::Portable];
        if Engine::detect() != Engine::Portable {
            engines.push(Engine::detect());
        }
        engines
    }

    #[derive(Default)]
    struct Found(Vec<(usize, usize, usize, u32)>);

    impl LiteralSink for Found {
        fn found(&mut self, inside: usize, start: usize, len: usize, literal: u32) {
            if let Some(&(previous, ..)) = self.0.last() {
                assert!(
                    inside >= previous,
                    "out of order: {inside} after {previous}"
                );
            }
            self.0.push((inside, start, len, literal));
        }
    }

    /// The vector loop finds exactly what the portable one finds, in the same order: on
    /// random text strewn with the rule pack's literals (in either case, some cut short),
    /// for spans starting at every offset of a block and ending anywhere, at the input's
    /// end too, wherever the input lies in memory.
    #[test]
    fn vector_search_finds_what_the_portable_one_finds() {
        let pack = RulePack::builtin();
        let prefilter = Prefilter::new(pack.rules());
        let searcher = prefilter.build_searcher(&vec![u64::MAX; pack.rules().len().div_ceil(64)]);
        let pieces: Vec<Vec<u8>> = prefilter
            .literals
            .iter()
            .flat_map(|literal| expand(&literal.classes))
            .map(|part| part.iter().map(|&symbol| symbol_byte(symbol)).collect())
            .collect();
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut total = 0;
        for _ in 0..300 {
            let mut text = Vec::new();
            let length = (next() % 400) as usize;
            while text.len() < length {
                match next() % 4 {
                    0 => {
                        let piece = &pieces[(next() % pieces.len() as u64) as usize];
                        let keep = piece.len() - (next() % 2) as usize;
                        text.extend(piece[..keep].iter().map(|&byte| match next() % 2 {
                            0 => byte.to_ascii_uppercase(),
                            _ => byte,
                        }));
                    }
                    1 => text.push(b"\n+- \t=\"'"[(next() % 8) as usize]),
                    _ => text.push((next() % 256) as u8),
                }
            }
            // Every placement in memory relative to a 64-byte boundary.
            let shift = (next() % 64) as usize;
            let mut buffer = vec![0u8; shift];
            buffer.extend_from_slice(&text);
            let input = &buffer[shift..];
            for start in 0..input.len().min(40) {
                for end in [
                    input.len(),
                    input.len().saturating_sub(1),
                    start + 33,
                    start + 64,
                ] {
                    let end = end.min(input.len());
                    let mut reference = Found::default();
                    searcher.search_with(
                        Engine::Portable,
                        &prefilter,
                        input,
                        start..end,
                        &mut reference,
                    );
                    for engine in engines() {
                        let mut found = Found::default();
                        searcher.search_with(engine, &prefilter, input, start..end, &mut found);
                        assert_eq!(
                            found.0, reference.0,
                            "{engine:?} on {start}..{end} of {input:?}"
                        );
                    }
                    total += reference.0.len();
                }
            }
        }
        assert!(total > 10_000, "only {total} literals found");
    }

    /// A rule with no literal to search for is matched on every changed line of the
    /// files it applies to: each built-in one names its files. A rule for every file
    /// without a trigger (a `confirm` alternation grown past what the literal analysis
    /// keeps, say) once made the whole scan four times slower.
    #[test]
    fn rules_without_a_trigger_name_their_files() {
        let pack = RulePack::builtin();
        let prefilter = Prefilter::new(pack.rules());
        let unbounded: Vec<&str> = prefilter
            .plans
            .iter()
            .zip(pack.rules())
            .filter(|(plan, rule)| plan.trigger == Trigger::Always && rule.paths.is_empty())
            .map(|(_, rule)| rule.id.as_str())
            .collect();
        assert!(
            unbounded.is_empty(),
            "tried on every line of every file: {unbounded:?}"
        );
    }
}

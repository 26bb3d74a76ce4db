//! Necessary literals: for a regex, a short list of strings one of which occurs in every
//! match, found by walking the regex's syntax tree. The scanner searches for these first
//! and runs a rule's regexes only on lines that contain one.

use std::collections::HashSet;
use std::sync::OnceLock;

use regex_syntax::hir::{Class, Hir, HirKind};

/// Strings kept in one set; beyond this a set is given up (`[0-9a-f]{32}` has too many
/// strings to list and says little about a line).
const MAX_SET: usize = 64;
/// Symbols of one string; exact sets with longer strings are given up, prefixes and
/// suffixes are cut to this length.
const MAX_STRING: usize = 32;
/// Symbols of a class listed one by one (`\s` has six; `[sS]` is one symbol).
const MAX_CLASS: usize = 8;

/// One symbol of a literal: a byte, or an ASCII letter in either case.
///
/// The low byte is the byte (lowercase for a caseless letter); `CASELESS` marks a letter
/// that matches in either case.
pub(crate) type Symbol = u16;
pub(crate) const CASELESS: Symbol = 0x100;

/// A literal as symbols.
pub(crate) type Literal = Vec<Symbol>;

/// A set of literals, sorted and without duplicates.
pub(crate) type LiteralSet = Vec<Literal>;

/// The symbol for a byte matched exactly.
pub(crate) fn exact_symbol(byte: u8) -> Symbol {
    Symbol::from(byte)
}

/// The symbol for a byte matched ASCII case-insensitively (as rule keywords are).
pub(crate) fn caseless_symbol(byte: u8) -> Symbol {
    if byte.is_ascii_alphabetic() {
        CASELESS | Symbol::from(byte.to_ascii_lowercase())
    } else {
        Symbol::from(byte)
    }
}

/// The byte of a symbol (lowercase for a caseless letter).
pub(crate) fn symbol_byte(symbol: Symbol) -> u8 {
    (symbol & 0xff) as u8
}

/// What is known about the strings one sub-expression matches.
#[derive(Debug, Clone, Default)]
struct Facts {
    /// Every string it can match, when there are few.
    exact: Option<LiteralSet>,
    /// Every match starts with one of these.
    prefix: Option<LiteralSet>,
    /// Every match ends with one of these.
    suffix: Option<LiteralSet>,
    /// Every match contains one of these (none empty).
    necessary: Option<LiteralSet>,
}

impl Facts {
    fn exactly(set: LiteralSet) -> Facts {
        Facts {
            exact: Some(set.clone()),
            prefix: Some(set.clone()),
            suffix: Some(set.clone()),
            necessary: usable(Some(set)),
        }
    }
}

/// Literals one of which occurs in every match of `hir`; `None` when no short list is
/// known. An expression that can never match yields the empty set.
pub(crate) fn necessary_literals(hir: &Hir) -> Option<LiteralSet> {
    facts(hir).necessary.map(|set| {
        // A literal holding another of the set adds nothing: wherever it is, so is the
        // other.
        set.iter()
            .filter(|literal| {
                !set.iter().any(|other| {
                    !other.is_empty()
                        && other.len() < literal.len()
                        && literal
                            .windows(other.len())
                            .any(|piece| piece == other.as_slice())
                })
            })
            .cloned()
            .collect()
    })
}

fn facts(hir: &Hir) -> Facts {
    match hir.kind() {
        HirKind::Empty | HirKind::Look(_) => Facts::exactly(vec![Vec::new()]),
        HirKind::Literal(literal) => {
            let string: Literal = literal.0.iter().map(|&byte| exact_symbol(byte)).collect();
            if string.len() > MAX_STRING {
                let mut head = string.clone();
                head.truncate(MAX_STRING);
                let tail = string[string.len() - MAX_STRING..].to_vec();
                Facts {
                    exact: None,
                    prefix: Some(vec![head]),
                    suffix: Some(vec![tail]),
                    necessary: Some(vec![string]),
                }
            } else {
                Facts::exactly(vec![string])
            }
        }
        HirKind::Class(class) => match class_symbols(class) {
            Some(set) => Facts::exactly(set),
            None => Facts::default(),
        },
        HirKind::Capture(capture) => facts(&capture.sub),
        HirKind::Repetition(repetition) => {
            let sub = facts(&repetition.sub);
            if repetition.min == 0 {
                let exact = match (&sub.exact, repetition.max) {
                    (Some(strings), Some(max)) if max <= 4 => repeat(strings, 0, max),
                    _ => None,
                };
                return match exact {
                    Some(set) => Facts::exactly(set),
                    None => Facts::default(),
                };
            }
            let exact = match (&sub.exact, repetition.max) {
                (Some(strings), Some(max)) if max <= 4 => repeat(strings, repetition.min, max),
                _ => None,
            };
            match exact {
                Some(set) => Facts::exactly(set),
                None => Facts {
                    exact: None,
                    prefix: sub.prefix,
                    suffix: sub.suffix,
                    necessary: best([sub.necessary, usable(sub.exact)]),
                },
            }
        }
        HirKind::Concat(subs) => concat(subs.iter().map(facts).collect()),
        HirKind::Alternation(subs) => {
            let parts: Vec<Facts> = subs.iter().map(facts).collect();
            let union = |pick: &dyn Fn(&Facts) -> Option<LiteralSet>| {
                parts
                    .iter()
                    .map(pick)
                    .collect::<Option<Vec<LiteralSet>>>()
                    .and_then(|sets| normalize(sets.into_iter().flatten().collect()))
            };
            Facts {
                exact: union(&|part| part.exact.clone()),
                prefix: union(&|part| part.prefix.clone()),
                suffix: union(&|part| part.suffix.clone()),
                necessary: union(&|part| part.necessary.clone()),
            }
        }
    }
}

fn concat(parts: Vec<Facts>) -> Facts {
    let exact = parts.iter().try_fold(vec![Vec::new()], |whole, part| {
        cross(&whole, part.exact.as_ref()?)
    });
    if let Some(set) = exact {
        return Facts::exactly(set);
    }
    // A prefix: the leading exact parts, then the prefix of the first other part; stop
    // extending when the product grows too large.
    let mut prefix = Some(vec![Vec::new()]);
    for part in &parts {
        let (Some(current), Some(next)) = (&prefix, part.prefix.as_ref()) else {
            break;
        };
        match cross_prefix(current, next) {
            Some(extended) => prefix = Some(extended),
            None => break,
        }
        if part.exact.is_none() {
            break;
        }
    }
    let mut suffix = Some(vec![Vec::new()]);
    for part in parts.iter().rev() {
        let (Some(current), Some(next)) = (&suffix, part.suffix.as_ref()) else {
            break;
        };
        match cross_suffix(next, current) {
            Some(extended) => suffix = Some(extended),
            None => break,
        }
        if part.exact.is_none() {
            break;
        }
    }
    let mut candidates: Vec<Option<LiteralSet>> = vec![prefix.clone(), suffix.clone()];
    for part in &parts {
        candidates.push(part.necessary.clone());
    }
    // Runs of exactly known parts, with the suffix of the part before and the prefix
    // of the part after: `\bDROP\s+COLUMN` gives `drop` followed by each space byte.
    let mut index = 0;
    while index < parts.len() {
        if parts[index].exact.is_none() {
            index += 1;
            continue;
        }
        let start = index;
        while index < parts.len() && parts[index].exact.is_some() {
            index += 1;
        }
        let mut run = Some(vec![Vec::new()]);
        for part in &parts[start..index] {
            run = run.and_then(|left| cross(&left, part.exact.as_ref()?));
            if run.is_none() {
                break;
            }
        }
        let Some(run) = run else { continue };
        let mut widened = run.clone();
        if let Some(before) = start.checked_sub(1).and_then(|i| parts[i].suffix.as_ref())
            && let Some(set) = cross(before, &widened)
        {
            widened = set;
        }
        if let Some(after) = parts.get(index).and_then(|part| part.prefix.as_ref())
            && let Some(set) = cross(&widened, after)
        {
            widened = set;
        }
        candidates.push(Some(run));
        candidates.push(Some(widened));
    }
    Facts {
        exact: None,
        prefix,
        suffix,
        necessary: best(candidates),
    }
}

/// The symbols of a small class: a letter present in both cases is one caseless symbol.
fn class_symbols(class: &Class) -> Option<LiteralSet> {
    let mut present = [false; 256];
    let mut count = 0usize;
    let mut add = |byte: u8| {
        if !present[usize::from(byte)] {
            present[usize::from(byte)] = true;
            count += 1;
        }
        count <= 4 * MAX_CLASS
    };
    match class {
        Class::Bytes(class) => {
            for range in class.iter() {
                for byte in range.start()..=range.end() {
                    if !add(byte) {
                        return None;
                    }
                }
            }
        }
        Class::Unicode(class) => {
            for range in class.iter() {
                for character in range.start()..=range.end() {
                    // A character beyond ASCII is several bytes in UTF-8; give up.
                    let byte = u8::try_from(u32::from(character))
                        .ok()
                        .filter(u8::is_ascii)?;
                    if !add(byte) {
                        return None;
                    }
                }
            }
        }
    }
    let mut symbols: LiteralSet = Vec::new();
    for byte in 0..=255u8 {
        if !present[usize::from(byte)] {
            continue;
        }
        let other = byte ^ 0x20;
        if byte.is_ascii_alphabetic() && present[usize::from(other)] {
            if byte.is_ascii_lowercase() {
                symbols.push(vec![caseless_symbol(byte)]);
            }
        } else {
            symbols.push(vec![exact_symbol(byte)]);
        }
    }
    (symbols.len() <= MAX_CLASS).then_some(symbols)
}

/// Every string made of `min` to `max` strings of `strings`, if there are few.
fn repeat(strings: &LiteralSet, min: u32, max: u32) -> Option<LiteralSet> {
    let mut all = Vec::new();
    let mut power = vec![Vec::new()];
    for count in 0..=max {
        if count >= min {
            all.extend(power.iter().cloned());
        }
        if count < max {
            power = cross(&power, strings)?;
        }
    }
    normalize(all)
}

/// How a concatenation longer than `MAX_STRING` symbols is treated.
#[derive(Clone, Copy)]
enum Join {
    /// The whole set is given up (None).
    Whole,
    /// Each string is cut to its first `MAX_STRING` symbols.
    Prefix,
    /// Each string is cut to its last `MAX_STRING` symbols.
    Suffix,
}

/// Every concatenation of a string of `left` with one of `right`, if that stays small.
fn cross(left: &LiteralSet, right: &LiteralSet) -> Option<LiteralSet> {
    joined(left, right, Join::Whole)
}

/// `cross`, with each string cut to its first `MAX_STRING` symbols.
fn cross_prefix(left: &LiteralSet, right: &LiteralSet) -> Option<LiteralSet> {
    joined(left, right, Join::Prefix)
}

/// `cross`, with each string cut to its last `MAX_STRING` symbols.
fn cross_suffix(left: &LiteralSet, right: &LiteralSet) -> Option<LiteralSet> {
    joined(left, right, Join::Suffix)
}

fn joined(left: &LiteralSet, right: &LiteralSet, join: Join) -> Option<LiteralSet> {
    if left.len().saturating_mul(right.len()) > MAX_SET {
        return None;
    }
    let mut out = Vec::with_capacity(left.len() * right.len());
    for a in left {
        for b in right {
            let mut joined = a.clone();
            joined.extend_from_slice(b);
            if joined.len() > MAX_STRING {
                match join {
                    Join::Whole => return None,
                    Join::Prefix => joined.truncate(MAX_STRING),
                    Join::Suffix => {
                        joined.drain(..joined.len() - MAX_STRING);
                    }
                }
            }
            out.push(joined);
        }
    }
    normalize(out)
}

fn normalize(mut set: LiteralSet) -> Option<LiteralSet> {
    set.sort_unstable();
    set.dedup();
    (set.len() <= MAX_SET).then_some(set)
}

/// A set that can serve as a necessary one: no empty string (which every text
/// contains).
fn usable(set: Option<LiteralSet>) -> Option<LiteralSet> {
    set.filter(|set| set.iter().all(|string| !string.is_empty()))
}

/// The candidate that rules out the most text (see `set_cost`).
fn best<I: IntoIterator<Item = Option<LiteralSet>>>(candidates: I) -> Option<LiteralSet> {
    candidates
        .into_iter()
        .filter_map(usable)
        .map(|set| (set_cost(&set), set))
        .min_by(|(a, _), (b, _)| a.total_cmp(b))
        .map(|(_, set)| set)
}

/// An estimate of how often a literal of the set occurs at a given position of source
/// code. Lower is better.
pub(crate) fn set_cost(set: &LiteralSet) -> f64 {
    set.iter().map(|literal| literal_cost(literal)).sum()
}

/// An estimate of how often `literal` occurs at a given position of source code: the
/// rarest four-symbol window, each further symbol making it rarer. Three-symbol literals
/// cost more: the window search must flag every byte that may follow them.
pub(crate) fn literal_cost(literal: &[Symbol]) -> f64 {
    match literal.len() {
        0 => 1.0,
        1..=3 => 8.0 * window_cost(literal),
        length => {
            let rarest = literal
                .windows(4)
                .map(window_cost)
                .fold(f64::INFINITY, f64::min);
            rarest * (-2.0 * (length - 4) as f64).exp2()
        }
    }
}

/// An estimate of how often a window of symbols occurs at a given position of source
/// code, as the window search sees it (ASCII case folded): byte frequencies, and a large
/// factor for each three-letter piece of a common word (`form` of `format`, `_key`), which
/// a byte model takes for rare.
pub(crate) fn window_cost(window: &[Symbol]) -> f64 {
    // Punctuation repeats in rulers and separators (`-----`, `====`, `////`): a byte
    // equal to the one before it, not a letter or digit, is taken as likely as not.
    let mut previous = None;
    let probability: f64 = window
        .iter()
        .map(|&symbol| {
            let byte = symbol_byte(symbol);
            let repeated = previous == Some(byte) && !byte.is_ascii_alphanumeric();
            previous = Some(byte);
            if repeated {
                0.5
            } else {
                folded_probability(byte)
            }
        })
        .product();
    let lower: Vec<u8> = window
        .iter()
        .map(|&symbol| symbol_byte(symbol).to_ascii_lowercase())
        .collect();
    let pieces = common_pieces();
    let common = lower
        .windows(3)
        .filter(|piece| pieces.contains(*piece))
        .count();
    probability * 64f64.powi(i32::try_from(common).unwrap_or(i32::MAX))
}

/// The three-letter pieces of `COMMON_WORDS`, computed once.
fn common_pieces() -> &'static HashSet<Vec<u8>> {
    static PIECES: OnceLock<HashSet<Vec<u8>>> = OnceLock::new();
    PIECES.get_or_init(|| {
        COMMON_WORDS
            .iter()
            .flat_map(|word| word.as_bytes().windows(3).map(<[u8]>::to_vec))
            .collect()
    })
}

/// Words frequent in source code of many languages and in its comments: keywords, common
/// identifiers, the vocabulary of web services and data access, and common English.
const COMMON_WORDS: &[&str] = &[
    "function",
    "return",
    "format",
    "string",
    "public",
    "private",
    "protected",
    "static",
    "const",
    "import",
    "export",
    "class",
    "struct",
    "interface",
    "self",
    "this",
    "value",
    "error",
    "result",
    "print",
    "true",
    "false",
    "null",
    "none",
    "type",
    "list",
    "data",
    "name",
    "test",
    "assert",
    "expect",
    "config",
    "request",
    "response",
    "status",
    "index",
    "count",
    "file",
    "path",
    "line",
    "user",
    "time",
    "info",
    "debug",
    "message",
    "length",
    "object",
    "array",
    "default",
    "option",
    "params",
    "module",
    "package",
    "version",
    "build",
    "update",
    "delete",
    "create",
    "insert",
    "select",
    "where",
    "table",
    "column",
    "query",
    "order",
    "session",
    "execute",
    "context",
    "handler",
    "service",
    "client",
    "server",
    "model",
    "input",
    "output",
    "field",
    "method",
    "event",
    "state",
    "window",
    "document",
    "element",
    "node",
    "json",
    "key",
    "token",
    "password",
    "secret",
    "match",
    "async",
    "await",
    "include",
    "define",
    "println",
    "logger",
    "warning",
    "exception",
    "throw",
    "catch",
    "finally",
    "while",
    "each",
    "filter",
    "items",
    "values",
    "number",
    "integer",
    "boolean",
    "float",
    "double",
    "char",
    "byte",
    "buffer",
    "stream",
    "reader",
    "writer",
    "encode",
    "decode",
    "parse",
    "check",
    "valid",
    "header",
    "body",
    "content",
    "text",
    "http",
    "url",
    "host",
    "port",
    "address",
    "account",
    "customer",
    "product",
    "record",
    "entity",
    "repository",
    "controller",
    "component",
    "template",
    "render",
    "style",
    "color",
    "width",
    "height",
    "image",
    "upload",
    "download",
    "source",
    "target",
    "local",
    "global",
    "environment",
    "setting",
    "enable",
    "disable",
    "start",
    "stop",
    "close",
    "open",
    "read",
    "write",
    "load",
    "save",
    "store",
    "cache",
    "memory",
    "thread",
    "process",
    "command",
    "system",
    "with",
    "from",
    "that",
    "have",
    "will",
    "your",
    "when",
    "then",
    "else",
    "into",
    "over",
    "after",
    "before",
    "about",
    "other",
    "which",
    "there",
    "their",
    "would",
    "could",
    "should",
    "what",
    "more",
    "only",
    "also",
    "some",
    "than",
    "them",
    "been",
    "were",
    "they",
    "make",
    "like",
    "just",
    "first",
    "most",
    "used",
    "such",
    "here",
    "must",
    "need",
    "note",
    "because",
    "between",
    "under",
    "again",
    "every",
    "same",
    "given",
    "without",
];

/// How often a byte occurs in source code, counting both cases of a letter: what a
/// search over case-folded text sees.
fn folded_probability(byte: u8) -> f64 {
    let folded = byte | 0x20;
    byte_probability(folded) + byte_probability(folded & !0x20)
}

/// Rough byte frequencies of source code: letters about 62 % (an eighth of them upper
/// case), spaces 14 %, common punctuation about 1 % each, anything else rarer.
fn byte_probability(byte: u8) -> f64 {
    let letter = |lower: u8| -> f64 {
        match lower {
            b'e' => 0.115,
            b't' => 0.09,
            b'a' | b's' => 0.075,
            b'r' | b'i' | b'o' | b'n' => 0.07,
            b'l' => 0.045,
            b'c' => 0.04,
            b'u' | b'd' => 0.035,
            b'p' | b'm' | b'h' => 0.03,
            b'g' => 0.025,
            b'f' => 0.022,
            b'b' => 0.018,
            b'y' => 0.015,
            b'w' => 0.013,
            b'v' => 0.012,
            b'k' => 0.01,
            b'x' => 0.008,
            b'j' => 0.003,
            _ => 0.002,
        }
    };
    match byte {
        b'a'..=b'z' => 0.62 * 0.88 * letter(byte),
        b'A'..=b'Z' => 0.62 * 0.12 * letter(byte.to_ascii_lowercase()),
        b' ' => 0.14,
        b'\t' => 0.01,
        b'_' | b'.' | b'(' | b')' | b'=' => 0.012,
        b'"' | b',' => 0.009,
        b':' | b';' | b'-' | b'\'' => 0.006,
        b'/' | b'{' | b'}' | b'[' | b']' | b'0' | b'1' => 0.004,
        b'2'..=b'9' | b'<' | b'>' | b'*' | b'+' | b'!' | b'&' | b'|' | b'#' | b'@' => 0.002,
        0x80..=0xff => 0.0005,
        _ => 0.0001,
    }
}

#[cfg(test)]
mod tests {
    use regex_automata::meta::Regex;
    use regex_automata::util::syntax;

    use super::*;

    fn config() -> syntax::Config {
        syntax::Config::new().unicode(false).utf8(false)
    }

    /// The literals of `pattern`, written with `=` before a letter matched in one case only.
    fn literals(pattern: &str) -> Option<Vec<String>> {
        let hir = syntax::parse_with(pattern, &config()).unwrap();
        necessary_literals(&hir).map(|set| {
            set.iter()
                .map(|literal| {
                    literal
                        .iter()
                        .map(|&symbol| {
                            let byte = symbol_byte(symbol);
                            if symbol & CASELESS == 0 && byte.is_ascii_alphabetic() {
                                format!("={}", byte as char)
                            } else {
                                (byte as char).to_string()
                            }
                        })
                        .collect()
                })
                .collect()
        })
    }

    fn check(pattern: &str, expected: Option<&[&str]>) {
        let expected = expected.map(|list| list.iter().map(|s| (*s).to_owned()).collect());
        assert_eq!(literals(pattern), expected, "{pattern}");
    }

    #[test]
    fn necessary_literals_of_patterns() {
        check("(?i)password", Some(&["password"]));
        check("AKIA[A-Z2-7]{16}", Some(&["=A=K=I=A"]));
        check("(?i)api_?key", Some(&["api_key", "apikey"]));
        check(
            "(?i)drop\\s+table",
            Some(&[
                "drop\t",
                "drop\n",
                "drop\u{b}",
                "drop\u{c}",
                "drop\r",
                "drop ",
            ]),
        );
        check("a|b+", Some(&["=a", "=b"]));
        check("[a-z]+", None);
        check("x?", None);
        check("(?:foo)?bar", Some(&["=b=a=r"]));
        check("[^\\n]*", None);
    }

    /// Wherever a rule's pattern matches one of its examples, one of the pattern's
    /// literals is in the example.
    #[test]
    fn literals_occur_in_every_match_of_the_rules() {
        for rule in crate::rule::RulePack::builtin().rules() {
            for pattern in rule.pattern.iter().chain(&rule.confirm) {
                let hir = syntax::parse_with(pattern, &config()).unwrap();
                let Some(set) = necessary_literals(&hir) else {
                    continue;
                };
                let regex = Regex::builder().syntax(config()).build(pattern).unwrap();
                for example in rule.examples.positive.iter().chain(&rule.examples.negative) {
                    for line in example.lines() {
                        let Some(found) = regex.find(line.as_bytes()) else {
                            continue;
                        };
                        let matched = &line.as_bytes()[found.range()];
                        let holds = set.iter().any(|literal| {
                            matched.windows(literal.len()).any(|window| {
                                window.iter().zip(literal).all(|(&byte, &symbol)| {
                                    if symbol & CASELESS != 0 {
                                        byte.to_ascii_lowercase() == symbol_byte(symbol)
                                    } else {
                                        byte == symbol_byte(symbol)
                                    }
                                })
                            })
                        });
                        assert!(holds, "{}: {pattern} matched {line:?}", rule.id);
                    }
                }
            }
        }
    }
}

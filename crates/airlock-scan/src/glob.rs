//! Path globs (`*`, `**`, `?`, `{a,b}`): translated to anchored byte regexes, and
//! matched many at once against a path's components (`GlobSet`).
//!
//! A rule pack holds hundreds of globs, and every file of a diff is matched against all
//! of them. One regex set of them all, matched overlapping, made its lazy DFA explore a
//! state for every combination of globs still alive along the path: on the paths of a
//! real repository it kept building states, and matching paths cost more than scanning
//! the lines. `GlobSet` instead splits each glob into path components and files it under
//! a literal a matching path must hold (its file name, its first component, a directory
//! name, its extension, or its name's first byte); a path is matched only against the
//! globs filed under its own, and the few filed under none, each in a handful of
//! comparisons.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::ops::Range;

use regex_automata::meta::Regex;
use regex_automata::util::syntax;

/// The regex for one glob. A glob without `/` matches the file name in any directory, as
/// in `.gitignore`; `**/` matches any number of directories, `*` and `?` stay within one.
pub(crate) fn glob_to_regex(glob: &str) -> String {
    let glob = glob.strip_prefix("./").unwrap_or(glob);
    let mut out = String::from("^");
    let anchored = glob.contains('/');
    let body = glob.strip_prefix('/').unwrap_or(glob);
    if !anchored {
        out.push_str("(?:.*/)?");
    }
    let chars: Vec<char> = body.chars().collect();
    let mut index = 0;
    let mut in_braces = false;
    while index < chars.len() {
        let c = chars[index];
        match c {
            '*' if chars.get(index + 1) == Some(&'*') => {
                if chars.get(index + 2) == Some(&'/') {
                    out.push_str("(?:.*/)?");
                    index += 3;
                } else {
                    out.push_str(".*");
                    index += 2;
                }
                continue;
            }
            '*' => out.push_str("[^/]*"),
            '?' => out.push_str("[^/]"),
            '{' => {
                in_braces = true;
                out.push_str("(?:");
            }
            '}' if in_braces => {
                in_braces = false;
                out.push(')');
            }
            ',' if in_braces => out.push('|'),
            _ => {
                if c.is_ascii_alphanumeric() || c == '/' || c == '_' || c == '-' {
                    out.push(c);
                } else {
                    out.push_str(&regex_escape_char(c));
                }
            }
        }
        index += 1;
    }
    if in_braces {
        out.push(')');
    }
    // A directory glob such as `migrations/` covers everything under it.
    if body.ends_with('/') {
        out.push_str(".*");
    }
    out.push('$');
    out
}

fn regex_escape_char(c: char) -> String {
    if c.is_ascii_punctuation() {
        format!("\\{c}")
    } else {
        let mut buffer = [0; 4];
        c.encode_utf8(&mut buffer)
            .bytes()
            .map(|byte| format!("\\x{byte:02x}"))
            .collect()
    }
}

/// A glob's regex (`glob_to_regex`), compiled over bytes.
fn glob_regex(glob: &str) -> Result<Regex, String> {
    Regex::builder()
        .syntax(syntax::Config::new().unicode(false).utf8(false))
        .configure(Regex::config().utf8_empty(false))
        .build(&glob_to_regex(glob))
        .map_err(|error| error.to_string())
}

/// Braced alternatives expanded at most to this many globs; a glob with more is matched
/// by its regex.
const MAX_EXPANSIONS: usize = 64;

/// Many glob lists, matched against a path at once: which lists hold a glob the path
/// matches.
#[derive(Debug)]
pub(crate) struct GlobSet {
    /// The distinct globs (braces expanded), and the lists each belongs to.
    globs: Vec<PathGlob>,
    glob_lists: Vec<Vec<u32>>,
    /// Globs by a literal a matching path holds: its file name, its first component,
    /// one of its components, or its extension (after the file name's last dot).
    by_name: LiteralMap,
    by_first: LiteralMap,
    by_component: LiteralMap,
    by_extension: LiteralMap,
    /// Bit `n` set when `by_component` has a key `n` bytes long (`n` < 64), so most
    /// components are passed over without hashing.
    component_lengths: u64,
    /// Globs whose file name starts with a literal byte, by that byte.
    by_name_start: Vec<Vec<u32>>,
    /// Globs with none of these: tried on every path.
    unfiled: Vec<u32>,
    list_count: usize,
}

type LiteralMap = HashMap<Box<[u8]>, Vec<u32>, BuildHasherDefault<WordHasher>>;

/// A hash of short byte strings eight bytes at a time: file names and directory names
/// are looked up several times for every file of a diff, where SipHash's cost showed.
#[derive(Default)]
struct WordHasher(u64);

impl Hasher for WordHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let word = u64::from_le_bytes(chunk.try_into().unwrap_or_default());
            self.0 = (self.0 ^ word)
                .wrapping_mul(0x9e37_79b9_7f4a_7c15)
                .rotate_left(29);
        }
        let mut last = [0; 8];
        last[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
        self.0 = (self.0 ^ u64::from_le_bytes(last) ^ bytes.len() as u64)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .rotate_left(29);
    }

    fn finish(&self) -> u64 {
        self.0.wrapping_mul(0xff51_afd7_ed55_8ccd) ^ (self.0 >> 31)
    }
}

#[derive(Debug)]
enum PathGlob {
    Parts(Vec<Part>),
    /// A glob the component form does not cover (`**` inside a name, a brace holding a
    /// `/`): its regex.
    Regex(Regex),
}

/// One component of a glob.
#[derive(Debug, Clone, PartialEq)]
enum Part {
    /// `**/`, or the implied leading directories of a glob without `/`: zero or more
    /// components. A final `**` or `/` (one or more components) is `Name([Star])` then
    /// this.
    AnyDirectories,
    /// One component: its pattern, and the text it was read from.
    Name(Vec<Piece>, Vec<u8>),
}

/// One byte of a component's pattern.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Piece {
    Byte(u8),
    /// `*`: any bytes within the component.
    Star,
    /// `?`: one byte.
    One,
}

/// Where a glob is filed in a `GlobSet`.
enum Filing<'a> {
    Name(&'a [u8]),
    First(&'a [u8]),
    Component(&'a [u8]),
    Extension(&'a [u8]),
    NameStart(u8),
    Unfiled,
}

impl GlobSet {
    /// Compiles `lists` of globs; fails with the index of a list holding a glob that
    /// does not compile, and why.
    pub(crate) fn new(lists: &[&[String]]) -> Result<GlobSet, (usize, String)> {
        let mut set = GlobSet {
            globs: Vec::new(),
            glob_lists: Vec::new(),
            by_name: LiteralMap::default(),
            by_first: LiteralMap::default(),
            by_component: LiteralMap::default(),
            by_extension: LiteralMap::default(),
            component_lengths: 0,
            by_name_start: vec![Vec::new(); 256],
            unfiled: Vec::new(),
            list_count: lists.len(),
        };
        let mut seen: HashMap<String, u32> = HashMap::new();
        for (list, globs) in lists.iter().enumerate() {
            for glob in globs.iter() {
                let expanded = expand_braces(glob);
                let alternatives: Vec<(String, Option<Vec<Part>>)> = match expanded {
                    Some(globs) => globs
                        .into_iter()
                        .map(|glob| {
                            let parts = parts(&glob);
                            (glob, parts)
                        })
                        .collect(),
                    None => vec![(glob.clone(), None)],
                };
                for (text, parts) in alternatives {
                    let key = if parts.is_some() {
                        text.clone()
                    } else {
                        format!("\0{text}")
                    };
                    let index = match seen.get(&key) {
                        Some(&index) => index,
                        None => {
                            let index = set.globs.len() as u32;
                            let glob = match parts {
                                Some(parts) => PathGlob::Parts(parts),
                                None => PathGlob::Regex(
                                    glob_regex(&text).map_err(|reason| (list, reason))?,
                                ),
                            };
                            set.file(index, &glob);
                            set.globs.push(glob);
                            set.glob_lists.push(Vec::new());
                            seen.insert(key, index);
                            index
                        }
                    };
                    let lists = &mut set.glob_lists[index as usize];
                    if !lists.contains(&(list as u32)) {
                        lists.push(list as u32);
                    }
                }
            }
        }
        Ok(set)
    }

    fn file(&mut self, index: u32, glob: &PathGlob) {
        let (map, key) = match filing(glob) {
            Filing::Name(name) => (&mut self.by_name, name),
            Filing::First(first) => (&mut self.by_first, first),
            Filing::Component(component) => {
                self.component_lengths |= 1 << component.len().min(63);
                (&mut self.by_component, component)
            }
            Filing::Extension(extension) => (&mut self.by_extension, extension),
            Filing::NameStart(byte) => {
                self.by_name_start[usize::from(byte)].push(index);
                return;
            }
            Filing::Unfiled => {
                self.unfiled.push(index);
                return;
            }
        };
        map.entry(key.into()).or_default().push(index);
    }

    /// Fills `matches` for `path`: which lists hold a glob the path matches.
    pub(crate) fn matching(&self, path: &str, matches: &mut GlobMatches) {
        let GlobMatches {
            lists: matched,
            tried,
            components,
        } = matches;
        matched.clear();
        matched.resize(self.list_count, false);
        tried.clear();
        tried.resize(self.globs.len(), false);
        let bytes = path.as_bytes();
        components.clear();
        let mut start = 0;
        for slash in memchr::memchr_iter(b'/', bytes).chain([bytes.len()]) {
            components.push(start..slash);
            start = slash + 1;
        }
        let mut try_globs = |globs: &[u32]| {
            for &index in globs {
                let lists = &self.glob_lists[index as usize];
                if std::mem::replace(&mut tried[index as usize], true)
                    || lists.iter().all(|&list| matched[list as usize])
                {
                    continue;
                }
                let hit = match &self.globs[index as usize] {
                    PathGlob::Parts(parts) => parts_match(parts, components, bytes),
                    PathGlob::Regex(regex) => regex.is_match(path),
                };
                if hit {
                    for &list in lists {
                        matched[list as usize] = true;
                    }
                }
            }
        };
        let name = components
            .last()
            .map_or(&b""[..], |name| &bytes[name.clone()]);
        if let Some(globs) = self.by_name.get(name) {
            try_globs(globs);
        }
        let first = components
            .first()
            .map_or(&b""[..], |first| &bytes[first.clone()]);
        if let Some(globs) = self.by_first.get(first) {
            try_globs(globs);
        }
        for component in components.iter() {
            let length = component.len();
            // Keys of 64 bytes or more all set the top bit.
            if self.component_lengths & (1 << length.min(63)) != 0
                && let Some(globs) = self.by_component.get(&bytes[component.clone()])
            {
                try_globs(globs);
            }
        }
        if let Some(dot) = memchr::memrchr(b'.', name)
            && let Some(globs) = self.by_extension.get(&name[dot + 1..])
        {
            try_globs(globs);
        }
        if let Some(&start) = name.first() {
            try_globs(&self.by_name_start[usize::from(start)]);
        }
        try_globs(&self.unfiled);
    }
}

/// Scratch and result of `GlobSet::matching`, reused from path to path.
#[derive(Debug, Default)]
pub(crate) struct GlobMatches {
    /// `lists[list]`: the path matches a glob of the list.
    pub(crate) lists: Vec<bool>,
    tried: Vec<bool>,
    components: Vec<Range<usize>>,
}

/// Where `glob` is filed, by the literal least common in paths that a path matching it
/// must hold: its file name when that is a literal; its first component when that is;
/// any component that is; else its extension when its file name ends with a literal
/// holding a dot; else the first byte of its file name when that is a literal.
fn filing(glob: &PathGlob) -> Filing<'_> {
    let PathGlob::Parts(parts) = glob else {
        return Filing::Unfiled;
    };
    fn literal(part: &Part) -> Option<&[u8]> {
        match part {
            Part::Name(_, text) if literal_tail(text).len() == text.len() => Some(text),
            _ => None,
        }
    }
    if let Some(name) = parts.last().and_then(literal) {
        return Filing::Name(name);
    }
    if let Some(first) = parts.first().and_then(literal) {
        return Filing::First(first);
    }
    if let Some(component) = parts.iter().find_map(literal) {
        return Filing::Component(component);
    }
    if let Some(Part::Name(_, text)) = parts.last()
        && let Some(dot) = memchr::memrchr(b'.', literal_tail(text))
    {
        return Filing::Extension(&literal_tail(text)[dot + 1..]);
    }
    if let Some(Part::Name(pieces, _)) = parts.last()
        && let Some(Piece::Byte(start)) = pieces.first()
    {
        return Filing::NameStart(*start);
    }
    Filing::Unfiled
}

/// The literal end of a component's glob: what follows its last `*` or `?`.
fn literal_tail(text: &[u8]) -> &[u8] {
    match text.iter().rposition(|&byte| byte == b'*' || byte == b'?') {
        Some(wildcard) => &text[wildcard + 1..],
        None => text,
    }
}

/// The globs `glob` stands for with its braces expanded: `*.{yml,yaml}` is `*.yml` and
/// `*.yaml`. `None` for braces the component form does not cover: nested, unclosed, or
/// holding a `/`, or more than `MAX_EXPANSIONS` alternatives.
fn expand_braces(glob: &str) -> Option<Vec<String>> {
    let Some(open) = glob.find('{') else {
        return Some(vec![glob.to_owned()]);
    };
    let close = open + glob[open..].find('}')?;
    let inside = &glob[open + 1..close];
    if inside.contains(['{', '/']) {
        return None;
    }
    let mut out = Vec::new();
    for alternative in inside.split(',') {
        let rest = format!("{}{alternative}{}", &glob[..open], &glob[close + 1..]);
        out.extend(expand_braces(&rest)?);
        if out.len() > MAX_EXPANSIONS {
            return None;
        }
    }
    Some(out)
}

/// The components of a brace-free glob, read as `glob_to_regex` reads it; `None` where
/// `**` shares a component with other characters or a `}` is left over.
fn parts(glob: &str) -> Option<Vec<Part>> {
    let glob = glob.strip_prefix("./").unwrap_or(glob);
    let anchored = glob.contains('/');
    let body = glob.strip_prefix('/').unwrap_or(glob);
    if body.contains('}') {
        return None;
    }
    let mut parts = Vec::new();
    if !anchored {
        parts.push(Part::AnyDirectories);
    }
    let segments: Vec<&str> = body.split('/').collect();
    for (index, segment) in segments.iter().enumerate() {
        let last = index + 1 == segments.len();
        // A final `**`, or a final `/` (`migrations/`): everything under the directory.
        if last && (*segment == "**" || (segment.is_empty() && index > 0)) {
            parts.push(Part::Name(vec![Piece::Star], b"*".to_vec()));
            parts.push(Part::AnyDirectories);
            continue;
        }
        if *segment == "**" {
            parts.push(Part::AnyDirectories);
            continue;
        }
        if segment.contains("**") {
            return None;
        }
        let pieces = segment
            .bytes()
            .map(|byte| match byte {
                b'*' => Piece::Star,
                b'?' => Piece::One,
                _ => Piece::Byte(byte),
            })
            .collect();
        parts.push(Part::Name(pieces, segment.as_bytes().to_vec()));
    }
    Some(parts)
}

/// Whether a path, split at its slashes into `components` of `path`, matches `parts`.
fn parts_match(parts: &[Part], components: &[Range<usize>], path: &[u8]) -> bool {
    // A glob's first and last names can only be the path's first and last components:
    // most globs tried are ruled out by them alone.
    let ends = |part: Option<&Part>, component: Option<&Range<usize>>| match (part, component) {
        (Some(Part::Name(pieces, _)), Some(component)) => {
            name_matches(pieces, &path[component.clone()])
        }
        _ => true,
    };
    if !ends(parts.last(), components.last()) || !ends(parts.first(), components.first()) {
        return false;
    }
    wildcard_match(
        parts,
        components,
        |part| matches!(part, Part::AnyDirectories),
        |part, component| matches!(part, Part::Name(pieces, _) if name_matches(pieces, &path[component.clone()])),
    )
}

fn name_matches(pieces: &[Piece], text: &[u8]) -> bool {
    wildcard_match(
        pieces,
        text,
        |piece| *piece == Piece::Star,
        |piece, byte| match piece {
            Piece::Byte(expected) => expected == byte,
            _ => true,
        },
    )
}

/// Whether `items` match `pattern`, whose elements are each a star (any number of items)
/// or match one item (`one`): the greedy match that returns to the last star on a
/// mismatch, in time proportional to the product of the lengths at worst, so a hostile
/// path costs no more than its length times a glob's.
fn wildcard_match<P, T>(
    pattern: &[P],
    items: &[T],
    star: impl Fn(&P) -> bool,
    one: impl Fn(&P, &T) -> bool,
) -> bool {
    let (mut at, mut item) = (0, 0);
    // After the last star: where the pattern resumes, and the first item it left.
    let mut resume: Option<(usize, usize)> = None;
    while item < items.len() {
        if let Some(element) = pattern.get(at) {
            if star(element) {
                resume = Some((at + 1, item));
                at += 1;
                continue;
            }
            if one(element, &items[item]) {
                at += 1;
                item += 1;
                continue;
            }
        }
        match resume {
            Some((after_star, left)) => {
                at = after_star;
                item = left + 1;
                resume = Some((after_star, left + 1));
            }
            None => return false,
        }
    }
    pattern[at..].iter().all(star)
}

#[cfg(test)]
mod tests {
    use super::glob_to_regex;
    use regex_automata::meta::Regex;

    fn check(glob: &str, path: &str, expected: bool) {
        let regex = Regex::new(&glob_to_regex(glob)).unwrap();
        assert_eq!(regex.is_match(path), expected, "{glob} vs {path}");
    }

    #[test]
    fn globs() {
        check("*.md", "README.md", true);
        check("*.md", "docs/guide/intro.md", true);
        check("*.md", "src/md.rs", false);
        check("docs/**", "docs/a/b.txt", true);
        check("docs/**", "src/docs/a.txt", false);
        check("**/test_*.py", "test_x.py", true);
        check("**/test_*.py", "pkg/tests/test_x.py", true);
        check(
            ".github/workflows/*.{yml,yaml}",
            ".github/workflows/ci.yaml",
            true,
        );
        check(
            ".github/workflows/*.{yml,yaml}",
            ".github/workflows/a/ci.yml",
            false,
        );
        check("migrations/", "migrations/0001_init.py", true);
        check("CODEOWNERS", ".github/CODEOWNERS", true);
        check("a+b.txt", "a+b.txt", true);
    }
}

#[cfg(test)]
mod set_tests {
    use super::{GlobMatches, GlobSet, glob_regex};
    use crate::rule::RulePack;
    use regex_automata::meta::Regex;

    /// Every glob of the built-in rules, and globs the component form leaves to a regex,
    /// agree with their regex on paths built from their own words and others.
    #[test]
    fn set_matches_as_the_regexes_do() {
        let pack = RulePack::builtin();
        let mut lists: Vec<Vec<String>> = pack
            .rules()
            .iter()
            .flat_map(|rule| [rule.paths.clone(), rule.exclude_paths.clone()])
            .filter(|list| !list.is_empty())
            .collect();
        lists.push(
            [
                "**.py",
                "a**b/*.rs",
                "{src,lib}/**/*.{ts,tsx}",
                "x{a/b,c}y",
                "./docs/",
                "/root.txt",
                "unclosed{a,b",
                "?.md",
                "**",
                "ünï/*.txt",
                "a*b*c",
                "*",
            ]
            .map(String::from)
            .to_vec(),
        );
        let refs: Vec<&[String]> = lists.iter().map(Vec::as_slice).collect();
        let set = GlobSet::new(&refs).unwrap();
        let regexes: Vec<Vec<Regex>> = lists
            .iter()
            .map(|list| list.iter().map(|glob| glob_regex(glob).unwrap()).collect())
            .collect();
        // Words: every literal run of every glob, and some of other paths.
        let mut words: Vec<String> = vec![
            "src".into(),
            "lib".into(),
            "main.rs".into(),
            "x".into(),
            "".into(),
            "a.b.c".into(),
            "ünï".into(),
            "Tests".into(),
            "README".into(),
            ".".into(),
        ];
        for glob in lists.iter().flatten() {
            for piece in glob.split(['/', '*', '?', '{', '}', ',']) {
                if !piece.is_empty() {
                    words.push(piece.to_owned());
                    words.push(format!("x{piece}"));
                    words.push(format!("{piece}y"));
                }
            }
        }
        words.sort();
        words.dedup();
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut matches = GlobMatches::default();
        let mut matched_some = 0;
        for _ in 0..10_000 {
            let depth = 1 + next() % 6;
            let path: Vec<&str> = (0..depth)
                .map(|_| words[(next() % words.len() as u64) as usize].as_str())
                .collect();
            let path = path.join("/");
            set.matching(&path, &mut matches);
            for (list, regexes) in regexes.iter().enumerate() {
                let expected = regexes.iter().any(|regex| regex.is_match(&path));
                assert_eq!(
                    matches.lists[list], expected,
                    "{path} against {:?}",
                    lists[list]
                );
                matched_some += usize::from(expected);
            }
        }
        // The paths reach the globs: many lists match.
        assert!(matched_some > 20_000, "{matched_some}");
    }

    /// A path of thousands of components costs its length times a glob's, not more.
    #[test]
    fn hostile_paths_stay_linear() {
        let lists = [vec![
            "**/a/**/b/**/c/**/*.d".to_owned(),
            "**/a*a*a*a*a*b".to_owned(),
        ]];
        let refs: Vec<&[String]> = lists.iter().map(Vec::as_slice).collect();
        let set = GlobSet::new(&refs).unwrap();
        let mut matches = GlobMatches::default();
        let path = format!("{}x.e", "a/".repeat(50_000));
        let started = std::time::Instant::now();
        set.matching(&path, &mut matches);
        set.matching(&"a".repeat(100_000), &mut matches);
        assert!(!matches.lists[0]);
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
    }
}

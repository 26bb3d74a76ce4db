//! Path globs (`*`, `**`, `?`, `{a,b}`) translated to anchored byte regexes.

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

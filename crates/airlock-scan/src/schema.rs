//! The base tree's database schema, and the columns the queries a change adds refer to.
//!
//! With the diff alone, a query edited in code is only a risk (`schema-contract.query-changed`,
//! medium): whether its columns exist is unknown. Given the tree the change applies to,
//! the scanner reads the schema its SQL files declare (`CREATE TABLE`, `ALTER TABLE … ADD /
//! DROP / RENAME COLUMN`, `RENAME TO`, `DROP TABLE`, applied in path order, as numbered
//! migrations run) and checks every single-line SQL statement in an added line against
//! it: a column that no table of the statement has is `schema-contract.unknown-column`.
//! The reading is deliberately conservative: a statement is judged only when every table
//! it names is in the schema, and only identifiers in unambiguous places (the select
//! list, `INSERT`'s column list, `SET a =`, `a = …` and other comparisons, `ORDER BY`,
//! `GROUP BY`) count as columns.

use std::collections::{HashMap, HashSet};

/// The tree a change applies to, as far as the scanner reads it. The scanner does no
/// I/O; the caller (a git repository at the change's base commit) does.
pub trait BaseTree {
    /// The paths of the tree's files.
    fn paths(&self) -> Vec<String>;
    /// The contents of each of `paths`; `None` for one that is absent or unreadable.
    fn read(&self, paths: &[&str]) -> Vec<Option<Vec<u8>>>;
}

/// A tree held in memory: the base of a rule's examples, and of tests.
#[derive(Debug, Clone, Default)]
pub struct MemoryTree {
    files: Vec<(String, Vec<u8>)>,
}

impl MemoryTree {
    pub fn new<P: Into<String>, C: Into<Vec<u8>>>(files: impl IntoIterator<Item = (P, C)>) -> Self {
        MemoryTree {
            files: files
                .into_iter()
                .map(|(path, content)| (path.into(), content.into()))
                .collect(),
        }
    }
}

impl BaseTree for MemoryTree {
    fn paths(&self) -> Vec<String> {
        self.files.iter().map(|(path, _)| path.clone()).collect()
    }

    fn read(&self, paths: &[&str]) -> Vec<Option<Vec<u8>>> {
        paths
            .iter()
            .map(|wanted| {
                self.files
                    .iter()
                    .find(|(path, _)| path == wanted)
                    .map(|(_, content)| content.clone())
            })
            .collect()
    }
}

/// Most schema files read from a tree, and most bytes: a tree with more is read up to
/// these bounds, in path order.
const MAX_SCHEMA_FILES: usize = 5000;
const MAX_SCHEMA_BYTES: usize = 32 << 20;

/// Tables and their columns, names folded to lower case.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Schema {
    tables: HashMap<String, HashSet<String>>,
}

/// Whether `path` is a file the schema is read from: SQL in a migration directory, or a
/// schema dump (`schema.sql`, `structure.sql`) anywhere.
fn is_schema_file(path: &str, in_migration_dir: impl Fn(&str) -> bool) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    let sql = name.to_ascii_lowercase().ends_with(".sql");
    sql && (in_migration_dir(path) || name == "schema.sql" || name == "structure.sql")
}

impl Schema {
    /// The schema the tree's SQL files declare; `None` when the tree has none.
    pub(crate) fn from_tree(
        tree: &dyn BaseTree,
        in_migration_dir: impl Fn(&str) -> bool,
    ) -> Option<Schema> {
        let mut paths: Vec<String> = tree
            .paths()
            .into_iter()
            .filter(|path| is_schema_file(path, &in_migration_dir))
            .take(MAX_SCHEMA_FILES)
            .collect();
        paths.sort();
        let refs: Vec<&str> = paths.iter().map(String::as_str).collect();
        let mut schema = Schema::default();
        let mut bytes = 0;
        for text in tree.read(&refs).into_iter().flatten() {
            bytes += text.len();
            if bytes > MAX_SCHEMA_BYTES {
                break;
            }
            schema.apply(&String::from_utf8_lossy(&text));
        }
        (!schema.tables.is_empty()).then_some(schema)
    }

    /// Applies the DDL statements of one SQL file.
    pub(crate) fn apply(&mut self, sql: &str) {
        for statement in strip_comments(sql).split(';') {
            let tokens = tokens(statement);
            let words: Vec<String> = tokens.iter().map(|t| t.to_ascii_lowercase()).collect();
            let word = |index: usize| words.get(index).map(String::as_str).unwrap_or("");
            match (word(0), word(1)) {
                ("create", _) => {
                    let Some(table_at) = words.iter().position(|w| w == "table") else {
                        continue;
                    };
                    if !words[1..table_at]
                        .iter()
                        .all(|w| matches!(w.as_str(), "temporary" | "temp" | "unlogged"))
                    {
                        continue;
                    }
                    let mut at = table_at + 1;
                    if word(at) == "if" {
                        at += 3;
                    }
                    let Some(name) = tokens.get(at).map(|t| table_name(t)) else {
                        continue;
                    };
                    let columns = self.tables.entry(name).or_default();
                    if let Some(open) = statement.find('(') {
                        for definition in split_top_level(&statement[open + 1..]) {
                            if let Some(column) = column_definition(definition) {
                                columns.insert(column);
                            }
                        }
                    }
                }
                ("alter", "table") => self.alter(&tokens, &words),
                ("drop", "table") => {
                    for token in tokens.iter().skip(2) {
                        let name = table_name(token);
                        if !matches!(name.as_str(), "if" | "exists" | "cascade" | "restrict") {
                            self.tables.remove(&name);
                        }
                    }
                }
                _ => {}
            }
        }
    }

    /// `ALTER TABLE name action, action …`.
    fn alter(&mut self, tokens: &[String], words: &[String]) {
        let mut at = 2;
        while matches!(
            words.get(at).map(String::as_str),
            Some("if" | "exists" | "only")
        ) {
            at += 1;
        }
        let Some(name) = tokens.get(at).map(|t| table_name(t)) else {
            return;
        };
        let rest: Vec<&str> = words[at + 1..].iter().map(String::as_str).collect();
        let raw: Vec<&str> = tokens[at + 1..].iter().map(String::as_str).collect();
        let mut index = 0;
        let mut current = name;
        while index < rest.len() {
            let skip_optional = |mut i: usize, words: &[&str]| {
                if words.get(i) == Some(&"column") {
                    i += 1;
                }
                while matches!(words.get(i), Some(&("if" | "not" | "exists"))) {
                    i += 1;
                }
                i
            };
            match rest[index] {
                "add" if !is_constraint_word(rest.get(index + 1).copied().unwrap_or("")) => {
                    let at = skip_optional(index + 1, &rest);
                    if let Some(column) = raw.get(at) {
                        self.tables
                            .entry(current.clone())
                            .or_default()
                            .insert(identifier(column));
                    }
                    index = at + 1;
                }
                "drop" if !is_constraint_word(rest.get(index + 1).copied().unwrap_or("")) => {
                    let at = skip_optional(index + 1, &rest);
                    if let (Some(column), Some(columns)) =
                        (raw.get(at), self.tables.get_mut(&current))
                    {
                        columns.remove(&identifier(column));
                    }
                    index = at + 1;
                }
                "rename" if rest.get(index + 1) == Some(&"to") => {
                    if let Some(new) = raw.get(index + 2) {
                        let new = table_name(new);
                        if let Some(columns) = self.tables.remove(&current) {
                            self.tables.insert(new.clone(), columns);
                        }
                        current = new;
                    }
                    index += 3;
                }
                "rename" => {
                    let at = skip_optional(index + 1, &rest);
                    if let (Some(old), Some(&"to"), Some(new)) =
                        (raw.get(at), rest.get(at + 1), raw.get(at + 2))
                        && let Some(columns) = self.tables.get_mut(&current)
                    {
                        columns.remove(&identifier(old));
                        columns.insert(identifier(new));
                    }
                    index = at + 3;
                }
                _ => index += 1,
            }
        }
    }

    /// The columns a single-line statement in `line` refers to that none of its tables
    /// has, as `table.column` (the statement's first table for an unqualified column);
    /// empty when the statement names a table the schema does not know.
    pub(crate) fn unknown_columns(&self, line: &str) -> Vec<String> {
        let Some(statement) = sql_statement(line) else {
            return Vec::new();
        };
        let Some(query) = Query::read(&statement) else {
            return Vec::new();
        };
        let known: Option<Vec<(&str, &HashSet<String>)>> = query
            .tables
            .iter()
            .map(|(table, _)| {
                self.tables
                    .get(table)
                    .map(|columns| (table.as_str(), columns))
            })
            .collect();
        let Some(known) = known else {
            return Vec::new();
        };
        let mut unknown = Vec::new();
        for (qualifier, column) in &query.columns {
            if qualifier.is_none() && query.aliases.contains(column) {
                continue;
            }
            let candidates: Vec<&(&str, &HashSet<String>)> = match qualifier {
                Some(qualifier) => {
                    let table = query
                        .tables
                        .iter()
                        .find(|(table, alias)| {
                            alias.as_deref() == Some(qualifier.as_str()) || table == qualifier
                        })
                        .map(|(table, _)| table.as_str());
                    match table {
                        Some(table) => known.iter().filter(|(t, _)| *t == table).collect(),
                        // A qualifier the statement does not define: a subquery's or a
                        // CTE's alias; not judged.
                        None => continue,
                    }
                }
                None => known.iter().collect(),
            };
            if !candidates
                .iter()
                .any(|(_, columns)| columns.contains(column))
            {
                let table = candidates.first().map(|(t, _)| *t).unwrap_or("?");
                let name = format!("{table}.{column}");
                if !unknown.contains(&name) {
                    unknown.push(name);
                }
            }
        }
        unknown
    }
}

/// A statement's tables (with their aliases) and the columns it names in unambiguous
/// places (with their qualifiers).
#[derive(Debug)]
struct Query {
    tables: Vec<(String, Option<String>)>,
    columns: Vec<(Option<String>, String)>,
    /// Names the select list gives its items (`count(*) AS n`), which `ORDER BY` may use.
    aliases: Vec<String>,
}

impl Query {
    fn read(statement: &str) -> Option<Query> {
        let tokens = tokens(statement);
        let words: Vec<String> = tokens.iter().map(|t| t.to_ascii_lowercase()).collect();
        let mut query = Query {
            tables: Vec::new(),
            columns: Vec::new(),
            aliases: Vec::new(),
        };
        // Tables: after FROM, JOIN, INTO and UPDATE, each with an optional alias.
        for (index, word) in words.iter().enumerate() {
            if matches!(word.as_str(), "from" | "join" | "into" | "update") {
                let Some(name) = tokens.get(index + 1) else {
                    continue;
                };
                if name.starts_with('(') || !is_name(name) {
                    // A subquery or a placeholder: the statement is not judged.
                    return None;
                }
                let mut alias_at = index + 2;
                if words.get(alias_at).map(String::as_str) == Some("as") {
                    alias_at += 1;
                }
                let alias = words
                    .get(alias_at)
                    .filter(|w| is_name(w) && !is_keyword(w))
                    .cloned();
                let after = alias_at + usize::from(alias.is_some());
                if word != "into" && words.get(after).is_some_and(|w| w == ",") {
                    // `FROM a, b`: a join this reading does not follow.
                    return None;
                }
                query.tables.push((table_name(name), alias));
            }
        }
        if query.tables.is_empty() {
            return None;
        }
        let first = words.first()?.as_str();
        // The select list, between SELECT and FROM.
        if first == "select"
            && let Some(from) = words.iter().position(|w| w == "from")
        {
            let list = tokens[1..from].join(" ");
            for item in split_top_level(&list) {
                let mut item = item.trim();
                for prefix in ["distinct ", "DISTINCT ", "all ", "ALL "] {
                    item = item.strip_prefix(prefix).unwrap_or(item);
                }
                // `col`, `t.col`, `col AS x`, `col x`: the first word, when it is a name.
                let parts: Vec<&str> = item.split_whitespace().collect();
                if let [.., alias] = parts.as_slice()
                    && parts.len() > 1
                {
                    query.aliases.push(identifier(alias));
                }
                let head = parts.first().copied().unwrap_or("");
                if parts.len() > 3 || head.ends_with('*') || head.contains('(') {
                    continue;
                }
                query.push_column(head);
            }
        }
        // INSERT INTO t (a, b, c).
        if first == "insert"
            && let Some(into) = words.iter().position(|w| w == "into")
            && tokens.get(into + 2).is_some_and(|t| t == "(")
        {
            for token in tokens[into + 3..].iter().take_while(|t| *t != ")") {
                query.push_column(token);
            }
        }
        // `a = …`, `a < …`, `a IS …`, `a IN …`, `a LIKE …`: a name before a comparison.
        for (index, word) in words.iter().enumerate().skip(1) {
            let comparison = matches!(
                word.as_str(),
                "=" | "<>"
                    | "!="
                    | "<"
                    | ">"
                    | "<="
                    | ">="
                    | "is"
                    | "in"
                    | "like"
                    | "ilike"
                    | "between"
            );
            if comparison {
                let previous = &tokens[index - 1];
                let before = words[index - 1].as_str();
                if before == "not" || is_keyword(before) {
                    continue;
                }
                query.push_column(previous);
            }
        }
        // ORDER BY / GROUP BY a, b.
        for (index, word) in words.iter().enumerate() {
            if word == "by" && index > 0 && matches!(words[index - 1].as_str(), "order" | "group") {
                let mut at = index + 1;
                while let Some(token) = tokens.get(at) {
                    query.push_column(token.trim_end_matches(','));
                    let lower = words[at].as_str();
                    at += 1;
                    if matches!(words.get(at).map(String::as_str), Some("asc" | "desc")) {
                        at += 1;
                    }
                    if !lower.ends_with(',') && tokens.get(at).is_none_or(|t| t != ",") {
                        break;
                    }
                    if tokens.get(at).is_some_and(|t| t == ",") {
                        at += 1;
                    }
                }
            }
        }
        Some(query)
    }

    /// Keeps `text` as a column when it is a plain or qualified name, not a keyword,
    /// literal or placeholder.
    fn push_column(&mut self, text: &str) {
        let text = text.trim().trim_end_matches(',');
        let (qualifier, column) = match text.rsplit_once('.') {
            Some((qualifier, column)) => (Some(identifier(qualifier)), column),
            None => (None, text),
        };
        if !is_name(column) || is_keyword(&column.to_ascii_lowercase()) {
            return;
        }
        if qualifier.as_deref().is_some_and(|q| !is_name(q)) {
            return;
        }
        self.columns.push((qualifier, identifier(column)));
    }
}

/// The SQL statement in a string literal of a code line: from a quote followed by
/// SELECT, INSERT, UPDATE or DELETE to the same quote closing it. `None` when there is
/// none, or it does not close on the line (the rest is not known), or the string is
/// built by interpolation (its names are not all there).
fn sql_statement(line: &str) -> Option<String> {
    let bytes = line.as_bytes();
    for (start, &quote) in bytes.iter().enumerate() {
        if !matches!(quote, b'"' | b'\'' | b'`') {
            continue;
        }
        let body = &line[start + 1..];
        let trimmed = body.trim_start();
        let head: String = trimmed
            .chars()
            .take_while(char::is_ascii_alphabetic)
            .collect::<String>()
            .to_ascii_lowercase();
        if !matches!(head.as_str(), "select" | "insert" | "update" | "delete") {
            continue;
        }
        let end = body.find(char::from(quote))?;
        let statement = &body[..end];
        // Built by interpolation, or joined to more text: its names are not all here.
        let after = body[end + 1..].trim_start();
        let joined = after.starts_with(['+', '.', '"', '\'', '`']) || after.starts_with("||");
        if joined || statement.contains('{') || statement.contains("%(") {
            return None;
        }
        return Some(statement.to_owned());
    }
    None
}

/// SQL without `--` and `/* */` comments.
fn strip_comments(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut rest = sql;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix("--") {
            rest = after.find('\n').map_or("", |end| &after[end..]);
        } else if let Some(after) = rest.strip_prefix("/*") {
            rest = after.find("*/").map_or("", |end| &after[end + 2..]);
        } else {
            let next = rest
                .char_indices()
                .skip(1)
                .find(|&(i, _)| rest[i..].starts_with("--") || rest[i..].starts_with("/*"))
                .map_or(rest.len(), |(i, _)| i);
            out.push_str(&rest[..next]);
            rest = &rest[next..];
        }
    }
    out
}

/// Words, names and operators of a SQL text; parentheses and commas are tokens of their
/// own but for a name's call parentheses (`count(`), which stay on it.
fn tokens(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut current = String::new();
    let flush = |current: &mut String, out: &mut Vec<String>| {
        if !current.is_empty() {
            out.push(std::mem::take(current));
        }
    };
    for c in text.chars() {
        match c {
            c if c.is_whitespace() => flush(&mut current, &mut out),
            ',' | ')' | ';' => {
                flush(&mut current, &mut out);
                out.push(c.to_string());
            }
            '(' if current.is_empty() => out.push("(".to_owned()),
            '(' => current.push('('),
            '=' | '<' | '>' | '!' => {
                let operator = current.chars().all(|c| "=<>!".contains(c));
                if !operator {
                    flush(&mut current, &mut out);
                }
                current.push(c);
            }
            _ => {
                if !current.is_empty() && current.chars().all(|c| "=<>!".contains(c)) {
                    flush(&mut current, &mut out);
                }
                current.push(c);
            }
        }
    }
    flush(&mut current, &mut out);
    out
}

/// The parts of a parenthesised list at depth zero, up to its closing parenthesis.
fn split_top_level(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0usize, 0);
    for (index, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' if depth == 0 => {
                parts.push(&text[start..index]);
                return parts;
            }
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&text[start..index]);
                start = index + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

/// The column a `CREATE TABLE` definition declares; `None` for a table constraint.
fn column_definition(definition: &str) -> Option<String> {
    let first = definition.split_whitespace().next()?;
    if is_constraint_word(&first.to_ascii_lowercase()) || !is_name(first) {
        return None;
    }
    Some(identifier(first))
}

fn is_constraint_word(word: &str) -> bool {
    matches!(
        word,
        "constraint" | "primary" | "foreign" | "unique" | "check" | "key" | "index" | "exclude"
    )
}

/// A name without its quotes (`"a"`, `` `a` ``, `[a]`), folded to lower case.
fn identifier(token: &str) -> String {
    token
        .trim_matches(['"', '`', '[', ']', '\''])
        .to_ascii_lowercase()
}

/// A table's name without its schema (`public.users` is `users`).
fn table_name(token: &str) -> String {
    let token = token.trim_end_matches(['(', ',']);
    identifier(token.rsplit('.').next().unwrap_or(token))
}

/// Whether a token is a (possibly quoted) SQL name: a letter or `_`, then letters, digits
/// and `_`.
fn is_name(token: &str) -> bool {
    let name = token.trim_matches(['"', '`', '[', ']']);
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// SQL words that are never a column here.
fn is_keyword(word: &str) -> bool {
    matches!(
        word,
        "select"
            | "from"
            | "where"
            | "and"
            | "or"
            | "not"
            | "null"
            | "true"
            | "false"
            | "is"
            | "in"
            | "like"
            | "ilike"
            | "between"
            | "as"
            | "on"
            | "join"
            | "left"
            | "right"
            | "inner"
            | "outer"
            | "full"
            | "cross"
            | "group"
            | "order"
            | "by"
            | "having"
            | "limit"
            | "offset"
            | "asc"
            | "desc"
            | "distinct"
            | "all"
            | "set"
            | "values"
            | "into"
            | "insert"
            | "update"
            | "delete"
            | "returning"
            | "case"
            | "when"
            | "then"
            | "else"
            | "end"
            | "exists"
            | "any"
            | "some"
            | "union"
            | "current_date"
            | "current_timestamp"
            | "now"
            | "default"
            | "using"
            | "natural"
            | "with"
            | "for"
            | "lateral"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema(sql: &str) -> Schema {
        let mut schema = Schema::default();
        schema.apply(sql);
        schema
    }

    const SQL: &str = "
        -- users and their orders
        CREATE TABLE IF NOT EXISTS public.users (
            id bigserial PRIMARY KEY,
            email text NOT NULL,
            created_at timestamptz DEFAULT now(),
            CONSTRAINT users_email UNIQUE (email)
        );
        CREATE TABLE \"orders\" (id bigint, user_id bigint REFERENCES users(id), total_cents int);
        ALTER TABLE orders ADD COLUMN paid_at timestamptz, DROP COLUMN total_cents;
        ALTER TABLE users RENAME COLUMN email TO email_address;
        /* gone */ CREATE TABLE legacy (id int); DROP TABLE IF EXISTS legacy;
    ";

    #[test]
    fn ddl_in_order_makes_the_schema() {
        let schema = schema(SQL);
        let columns = |table: &str| {
            let mut c: Vec<&str> = schema.tables[table].iter().map(String::as_str).collect();
            c.sort_unstable();
            c
        };
        assert_eq!(columns("users"), ["created_at", "email_address", "id"]);
        assert_eq!(columns("orders"), ["id", "paid_at", "user_id"]);
        assert!(!schema.tables.contains_key("legacy"));
    }

    #[test]
    fn columns_a_statement_names_are_checked_against_the_schema() {
        let schema = schema(SQL);
        let unknown = |line: &str| schema.unknown_columns(line);
        assert_eq!(
            unknown(
                r#"    rows = db.execute("SELECT id, email FROM users WHERE id = %s", (uid,))"#
            ),
            ["users.email"]
        );
        assert!(
            unknown(r#"    db.execute("SELECT id, email_address AS email FROM users WHERE id = ?", uid)"#)
                .is_empty()
        );
        assert_eq!(
            unknown(
                r#"q = "SELECT o.id, u.email_address FROM orders o JOIN users u ON u.id = o.user_id WHERE o.total_cents > 0""#
            ),
            ["orders.total_cents"]
        );
        assert_eq!(
            unknown(
                r#"db.Exec("UPDATE orders SET paid_at = now(), status = $1 WHERE id = $2", s, id)"#
            ),
            ["orders.status"]
        );
        assert_eq!(
            unknown(
                r#"await db.query('INSERT INTO users (id, email, name) VALUES ($1, $2, $3)', v)"#
            ),
            ["users.email", "users.name"]
        );
        assert_eq!(
            unknown(r#"q = "SELECT id FROM orders ORDER BY total_cents DESC""#),
            ["orders.total_cents"]
        );
        // Counted, starred and aggregated: nothing to judge.
        assert!(unknown(r#"q = "SELECT count(*) FROM orders WHERE user_id = ?""#).is_empty());
        assert!(unknown(r#"q = "SELECT * FROM users""#).is_empty());
        // A table the schema does not know, a statement that goes on past the line, an
        // interpolated one, and no statement at all: not judged.
        assert!(unknown(r#"q = "SELECT nope FROM audit_events""#).is_empty());
        assert!(unknown(r#"q = "SELECT nope FROM users " + where"#).is_empty());
        assert!(unknown(r#"q = "SELECT id FROM users u, orders o WHERE total = 1""#).is_empty());
        // Aliases of the select list, and INSERT without a column list.
        assert!(
            unknown(r#"q = "SELECT user_id, count(*) AS n FROM orders GROUP BY user_id ORDER BY n DESC""#)
                .is_empty()
        );
        assert!(unknown(r#"q = "INSERT INTO users VALUES ($1, $2)""#).is_empty());
        assert!(unknown(r#"q = f"SELECT {cols} FROM users""#).is_empty());
        assert!(unknown("x = 1  # select from users where").is_empty());
    }
}

//! What is known about a matched value: entropy, false-positive filters, the masked
//! preview and the fingerprint. A finding never carries a raw secret.

use sha2::{Digest, Sha256};

use crate::rule::ValueFilter;

/// Shannon entropy in bits per byte.
pub(crate) fn entropy(value: &[u8]) -> f64 {
    if value.is_empty() {
        return 0.0;
    }
    let mut counts = [0u32; 256];
    for &byte in value {
        counts[usize::from(byte)] += 1;
    }
    let length = value.len() as f64;
    counts
        .iter()
        .filter(|&&count| count > 0)
        .map(|&count| {
            let p = f64::from(count) / length;
            -p * p.log2()
        })
        .sum()
}

/// Substrings that mark a value as a placeholder rather than a credential.
const PLACEHOLDER_PARTS: &[&str] = &[
    "example",
    "changeme",
    "change_me",
    "change-me",
    "replace",
    "your_",
    "your-",
    "yourkey",
    "yourpass",
    "yoursecret",
    "xxxx",
    "****",
    "....",
    "dummy",
    "placeholder",
    "sample",
    "fake",
    "redacted",
    "insert",
    "todo",
    "fixme",
    "<",
    ">",
    "${",
    "{{",
    "%(",
    "%s",
    "mock",
    "notreal",
    "not-real",
    "not_real",
    "secret_here",
    "key_here",
    "token_here",
    "foobar",
    "lorem",
    "0000000",
    "1234567",
    "abcdefg",
    "{",
];

/// Whole values that are placeholders or defaults, never credentials.
const PLACEHOLDER_WORDS: &[&str] = &[
    "test",
    "testing",
    "password",
    "passwd",
    "secret",
    "token",
    "apikey",
    "api_key",
    "key",
    "none",
    "null",
    "nil",
    "true",
    "false",
    "undefined",
    "admin",
    "root",
    "user",
    "pass",
    "guest",
    "postgres",
    "mysql",
    "redis",
    "dev",
    "development",
    "local",
    "default",
    "string",
    "value",
    "empty",
    "required",
    "optional",
    "hidden",
    "unset",
    "tbd",
];

/// Markers of a value, or a line, that reads from the environment or a secret store.
const ENVIRONMENT_MARKERS: &[&str] = &[
    "os.environ",
    "os.getenv",
    "getenv(",
    "process.env",
    "env::var",
    "env!(",
    "std::env",
    "system.getenv",
    "environment.getenvironmentvariable",
    "env[",
    "env.fetch",
    "vault:",
    "vault.",
    "secretsmanager",
    "keyvault",
    "secret_manager",
    "ssm:",
    "config.get",
    "settings.",
    "secrets.",
    "import.meta.env",
];

/// Whether `value` (matched on `line`, assigned to `name` when the rule has a `name`
/// group) passes every filter.
pub(crate) fn passes_filters(
    filters: &[ValueFilter],
    value: &[u8],
    name: Option<&[u8]>,
    line: &[u8],
) -> bool {
    let lower_value = value.to_ascii_lowercase();
    filters.iter().all(|filter| match filter {
        ValueFilter::Placeholder => !is_placeholder(&lower_value),
        ValueFilter::Environment => {
            !value.starts_with(b"$")
                && !value.starts_with(b"%")
                && !value.starts_with(b"@")
                && !contains_any(&line.to_ascii_lowercase(), ENVIRONMENT_MARKERS)
        }
        ValueFilter::Uuid => !is_uuid(value),
        ValueFilter::Hash => !is_hash(value, name),
        ValueFilter::Encoded => {
            !lower_value.starts_with(b"data:")
                && !contains(&line.to_ascii_lowercase(), b"data:image/")
                && !["sha1-", "sha256-", "sha384-", "sha512-"]
                    .iter()
                    .any(|prefix| lower_value.starts_with(prefix.as_bytes()))
                && !is_password_hash(&lower_value)
        }
        ValueFilter::Identifier => !is_identifier(value),
        ValueFilter::HasDigit => value.iter().any(u8::is_ascii_digit),
        ValueFilter::DecodedCredential => {
            base64_decode(value).is_some_and(|decoded| holds_credential(&decoded))
        }
        ValueFilter::SameAsName => name.is_none_or(|name| name == value),
    })
}

fn is_placeholder(lower_value: &[u8]) -> bool {
    if contains_any(lower_value, PLACEHOLDER_PARTS) {
        return true;
    }
    let trimmed: Vec<u8> = lower_value
        .iter()
        .copied()
        .filter(|byte| byte.is_ascii_alphanumeric() || *byte == b'_')
        .collect();
    if PLACEHOLDER_WORDS
        .iter()
        .any(|word| trimmed == word.as_bytes())
    {
        return true;
    }
    // One repeated character (`aaaaaaaa`) or a value made only of `x`, `*`, `.`, `-`.
    let first = lower_value.first().copied();
    lower_value.iter().all(|&byte| Some(byte) == first)
        || lower_value
            .iter()
            .all(|byte| matches!(byte, b'x' | b'*' | b'.' | b'-' | b'#'))
}

/// A stored password hash (bcrypt, Argon2, scrypt, crypt's SHA-2, Django's
/// `algorithm$…`): what a fixture holds in place of a password, not a credential.
fn is_password_hash(lower_value: &[u8]) -> bool {
    const CRYPT: [&str; 8] = [
        "$2a$", "$2b$", "$2y$", "$argon2", "$scrypt$", "$pbkdf2", "$5$", "$6$",
    ];
    const DJANGO: [&str; 7] = [
        "pbkdf2_sha256$",
        "pbkdf2_sha1$",
        "bcrypt_sha256$",
        "bcrypt$",
        "argon2$",
        "scrypt$",
        "sha1$",
    ];
    CRYPT
        .iter()
        .chain(&DJANGO)
        .any(|prefix| lower_value.starts_with(prefix.as_bytes()))
        && lower_value.len() >= 30
}

/// Standard base64 (padding optional), or `None` for anything else.
fn base64_decode(value: &[u8]) -> Option<Vec<u8>> {
    let sextet = |byte: u8| match byte {
        b'A'..=b'Z' => Some(byte - b'A'),
        b'a'..=b'z' => Some(byte - b'a' + 26),
        b'0'..=b'9' => Some(byte - b'0' + 52),
        b'+' | b'-' => Some(62),
        b'/' | b'_' => Some(63),
        _ => None,
    };
    let body = value
        .strip_suffix(b"==")
        .or_else(|| value.strip_suffix(b"="))
        .unwrap_or(value);
    let mut out = Vec::with_capacity(body.len() * 3 / 4);
    let (mut bits, mut count) = (0u32, 0u32);
    for &byte in body {
        bits = (bits << 6) | u32::from(sextet(byte)?);
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
        }
    }
    Some(out)
}

/// Decoded text that holds a credential: a URL with a password in it, a `password=`
/// pair with a value, or a private key.
fn holds_credential(text: &[u8]) -> bool {
    if !text
        .iter()
        .all(|byte| byte.is_ascii_graphic() || byte.is_ascii_whitespace())
    {
        return false;
    }
    let lower = text.to_ascii_lowercase();
    let url_password = memchr::memmem::find_iter(&lower, b"://").any(|at| {
        let rest = &lower[at + 3..];
        let end = rest
            .iter()
            .position(|byte| matches!(byte, b'/' | b'?') || byte.is_ascii_whitespace())
            .unwrap_or(rest.len());
        let authority = &rest[..end];
        authority
            .iter()
            .rposition(|&byte| byte == b'@')
            .and_then(|at| {
                let userinfo = &authority[..at];
                userinfo
                    .iter()
                    .position(|&byte| byte == b':')
                    .map(|colon| colon + 1 < userinfo.len())
            })
            .unwrap_or(false)
    });
    let pair = [b"password=".as_slice(), b"pwd=", b"passwd="]
        .iter()
        .any(|key| {
            memchr::memmem::find(&lower, key).is_some_and(|at| {
                lower
                    .get(at + key.len())
                    .is_some_and(|byte| !matches!(byte, b';' | b'&' | b' '))
            })
        });
    url_password || pair || contains(&lower, b"private key-----")
}

fn is_uuid(value: &[u8]) -> bool {
    value.len() == 36
        && value.iter().enumerate().all(|(index, byte)| match index {
            8 | 13 | 18 | 23 => *byte == b'-',
            _ => byte.is_ascii_hexdigit(),
        })
}

/// A hex digest (MD5, SHA-1 / git, SHA-256, SHA-512) not assigned to a name that says
/// it is a key or password.
fn is_hash(value: &[u8], name: Option<&[u8]>) -> bool {
    let hex_digest =
        matches!(value.len(), 32 | 40 | 64 | 128) && value.iter().all(u8::is_ascii_hexdigit);
    if !hex_digest {
        return false;
    }
    let strongly_secret = name.is_some_and(|name| {
        contains_any(
            &name.to_ascii_lowercase(),
            &[
                "secret", "password", "passwd", "private", "api_key", "apikey", "api-key",
            ],
        )
    });
    !strongly_secret
}

/// `password_hash`, `bearer`, `X-Api-Key`: lowercase words and separators, no digits.
fn is_identifier(value: &[u8]) -> bool {
    value
        .iter()
        .all(|byte| byte.is_ascii_lowercase() || matches!(byte, b'_' | b'-' | b'.'))
        || value
            .iter()
            .all(|byte| byte.is_ascii_uppercase() || matches!(byte, b'_'))
}

pub(crate) fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty()
        || haystack
            .windows(needle.len())
            .any(|window| window == needle)
}

fn contains_any(haystack: &[u8], needles: &[&str]) -> bool {
    needles
        .iter()
        .any(|needle| contains(haystack, needle.as_bytes()))
}

/// A preview that shows at most a third of the value: up to four characters from each
/// end, fewer for short values, with `…` between.
pub(crate) fn masked_preview(value: &[u8]) -> String {
    let text = String::from_utf8_lossy(value);
    let chars: Vec<char> = text.chars().collect();
    let shown = (chars.len() / 6).min(4);
    let head: String = chars[..shown].iter().collect();
    let tail: String = chars[chars.len() - shown..].iter().collect();
    format!("{head}…{tail}")
}

/// A short excerpt of a line for findings whose matched text is not secret.
pub(crate) fn line_excerpt(line: &[u8]) -> String {
    const MAX_CHARS: usize = 160;
    let text = String::from_utf8_lossy(line);
    let trimmed = text.trim();
    if trimmed.chars().count() <= MAX_CHARS {
        trimmed.to_owned()
    } else {
        let mut excerpt: String = trimmed.chars().take(MAX_CHARS).collect();
        excerpt.push('…');
        excerpt
    }
}

/// A stable hash of the rule, the path and the matched content with whitespace
/// collapsed, so the same finding keeps its fingerprint when lines move. One-way: the
/// content cannot be read back from it.
pub(crate) fn fingerprint(rule_id: &str, path: &str, content: &[u8]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"airlock-finding-v1\0");
    hasher.update(rule_id.as_bytes());
    hasher.update(b"\0");
    hasher.update(path.as_bytes());
    hasher.update(b"\0");
    let mut in_space = false;
    for &byte in content.trim_ascii() {
        if byte.is_ascii_whitespace() {
            in_space = true;
        } else {
            if in_space {
                hasher.update(b" ");
                in_space = false;
            }
            hasher.update([byte]);
        }
    }
    hex::encode(&hasher.finalize()[..16])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masking_never_shows_more_than_a_third() {
        for value in [
            "AKIAZ3MSJV4W6QXPLT7R",
            "ab",
            "",
            "hunter22",
            "ghp_0123456789abcdefABCDEF0123456789abcd",
        ] {
            let preview = masked_preview(value.as_bytes());
            let shown = preview.chars().filter(|c| *c != '…').count();
            assert!(shown * 3 <= value.len(), "{value} -> {preview}");
        }
        assert_eq!(masked_preview(b"AKIAZ3MSJV4W6QXPLT7R"), "AKI…T7R");
    }

    #[test]
    fn fingerprints_ignore_whitespace_and_depend_on_rule_and_path() {
        let a = fingerprint("r", "p", b"  x =  1 ");
        assert_eq!(a, fingerprint("r", "p", b"x = 1"));
        assert_ne!(a, fingerprint("r2", "p", b"x = 1"));
        assert_ne!(a, fingerprint("r", "p2", b"x = 1"));
        assert_eq!(a.len(), 32);
    }

    #[test]
    fn filters() {
        use ValueFilter::*;
        let check = |filter, value: &str, passes| {
            assert_eq!(
                passes_filters(&[filter], value.as_bytes(), Some(b"token"), b""),
                passes,
                "{filter:?} {value}"
            );
        };
        check(Placeholder, "REPLACE_ME", false);
        check(Placeholder, "<your-token>", false);
        check(Placeholder, "xxxxxxxxxxxx", false);
        check(Placeholder, "q8Zr2LmW9xTb", true);
        check(Uuid, "123e4567-e89b-12d3-a456-426614174000", false);
        check(Hash, "da39a3ee5e6b4b0d3255bfef95601890afd80709", false);
        check(Hash, "da39a3ee5e6b4b0d3255bfef95601890afd8070", true);
        check(Encoded, "sha512-abc", false);
        check(
            Encoded,
            "bcrypt_sha256$$2b$12$Sn5oTA/j3jKkr0bsrOBhj36aUifBbQDXMr3hH5pMuL8F",
            false,
        );
        check(
            Encoded,
            "$2b$12$Sn5oTA/j3jKkr0bsrOBhj36aUifBbQDXMr3hH5pMuL8FBZzlgorTF",
            false,
        );
        check(Encoded, "$2b$hunter2", true);
        check(Identifier, "password_hash", false);
        check(Identifier, "pw_Hash9", true);
        check(Environment, "${DB_PASSWORD}", false);
        // postgresql://orders_app:XWsxsn985#Bzc9th@orders-prod.example.com:5432/orders
        check(
            DecodedCredential,
            "cG9zdGdyZXNxbDovL29yZGVyc19hcHA6WFdzeHNuOTg1I0J6Yzl0aEBvcmRlcnMtcHJvZC5leGFtcGxlLmNvbTo1NDMyL29yZGVycw==",
            true,
        );
        // postgresql://orders-prod.example.com:5432/orders, no password
        check(
            DecodedCredential,
            "cG9zdGdyZXNxbDovL29yZGVycy1wcm9kLmV4YW1wbGUuY29tOjU0MzIvb3JkZXJz",
            false,
        );
        check(DecodedCredential, "MjA=", false);
        check(DecodedCredential, "not base64!", false);
        assert!(entropy(b"aaaa") < 0.01);
        assert!((entropy(b"abcd") - 2.0).abs() < 1e-9);
    }
}

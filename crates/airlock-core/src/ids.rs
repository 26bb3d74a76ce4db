//! Identifiers and roles. Identifiers are newtypes so a change id can never be passed
//! where a token id is expected, and every one that arrives from outside is validated.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Crockford base32: no I, L, O or U, so ids survive being read aloud or retyped.
const CROCKFORD: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// Identifies one change: `chg_` followed by 26 Crockford base32 characters that encode
/// 128 bits. Ids made from UUIDv7 bytes sort by creation time.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ChangeId(String);

impl ChangeId {
    pub const PREFIX: &'static str = "chg_";

    /// Encodes 16 bytes (big-endian, most significant first) as an id.
    pub fn from_bytes(bytes: [u8; 16]) -> ChangeId {
        let mut value = u128::from_be_bytes(bytes);
        let mut out = [0u8; 26];
        for slot in out.iter_mut().rev() {
            *slot = CROCKFORD[(value & 31) as usize];
            value >>= 5;
        }
        let body = std::str::from_utf8(&out).expect("alphabet is ASCII");
        ChangeId(format!("{}{body}", Self::PREFIX))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for ChangeId {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let body = text.strip_prefix(Self::PREFIX).ok_or_else(|| {
            format!(
                "`{}` is not a change id; accepted: `chg_` followed by 26 base32 characters",
                printable(text)
            )
        })?;
        let valid = body.len() == 26
            && body.bytes().all(|b| CROCKFORD.contains(&b))
            // 26 * 5 = 130 bits: the first character carries only 3 of them.
            && body.as_bytes()[0] <= b'7';
        if valid {
            Ok(ChangeId(text.to_owned()))
        } else {
            Err(format!(
                "`{}` is not a change id; accepted: `chg_` followed by 26 characters of 0-9 A-Z (no I, L, O, U)",
                printable(text)
            ))
        }
    }
}

impl TryFrom<String> for ChangeId {
    type Error = String;
    fn try_from(text: String) -> Result<Self, Self::Error> {
        text.parse()
    }
}

impl From<ChangeId> for String {
    fn from(id: ChangeId) -> String {
        id.0
    }
}

impl fmt::Display for ChangeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The public half of an API token, safe to log and to show in audit entries:
/// `tok_` and 12 lowercase hex characters. The secret half is never stored.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TokenId(String);

impl TokenId {
    pub const PREFIX: &'static str = "tok_";

    pub fn from_bytes(bytes: [u8; 6]) -> TokenId {
        let mut text = String::from(Self::PREFIX);
        for b in bytes {
            text.push_str(&format!("{b:02x}"));
        }
        TokenId(text)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for TokenId {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.strip_prefix(Self::PREFIX) {
            Some(body)
                if body.len() == 12
                    && body
                        .bytes()
                        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) =>
            {
                Ok(TokenId(text.to_owned()))
            }
            _ => Err(format!(
                "`{}` is not a token id; accepted: `tok_` followed by 12 lowercase hex characters",
                printable(text)
            )),
        }
    }
}

impl TryFrom<String> for TokenId {
    type Error = String;
    fn try_from(text: String) -> Result<Self, Self::Error> {
        text.parse()
    }
}

impl From<TokenId> for String {
    fn from(id: TokenId) -> String {
        id.0
    }
}

impl fmt::Display for TokenId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a token may do. Agents propose; reviewers review; operators run deployments and
/// break-glass; admins manage tokens and configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Agent,
    Reviewer,
    Operator,
    Admin,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Agent, Role::Reviewer, Role::Operator, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Agent => "agent",
            Role::Reviewer => "reviewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|role| role.as_str() == text)
            .ok_or_else(|| {
                format!(
                    "unknown role `{}`; accepted: agent, reviewer, operator, admin",
                    printable(text)
                )
            })
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name for a human or an agent: 1 to 64 characters of letters, digits, `.`, `_`, `-`
/// and `@`, starting with a letter or digit. Names appear in commit trailers and audit
/// entries, so anything that could break a line or a header is refused.
pub fn validate_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'@'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{}` is not a valid name; accepted: 1-64 characters of letters, digits, '.', '_', '-', '@', starting with a letter or digit",
            printable(name)
        ))
    }
}

/// Shows untrusted text in an error message without letting it forge lines or run long.
pub fn printable(text: &str) -> String {
    let mut out: String = text.chars().take(80).flat_map(char::escape_debug).collect();
    if text.chars().count() > 80 {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn change_ids_round_trip_and_reject_garbage() {
        let id = ChangeId::from_bytes([0xff; 16]);
        assert_eq!(id.as_str().len(), 30);
        assert_eq!(id.as_str().parse::<ChangeId>().unwrap(), id);
        assert_eq!(
            ChangeId::from_bytes([0; 16]).as_str(),
            "chg_00000000000000000000000000"
        );
        for bad in [
            "",
            "chg_",
            "chg_0000000000000000000000000",
            "chg_8ZZZZZZZZZZZZZZZZZZZZZZZZZ",
            "chg_0000000000000000000000000I",
            "../etc",
        ] {
            assert!(bad.parse::<ChangeId>().is_err(), "{bad}");
        }
    }

    #[test]
    fn ids_sort_like_their_bytes() {
        let a = ChangeId::from_bytes(1u128.to_be_bytes());
        let b = ChangeId::from_bytes(2u128.to_be_bytes());
        let c = ChangeId::from_bytes((1u128 << 100).to_be_bytes());
        assert!(a < b && b < c);
    }

    #[test]
    fn names() {
        for good in ["ci-bot", "alice@example.com", "claude.code_1"] {
            assert!(validate_name(good).is_ok(), "{good}");
        }
        for bad in ["", "-x", "a b", "a\nb", "x:y", &"a".repeat(65)] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn roles_parse() {
        assert_eq!("agent".parse::<Role>().unwrap(), Role::Agent);
        assert!(
            "root"
                .parse::<Role>()
                .unwrap_err()
                .contains("accepted: agent, reviewer, operator, admin")
        );
    }
}

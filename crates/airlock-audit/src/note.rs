//! Signed checkpoints: the C2SP `tlog-checkpoint` body signed as a C2SP `signed-note` with
//! Ed25519, the format of the Go checksum database, Sigstore's Rekor v2 and the
//! transparency-dev ecosystem, so their tools can read airlock's checkpoints too.
//!
//! ```text
//! <origin>
//! <tree size>
//! <base64 root hash>
//!
//! — <key name> <base64(4-byte key id || 64-byte Ed25519 signature)>
//! ```
//!
//! Keys travel as text: the verifier key `<name>+<8 hex key id>+<base64(0x01 || public key)>`
//! and the signer key `PRIVATE+KEY+<name>+<8 hex key id>+<base64(0x01 || seed)>`.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::{Signer, Verifier};
use sha2::{Digest, Sha256};

use crate::hash::Hash;

/// The algorithm byte C2SP assigns to Ed25519.
const ALGORITHM_ED25519: u8 = 0x01;
/// Notes larger than this are refused before any parsing: a checkpoint is about 200 bytes.
const MAX_NOTE_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    #[error(
        "key name {0:?} is not usable: it must be non-empty and contain no spaces, newlines or '+'"
    )]
    BadKeyName(String),
    #[error("malformed key: {0}")]
    BadKey(String),
    #[error("malformed signed note: {0}")]
    Malformed(String),
    #[error("malformed checkpoint: {0}")]
    BadCheckpoint(String),
    #[error("the note carries no signature by key {name} ({id:08x})")]
    NotSignedByKey { name: String, id: u32 },
    #[error(
        "the signature by key {name} ({id:08x}) does not verify: the note was changed or signed by another key"
    )]
    BadSignature { name: String, id: u32 },
    #[error("cannot read randomness for a new key: {0}")]
    Random(String),
}

/// The private half of a log's key.
pub struct SigningKey {
    name: String,
    key: ed25519_dalek::SigningKey,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// The public half: what an auditor needs to check checkpoints offline.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifierKey {
    name: String,
    key: ed25519_dalek::VerifyingKey,
}

fn check_name(name: &str) -> Result<(), NoteError> {
    if name.is_empty()
        || name
            .chars()
            .any(|c| c.is_whitespace() || c == '+' || c.is_control())
    {
        return Err(NoteError::BadKeyName(name.to_owned()));
    }
    Ok(())
}

fn key_id(name: &str, public: &ed25519_dalek::VerifyingKey) -> u32 {
    let mut hasher = Sha256::new();
    hasher.update(name.as_bytes());
    hasher.update(b"\n");
    hasher.update([ALGORITHM_ED25519]);
    hasher.update(public.as_bytes());
    let digest = hasher.finalize();
    u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]])
}

impl SigningKey {
    /// A new key from the operating system's randomness.
    pub fn generate(name: &str) -> Result<SigningKey, NoteError> {
        check_name(name)?;
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| NoteError::Random(e.to_string()))?;
        Ok(SigningKey {
            name: name.to_owned(),
            key: ed25519_dalek::SigningKey::from_bytes(&seed),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn verifier(&self) -> VerifierKey {
        VerifierKey {
            name: self.name.clone(),
            key: self.key.verifying_key(),
        }
    }

    pub fn to_text(&self) -> String {
        let mut encoded = vec![ALGORITHM_ED25519];
        encoded.extend_from_slice(self.key.as_bytes());
        format!(
            "PRIVATE+KEY+{}+{:08x}+{}",
            self.name,
            key_id(&self.name, &self.key.verifying_key()),
            BASE64.encode(encoded)
        )
    }

    pub fn from_text(text: &str) -> Result<SigningKey, NoteError> {
        let rest = text
            .trim()
            .strip_prefix("PRIVATE+KEY+")
            .ok_or_else(|| NoteError::BadKey("a signer key starts with PRIVATE+KEY+".into()))?;
        let (name, id, bytes) = split_key(rest)?;
        let seed: [u8; 32] = bytes
            .try_into()
            .map_err(|_| NoteError::BadKey("an Ed25519 seed is 32 bytes".into()))?;
        let key = ed25519_dalek::SigningKey::from_bytes(&seed);
        if key_id(&name, &key.verifying_key()) != id {
            return Err(NoteError::BadKey(
                "the key id does not match the key".into(),
            ));
        }
        Ok(SigningKey { name, key })
    }

    /// Signs `text` (which must end with a newline and contain no blank line) as a note.
    pub fn sign_note(&self, text: &str) -> Result<String, NoteError> {
        check_text(text)?;
        let signature = self.key.sign(text.as_bytes());
        let mut blob = key_id(&self.name, &self.key.verifying_key())
            .to_be_bytes()
            .to_vec();
        blob.extend_from_slice(&signature.to_bytes());
        Ok(format!(
            "{text}\n\u{2014} {} {}\n",
            self.name,
            BASE64.encode(blob)
        ))
    }
}

impl VerifierKey {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn id(&self) -> u32 {
        key_id(&self.name, &self.key)
    }

    pub fn to_text(&self) -> String {
        let mut encoded = vec![ALGORITHM_ED25519];
        encoded.extend_from_slice(self.key.as_bytes());
        format!("{}+{:08x}+{}", self.name, self.id(), BASE64.encode(encoded))
    }

    pub fn from_text(text: &str) -> Result<VerifierKey, NoteError> {
        let (name, id, bytes) = split_key(text.trim())?;
        let public: [u8; 32] = bytes
            .try_into()
            .map_err(|_| NoteError::BadKey("an Ed25519 public key is 32 bytes".into()))?;
        let key = ed25519_dalek::VerifyingKey::from_bytes(&public)
            .map_err(|_| NoteError::BadKey("not a valid Ed25519 public key".into()))?;
        if key_id(&name, &key) != id {
            return Err(NoteError::BadKey(
                "the key id does not match the key".into(),
            ));
        }
        Ok(VerifierKey { name, key })
    }

    /// Checks a signed note and returns its text. Signatures by other keys (witnesses'
    /// cosignatures, say) are ignored; one valid signature by this key is required.
    pub fn open_note<'a>(&self, note: &'a str) -> Result<&'a str, NoteError> {
        if note.len() > MAX_NOTE_BYTES {
            return Err(NoteError::Malformed(format!(
                "{} bytes; notes are at most {MAX_NOTE_BYTES}",
                note.len()
            )));
        }
        let split = note
            .rfind("\n\n")
            .ok_or_else(|| NoteError::Malformed("no blank line before the signatures".into()))?;
        let (text, signatures) = (&note[..split + 1], &note[split + 2..]);
        check_text(text)?;
        if signatures.is_empty() || !signatures.ends_with('\n') {
            return Err(NoteError::Malformed(
                "signature lines must end with a newline".into(),
            ));
        }
        let want_id = self.id();
        let mut found = false;
        for line in signatures.lines() {
            let rest = line
                .strip_prefix("\u{2014} ")
                .ok_or_else(|| NoteError::Malformed(format!("not a signature line: {line:?}")))?;
            let (name, blob) = rest
                .split_once(' ')
                .ok_or_else(|| NoteError::Malformed(format!("not a signature line: {line:?}")))?;
            let blob = BASE64
                .decode(blob)
                .map_err(|_| NoteError::Malformed(format!("signature is not base64: {line:?}")))?;
            if blob.len() < 4 {
                return Err(NoteError::Malformed(format!(
                    "signature too short: {line:?}"
                )));
            }
            let id = u32::from_be_bytes([blob[0], blob[1], blob[2], blob[3]]);
            if name != self.name || id != want_id {
                continue;
            }
            let bad = || NoteError::BadSignature {
                name: self.name.clone(),
                id: want_id,
            };
            let signature = ed25519_dalek::Signature::from_slice(&blob[4..]).map_err(|_| bad())?;
            self.key
                .verify(text.as_bytes(), &signature)
                .map_err(|_| bad())?;
            found = true;
        }
        if !found {
            return Err(NoteError::NotSignedByKey {
                name: self.name.clone(),
                id: want_id,
            });
        }
        Ok(text)
    }
}

fn split_key(text: &str) -> Result<(String, u32, Vec<u8>), NoteError> {
    let mut parts = text.splitn(3, '+');
    let (Some(name), Some(id), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(NoteError::BadKey(
            "expected <name>+<hex key id>+<base64 key>".into(),
        ));
    };
    check_name(name)?;
    if id.len() != 8 {
        return Err(NoteError::BadKey("the key id is 8 hex digits".into()));
    }
    let id = u32::from_str_radix(id, 16)
        .map_err(|_| NoteError::BadKey("the key id is 8 hex digits".into()))?;
    let bytes = BASE64
        .decode(key)
        .map_err(|_| NoteError::BadKey("the key is not base64".into()))?;
    match bytes.split_first() {
        Some((&ALGORITHM_ED25519, rest)) => Ok((name.to_owned(), id, rest.to_vec())),
        _ => Err(NoteError::BadKey(
            "only Ed25519 keys (algorithm 0x01) are supported".into(),
        )),
    }
}

fn check_text(text: &str) -> Result<(), NoteError> {
    if !text.ends_with('\n') {
        return Err(NoteError::Malformed(
            "the note text must end with a newline".into(),
        ));
    }
    if text.contains("\n\n") || text.starts_with('\n') {
        return Err(NoteError::Malformed(
            "the note text must not contain a blank line".into(),
        ));
    }
    if text.chars().any(|c| c.is_control() && c != '\n') {
        return Err(NoteError::Malformed(
            "the note text must not contain control characters".into(),
        ));
    }
    Ok(())
}

/// A tree head: which log (`origin`), how many entries, and their root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
}

impl Checkpoint {
    /// The note text: three lines, each ending with a newline.
    pub fn body(&self) -> String {
        format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            self.root.to_base64()
        )
    }

    pub fn sign(&self, key: &SigningKey) -> Result<String, NoteError> {
        key.sign_note(&self.body())
    }

    /// Verifies the signature, then parses the body. Extension lines after the root are
    /// allowed by C2SP and ignored here.
    pub fn open(note: &str, key: &VerifierKey) -> Result<Checkpoint, NoteError> {
        let text = key.open_note(note)?;
        Checkpoint::parse_body(text)
    }

    fn parse_body(text: &str) -> Result<Checkpoint, NoteError> {
        let mut lines = text.lines();
        let bad = |what: &str| NoteError::BadCheckpoint(what.to_owned());
        let origin = lines
            .next()
            .filter(|l| !l.is_empty())
            .ok_or_else(|| bad("the first line names the log"))?;
        let size = lines
            .next()
            .ok_or_else(|| bad("the second line is the tree size"))?;
        if size.is_empty()
            || !size.bytes().all(|b| b.is_ascii_digit())
            || (size.len() > 1 && size.starts_with('0'))
        {
            return Err(bad(
                "the tree size is a decimal number without leading zeros",
            ));
        }
        let size: u64 = size
            .parse()
            .map_err(|_| bad("the tree size does not fit in 64 bits"))?;
        let root = lines
            .next()
            .and_then(Hash::from_base64)
            .ok_or_else(|| bad("the third line is the base64 root hash (32 bytes)"))?;
        Ok(Checkpoint {
            origin: origin.to_owned(),
            size,
            root,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_checkpoints_verify() {
        let key = SigningKey::generate("airlock.example/log").unwrap();
        let again = SigningKey::from_text(&key.to_text()).unwrap();
        assert_eq!(again.verifier(), key.verifier());
        let verifier = VerifierKey::from_text(&key.verifier().to_text()).unwrap();
        let checkpoint = Checkpoint {
            origin: "airlock.example/log".into(),
            size: 10,
            root: crate::leaf_hash(b"x"),
        };
        let note = checkpoint.sign(&key).unwrap();
        assert!(note.starts_with("airlock.example/log\n10\n"));
        assert_eq!(Checkpoint::open(&note, &verifier).unwrap(), checkpoint);

        // A changed size, another key, a removed signature: all refused.
        let forged = note.replacen("\n10\n", "\n11\n", 1);
        assert!(matches!(
            Checkpoint::open(&forged, &verifier),
            Err(NoteError::BadSignature { .. })
        ));
        let other = SigningKey::generate("airlock.example/log").unwrap();
        let resigned = checkpoint.sign(&other).unwrap();
        assert!(matches!(
            Checkpoint::open(&resigned, &verifier),
            Err(NoteError::NotSignedByKey { .. })
        ));
        assert!(Checkpoint::open(&checkpoint.body(), &verifier).is_err());
        assert!(VerifierKey::from_text("name+00000000+AQ==").is_err());
        assert!(SigningKey::generate("two words").is_err());
    }

    #[test]
    fn a_go_signed_note_verifies() {
        // From golang.org/x/mod/sumdb/note's documentation: a note signed by the key
        // "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW".
        let verifier = VerifierKey::from_text(
            "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        )
        .unwrap();
        let note = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n\n\u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";
        assert_eq!(
            verifier.open_note(note).unwrap(),
            "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n"
        );
    }
}

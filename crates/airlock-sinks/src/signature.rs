//! HMAC-SHA256 (RFC 2104) and the webhook signature built on it.
//!
//! HMAC is written out over `sha2` rather than taken from a crate: it is a dozen lines,
//! pinned by the RFC 4231 vectors below, and keeps this crate's dependencies to what the
//! workspace already builds.

use sha2::{Digest, Sha256};

const BLOCK_LEN: usize = 64;

/// HMAC-SHA256 of the concatenation of `message_parts` under `key`.
pub fn hmac_sha256(key: &[u8], message_parts: &[&[u8]]) -> [u8; 32] {
    // Keys longer than a block are hashed first; shorter ones are zero-padded.
    let mut block = [0u8; BLOCK_LEN];
    if key.len() > BLOCK_LEN {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(block.map(|byte| byte ^ 0x36));
    for part in message_parts {
        inner.update(part);
    }
    let mut outer = Sha256::new();
    outer.update(block.map(|byte| byte ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

/// The value of the `X-Airlock-Signature` header for a request with this timestamp
/// header value and body: `sha256=` and the lowercase hex HMAC-SHA256, under the shared
/// secret, of the timestamp's decimal text, a `.`, and the exact body bytes.
pub fn webhook_signature(secret: &[u8], timestamp: &str, body: &[u8]) -> String {
    let mac = hmac_sha256(secret, &[timestamp.as_bytes(), b".", body]);
    format!("sha256={}", hex::encode(mac))
}

/// What a receiver written in Rust does with a request: true when `signature` is the
/// signature of `timestamp` and `body` under `secret` (compared in constant time) and
/// the timestamp is within `tolerance_seconds` of `now_unix_seconds`.
pub fn verify_webhook_signature(
    secret: &[u8],
    timestamp: &str,
    signature: &str,
    body: &[u8],
    now_unix_seconds: u64,
    tolerance_seconds: u64,
) -> bool {
    let Ok(sent_at) = timestamp.parse::<u64>() else {
        return false;
    };
    if sent_at.abs_diff(now_unix_seconds) > tolerance_seconds {
        return false;
    }
    let expected = webhook_signature(secret, timestamp, body);
    expected.len() == signature.len()
        && expected
            .bytes()
            .zip(signature.bytes())
            .fold(0u8, |difference, (a, b)| difference | (a ^ b))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(key: &[u8], data: &[u8], expected_hex: &str) {
        let mac = hex::encode(hmac_sha256(key, &[data]));
        assert_eq!(&mac[..expected_hex.len()], expected_hex);
    }

    #[test]
    fn rfc_4231_vectors() {
        check(
            &[0x0b; 20],
            b"Hi There",
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
        );
        check(
            b"Jefe",
            b"what do ya want for nothing?",
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
        );
        check(
            &[0xaa; 20],
            &[0xdd; 50],
            "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe",
        );
        let key_4: Vec<u8> = (1..=25).collect();
        check(
            &key_4,
            &[0xcd; 50],
            "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b",
        );
        // Test case 5 publishes only the first 128 bits.
        check(
            &[0x0c; 20],
            b"Test With Truncation",
            "a3b6167473100ee06e0c796c2955552b",
        );
        check(
            &[0xaa; 131],
            b"Test Using Larger Than Block-Size Key - Hash Key First",
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
        );
        check(
            &[0xaa; 131],
            b"This is a test using a larger than block-size key and a larger than block-size \
              data. The key needs to be hashed before being used by the HMAC algorithm.",
            "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2",
        );
    }

    #[test]
    fn a_key_of_exactly_one_block_is_not_hashed() {
        let key = [0x42u8; BLOCK_LEN];
        let mut padded = Sha256::new();
        padded.update(key.map(|byte| byte ^ 0x36));
        padded.update(b"m");
        let mut outer = Sha256::new();
        outer.update(key.map(|byte| byte ^ 0x5c));
        outer.update(padded.finalize());
        let expected: [u8; 32] = outer.finalize().into();
        assert_eq!(hmac_sha256(&key, &[b"m"]), expected);
    }

    #[test]
    fn signature_covers_timestamp_and_body() {
        let signature = webhook_signature(b"secret", "1700000000", b"{}");
        assert_eq!(
            signature,
            format!(
                "sha256={}",
                hex::encode(hmac_sha256(b"secret", &[b"1700000000.{}"]))
            )
        );
        let verify = |timestamp: &str, signature: &str, body: &[u8], now| {
            verify_webhook_signature(b"secret", timestamp, signature, body, now, 300)
        };
        assert!(verify("1700000000", &signature, b"{}", 1_700_000_100));
        assert!(!verify("1700000000", &signature, b"{ }", 1_700_000_100));
        assert!(!verify("1700000001", &signature, b"{}", 1_700_000_100));
        assert!(!verify("1700000000", &signature, b"{}", 1_700_000_301));
        assert!(!verify(
            "1700000000",
            &signature[..20],
            b"{}",
            1_700_000_000
        ));
        assert!(!verify("soon", &signature, b"{}", 1_700_000_000));
    }
}

//! What sinks need to know about an entry's bytes: whether they are one single-line JSON
//! object (so they can be embedded verbatim), and its `kind`.
//!
//! Entries are embedded byte for byte, never re-serialized: the leaf hash a receiver
//! checks is over exactly these bytes.

use serde::Deserialize;

use crate::{SinkError, SinkRecord};

/// Only the field sinks read; every other field is skipped while the whole entry is
/// still checked to be valid JSON.
#[derive(Deserialize)]
struct EntryHead {
    // A `Value` rather than a string: an entry whose `kind` is not a string is still a
    // valid entry, it just has no usable kind.
    #[serde(default)]
    kind: Option<serde_json::Value>,
}

/// Checks that the entry is one JSON object on one line, and returns its `kind` when it
/// is a string.
pub(crate) fn inspect(record: &SinkRecord) -> Result<Option<String>, SinkError> {
    let refuse = |reason: String| SinkError::EntryNotJson {
        index: record.index,
        reason,
    };
    let entry = &record.entry[..];
    if entry.first() != Some(&b'{') {
        return Err(refuse("it does not start with `{`".to_owned()));
    }
    // A raw line break can only be whitespace between tokens (inside strings JSON
    // escapes it), but it would still split a JSONL line in two.
    if entry.iter().any(|&byte| byte == b'\n' || byte == b'\r') {
        return Err(refuse("it contains a line break".to_owned()));
    }
    // serde_json does not check the UTF-8 of strings it skips, so check it all here:
    // invalid UTF-8 embedded in a JSON line or body makes that whole document invalid.
    if let Err(error) = std::str::from_utf8(entry) {
        return Err(refuse(format!("it is not UTF-8 ({error})")));
    }
    let head: EntryHead =
        serde_json::from_slice(entry).map_err(|error| refuse(error.to_string()))?;
    Ok(head.kind.and_then(|kind| kind.as_str().map(str::to_owned)))
}

/// The entry's `kind`, or `None` when the entry is not a JSON object or has no string
/// `kind`. For sinks that forward any bytes and only use the kind as a label.
pub(crate) fn kind_of(record: &SinkRecord) -> Option<String> {
    inspect(record).ok().flatten()
}

/// Appends `{"index":N,"leaf_hash":"<hex>","entry":<entry>}`: the form a record takes in
/// a JSONL line and in a webhook body. The entry must have passed `inspect`.
pub(crate) fn encode_record(out: &mut Vec<u8>, record: &SinkRecord) {
    out.extend_from_slice(b"{\"index\":");
    out.extend_from_slice(record.index.to_string().as_bytes());
    out.extend_from_slice(b",\"leaf_hash\":\"");
    out.extend_from_slice(hex::encode(record.leaf_hash).as_bytes());
    out.extend_from_slice(b"\",\"entry\":");
    out.extend_from_slice(&record.entry);
    out.push(b'}');
}

/// The length `encode_record` produces, without producing it.
pub(crate) fn encoded_record_len(record: &SinkRecord) -> usize {
    // `{"index":` + `,"leaf_hash":"` + 64 hex digits + `","entry":` + `}`.
    const FIXED: usize = 9 + 14 + 64 + 10 + 1;
    FIXED + decimal_digits(record.index) + record.entry.len()
}

fn decimal_digits(mut value: u64) -> usize {
    let mut digits = 1;
    while value >= 10 {
        value /= 10;
        digits += 1;
    }
    digits
}

/// How many leading records of `batch` can be embedded as JSON: all of them up to the
/// first bad entry, or 1 when the first is bad, so that the delivery fails on the bad
/// entry alone and the status names it.
pub(crate) fn embeddable_prefix_len(batch: &[SinkRecord]) -> usize {
    batch
        .iter()
        .position(|record| inspect(record).is_err())
        .unwrap_or(batch.len())
        .max(1)
        .min(batch.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::leaf_hash;

    fn check(entry: &str, expected: Result<Option<&str>, &str>) {
        let record = SinkRecord {
            index: 7,
            leaf_hash: leaf_hash(entry.as_bytes()),
            entry: entry.as_bytes().into(),
        };
        match (inspect(&record), expected) {
            (Ok(kind), Ok(expected)) => assert_eq!(kind.as_deref(), expected, "{entry}"),
            (Err(error), Err(expected)) => {
                let message = error.to_string();
                assert!(message.contains(expected), "{entry}: {message}");
                assert!(message.contains("entry 7"), "{message}");
            }
            (got, expected) => panic!("{entry}: got {got:?}, expected {expected:?}"),
        }
    }

    #[test]
    fn entries() {
        check(
            r#"{"kind":"change.proposed","x":1}"#,
            Ok(Some("change.proposed")),
        );
        check(r#"{"x":{"kind":"nested"}}"#, Ok(None));
        check(r#"{"kind":3}"#, Ok(None));
        check(r#"{}"#, Ok(None));
        check(r#"{"kind":"a\nb"}"#, Ok(Some("a\nb")));
        check("not json", Err("does not start with `{`"));
        check(r#"["kind"]"#, Err("does not start with `{`"));
        check("{\"a\":1}\n", Err("line break"));
        check(r#"{"a":1} trailing"#, Err("trailing"));
        check(r#"{"a":"#, Err("EOF"));
        check("{\"a\":\"\u{e9}\"}", Ok(None));
        check("", Err("does not start"));
    }

    #[test]
    fn encoded_length_is_exact() {
        for index in [0, 9, 10, 99, 100, 12_345, u64::MAX] {
            let record = SinkRecord {
                index,
                leaf_hash: [0xab; 32],
                entry: br#"{"kind":"x"}"#.as_slice().into(),
            };
            let mut out = Vec::new();
            encode_record(&mut out, &record);
            assert_eq!(out.len(), encoded_record_len(&record));
            let value: serde_json::Value = serde_json::from_slice(&out).unwrap();
            assert_eq!(value["index"], serde_json::json!(index));
            assert_eq!(value["leaf_hash"], serde_json::json!("ab".repeat(32)));
            assert_eq!(value["entry"]["kind"], "x");
        }
    }

    #[test]
    fn embeddable_prefix_stops_before_the_first_bad_entry() {
        let record = |entry: &str| SinkRecord {
            index: 0,
            leaf_hash: [0; 32],
            entry: entry.as_bytes().into(),
        };
        let good = || record("{}");
        let bad = || record("nope");
        assert_eq!(embeddable_prefix_len(&[]), 0);
        assert_eq!(embeddable_prefix_len(&[good(), good()]), 2);
        assert_eq!(embeddable_prefix_len(&[good(), bad(), good()]), 1);
        assert_eq!(embeddable_prefix_len(&[bad(), good()]), 1);
    }

    #[test]
    fn invalid_utf8_is_refused_not_a_panic() {
        let record = SinkRecord {
            index: 1,
            leaf_hash: [0; 32],
            entry: b"{\"a\":\"\xff\"}".as_slice().into(),
        };
        assert!(inspect(&record).is_err());
        assert_eq!(kind_of(&record), None);
    }
}

//! The webhook sink: batches of entries POSTed as JSON, signed with HMAC-SHA256, or
//! (`WebhookFormat::Slack`) one Slack-compatible notification per entry.
//!
//! Plain `http://` only: this build of the HTTP client has no TLS. Send to a collector
//! on the same host or network, or through a local TLS-terminating proxy.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::entry::{embeddable_prefix_len, encode_record, encoded_record_len, inspect};
use crate::signature::webhook_signature;
use crate::slack::slack_text;
use crate::{Sink, SinkError, SinkRecord};

/// The header carrying the signature: `sha256=<hex>`.
pub const SIGNATURE_HEADER: &str = "X-Airlock-Signature";
/// The header carrying the Unix time, in seconds, at which the request was signed.
pub const TIMESTAMP_HEADER: &str = "X-Airlock-Timestamp";

/// The shared secret. Its `Debug` output never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookSecret(Vec<u8>);

impl WebhookSecret {
    pub fn new(secret: impl Into<Vec<u8>>) -> WebhookSecret {
        WebhookSecret(secret.into())
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("WebhookSecret(<redacted>)")
    }
}

/// What a webhook request's body holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WebhookFormat {
    /// `{"entries":[{"index":N,"leaf_hash":"<hex>","entry":{…}},…]}`: batches, every
    /// entry embedded byte for byte (`format = "entries"`, the default).
    #[default]
    Entries,
    /// `{"text":"…"}`, a Slack incoming-webhook message: one request per entry, with a
    /// short line of text built from the entry's fields and escaped for Slack
    /// (`format = "slack"`). For notifications, with a kind filter such as
    /// `kinds = ["notifications"]`; the entry itself is not sent.
    Slack,
}

impl WebhookFormat {
    /// The names written in airlock.toml.
    pub const NAMES: &'static [&'static str] = &["entries", "slack"];

    /// `"entries"` or `"slack"`.
    pub fn from_name(name: &str) -> Option<WebhookFormat> {
        match name {
            "entries" => Some(WebhookFormat::Entries),
            "slack" => Some(WebhookFormat::Slack),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            WebhookFormat::Entries => "entries",
            WebhookFormat::Slack => "slack",
        }
    }
}

/// Where and how the webhook sink posts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookConfig {
    /// An `http://` URL; redirects are not followed.
    pub url: String,
    pub secret: WebhookSecret,
    /// For a whole request: connect, send, and read the answer.
    pub timeout: Duration,
    /// The largest body sent, unless a single entry is larger: that entry then goes
    /// alone, and the receiver decides (a 413 is a permanent error, reported). Applies
    /// to `WebhookFormat::Entries`; Slack messages go one per request.
    pub max_batch_bytes: usize,
    pub format: WebhookFormat,
}

impl WebhookConfig {
    /// Defaults: a 10-second timeout, bodies of at most 1 MiB, `WebhookFormat::Entries`.
    pub fn new(url: impl Into<String>, secret: WebhookSecret) -> WebhookConfig {
        WebhookConfig {
            url: url.into(),
            secret,
            timeout: Duration::from_secs(10),
            max_batch_bytes: 1 << 20,
            format: WebhookFormat::Entries,
        }
    }
}

/// POSTs batches as `{"entries":[{"index":N,"leaf_hash":"<hex>","entry":{…}},…]}`,
/// entries in index order and embedded byte for byte, with `Content-Type:
/// application/json` and the two signature headers (see the crate documentation for
/// how a receiver verifies them). A new timestamp and signature are made for every
/// attempt, so a retry hours later is still fresh.
///
/// With `WebhookFormat::Slack`, each entry is one request whose body is `{"text":"…"}`
/// (signed the same way): Slack takes one message per request, and a failure then
/// repeats only the message that failed, never ones Slack already showed.
///
/// Any 2xx answer means delivered. 408, 429, 5xx and transport failures are retried;
/// every other answer is a permanent error. Proxy environment variables are ignored:
/// audit entries go to the configured URL and nowhere else.
#[derive(Debug)]
pub struct WebhookSink {
    config: WebhookConfig,
    agent: ureq::Agent,
}

/// `{"entries":[` and `]}`.
const ENVELOPE_LEN: usize = 12 + 2;

impl WebhookSink {
    pub fn new(config: WebhookConfig) -> WebhookSink {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .proxy(None)
            .timeout_global(Some(config.timeout))
            .user_agent(concat!("airlock/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        WebhookSink { config, agent }
    }

    fn post(&self, body: &[u8]) -> Result<(), SinkError> {
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs()
            .to_string();
        let signature = webhook_signature(self.config.secret.as_bytes(), &timestamp, body);
        let transport = |source: ureq::Error| SinkError::WebhookTransport {
            url: self.config.url.clone(),
            source: Box::new(source),
        };
        let mut response = self
            .agent
            .post(&self.config.url)
            .header("Content-Type", "application/json")
            .header(TIMESTAMP_HEADER, &timestamp)
            .header(SIGNATURE_HEADER, &signature)
            .send(body)
            .map_err(transport)?;
        let status = response.status().as_u16();
        // Read the answer (a little of it) so the connection can be reused.
        let answer = response
            .body_mut()
            .with_config()
            .limit(64 * 1024)
            .read_to_vec()
            .unwrap_or_default();
        if (200..300).contains(&status) {
            return Ok(());
        }
        let retry_after = response
            .headers()
            .get("Retry-After")
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        Err(SinkError::WebhookStatus {
            url: self.config.url.clone(),
            status,
            retry_after,
            body: printable_prefix(&answer, 200),
        })
    }
}

impl Sink for WebhookSink {
    /// The records up to the first bad entry that fit in `max_batch_bytes`; at least one.
    /// One for Slack messages.
    fn batch_len(&self, batch: &[SinkRecord]) -> usize {
        if self.config.format == WebhookFormat::Slack {
            return batch.len().min(1);
        }
        let embeddable = embeddable_prefix_len(batch);
        let mut body_len = ENVELOPE_LEN;
        let mut taken = 0;
        for record in &batch[..embeddable] {
            let added = encoded_record_len(record) + usize::from(taken > 0);
            if taken > 0 && body_len + added > self.config.max_batch_bytes {
                break;
            }
            body_len += added;
            taken += 1;
        }
        taken.max(usize::from(!batch.is_empty()))
    }

    /// Posts `batch`, split into as many requests as `batch_len` asks for. Entries of a
    /// request that succeeded are sent again if a later one fails: at least once.
    fn deliver(&mut self, batch: &[SinkRecord]) -> Result<(), SinkError> {
        for record in batch {
            inspect(record)?;
        }
        let mut rest = batch;
        while !rest.is_empty() {
            let taken = self.batch_len(rest).clamp(1, rest.len());
            let body = match self.config.format {
                WebhookFormat::Entries => encode_body(&rest[..taken]),
                WebhookFormat::Slack => encode_slack_body(&rest[0])?,
            };
            self.post(&body)?;
            rest = &rest[taken..];
        }
        Ok(())
    }
}

/// `{"text":"…"}` for one entry that passed `inspect`.
fn encode_slack_body(record: &SinkRecord) -> Result<Vec<u8>, SinkError> {
    let entry: serde_json::Value =
        serde_json::from_slice(&record.entry).map_err(|error| SinkError::EntryNotJson {
            index: record.index,
            reason: error.to_string(),
        })?;
    Ok(serde_json::json!({ "text": slack_text(&entry) })
        .to_string()
        .into_bytes())
}

fn encode_body(batch: &[SinkRecord]) -> Vec<u8> {
    let mut body = Vec::with_capacity(
        ENVELOPE_LEN
            + batch
                .iter()
                .map(|record| encoded_record_len(record) + 1)
                .sum::<usize>(),
    );
    body.extend_from_slice(b"{\"entries\":[");
    for (position, record) in batch.iter().enumerate() {
        if position > 0 {
            body.push(b',');
        }
        encode_record(&mut body, record);
    }
    body.extend_from_slice(b"]}");
    body
}

/// The start of a receiver's answer, safe to put in a log line.
fn printable_prefix(bytes: &[u8], max_chars: usize) -> String {
    String::from_utf8_lossy(bytes)
        .chars()
        .take(max_chars)
        .map(|character| {
            if character.is_control() {
                ' '
            } else {
                character
            }
        })
        .collect::<String>()
        .trim()
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::leaf_hash;

    fn record(index: u64, entry_len: usize) -> SinkRecord {
        let entry = format!(r#"{{"p":"{}"}}"#, "x".repeat(entry_len.saturating_sub(8)));
        SinkRecord {
            index,
            leaf_hash: leaf_hash(entry.as_bytes()),
            entry: entry.as_bytes().into(),
        }
    }

    #[test]
    fn slack_bodies_are_one_text_per_entry() {
        let entry = r#"{"actor":{"name":"bot","type":"agent"},"kind":"review.requested"}"#;
        let record = SinkRecord {
            index: 3,
            leaf_hash: leaf_hash(entry.as_bytes()),
            entry: entry.as_bytes().into(),
        };
        let body = encode_slack_body(&record).unwrap();
        assert_eq!(
            String::from_utf8(body).unwrap(),
            r#"{"text":"[airlock] review.requested by agent bot"}"#
        );
        let mut config = WebhookConfig::new("http://127.0.0.1:9/", WebhookSecret::new("s"));
        config.format = WebhookFormat::Slack;
        let sink = WebhookSink::new(config);
        assert_eq!(sink.batch_len(&[record.clone(), record.clone()]), 1);
        assert_eq!(sink.batch_len(&[]), 0);
        for name in WebhookFormat::NAMES {
            assert_eq!(WebhookFormat::from_name(name).unwrap().name(), *name);
        }
    }

    fn sink(max_batch_bytes: usize) -> WebhookSink {
        let mut config = WebhookConfig::new("http://127.0.0.1:9/", WebhookSecret::new("s"));
        config.max_batch_bytes = max_batch_bytes;
        WebhookSink::new(config)
    }

    #[test]
    fn batches_respect_the_byte_limit_and_never_take_nothing() {
        let batch: Vec<SinkRecord> = (0..10).map(|index| record(index, 100)).collect();
        let one = ENVELOPE_LEN + encoded_record_len(&batch[0]);
        let two = one + 1 + encoded_record_len(&batch[1]);
        assert_eq!(encode_body(&batch[..2]).len(), two);
        assert_eq!(sink(two).batch_len(&batch), 2);
        assert_eq!(sink(two - 1).batch_len(&batch), 1);
        assert_eq!(sink(1).batch_len(&batch), 1);
        assert_eq!(sink(usize::MAX).batch_len(&batch), 10);
        assert_eq!(sink(usize::MAX).batch_len(&[]), 0);
    }

    #[test]
    fn body_is_valid_json_with_entries_embedded() {
        let batch = [record(4, 20), record(5, 20)];
        let body: serde_json::Value = serde_json::from_slice(&encode_body(&batch)).unwrap();
        assert_eq!(body["entries"][1]["index"], 5);
        assert_eq!(body["entries"][0]["entry"]["p"], "x".repeat(12));
    }

    #[test]
    fn secrets_are_not_printed() {
        let config = WebhookConfig::new("http://h/", WebhookSecret::new("hunter2"));
        assert!(!format!("{config:?}").contains("hunter2"));
        assert!(!format!("{:?}", config.secret).contains("hunter2"));
        assert!(!format!("{:?}", WebhookSink::new(config)).contains("hunter2"));
    }

    #[test]
    fn printable_prefixes() {
        assert_eq!(
            printable_prefix(b"  bad\nsecret \xff", 200),
            "bad secret \u{fffd}"
        );
        assert_eq!(printable_prefix(&[b'a'; 500], 3), "aaa");
    }
}

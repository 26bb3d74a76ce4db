//! Forwards audit log entries to central logging: a local JSONL mirror, syslog (RFC 5424
//! over UDP or TCP) and a signed HTTP webhook; the webhook doubles as the review
//! notification channel (a Slack-compatible message per entry, for chosen kinds).
//!
//! # How it runs
//!
//! The audit log is the queue. It implements `EntrySource` and raises an
//! `AppendSignal` after each durable append. Each configured sink gets a `SinkRunner`:
//! a thread that reads the log from the sink's cursor, hands the sink batches of at
//! most `batch_size` entries, and after each success stores the new cursor
//! (`<cursor dir>/<name>.cursor`, replaced atomically and synced). Runners only read
//! the log: a slow, failing or dead receiver never blocks or loses an append. Its lag,
//! last error and failure count are in `SinkRunner::status`.
//!
//! A sink may take only some kinds of entry (`KindFilter`, `kinds` in airlock.toml):
//! its runner passes over the others, and the cursor moves past them too.
//!
//! # Delivery guarantees
//!
//! - In order and without gaps: entry N is never delivered before entry N-1 was (or,
//!   for a sink with a kind filter, was passed over: such a sink sees gaps in indices).
//! - At least once. An entry is delivered again when airlock stops or crashes between a
//!   delivery and the cursor update (at most the one batch in flight), and when a
//!   receiver accepted a request whose answer was lost (a timeout). Every message
//!   carries the entry's `index`: receivers deduplicate on it. The JSONL mirror
//!   deduplicates itself.
//! - Failures are retried forever, with exponential backoff and jitter up to a cap
//!   (`RetryPolicy`); errors that need a human (a 4xx answer, a bad entry) are logged
//!   at error level and retried at the cap, so fixing the receiver resumes delivery.
//!   Nothing is ever skipped to get past an error.
//! - Syslog over UDP has no acknowledgement: a datagram lost on the way is lost. Over
//!   TCP, bytes the receiver had not read when it died are lost (syslog has no
//!   application acknowledgement); a receiver restart is noticed before the next batch.
//!   Use the webhook or the JSONL mirror when every entry must arrive.
//!
//! # Wire formats
//!
//! An entry is one canonical JSON object; sinks embed its bytes unchanged, so a
//! receiver can recompute the RFC 6962 leaf hash, SHA-256(0x00 || entry).
//!
//! - JSONL: one line per entry, `{"index":N,"leaf_hash":"<64 hex>","entry":{…}}`.
//! - Syslog: `<PRI>1 TIMESTAMP HOSTNAME airlock PROCID MSGID
//!   [airlock@32473 index="N" leaf_hash="<hex>"] <entry>`, MSGID being the entry's
//!   `kind`; over TCP each message is framed as `<length in bytes> <message>`. A UDP
//!   message longer than `max_datagram_bytes` has its entry cut (at a character
//!   boundary) and `truncated="<entry length>"` added to the structured data.
//! - Webhook: `POST` with `Content-Type: application/json` and the body
//!   `{"entries":[{"index":N,"leaf_hash":"<hex>","entry":{…}},…]}`, entries in index
//!   order. Any 2xx answer means delivered; 408, 429 (honouring `Retry-After` in
//!   seconds), 5xx and network errors are retried; any other answer is a permanent error.
//! - Webhook with `format = "slack"`: one `POST` per entry, body `{"text":"…"}`, a short
//!   line built from the entry's fields and escaped for Slack (see `WebhookFormat` and
//!   the `config` documentation), signed like any other request.
//!
//! # Webhook signature
//!
//! Each request carries
//!
//! ```text
//! X-Airlock-Timestamp: <Unix time in seconds, decimal>
//! X-Airlock-Signature: sha256=<lowercase hex of HMAC-SHA256(secret, timestamp + "." + body)>
//! ```
//!
//! where `secret` is the bytes of the environment variable named by `secret_env`,
//! `timestamp` the header's exact text and `body` the exact request body bytes. A
//! receiver recomputes the HMAC over the raw body (before any JSON parsing), compares
//! it in constant time, rejects a timestamp more than a few minutes from its clock (a
//! replayed request), and deduplicates entries on `index`, since retries are signed
//! anew. `verify_webhook_signature` does all but the last step.

mod config;
mod cursor;
mod entry;
mod error;
mod filter;
mod jsonl;
mod runner;
mod signature;
mod slack;
mod source;
mod syslog;
mod webhook;

use std::sync::Arc;

pub use config::{SinkConfig, SinkSpec, SinkTarget, SizeValue, validate_sinks};
pub use error::SinkError;
pub use filter::{KindFilter, NOTIFICATION_KINDS, NOTIFICATIONS_PRESET};
pub use jsonl::JsonlSink;
pub use runner::{RetryPolicy, RunnerConfig, SinkRunner, SinkStatus};
pub use signature::{hmac_sha256, verify_webhook_signature, webhook_signature};
pub use source::{AppendSignal, EntrySource, MemorySource, leaf_hash};
pub use syslog::{
    Facility, STRUCTURED_DATA_ID, Severity, SyslogConfig, SyslogProtocol, SyslogSink,
    civil_from_days,
};
pub use webhook::{
    SIGNATURE_HEADER, TIMESTAMP_HEADER, WebhookConfig, WebhookFormat, WebhookSecret, WebhookSink,
};

/// One audit log entry as sinks see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkRecord {
    /// The entry's position in the log: 0-based, dense, increasing.
    pub index: u64,
    /// The entry's RFC 6962 leaf hash, SHA-256(0x00 || entry).
    pub leaf_hash: [u8; 32],
    /// One canonical JSON object, UTF-8, without a line break. Sinks check this where
    /// they depend on it and refuse the entry (`SinkError::EntryNotJson`) otherwise.
    pub entry: Arc<[u8]>,
}

/// A destination for entries. Called from its runner's thread only.
pub trait Sink: Send {
    /// Delivers `batch` (non-empty, increasing indices: consecutive unless the runner
    /// filters kinds) or fails. On `Ok` the receiver has the entries, as far as the
    /// protocol can tell, and the runner moves its cursor past them; on `Err` the runner
    /// retries the same entries later, so a sink may have delivered part of a failed
    /// batch.
    fn deliver(&mut self, batch: &[SinkRecord]) -> Result<(), SinkError>;

    /// How many leading records of `batch` the next `deliver` should get (at least one),
    /// for sinks with limits other than a count, such as a request size. Delivering
    /// only what fits means a failure repeats only what failed.
    fn batch_len(&self, batch: &[SinkRecord]) -> usize {
        batch.len()
    }
}

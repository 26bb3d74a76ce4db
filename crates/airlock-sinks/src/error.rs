//! The crate's one error type, and which of its cases a retry can cure.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

/// Why a sink could not be configured, started, or deliver a batch.
///
/// A delivery error never touches the primary log: the runner records it in
/// `SinkStatus`, waits, and retries the same batch.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// An `[[audit.sinks]]` entry is invalid. Names the key (`audit.sinks[1].protocol`)
    /// and, in the message, what is accepted; the caller adds the file name.
    #[error("key `{key}`: {message}")]
    Config { key: String, message: String },

    /// The audit log could not be read.
    #[error("reading the audit log from index {from_index}")]
    Source {
        from_index: u64,
        #[source]
        source: io::Error,
    },

    /// The audit log returned records that are not the dense run that was asked for.
    #[error("the audit log returned index {got} where index {expected} was expected")]
    SourceOutOfOrder { expected: u64, got: u64 },

    /// An entry is not one single-line JSON object, so it cannot be embedded in a JSON
    /// line or a webhook body. The log is the authority: the entry is not rewritten.
    #[error("audit entry {index} is not a single-line JSON object: {reason}")]
    EntryNotJson { index: u64, reason: String },

    /// The cursor file could not be read or written.
    #[error("sink cursor file {}", path.display())]
    CursorIo {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// The cursor file does not hold a cursor; it is not guessed.
    #[error(
        "sink cursor file {} is corrupt ({detail}); delete it to redeliver from the start of the log",
        path.display()
    )]
    CursorCorrupt { path: PathBuf, detail: String },

    /// The JSONL mirror could not be opened, repaired, written or synced.
    #[error("JSONL mirror {}", path.display())]
    JsonlIo {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// The last complete line of the JSONL mirror is not a line this sink wrote.
    #[error("JSONL mirror {} is corrupt: {detail}", path.display())]
    JsonlCorrupt { path: PathBuf, detail: String },

    /// The syslog receiver could not be resolved, reached or written to.
    #[error("syslog receiver {address}")]
    SyslogIo {
        address: String,
        #[source]
        source: io::Error,
    },

    /// The webhook answered with a status other than 2xx.
    #[error("webhook {url} answered HTTP {status}{}", body_suffix(body))]
    WebhookStatus {
        url: String,
        status: u16,
        /// From a `Retry-After: <seconds>` header of a 429 or 503 answer.
        retry_after: Option<Duration>,
        /// The start of the answer's body, for the operator.
        body: String,
    },

    /// The webhook could not be reached, or its answer could not be read.
    #[error("webhook {url}")]
    WebhookTransport {
        url: String,
        #[source]
        source: Box<ureq::Error>,
    },

    /// The runner's thread could not be started.
    #[error("starting the thread of sink {name}")]
    Spawn {
        name: String,
        #[source]
        source: io::Error,
    },
}

fn body_suffix(body: &str) -> String {
    if body.is_empty() {
        String::new()
    } else {
        format!(": {body}")
    }
}

impl SinkError {
    /// True when retrying the same batch cannot succeed until someone changes something
    /// (the configuration, the receiver, the entry). The runner still retries, at the
    /// longest backoff, so that a fixed receiver resumes without a restart, and it logs
    /// these at error level.
    pub fn is_permanent(&self) -> bool {
        match self {
            SinkError::Config { .. }
            | SinkError::SourceOutOfOrder { .. }
            | SinkError::EntryNotJson { .. }
            | SinkError::CursorCorrupt { .. }
            | SinkError::JsonlCorrupt { .. } => true,
            // 408 and 429 say "later"; every other 4xx and 3xx (redirects are not
            // followed: a POST must reach the configured URL) needs a human.
            SinkError::WebhookStatus { status, .. } => {
                matches!(status, 300..=499) && *status != 408 && *status != 429
            }
            SinkError::Source { .. }
            | SinkError::CursorIo { .. }
            | SinkError::JsonlIo { .. }
            | SinkError::SyslogIo { .. }
            | SinkError::WebhookTransport { .. }
            | SinkError::Spawn { .. } => false,
        }
    }

    /// How long the receiver asked to be left alone, if it said so.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            SinkError::WebhookStatus { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// The error's message followed by its causes, for the status and the log.
pub(crate) fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut message = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        message.push_str(": ");
        message.push_str(&inner.to_string());
        cause = inner.source();
    }
    message
}

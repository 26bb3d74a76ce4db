//! Where sinks read entries from: the audit log itself, behind `EntrySource`, and the
//! signal the log raises when it grows.
//!
//! The log is the queue. Sinks never get entries pushed at them, so a slow or dead sink
//! cannot make the log wait or fill up memory: it only falls behind, by an amount
//! `SinkStatus` shows.

use std::io;
use std::sync::{Arc, Condvar, Mutex, PoisonError, RwLock};
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::SinkRecord;

/// Read access to the audit log, implemented by the audit log crate.
///
/// Invariants the runner relies on (and checks): indices are dense and start at 0; an
/// entry, once readable, never changes; `len` only grows.
pub trait EntrySource: Send + Sync + 'static {
    /// Up to `max` records starting at `from_index`, in index order without gaps. Fewer
    /// (possibly none) when the log is shorter. Only entries that are durable in the log
    /// may be returned: a sink must never publish an entry the log could lose.
    fn read(&self, from_index: u64, max: usize) -> io::Result<Vec<SinkRecord>>;

    /// The number of entries in the log, which is the index the next entry will get.
    /// Called on every runner wake-up and every `SinkRunner::status`: keep it cheap (an
    /// in-memory counter, no I/O).
    fn len(&self) -> u64;

    /// True when the log holds no entry yet.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Wakes sink runners when the log has grown. Cheap to clone; every clone is the same
/// signal.
///
/// The log calls `notify` after an append is durable. Runners also poll at their
/// `poll_interval`, so a missed notification only delays delivery, never loses it.
#[derive(Debug, Clone, Default)]
pub struct AppendSignal {
    inner: Arc<SignalInner>,
}

#[derive(Debug, Default)]
struct SignalInner {
    generation: Mutex<u64>,
    changed: Condvar,
}

impl AppendSignal {
    /// A signal nobody has raised yet.
    pub fn new() -> AppendSignal {
        AppendSignal::default()
    }

    /// Wakes every runner waiting on this signal.
    pub fn notify(&self) {
        let mut generation = self
            .inner
            .generation
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        *generation = generation.wrapping_add(1);
        self.inner.changed.notify_all();
    }

    /// A token to pass to `wait_for_change`; read it before checking the condition you
    /// are about to wait for, so that a notification in between is not missed.
    pub(crate) fn generation(&self) -> u64 {
        *self
            .inner
            .generation
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Returns when the signal has been raised since `seen` was read, or after `timeout`.
    pub(crate) fn wait_for_change(&self, seen: u64, timeout: Duration) {
        let generation = self
            .inner
            .generation
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let _unused = self
            .inner
            .changed
            .wait_timeout_while(generation, timeout, |generation| *generation == seen)
            .unwrap_or_else(PoisonError::into_inner);
    }
}

/// The RFC 6962 leaf hash of an entry: SHA-256 over a zero byte and the entry.
pub fn leaf_hash(entry: &[u8]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update([0u8]);
    hasher.update(entry);
    hasher.finalize().into()
}

/// An audit log held in memory, for tests of sinks and of whatever runs them.
///
/// It has no durability; the audit log crate provides the real source.
#[derive(Debug, Default)]
pub struct MemorySource {
    records: RwLock<Vec<SinkRecord>>,
    signal: AppendSignal,
}

impl MemorySource {
    /// An empty log that raises `signal` on every append.
    pub fn new(signal: AppendSignal) -> MemorySource {
        MemorySource {
            records: RwLock::new(Vec::new()),
            signal,
        }
    }

    /// Appends one entry and returns its index. The entry is stored as given, valid JSON
    /// or not, so tests can feed sinks bad input.
    pub fn append(&self, entry: impl Into<Arc<[u8]>>) -> u64 {
        let entry: Arc<[u8]> = entry.into();
        let index = {
            let mut records = self.records.write().unwrap_or_else(PoisonError::into_inner);
            let index = records.len() as u64;
            records.push(SinkRecord {
                index,
                leaf_hash: leaf_hash(&entry),
                entry,
            });
            index
        };
        self.signal.notify();
        index
    }

    /// The signal this log raises.
    pub fn signal(&self) -> AppendSignal {
        self.signal.clone()
    }
}

impl EntrySource for MemorySource {
    fn read(&self, from_index: u64, max: usize) -> io::Result<Vec<SinkRecord>> {
        let records = self.records.read().unwrap_or_else(PoisonError::into_inner);
        let start = usize::try_from(from_index)
            .unwrap_or(usize::MAX)
            .min(records.len());
        let end = start.saturating_add(max).min(records.len());
        Ok(records[start..end].to_vec())
    }

    fn len(&self) -> u64 {
        self.records
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leaf_hash_is_sha256_of_zero_byte_and_entry() {
        // RFC 6962's hash of the empty leaf, as published in Certificate Transparency
        // test data: SHA-256(0x00).
        assert_eq!(
            hex::encode(leaf_hash(b"")),
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
        );
    }

    #[test]
    fn memory_source_reads_dense_ranges() {
        let source = MemorySource::new(AppendSignal::new());
        for entry in ["{\"a\":0}", "{\"a\":1}", "{\"a\":2}"] {
            source.append(entry.as_bytes());
        }
        let indices = |from, max| -> Vec<u64> {
            source
                .read(from, max)
                .unwrap()
                .iter()
                .map(|record| record.index)
                .collect()
        };
        assert_eq!(indices(0, 10), [0, 1, 2]);
        assert_eq!(indices(1, 1), [1]);
        assert_eq!(indices(3, 10), Vec::<u64>::new());
        assert_eq!(indices(u64::MAX, usize::MAX), Vec::<u64>::new());
        assert_eq!(source.len(), 3);
    }

    #[test]
    fn wait_returns_at_once_when_notified_after_the_token_was_read() {
        let signal = AppendSignal::new();
        let seen = signal.generation();
        signal.notify();
        let started = std::time::Instant::now();
        signal.wait_for_change(seen, Duration::from_secs(10));
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}

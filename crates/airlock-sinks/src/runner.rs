//! `SinkRunner`: one thread per sink that reads the log from the sink's durable cursor,
//! delivers bounded batches, advances the cursor after each success and backs off after
//! each failure.
//!
//! The runner only reads the log. Whatever the sink does (hang, refuse, crash), appends
//! to the log go on; the sink's lag grows and `status` shows it.
//!
//! With a `KindFilter`, the runner hands the sink only the entries whose kind matches;
//! the others are passed over, and the cursor moves past them all the same: it is a
//! position in the log, not a count of deliveries.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::cursor::CursorFile;
use crate::error::error_chain;
use crate::filter::KindFilter;
use crate::source::{AppendSignal, EntrySource};
use crate::{Sink, SinkError, SinkRecord};

/// How long to wait between attempts after consecutive failures.
///
/// The n-th consecutive failure waits `min(initial * 2^(n-1), max)`, of which a random
/// half is skipped ("equal jitter": never less than half, so a fleet of servers that
/// lost the same receiver does not retry in lockstep, and never zero). A permanent
/// error waits the full `max`. A receiver's `Retry-After` lengthens the wait, up to `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub initial: Duration,
    pub max: Duration,
}

impl Default for RetryPolicy {
    fn default() -> RetryPolicy {
        RetryPolicy {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// The wait before the next attempt, `failures` (at least 1) failures in a row.
    /// `random` picks the point in the jitter range; pass a uniformly random value.
    fn delay(&self, failures: u32, error: &SinkError, random: u64) -> Duration {
        // A zero wait would turn a dead receiver into a busy loop.
        let initial = self.initial.max(Duration::from_millis(1));
        let max = self.max.max(initial);
        let base = if error.is_permanent() {
            max
        } else {
            let doublings = failures.saturating_sub(1).min(32);
            initial
                .checked_mul(1u32 << doublings.min(31))
                .unwrap_or(max)
                .min(max)
        };
        let half = base / 2;
        let jitter_nanos = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX);
        let jitter = Duration::from_nanos(match jitter_nanos {
            0 => 0,
            span => random % span.saturating_add(1),
        });
        let delay = base - half + jitter;
        match error.retry_after() {
            Some(asked) => delay.max(asked.min(max)),
            None => delay,
        }
    }
}

/// Everything a runner needs besides the sink, the log and the signal.
#[derive(Debug, Clone)]
pub struct RunnerConfig {
    /// The sink's name, for the status and the log.
    pub name: String,
    /// Where the durable cursor lives. Exactly one runner may use a path; the sink's
    /// name is a good file name (`<state dir>/sinks/<name>.cursor`).
    pub cursor_path: PathBuf,
    /// At most this many entries per delivery (the sink may take fewer, to respect a
    /// byte limit). At least 1.
    pub batch_size: usize,
    /// How often the runner looks at the log when nobody raised the signal. Only a
    /// fallback: appends raise the signal.
    pub poll_interval: Duration,
    pub retry: RetryPolicy,
    /// Deliver only entries whose `kind` matches; `None` delivers every entry.
    pub kinds: Option<KindFilter>,
}

impl RunnerConfig {
    /// Defaults: batches of 100, a poll every second, retries from 0.5 s to 60 s, every
    /// kind of entry.
    pub fn new(name: impl Into<String>, cursor_path: impl Into<PathBuf>) -> RunnerConfig {
        RunnerConfig {
            name: name.into(),
            cursor_path: cursor_path.into(),
            batch_size: 100,
            poll_interval: Duration::from_secs(1),
            retry: RetryPolicy::default(),
            kinds: None,
        }
    }
}

/// A sink's health, as a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkStatus {
    pub name: String,
    /// The index of the next entry to deliver: every entry below it was delivered and
    /// the receiver acknowledged it as far as the sink's protocol can tell, or was
    /// passed over by the sink's kind filter. The cursor file holds this value too,
    /// unless storing it failed (then `last_error` says so).
    pub cursor: u64,
    /// The log's length when the status was taken.
    pub log_len: u64,
    /// Entries the log holds that the sink has not delivered (or passed over) yet.
    pub lag: u64,
    /// Failed attempts since the last success; 0 means the sink is healthy.
    pub consecutive_failures: u32,
    /// The most recent failure, with its causes. Kept after a recovery, so an operator
    /// can see what went wrong; `consecutive_failures` tells whether it still does.
    pub last_error: Option<String>,
    /// Whether `last_error` needs a human (a refused request, a bad entry) rather than
    /// time (a receiver that is down).
    pub last_error_permanent: bool,
    /// Entries delivered since this runner started (re-deliveries included; entries
    /// passed over by the kind filter not).
    pub delivered_since_start: u64,
    /// False once the thread has ended (after `stop`, or if a sink panicked).
    pub running: bool,
}

#[derive(Debug)]
struct Progress {
    cursor: u64,
    consecutive_failures: u32,
    last_error: Option<String>,
    last_error_permanent: bool,
    delivered_since_start: u64,
}

#[derive(Debug)]
struct Shared {
    stop: AtomicBool,
    progress: Mutex<Progress>,
}

/// Runs one sink on its own thread until `stop` (or drop).
///
/// Delivery is at least once: an entry is delivered again when the process stops or
/// crashes between a delivery and the cursor update, and when a receiver accepted a
/// batch but its answer was lost. Each message carries the entry's index, so receivers
/// deduplicate on it. Entries are delivered in index order; no entry is skipped, except
/// those the kind filter leaves out.
pub struct SinkRunner {
    name: String,
    shared: Arc<Shared>,
    source: Arc<dyn EntrySource>,
    signal: AppendSignal,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for SinkRunner {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("SinkRunner")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl SinkRunner {
    /// Loads the cursor and starts the thread. Fails only when the cursor file cannot be
    /// read or is corrupt, or the thread cannot be spawned; a receiver that is down is
    /// not an error here but a status.
    pub fn start(
        sink: Box<dyn Sink>,
        source: Arc<dyn EntrySource>,
        signal: AppendSignal,
        config: RunnerConfig,
    ) -> Result<SinkRunner, SinkError> {
        let cursor_file = CursorFile::new(config.cursor_path.clone());
        let cursor = cursor_file.load()?;
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            progress: Mutex::new(Progress {
                cursor,
                consecutive_failures: 0,
                last_error: None,
                last_error_permanent: false,
                delivered_since_start: 0,
            }),
        });
        let worker = Worker {
            name: config.name.clone(),
            sink,
            source: Arc::clone(&source),
            signal: signal.clone(),
            shared: Arc::clone(&shared),
            cursor_file,
            cursor,
            cursor_unsaved: false,
            pending: Vec::new(),
            read_to: cursor,
            batch_size: config.batch_size.max(1),
            poll_interval: config.poll_interval.max(Duration::from_millis(1)),
            retry: config.retry,
            kinds: config.kinds,
        };
        let thread = std::thread::Builder::new()
            // A thread name with a NUL byte would make spawn panic.
            .name(format!("sink-{}", config.name.replace('\0', "_")))
            .spawn(move || worker.run())
            .map_err(|source| SinkError::Spawn {
                name: config.name.clone(),
                source,
            })?;
        Ok(SinkRunner {
            name: config.name,
            shared,
            source,
            signal,
            thread: Some(thread),
        })
    }

    /// The sink's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A snapshot of the sink's progress. Never waits for a delivery in progress.
    pub fn status(&self) -> SinkStatus {
        let log_len = self.source.len();
        let progress = self
            .shared
            .progress
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        SinkStatus {
            name: self.name.clone(),
            cursor: progress.cursor,
            log_len,
            lag: log_len.saturating_sub(progress.cursor),
            consecutive_failures: progress.consecutive_failures,
            last_error: progress.last_error.clone(),
            last_error_permanent: progress.last_error_permanent,
            delivered_since_start: progress.delivered_since_start,
            running: self
                .thread
                .as_ref()
                .is_some_and(|thread| !thread.is_finished()),
        }
    }

    /// Stops the thread and waits for it, then returns the final status. A wait between
    /// attempts is cut short; a delivery in progress is not, so this returns within the
    /// sink's own timeout. Undelivered entries stay in the log for the next start.
    pub fn stop(mut self) -> SinkStatus {
        self.shut_down();
        self.status()
    }

    fn shut_down(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.signal.notify();
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!(sink = %self.name, "the sink's thread panicked");
        }
    }
}

impl Drop for SinkRunner {
    fn drop(&mut self) {
        self.shut_down();
    }
}

struct Worker {
    name: String,
    sink: Box<dyn Sink>,
    source: Arc<dyn EntrySource>,
    signal: AppendSignal,
    shared: Arc<Shared>,
    cursor_file: CursorFile,
    /// The next index to deliver: every entry below it was delivered or passed over.
    /// Without a kind filter it is also the index of `pending`'s first record.
    cursor: u64,
    /// Delivered but not yet stored: the store is retried before the next delivery, so
    /// at most one batch is ever delivered past the stored cursor.
    cursor_unsaved: bool,
    /// Read from the log and not delivered yet: the records the kind filter lets
    /// through, in index order.
    pending: Vec<SinkRecord>,
    /// The index after the last entry read into `pending` (or passed over); equal to
    /// `cursor` whenever `pending` is empty.
    read_to: u64,
    batch_size: usize,
    poll_interval: Duration,
    retry: RetryPolicy,
    kinds: Option<KindFilter>,
}

/// What `fill_pending` found.
enum Fill {
    /// Records to deliver are pending.
    Ready,
    /// Entries were read, none of them to deliver: the cursor moved past them.
    PassedOver,
    /// The log has nothing new (or the cursor cannot resume).
    Nothing,
}

impl Worker {
    fn run(mut self) {
        while !self.stopping() {
            // Read before looking at the log, so an append in between wakes the wait.
            let seen = self.signal.generation();
            if self.cursor_unsaved {
                match self.cursor_file.store(self.cursor) {
                    Ok(()) => self.cursor_unsaved = false,
                    Err(error) => {
                        self.fail(error);
                        continue;
                    }
                }
            }
            if self.pending.is_empty() {
                match self.fill_pending() {
                    Ok(Fill::Ready) => {}
                    Ok(Fill::PassedOver) => continue,
                    Ok(Fill::Nothing) => {
                        self.signal.wait_for_change(seen, self.poll_interval);
                        continue;
                    }
                    Err(error) => {
                        self.fail(error);
                        continue;
                    }
                }
            }
            let taken = self
                .sink
                .batch_len(&self.pending)
                .clamp(1, self.pending.len());
            match self.sink.deliver(&self.pending[..taken]) {
                Ok(()) => self.delivered(taken),
                Err(error) => self.fail(error),
            }
        }
    }

    fn stopping(&self) -> bool {
        self.shared.stop.load(Ordering::SeqCst)
    }

    /// Reads the next batch from the log, keeping what the kind filter lets through.
    fn fill_pending(&mut self) -> Result<Fill, SinkError> {
        let log_len = self.source.len();
        if self.cursor > log_len {
            // The cursor belongs to another (longer) log. Not guessed around: an
            // operator has to look.
            let message = format!(
                "the cursor ({}) is past the end of the audit log ({log_len} entries); \
                 is the cursor file from another log?",
                self.cursor
            );
            if self.record_error(message.clone(), true) == 1 {
                tracing::error!(sink = %self.name, error = %message, "sink cannot resume");
            }
            return Ok(Fill::Nothing);
        }
        if self.cursor == log_len {
            return Ok(Fill::Nothing);
        }
        let records = self
            .source
            .read(self.cursor, self.batch_size)
            .map_err(|source| SinkError::Source {
                from_index: self.cursor,
                source,
            })?;
        for (offset, record) in records.iter().enumerate() {
            let expected = self.cursor + offset as u64;
            if record.index != expected {
                return Err(SinkError::SourceOutOfOrder {
                    expected,
                    got: record.index,
                });
            }
        }
        let records = records.into_iter().take(self.batch_size);
        let read = records.len() as u64;
        if read == 0 {
            return Ok(Fill::Nothing);
        }
        self.read_to = self.cursor + read;
        match &self.kinds {
            None => self.pending.extend(records),
            Some(kinds) => self
                .pending
                .extend(records.filter(|record| kinds.matches_record(record))),
        }
        if self.pending.is_empty() {
            self.advance(self.read_to, 0);
            return Ok(Fill::PassedOver);
        }
        Ok(Fill::Ready)
    }

    fn delivered(&mut self, taken: usize) {
        self.pending.drain(..taken);
        // Past the delivered records and whatever the filter passed over after them.
        let next = self
            .pending
            .first()
            .map_or(self.read_to, |record| record.index);
        self.advance(next, taken as u64);
    }

    /// Moves the cursor to `next` after `delivered` records were delivered (0 when the
    /// kind filter passed over every entry read), then stores and publishes it.
    fn advance(&mut self, next: u64, delivered: u64) {
        self.cursor = next;
        // Stored before it is published, so a status never shows a cursor that a crash
        // would take back.
        let stored = self.cursor_file.store(self.cursor);
        self.cursor_unsaved = stored.is_err();
        // A delivery is a success even if the store failed (that failure is counted
        // next). Passing over entries is one once it is stored: whatever failed before
        // was a read or a store, since a failed delivery keeps `pending` full.
        let succeeded = delivered > 0 || stored.is_ok();
        let recovered_after = {
            let mut progress = self.progress();
            let failures = progress.consecutive_failures;
            progress.cursor = self.cursor;
            progress.delivered_since_start += delivered;
            if succeeded {
                progress.consecutive_failures = 0;
            }
            failures
        };
        if succeeded && recovered_after > 0 {
            tracing::info!(sink = %self.name, failures = recovered_after, "sink delivers again");
        }
        if let Err(error) = stored {
            self.fail(error);
        }
    }

    fn fail(&mut self, error: SinkError) {
        let permanent = error.is_permanent();
        let message = error_chain(&error);
        let failures = self.record_error(message.clone(), permanent);
        if permanent {
            tracing::error!(sink = %self.name, failures, error = %message,
                "sink delivery refused; retrying at the longest interval until fixed");
        } else {
            tracing::warn!(sink = %self.name, failures, error = %message, "sink delivery failed; retrying");
        }
        let random = getrandom::u64().unwrap_or_else(|_| clock_noise());
        let delay = self.retry.delay(failures, &error, random);
        self.sleep_unless_stopped(delay);
    }

    /// Records a failure in the status and returns the number of failures in a row.
    fn record_error(&mut self, message: String, permanent: bool) -> u32 {
        let mut progress = self.progress();
        progress.consecutive_failures = progress.consecutive_failures.saturating_add(1);
        progress.last_error = Some(message);
        progress.last_error_permanent = permanent;
        progress.consecutive_failures
    }

    fn sleep_unless_stopped(&self, delay: Duration) {
        let deadline = Instant::now() + delay;
        loop {
            let seen = self.signal.generation();
            let now = Instant::now();
            if self.stopping() || now >= deadline {
                return;
            }
            // Appends also wake this wait; it simply goes back to sleep.
            self.signal.wait_for_change(seen, deadline - now);
        }
    }

    fn progress(&self) -> std::sync::MutexGuard<'_, Progress> {
        self.shared
            .progress
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// Jitter when the operating system's generator fails: good enough to spread retries.
fn clock_noise() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| u64::from(elapsed.subsec_nanos()))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn retryable() -> SinkError {
        SinkError::SyslogIo {
            address: "x".into(),
            source: std::io::Error::other("down"),
        }
    }

    #[test]
    fn delays_double_within_equal_jitter_and_stop_at_the_cap() {
        let policy = RetryPolicy {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(1),
        };
        let ms = |failures, random| policy.delay(failures, &retryable(), random).as_millis();
        assert_eq!(ms(1, 0), 50);
        assert!(ms(1, u64::MAX) <= 100);
        assert_eq!(ms(2, 0), 100);
        assert_eq!(ms(3, 0), 200);
        assert_eq!(ms(4, 0), 400);
        assert_eq!(ms(5, 0), 500);
        assert_eq!(ms(u32::MAX, 0), 500);
        for random in [0, 1, 12_345_678, u64::MAX] {
            let delay = ms(40, random);
            assert!((500..=1000).contains(&delay), "{delay}");
        }
    }

    #[test]
    fn permanent_errors_wait_the_cap_and_retry_after_is_honoured_up_to_it() {
        let policy = RetryPolicy {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(2),
        };
        let permanent = SinkError::WebhookStatus {
            url: "u".into(),
            status: 401,
            retry_after: None,
            body: String::new(),
        };
        assert_eq!(policy.delay(1, &permanent, 0), Duration::from_secs(1));
        let busy = |seconds| SinkError::WebhookStatus {
            url: "u".into(),
            status: 429,
            retry_after: Some(Duration::from_secs(seconds)),
            body: String::new(),
        };
        assert_eq!(policy.delay(1, &busy(1), 0), Duration::from_secs(1));
        assert_eq!(policy.delay(1, &busy(3600), 0), Duration::from_secs(2));
    }
}

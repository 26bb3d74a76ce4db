//! The JSONL mirror: the audit log appended to a local file, one JSON line per entry,
//! for log shippers (Vector, Fluent Bit, Filebeat …) that tail files.
//!
//! The file doubles as its own cursor. On open, a torn last line (a crash in the middle
//! of a write) is cut off, and the index of the last complete line is remembered;
//! records at or below it are skipped. So a crash between the write and the runner's
//! cursor update never duplicates a line.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::entry::{embeddable_prefix_len, encode_record, inspect};
use crate::{Sink, SinkError, SinkRecord};

/// Appends entries to a JSONL file as
/// `{"index":N,"leaf_hash":"<hex>","entry":<entry>}` lines, synced to disk per batch.
///
/// The file is opened (and repaired) on the first delivery and after any failed write,
/// so a missing directory or a full disk is a failed delivery the runner retries, not a
/// startup failure. Entries that are not single-line JSON objects are refused
/// (`SinkError::EntryNotJson`): they would corrupt the file.
#[derive(Debug)]
pub struct JsonlSink {
    path: PathBuf,
    open: Option<OpenMirror>,
    /// The runner filters kinds, so indices skip: no warning about missing entries.
    gaps_expected: bool,
}

#[derive(Debug)]
struct OpenMirror {
    file: File,
    /// The index on the file's last line; `None` for an empty file.
    last_index: Option<u64>,
}

#[derive(Deserialize)]
struct LineHead {
    index: u64,
}

/// Bytes read per step when looking backwards for line breaks.
const SCAN_CHUNK: usize = 64 * 1024;

impl JsonlSink {
    /// A mirror at `path`. Touches nothing until the first delivery.
    pub fn new(path: impl Into<PathBuf>) -> JsonlSink {
        JsonlSink {
            path: path.into(),
            open: None,
            gaps_expected: false,
        }
    }

    /// For a mirror of some kinds only (the runner has a `KindFilter`): indices that
    /// skip are expected, not reported as entries missing from the file.
    pub fn expect_gaps(mut self) -> JsonlSink {
        self.gaps_expected = true;
        self
    }

    fn io_error(&self, source: io::Error) -> SinkError {
        SinkError::JsonlIo {
            path: self.path.clone(),
            source,
        }
    }

    fn open_mirror(&self) -> Result<OpenMirror, SinkError> {
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&self.path)
            .map_err(|source| self.io_error(source))?;
        // The file may have just been created: make its directory entry durable too.
        let directory = match self.path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        };
        File::open(directory)
            .and_then(|directory| directory.sync_all())
            .map_err(|source| self.io_error(source))?;

        let length = file
            .metadata()
            .map_err(|source| self.io_error(source))?
            .len();
        let last_break =
            find_last_line_break(&file, length).map_err(|source| self.io_error(source))?;
        let complete_length = last_break.map_or(0, |position| position + 1);
        if complete_length < length {
            tracing::warn!(
                path = %self.path.display(),
                torn_bytes = length - complete_length,
                "cutting off the torn last line of the JSONL mirror"
            );
            file.set_len(complete_length)
                .and_then(|()| file.sync_all())
                .map_err(|source| self.io_error(source))?;
        }
        let last_index = match last_break {
            None => None,
            Some(end) => {
                let start = find_last_line_break(&file, end)
                    .map_err(|source| self.io_error(source))?
                    .map_or(0, |position| position + 1);
                let line = read_range(&file, start, end).map_err(|source| self.io_error(source))?;
                let head: LineHead =
                    serde_json::from_slice(&line).map_err(|error| SinkError::JsonlCorrupt {
                        path: self.path.clone(),
                        detail: format!("its last line (at byte {start}) has no index: {error}"),
                    })?;
                Some(head.index)
            }
        };
        Ok(OpenMirror { file, last_index })
    }
}

impl Sink for JsonlSink {
    fn batch_len(&self, batch: &[SinkRecord]) -> usize {
        embeddable_prefix_len(batch)
    }

    fn deliver(&mut self, batch: &[SinkRecord]) -> Result<(), SinkError> {
        let mirror = match self.open.take() {
            Some(mirror) => mirror,
            None => self.open_mirror()?,
        };
        let fresh: Vec<&SinkRecord> = batch
            .iter()
            .filter(|record| mirror.last_index.is_none_or(|last| record.index > last))
            .collect();
        let mut lines = Vec::new();
        for record in &fresh {
            if let Err(error) = inspect(record) {
                self.open = Some(mirror);
                return Err(error);
            }
            encode_record(&mut lines, record);
            lines.push(b'\n');
        }
        let (Some(first), Some(last)) = (fresh.first(), fresh.last()) else {
            self.open = Some(mirror);
            return Ok(());
        };
        let expected_first = mirror.last_index.map_or(0, |last| last + 1);
        if first.index != expected_first && !self.gaps_expected {
            // The mirror was removed or truncated while the cursor stayed: it will lack
            // the entries in between. Said loudly; the log still has them.
            tracing::warn!(
                path = %self.path.display(),
                missing_from = expected_first,
                missing_to = first.index - 1,
                "the JSONL mirror does not hold these entries"
            );
        }
        // On failure the file is dropped, so the next attempt reopens it and cuts off
        // whatever part of this write landed.
        (&mirror.file)
            .write_all(&lines)
            .and_then(|()| mirror.file.sync_data())
            .map_err(|source| self.io_error(source))?;
        self.open = Some(OpenMirror {
            file: mirror.file,
            last_index: Some(last.index),
        });
        Ok(())
    }
}

/// The position of the last `\n` before `end`, if any.
fn find_last_line_break(file: &File, end: u64) -> io::Result<Option<u64>> {
    let mut buffer = vec![0u8; SCAN_CHUNK];
    let mut chunk_end = end;
    while chunk_end > 0 {
        let chunk_start = chunk_end.saturating_sub(SCAN_CHUNK as u64);
        let chunk = &mut buffer[..(chunk_end - chunk_start) as usize];
        file.read_exact_at(chunk, chunk_start)?;
        if let Some(offset) = chunk.iter().rposition(|&byte| byte == b'\n') {
            return Ok(Some(chunk_start + offset as u64));
        }
        chunk_end = chunk_start;
    }
    Ok(None)
}

fn read_range(file: &File, start: u64, end: u64) -> io::Result<Vec<u8>> {
    let length = usize::try_from(end - start).map_err(io::Error::other)?;
    let mut bytes = vec![0u8; length];
    file.read_exact_at(&mut bytes, start)?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::leaf_hash;

    fn record(index: u64) -> SinkRecord {
        let entry = format!(r#"{{"kind":"test","n":{index}}}"#);
        SinkRecord {
            index,
            leaf_hash: leaf_hash(entry.as_bytes()),
            entry: entry.as_bytes().into(),
        }
    }

    fn indices(path: &Path) -> Vec<u64> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|line| {
                serde_json::from_str::<serde_json::Value>(line).unwrap()["index"]
                    .as_u64()
                    .unwrap()
            })
            .collect()
    }

    #[test]
    fn finds_line_breaks_across_chunks() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("big");
        let mut content = vec![b'x'; SCAN_CHUNK * 2 + 10];
        content[5] = b'\n';
        std::fs::write(&path, &content).unwrap();
        let file = File::open(&path).unwrap();
        let length = content.len() as u64;
        assert_eq!(find_last_line_break(&file, length).unwrap(), Some(5));
        assert_eq!(find_last_line_break(&file, 5).unwrap(), None);
        assert_eq!(find_last_line_break(&file, 0).unwrap(), None);
    }

    #[test]
    fn redelivered_records_are_skipped_and_the_file_is_created() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("audit.jsonl");
        let mut sink = JsonlSink::new(&path);
        sink.deliver(&[record(0), record(1)]).unwrap();
        sink.deliver(&[record(1), record(2)]).unwrap();
        let mut reopened = JsonlSink::new(&path);
        reopened
            .deliver(&[record(0), record(1), record(2), record(3)])
            .unwrap();
        assert_eq!(indices(&path), [0, 1, 2, 3]);
    }

    #[test]
    fn a_corrupt_last_line_is_an_error_not_a_guess() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("audit.jsonl");
        std::fs::write(&path, "someone else's line\n").unwrap();
        let error = JsonlSink::new(&path).deliver(&[record(0)]).unwrap_err();
        assert!(matches!(error, SinkError::JsonlCorrupt { .. }), "{error}");
        assert!(error.is_permanent());
    }

    #[test]
    fn a_bad_entry_is_refused_and_nothing_of_its_batch_is_written() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("audit.jsonl");
        let mut sink = JsonlSink::new(&path);
        let bad = SinkRecord {
            index: 1,
            leaf_hash: [0; 32],
            entry: b"not json".as_slice().into(),
        };
        let batch = [record(0), bad, record(2)];
        assert_eq!(sink.batch_len(&batch), 1);
        sink.deliver(&batch[..1]).unwrap();
        let error = sink.deliver(&batch[1..]).unwrap_err();
        assert!(
            matches!(error, SinkError::EntryNotJson { index: 1, .. }),
            "{error}"
        );
        assert_eq!(indices(&path), [0]);
    }
}

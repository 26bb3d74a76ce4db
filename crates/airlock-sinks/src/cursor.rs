//! A sink's durable cursor: the index of the next entry it has to deliver, kept in a
//! small file replaced atomically.
//!
//! The cursor only moves after a delivery succeeded, so a crash at any point leaves it
//! at or behind what the receiver has: entries are delivered again (at least once),
//! never skipped.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::SinkError;

const PREFIX: &str = "next_index=";

/// One cursor file. Only one runner may use a given path.
#[derive(Debug, Clone)]
pub(crate) struct CursorFile {
    path: PathBuf,
}

impl CursorFile {
    pub(crate) fn new(path: PathBuf) -> CursorFile {
        CursorFile { path }
    }

    /// The stored cursor; 0 when the file does not exist (a sink that never delivered).
    /// A file that exists but does not hold a cursor is an error rather than 0: silently
    /// starting over could flood a receiver with the whole log.
    pub(crate) fn load(&self) -> Result<u64, SinkError> {
        let text = match fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(error) if error.kind() == io::ErrorKind::InvalidData => {
                return Err(self.corrupt("it is not UTF-8"));
            }
            Err(source) => {
                return Err(SinkError::CursorIo {
                    path: self.path.clone(),
                    source,
                });
            }
        };
        text.strip_prefix(PREFIX)
            .and_then(|rest| rest.strip_suffix('\n'))
            .filter(|digits| !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|digits| digits.parse::<u64>().ok())
            .ok_or_else(|| self.corrupt(&format!("expected `{PREFIX}<number>` and a newline")))
    }

    /// Replaces the stored cursor: a temporary file written and synced, renamed over the
    /// cursor, then the directory synced so the rename itself survives a power loss.
    pub(crate) fn store(&self, next_index: u64) -> Result<(), SinkError> {
        self.try_store(next_index)
            .map_err(|source| SinkError::CursorIo {
                path: self.path.clone(),
                source,
            })
    }

    fn try_store(&self, next_index: u64) -> io::Result<()> {
        let directory = match self.path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        };
        fs::create_dir_all(directory)?;
        let mut temporary_name = self.path.file_name().unwrap_or_default().to_owned();
        temporary_name.push(".tmp");
        let temporary = directory.join(temporary_name);
        {
            let mut file = File::create(&temporary)?;
            file.write_all(format!("{PREFIX}{next_index}\n").as_bytes())?;
            file.sync_all()?;
        }
        fs::rename(&temporary, &self.path)?;
        File::open(directory)?.sync_all()
    }

    fn corrupt(&self, detail: &str) -> SinkError {
        SinkError::CursorCorrupt {
            path: self.path.clone(),
            detail: detail.to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_file_is_zero_and_stores_round_trip() {
        let directory = tempfile::tempdir().unwrap();
        let cursor = CursorFile::new(directory.path().join("nested/siem.cursor"));
        assert_eq!(cursor.load().unwrap(), 0);
        cursor.store(42).unwrap();
        assert_eq!(cursor.load().unwrap(), 42);
        cursor.store(u64::MAX).unwrap();
        assert_eq!(cursor.load().unwrap(), u64::MAX);
        let names: Vec<_> = fs::read_dir(directory.path().join("nested"))
            .unwrap()
            .map(|entry| entry.unwrap().file_name())
            .collect();
        assert_eq!(names, ["siem.cursor"], "no temporary file is left behind");
    }

    #[test]
    fn corrupt_files_are_errors() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("siem.cursor");
        let cursor = CursorFile::new(path.clone());
        for content in [
            &b""[..],
            b"next_index=",
            b"next_index=12",
            b"next_index=-1\n",
            b"next_index=1x\n",
            b"12\n",
            b"next_index=99999999999999999999999\n",
            b"\xff\xfe",
        ] {
            fs::write(&path, content).unwrap();
            let error = cursor.load().unwrap_err();
            assert!(
                matches!(error, SinkError::CursorCorrupt { .. }),
                "{content:?}: {error}"
            );
            assert!(error.to_string().contains("delete it"), "{error}");
        }
    }
}

//! Segment files: the entries of the log, back to back, each in a checksummed frame.
//!
//! ```text
//! segment  = header frame*
//! header   = "ALKAUDS1" first-index:u64le                    (16 bytes)
//! frame    = length:u32le crc:u32le entry[length]
//! crc      = CRC-32(index:u64le || entry)
//! ```
//!
//! The checksum covers the entry's index as well as its bytes, so an entry that was
//! moved, dropped or swapped fails at its own index, not just somewhere later. The
//! checksum is not a security measure (anyone can recompute it): the Merkle tree and the
//! signed checkpoints are; the checksum finds torn writes and names the damaged entry.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

pub const MAGIC: &[u8; 8] = b"ALKAUDS1";
/// The history of signed checkpoints uses the same framing under its own magic.
pub const CHECKPOINTS_MAGIC: &[u8; 8] = b"ALKAUDC1";
pub const HEADER_LEN: u64 = 16;
pub const FRAME_HEADER_LEN: u64 = 8;
/// An entry is a small JSON document; large payloads live outside the tree.
pub const MAX_ENTRY_BYTES: usize = 1 << 20;

pub fn header(magic: &[u8; 8], first_index: u64) -> [u8; 16] {
    let mut header = [0u8; 16];
    header[..8].copy_from_slice(magic);
    header[8..].copy_from_slice(&first_index.to_le_bytes());
    header
}

pub fn checksum(index: u64, entry: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&index.to_le_bytes());
    hasher.update(entry);
    hasher.finalize()
}

pub fn push_frame(out: &mut Vec<u8>, index: u64, entry: &[u8]) {
    out.extend_from_slice(&(entry.len() as u32).to_le_bytes());
    out.extend_from_slice(&checksum(index, entry).to_le_bytes());
    out.extend_from_slice(entry);
}

pub fn file_name(first_index: u64) -> String {
    format!("{first_index:020}.seg")
}

/// The segment files of a log directory, ordered by the index they start at.
pub fn list(dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut segments = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(segments),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let path = entry?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if let Some(first) = name
            .strip_suffix(".seg")
            .and_then(|n| n.parse::<u64>().ok())
        {
            segments.push((first, path));
        }
    }
    segments.sort();
    Ok(segments)
}

/// What went wrong at one position of a segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameFault {
    /// The file ends inside a frame (a write that did not finish).
    Torn { bytes: u64 },
    /// The frame's length is impossible.
    BadLength { length: u64 },
    /// The bytes or the position of the entry changed after it was written.
    BadChecksum,
}

impl std::fmt::Display for FrameFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameFault::Torn { bytes } => write!(f, "the file ends {bytes} bytes into the entry's frame (an unfinished write, or a truncated file)"),
            FrameFault::BadLength { length } => write!(f, "the frame claims {length} bytes; entries are 1 to {MAX_ENTRY_BYTES} bytes"),
            FrameFault::BadChecksum => f.write_str("the checksum does not match: the entry's bytes changed, or the entry was moved from another position"),
        }
    }
}

/// Reads one segment front to back, checking every frame. Buffered in large reads: the
/// whole-log verification streams through this at disk or hash speed.
#[derive(Debug)]
pub struct SegmentReader {
    file: io::BufReader<File>,
    next_index: u64,
    offset: u64,
    entry: Vec<u8>,
}

impl SegmentReader {
    /// Opens a segment and checks its header names `first_index`.
    pub fn open(
        path: &Path,
        magic: &[u8; 8],
        first_index: u64,
    ) -> io::Result<Result<SegmentReader, String>> {
        let mut file = io::BufReader::with_capacity(1 << 20, File::open(path)?);
        let mut header = [0u8; 16];
        if let Err(e) = file.read_exact(&mut header) {
            return if e.kind() == io::ErrorKind::UnexpectedEof {
                Ok(Err("the segment header is incomplete".into()))
            } else {
                Err(e)
            };
        }
        if &header[..8] != magic {
            return Ok(Err(format!(
                "the file does not start with {:?}",
                String::from_utf8_lossy(magic)
            )));
        }
        let stated = u64::from_le_bytes(header[8..].try_into().expect("8 bytes"));
        if stated != first_index {
            return Ok(Err(format!(
                "the segment header says it starts at index {stated}, its name says {first_index}"
            )));
        }
        Ok(Ok(SegmentReader {
            file,
            next_index: first_index,
            offset: HEADER_LEN,
            entry: Vec::with_capacity(4096),
        }))
    }

    /// Positions the reader at `offset`, the frame of entry `index` (from the log's index).
    pub fn seek(&mut self, offset: u64, index: u64) -> io::Result<()> {
        use io::Seek;
        self.file.seek(io::SeekFrom::Start(offset))?;
        self.offset = offset;
        self.next_index = index;
        Ok(())
    }

    pub fn offset(&self) -> u64 {
        self.offset
    }

    pub fn next_index(&self) -> u64 {
        self.next_index
    }

    /// The next entry: `Ok(None)` at a clean end of file, `Err(fault)` for a damaged frame.
    pub fn next_entry(&mut self) -> io::Result<Option<Result<&[u8], FrameFault>>> {
        let mut frame = [0u8; 8];
        let got = read_up_to(&mut self.file, &mut frame)?;
        if got == 0 {
            return Ok(None);
        }
        if got < frame.len() {
            return Ok(Some(Err(FrameFault::Torn { bytes: got as u64 })));
        }
        let length = u32::from_le_bytes(frame[..4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(frame[4..].try_into().expect("4 bytes"));
        if length == 0 || length > MAX_ENTRY_BYTES {
            return Ok(Some(Err(FrameFault::BadLength {
                length: length as u64,
            })));
        }
        self.entry.resize(length, 0);
        let got = read_up_to(&mut self.file, &mut self.entry)?;
        if got < length {
            return Ok(Some(Err(FrameFault::Torn {
                bytes: (frame.len() + got) as u64,
            })));
        }
        if checksum(self.next_index, &self.entry) != crc {
            return Ok(Some(Err(FrameFault::BadChecksum)));
        }
        self.next_index += 1;
        self.offset += FRAME_HEADER_LEN + length as u64;
        Ok(Some(Ok(&self.entry)))
    }
}

fn read_up_to(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

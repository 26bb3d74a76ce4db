//! The log on disk: appending with group commit, recovering after a crash, reading
//! entries back, proving inclusion and consistency, and signing checkpoints.
//!
//! ```text
//! <dir>/segments/<first index>.seg   entries in checksummed frames (see `segment`)
//! <dir>/checkpoints.log              every signed checkpoint, in the same framing
//! <dir>/checkpoint                   the latest signed checkpoint, as a plain note
//! <dir>/writer.lock                  held (flock) by the one process appending
//! ```
//!
//! In memory the log keeps only what proofs need and cannot cheaply recompute: the hash
//! of every complete block of 256 entries and of every complete subtree above a block,
//! the leaf hashes of the unfinished last block, and where each block starts on disk
//! (about 0.4 bytes per entry). Smaller subtrees are rehashed from one block's entries.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};

use crate::AuditError;
use crate::hash::{Hash, leaf_hash, node_hash};
use crate::merkle::{self, ProofError, SubtreeSource, reference_root};
use crate::note::{Checkpoint, SigningKey, VerifierKey};
use crate::segment::{self, CHECKPOINTS_MAGIC, FrameFault, MAGIC, SegmentReader};

/// log2 of the entries per block: the unit the in-memory index keeps hashes for.
const BLOCK_BITS: u32 = 8;
const BLOCK: u64 = 1 << BLOCK_BITS;

/// How to open a log.
#[derive(Debug)]
pub struct LogOptions {
    /// The key the log's checkpoints are checked against (at open and by `verify`).
    pub verifier: VerifierKey,
    /// The key that signs new checkpoints; None opens the log without signing (the CLI's
    /// read-only commands).
    pub signer: Option<SigningKey>,
    /// A segment is closed at the first block boundary after it reaches this size.
    pub segment_bytes: u64,
    /// Read without the writer lock, beside a running writer: nothing is created,
    /// repaired or appended, and an unfinished last frame is simply not read.
    pub read_only: bool,
}

impl LogOptions {
    pub fn new(verifier: VerifierKey, signer: Option<SigningKey>) -> LogOptions {
        LogOptions {
            verifier,
            signer,
            segment_bytes: 64 << 20,
            read_only: false,
        }
    }

    /// For reading beside a running writer (proofs, exports, `show`).
    pub fn read_only(verifier: VerifierKey) -> LogOptions {
        LogOptions {
            read_only: true,
            ..LogOptions::new(verifier, None)
        }
    }
}

/// What opening the log found and repaired.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Recovery {
    pub entries: u64,
    /// Bytes cut from the end of the last segment: a write that a crash interrupted,
    /// beyond the last signed checkpoint and never acknowledged.
    pub truncated_bytes: u64,
    pub checkpoint_size: Option<u64>,
}

/// A signed checkpoint as published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedCheckpoint {
    pub checkpoint: Checkpoint,
    pub note: String,
}

#[derive(Debug)]
struct SegmentFile {
    first_index: u64,
    path: PathBuf,
}

/// The audit log, open for appending by this process.
#[derive(Debug)]
pub struct AuditLog {
    dir: PathBuf,
    options: LogOptions,
    segments: Vec<SegmentFile>,
    /// The last segment, open for appending (None when read-only).
    active: Option<File>,
    active_len: u64,
    len: u64,
    /// (segment number, byte offset) of the first entry of each block.
    blocks: Vec<(u32, u64)>,
    /// `levels[j][k]`: the hash of the complete subtree of 2^(8+j) entries starting at
    /// `k << (8+j)`.
    levels: Vec<Vec<Hash>>,
    /// Leaf hashes of the last, unfinished block.
    tail: Vec<Hash>,
    latest: Option<SignedCheckpoint>,
    checkpoints: Option<File>,
    checkpoint_count: u64,
    block_cache: Mutex<Option<(u64, Arc<Vec<Hash>>)>>,
    /// Set when a write failed half-way: the file may hold a partial batch that recovery
    /// at the next open removes; until then nothing more is appended.
    poisoned: bool,
    /// Batches written since open: with group commit, fewer than the appends asked for.
    batches: u64,
    _lock: Option<File>,
}

/// Turns an I/O error into an `AuditError` that says what airlock was doing.
pub(crate) fn io_error(context: impl Into<String>) -> impl FnOnce(io::Error) -> AuditError {
    let context = context.into();
    move |source| AuditError::Io {
        context,
        source: Arc::new(source),
    }
}

/// Makes a rename or a new file durable: the directory entry must reach the disk too.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), AuditError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_error(format!("cannot sync directory {}", dir.display())))
}

/// Replaces `path` with `bytes` atomically and durably.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), AuditError> {
    let tmp = path.with_extension("tmp");
    let write = || -> io::Result<()> {
        let mut file = File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(io_error(format!("cannot write {}", path.display())))?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

impl AuditLog {
    /// Opens (or creates) the log in `dir`, takes the writer lock, checks every frame,
    /// rebuilds the index and checks the entries against the last signed checkpoint.
    ///
    /// A torn write at the very end (a crash during an append) is cut off, but only beyond
    /// the last checkpoint: damage to entries a checkpoint covers is never "repaired", it
    /// is an error that names the index, for `verify` and a human to look at.
    pub fn open(dir: &Path, options: LogOptions) -> Result<(AuditLog, Recovery), AuditError> {
        let segments_dir = dir.join("segments");
        let read_only = options.read_only;
        let (lock, latest, checkpoint_count, checkpoints, listed) = if read_only {
            let listed = segment::list(&segments_dir)
                .map_err(io_error(format!("cannot list {}", segments_dir.display())))?;
            if listed.is_empty() {
                return Err(AuditError::Refused(format!(
                    "there is no audit log in {} yet; `airlock serve` creates it",
                    dir.display()
                )));
            }
            let history = dir.join("checkpoints.log");
            let (latest, count) = if history.exists() {
                latest_checkpoint(read_checkpoints(&history, &options.verifier)?, &history)?
            } else {
                (None, 0)
            };
            (None, latest, count, None, listed)
        } else {
            std::fs::create_dir_all(&segments_dir).map_err(io_error(format!(
                "cannot create {}",
                segments_dir.display()
            )))?;
            let lock = File::create(dir.join("writer.lock")).map_err(io_error(format!(
                "cannot open {}",
                dir.join("writer.lock").display()
            )))?;
            if lock.try_lock().is_err() {
                return Err(AuditError::Locked(dir.display().to_string()));
            }
            let (latest, count, checkpoints) = open_checkpoints(dir, &options.verifier)?;
            let mut listed = segment::list(&segments_dir)
                .map_err(io_error(format!("cannot list {}", segments_dir.display())))?;
            if listed.is_empty() {
                let path = segments_dir.join(segment::file_name(0));
                create_segment(&path, 0)?;
                sync_dir(&segments_dir)?;
                listed.push((0, path));
            }
            (Some(lock), latest, count, Some(checkpoints), listed)
        };

        let mut index = Index::default();
        let mut torn: Option<(u64, u64, FrameFault)> = None;
        let last = listed.len() - 1;
        for (number, (first_index, path)) in listed.iter().enumerate() {
            if *first_index != index.len {
                return Err(AuditError::Damaged {
                    index: index.len,
                    what: format!(
                        "segment {} starts at index {first_index}, but the entries before it end at {}",
                        path.display(),
                        index.len
                    ),
                });
            }
            let mut reader = SegmentReader::open(path, MAGIC, *first_index)
                .map_err(io_error(format!("cannot read {}", path.display())))?
                .map_err(|what| AuditError::Damaged {
                    index: *first_index,
                    what: format!("{}: {what}", path.display()),
                })?;
            loop {
                let offset = reader.offset();
                let at = reader.next_index();
                match reader
                    .next_entry()
                    .map_err(io_error(format!("cannot read {}", path.display())))?
                {
                    None => break,
                    Some(Ok(entry)) => index.push(leaf_hash(entry), number as u32, offset),
                    Some(Err(fault)) if number == last => {
                        torn = Some((at, offset, fault));
                        break;
                    }
                    Some(Err(fault)) => {
                        return Err(AuditError::Damaged {
                            index: at,
                            what: fault.to_string(),
                        });
                    }
                }
            }
        }

        let checkpoint_size = latest.as_ref().map(|c| c.checkpoint.size);
        let mut recovery = Recovery {
            checkpoint_size,
            ..Recovery::default()
        };
        let (_, active_path) = &listed[last];
        let mut active_len = std::fs::metadata(active_path)
            .map_err(io_error(format!("cannot stat {}", active_path.display())))?
            .len();
        if let Some((at, offset, fault)) = torn.filter(|_| !read_only) {
            if checkpoint_size.is_some_and(|size| at < size) {
                return Err(AuditError::Damaged {
                    index: at,
                    what: format!(
                        "{fault}; a signed checkpoint covers this entry, so it is not cut off"
                    ),
                });
            }
            let file = OpenOptions::new()
                .write(true)
                .open(active_path)
                .map_err(io_error(format!("cannot open {}", active_path.display())))?;
            file.set_len(offset)
                .and_then(|()| file.sync_all())
                .map_err(io_error(format!(
                    "cannot truncate {}",
                    active_path.display()
                )))?;
            recovery.truncated_bytes = active_len - offset;
            active_len = offset;
        }
        let active = if read_only {
            None
        } else {
            Some(
                OpenOptions::new()
                    .append(true)
                    .open(active_path)
                    .map_err(io_error(format!("cannot open {}", active_path.display())))?,
            )
        };

        let log = AuditLog {
            dir: dir.to_path_buf(),
            options,
            segments: listed
                .into_iter()
                .map(|(first_index, path)| SegmentFile { first_index, path })
                .collect(),
            active,
            active_len,
            len: index.len,
            blocks: index.blocks,
            levels: index.levels,
            tail: index.tail,
            latest,
            checkpoints,
            checkpoint_count,
            block_cache: Mutex::new(None),
            poisoned: false,
            batches: 0,
            _lock: lock,
        };
        if let Some(latest) = &log.latest {
            let size = latest.checkpoint.size;
            if size > log.len {
                return Err(AuditError::Damaged {
                    index: log.len,
                    what: format!(
                        "the log holds {} entries but the last signed checkpoint covers {size}: entries {}..{} are missing",
                        log.len, log.len, size
                    ),
                });
            }
            if log.root_at(size)? != latest.checkpoint.root {
                return Err(AuditError::Damaged {
                    index: size.saturating_sub(1),
                    what: format!(
                        "the first {size} entries do not hash to the root of the last signed checkpoint; `airlock audit verify` finds the first bad entry"
                    ),
                });
            }
        }
        recovery.entries = log.len;
        Ok((log, recovery))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Durable batches (one `fdatasync` each) written since the log was opened.
    pub fn batches_written(&self) -> u64 {
        self.batches
    }

    pub fn verifier(&self) -> &VerifierKey {
        &self.options.verifier
    }

    pub fn latest_checkpoint(&self) -> Option<&SignedCheckpoint> {
        self.latest.as_ref()
    }

    /// Appends entries as one durable batch: one write and one `fdatasync` for all of
    /// them. Returns their indices once they are on disk. Each entry must be 1 byte to
    /// 1 MiB; a batch with a bad entry writes nothing.
    pub fn append<E: AsRef<[u8]>>(&mut self, entries: &[E]) -> Result<Range<u64>, AuditError> {
        if self.poisoned {
            return Err(AuditError::Poisoned);
        }
        if self.active.is_none() {
            return Err(AuditError::Refused(
                "the audit log was opened read-only".into(),
            ));
        }
        for (i, entry) in entries.iter().enumerate() {
            check_entry(entry.as_ref())
                .map_err(|what| AuditError::Refused(format!("entry {i} of the batch: {what}")))?;
        }
        let start = self.len;
        let result = self.write_batch(entries);
        if result.is_err() {
            self.poisoned = true;
        }
        result?;
        self.batches += 1;
        Ok(start..self.len)
    }

    fn write_batch<E: AsRef<[u8]>>(&mut self, entries: &[E]) -> Result<(), AuditError> {
        let mut buffer = Vec::with_capacity(entries.iter().map(|e| e.as_ref().len() + 8).sum());
        let mut hashes = Vec::with_capacity(entries.len());
        let mut blocks = Vec::new();
        let mut pending_len = self.active_len;
        for (i, entry) in entries.iter().enumerate() {
            let index = self.len + i as u64;
            if index.is_multiple_of(BLOCK) {
                let active_first = self.segments.last().expect("a segment").first_index;
                if pending_len >= self.options.segment_bytes && index > active_first {
                    self.write_active(&buffer)?;
                    buffer.clear();
                    self.roll(index)?;
                    pending_len = self.active_len;
                }
                blocks.push(((self.segments.len() - 1) as u32, pending_len));
            }
            let entry = entry.as_ref();
            segment::push_frame(&mut buffer, index, entry);
            pending_len += segment::FRAME_HEADER_LEN + entry.len() as u64;
            hashes.push(leaf_hash(entry));
        }
        self.write_active(&buffer)?;
        // On disk: now the index may move on.
        let mut blocks = blocks.into_iter();
        for hash in hashes {
            if self.len.is_multiple_of(BLOCK) {
                self.blocks
                    .push(blocks.next().expect("a block start per boundary"));
            }
            push_leaf(&mut self.levels, &mut self.tail, hash);
            self.len += 1;
        }
        Ok(())
    }

    fn write_active(&mut self, bytes: &[u8]) -> Result<(), AuditError> {
        if bytes.is_empty() {
            return Ok(());
        }
        let path = &self.segments.last().expect("a segment").path;
        let active = self.active.as_mut().expect("checked by append");
        active
            .write_all(bytes)
            .and_then(|()| active.sync_data())
            .map_err(io_error(format!("cannot append to {}", path.display())))?;
        self.active_len += bytes.len() as u64;
        Ok(())
    }

    fn roll(&mut self, first_index: u64) -> Result<(), AuditError> {
        let segments_dir = self.dir.join("segments");
        let path = segments_dir.join(segment::file_name(first_index));
        create_segment(&path, first_index)?;
        sync_dir(&segments_dir)?;
        self.active = Some(
            OpenOptions::new()
                .append(true)
                .open(&path)
                .map_err(io_error(format!("cannot open {}", path.display())))?,
        );
        self.active_len = segment::HEADER_LEN;
        self.segments.push(SegmentFile { first_index, path });
        Ok(())
    }

    /// The root of the first `size` entries.
    pub fn root_at(&self, size: u64) -> Result<Hash, AuditError> {
        if size > self.len {
            return Err(AuditError::Refused(format!(
                "the log has {} entries; there is no tree of size {size} yet",
                self.len
            )));
        }
        merkle::root(self, size)
    }

    pub fn root(&self) -> Result<Hash, AuditError> {
        self.root_at(self.len)
    }

    /// The audit path of entry `index` in the tree of `size` entries.
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, AuditError> {
        self.check_size(size)?;
        merkle::inclusion_proof(self, index, size)?.map_err(proof_refused)
    }

    /// The proof that the tree of `old` entries is a prefix of the tree of `new` entries.
    pub fn consistency_proof(&self, old: u64, new: u64) -> Result<Vec<Hash>, AuditError> {
        self.check_size(new)?;
        merkle::consistency_proof(self, old, new)?.map_err(proof_refused)
    }

    fn check_size(&self, size: u64) -> Result<(), AuditError> {
        if size > self.len {
            return Err(AuditError::Refused(format!(
                "tree size {size} is beyond the end of the log ({} entries)",
                self.len
            )));
        }
        Ok(())
    }

    /// Up to `max` entries from `from` on, with their indices.
    pub fn read(&self, from: u64, max: usize) -> Result<Vec<(u64, Vec<u8>)>, AuditError> {
        let mut out = Vec::new();
        if from >= self.len || max == 0 {
            return Ok(out);
        }
        let block = from >> BLOCK_BITS;
        let (mut number, offset) = self.blocks[block as usize];
        let mut reader = self.segment_reader(number as usize)?;
        reader
            .seek(offset, block << BLOCK_BITS)
            .map_err(io_error("cannot seek in a segment"))?;
        while out.len() < max && reader.next_index() < self.len {
            let at = reader.next_index();
            match reader
                .next_entry()
                .map_err(io_error("cannot read a segment"))?
            {
                Some(Ok(entry)) => {
                    if at >= from {
                        out.push((at, entry.to_vec()));
                    }
                }
                Some(Err(fault)) => {
                    return Err(AuditError::Damaged {
                        index: at,
                        what: fault.to_string(),
                    });
                }
                None => {
                    number += 1;
                    if number as usize >= self.segments.len() {
                        break;
                    }
                    reader = self.segment_reader(number as usize)?;
                }
            }
        }
        Ok(out)
    }

    /// One entry by index.
    pub fn entry(&self, index: u64) -> Result<Vec<u8>, AuditError> {
        self.read(index, 1)?
            .pop()
            .map(|(_, entry)| entry)
            .ok_or_else(|| {
                AuditError::Refused(format!(
                    "there is no entry {index}; the log has {} entries (0..{})",
                    self.len, self.len
                ))
            })
    }

    fn segment_reader(&self, number: usize) -> Result<SegmentReader, AuditError> {
        let segment = &self.segments[number];
        SegmentReader::open(&segment.path, MAGIC, segment.first_index)
            .map_err(io_error(format!("cannot read {}", segment.path.display())))?
            .map_err(|what| AuditError::Damaged {
                index: segment.first_index,
                what,
            })
    }

    /// Leaf hashes of one complete block, read back from its segment (cached: proofs for
    /// neighbouring entries touch the same block).
    fn block_leaves(&self, block: u64) -> Result<Arc<Vec<Hash>>, AuditError> {
        let mut cache = self.block_cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((cached, leaves)) = cache.as_ref()
            && *cached == block
        {
            return Ok(leaves.clone());
        }
        let entries = self.read(block << BLOCK_BITS, BLOCK as usize)?;
        let leaves: Arc<Vec<Hash>> = Arc::new(entries.iter().map(|(_, e)| leaf_hash(e)).collect());
        *cache = Some((block, leaves.clone()));
        Ok(leaves)
    }

    /// Signs a checkpoint for the current size, if the log grew since the last one, and
    /// publishes it: appended to the history, then the `checkpoint` file replaced. Returns
    /// the latest checkpoint either way.
    pub fn publish_checkpoint(&mut self) -> Result<SignedCheckpoint, AuditError> {
        if let Some(latest) = &self.latest
            && latest.checkpoint.size == self.len
        {
            return Ok(latest.clone());
        }
        let signer = self.options.signer.as_ref().ok_or_else(|| {
            AuditError::Refused("this log was opened without its signing key".into())
        })?;
        let checkpoint = Checkpoint {
            origin: signer.name().to_owned(),
            size: self.len,
            root: self.root()?,
        };
        let note = checkpoint.sign(signer)?;
        let mut frame = Vec::new();
        segment::push_frame(&mut frame, self.checkpoint_count, note.as_bytes());
        let history = self.dir.join("checkpoints.log");
        let checkpoints = self
            .checkpoints
            .as_mut()
            .ok_or_else(|| AuditError::Refused("the audit log was opened read-only".into()))?;
        checkpoints
            .write_all(&frame)
            .and_then(|()| checkpoints.sync_data())
            .map_err(io_error(format!("cannot append to {}", history.display())))?;
        self.checkpoint_count += 1;
        write_atomically(&self.dir.join("checkpoint"), note.as_bytes())?;
        let signed = SignedCheckpoint { checkpoint, note };
        self.latest = Some(signed.clone());
        Ok(signed)
    }
}

fn proof_refused(error: ProofError) -> AuditError {
    AuditError::Refused(error.to_string())
}

pub(crate) fn check_entry(entry: &[u8]) -> Result<(), String> {
    if entry.is_empty() {
        return Err("an entry cannot be empty".into());
    }
    if entry.len() > segment::MAX_ENTRY_BYTES {
        return Err(format!(
            "{} bytes; an entry is at most {} bytes (large payloads go outside the tree)",
            entry.len(),
            segment::MAX_ENTRY_BYTES
        ));
    }
    Ok(())
}

fn create_segment(path: &Path, first_index: u64) -> Result<(), AuditError> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(io_error(format!("cannot create {}", path.display())))?;
    file.write_all(&segment::header(MAGIC, first_index))
        .and_then(|()| file.sync_all())
        .map_err(io_error(format!("cannot write {}", path.display())))
}

/// Reads the checkpoint history, checks every signature and returns the latest, the
/// count, and the history file open for appending.
fn open_checkpoints(
    dir: &Path,
    verifier: &VerifierKey,
) -> Result<(Option<SignedCheckpoint>, u64, File), AuditError> {
    let path = dir.join("checkpoints.log");
    if !path.exists() {
        let tmp = dir.join("checkpoints.log.tmp");
        let mut file =
            File::create(&tmp).map_err(io_error(format!("cannot create {}", tmp.display())))?;
        file.write_all(&segment::header(CHECKPOINTS_MAGIC, 0))
            .and_then(|()| file.sync_all())
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(io_error(format!("cannot create {}", path.display())))?;
        sync_dir(dir)?;
    }
    let history = read_checkpoints(&path, verifier)?;
    let torn_at = history.torn_at;
    let (latest, count) = latest_checkpoint(history, &path)?;
    if let Some(end) = torn_at {
        // A checkpoint whose append was interrupted was never published: drop it.
        let file = OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(io_error(format!("cannot open {}", path.display())))?;
        file.set_len(end)
            .and_then(|()| file.sync_all())
            .map_err(io_error(format!("cannot truncate {}", path.display())))?;
    }
    let file = OpenOptions::new()
        .append(true)
        .open(&path)
        .map_err(io_error(format!("cannot open {}", path.display())))?;
    Ok((latest, count, file))
}

/// The last of a history of checkpoints, and how many there are. Every one must carry a
/// valid signature, and sizes never shrink: a log only grows.
fn latest_checkpoint(
    history: CheckpointHistory,
    path: &Path,
) -> Result<(Option<SignedCheckpoint>, u64), AuditError> {
    let mut latest: Option<SignedCheckpoint> = None;
    let count = history.entries.len() as u64;
    for (number, checkpoint) in history.entries.into_iter().enumerate() {
        let signed = checkpoint.map_err(|what| AuditError::Damaged {
            index: number as u64,
            what: format!("checkpoint #{number} in {}: {what}", path.display()),
        })?;
        if let Some(previous) = &latest
            && signed.checkpoint.size < previous.checkpoint.size
        {
            return Err(AuditError::Damaged {
                index: signed.checkpoint.size,
                what: format!(
                    "checkpoint #{number} (size {}) is smaller than the one before it (size {})",
                    signed.checkpoint.size, previous.checkpoint.size
                ),
            });
        }
        latest = Some(signed);
    }
    Ok((latest, count))
}

/// The checkpoint history as read from disk, each checked against the key.
#[derive(Debug)]
pub(crate) struct CheckpointHistory {
    pub entries: Vec<Result<SignedCheckpoint, String>>,
    /// Where an unfinished last frame starts, if any.
    pub torn_at: Option<u64>,
}

pub(crate) fn read_checkpoints(
    path: &Path,
    verifier: &VerifierKey,
) -> Result<CheckpointHistory, AuditError> {
    let mut reader = SegmentReader::open(path, CHECKPOINTS_MAGIC, 0)
        .map_err(io_error(format!("cannot read {}", path.display())))?
        .map_err(|what| AuditError::Damaged {
            index: 0,
            what: format!("{}: {what}", path.display()),
        })?;
    let mut entries = Vec::new();
    let mut torn_at = None;
    loop {
        let offset = reader.offset();
        match reader
            .next_entry()
            .map_err(io_error(format!("cannot read {}", path.display())))?
        {
            None => break,
            Some(Ok(note)) => entries.push(open_signed(note, verifier)),
            Some(Err(FrameFault::Torn { .. })) => {
                torn_at = Some(offset);
                break;
            }
            Some(Err(fault)) => {
                entries.push(Err(fault.to_string()));
                break;
            }
        }
    }
    Ok(CheckpointHistory { entries, torn_at })
}

fn open_signed(note: &[u8], verifier: &VerifierKey) -> Result<SignedCheckpoint, String> {
    let note = std::str::from_utf8(note).map_err(|_| "the note is not UTF-8".to_string())?;
    let checkpoint = Checkpoint::open(note, verifier).map_err(|e| e.to_string())?;
    Ok(SignedCheckpoint {
        checkpoint,
        note: note.to_owned(),
    })
}

/// The index being rebuilt while segments are read at open.
#[derive(Default)]
struct Index {
    len: u64,
    blocks: Vec<(u32, u64)>,
    levels: Vec<Vec<Hash>>,
    tail: Vec<Hash>,
}

impl Index {
    fn push(&mut self, hash: Hash, segment: u32, offset: u64) {
        if self.len.is_multiple_of(BLOCK) {
            self.blocks.push((segment, offset));
        }
        push_leaf(&mut self.levels, &mut self.tail, hash);
        self.len += 1;
    }
}

/// Adds a leaf hash; a completed block moves up into `levels`, carrying like a counter.
fn push_leaf(levels: &mut Vec<Vec<Hash>>, tail: &mut Vec<Hash>, hash: Hash) {
    tail.push(hash);
    if tail.len() as u64 != BLOCK {
        return;
    }
    let mut carry = reference_root(tail);
    tail.clear();
    let mut level = 0;
    loop {
        if levels.len() == level {
            levels.push(Vec::new());
        }
        levels[level].push(carry);
        let row = &levels[level];
        if row.len() % 2 == 1 {
            break;
        }
        carry = node_hash(&row[row.len() - 2], &row[row.len() - 1]);
        level += 1;
    }
}

impl SubtreeSource for AuditLog {
    type Error = AuditError;

    fn complete(&self, level: u32, k: u64) -> Result<Hash, AuditError> {
        if level >= BLOCK_BITS {
            return Ok(self.levels[(level - BLOCK_BITS) as usize][k as usize]);
        }
        let start = k << level;
        let block = start >> BLOCK_BITS;
        let within = (start % BLOCK) as usize;
        let width = 1usize << level;
        if block == self.len >> BLOCK_BITS {
            return Ok(reference_root(&self.tail[within..within + width]));
        }
        let leaves = self.block_leaves(block)?;
        Ok(reference_root(&leaves[within..within + width]))
    }
}

/// The log shared by threads, with group commit: while one thread writes and syncs a
/// batch, every append that arrives waits in a queue; when the sync is done, one of the
/// waiters writes the whole queue as the next batch, with one sync. A finished append
/// returns as soon as its batch is durable, without waiting for the log itself.
#[derive(Debug)]
pub struct SharedLog {
    log: Mutex<AuditLog>,
    queue: Mutex<Queue>,
    batch_done: Condvar,
}

#[derive(Debug, Default)]
struct Queue {
    pending: Vec<Pending>,
    writing: bool,
}

type Outcome = Arc<Mutex<Option<Result<Range<u64>, AuditError>>>>;

#[derive(Debug)]
struct Pending {
    entries: Vec<Vec<u8>>,
    outcome: Outcome,
}

impl SharedLog {
    pub fn new(log: AuditLog) -> SharedLog {
        SharedLog {
            log: Mutex::new(log),
            queue: Mutex::new(Queue::default()),
            batch_done: Condvar::new(),
        }
    }

    /// Appends `entries` durably, sharing the write and the sync with every other append
    /// waiting at the same time. Returns the indices they got.
    pub fn append(&self, entries: Vec<Vec<u8>>) -> Result<Range<u64>, AuditError> {
        let outcome: Outcome = Arc::default();
        let mut queue = lock(&self.queue);
        queue.pending.push(Pending {
            entries,
            outcome: outcome.clone(),
        });
        loop {
            if let Some(done) = lock(&outcome).take() {
                return done;
            }
            if !queue.writing {
                queue.writing = true;
                let batch = std::mem::take(&mut queue.pending);
                drop(queue);
                commit(&mut lock(&self.log), batch);
                queue = lock(&self.queue);
                queue.writing = false;
                self.batch_done.notify_all();
                continue;
            }
            queue = self
                .batch_done
                .wait(queue)
                .unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Runs `f` with the log (reads, proofs, checkpoints).
    pub fn with<T>(&self, f: impl FnOnce(&mut AuditLog) -> T) -> T {
        f(&mut lock(&self.log))
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// Writes every valid request of `batch` as one append; a request with a bad entry gets
/// its own error and the others still go through.
fn commit(log: &mut AuditLog, batch: Vec<Pending>) {
    let mut good = Vec::with_capacity(batch.len());
    for request in batch {
        match request
            .entries
            .iter()
            .enumerate()
            .try_for_each(|(i, e)| check_entry(e).map_err(|what| format!("entry {i}: {what}")))
        {
            Ok(()) => good.push(request),
            Err(what) => *lock(&request.outcome) = Some(Err(AuditError::Refused(what))),
        }
    }
    let all: Vec<&[u8]> = good
        .iter()
        .flat_map(|r| r.entries.iter().map(Vec::as_slice))
        .collect();
    match log.append(&all) {
        Ok(range) => {
            let mut next = range.start;
            for request in good {
                let end = next + request.entries.len() as u64;
                *lock(&request.outcome) = Some(Ok(next..end));
                next = end;
            }
        }
        Err(error) => {
            for request in good {
                *lock(&request.outcome) = Some(Err(error.clone()));
            }
        }
    }
}

//! Whole-log verification from the files and a public key alone: every frame, every
//! signature, and the tree recomputed from the entries against every signed checkpoint.
//! It shares no state with the writer (no index, no cache), so it checks the writer too.
//!
//! What it can say about a change depends on who made it. A change that does not also
//! recompute the frame checksum (a flipped byte, a deleted, moved or swapped entry, a
//! cut tail) is named at its exact index. A forger who recomputes checksums still cannot
//! produce the signed roots, so the change is caught at the first checkpoint after it,
//! and named as the range between the last checkpoint that still matches and that one.

use std::path::Path;

use crate::AuditError;
use crate::entry::AuditEntry;
use crate::hash::leaf_hash;
use crate::log::{io_error, read_checkpoints};
use crate::merkle::CompactTree;
use crate::note::{Checkpoint, VerifierKey};
use crate::segment::{self, FrameFault, MAGIC, SegmentReader};

#[derive(Debug, Clone, Copy, Default)]
pub struct VerifyOptions {
    /// Also decode every entry and require RFC 8785 canonical JSON of the current version.
    pub deep: bool,
}

/// The first thing found wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The first entry that cannot be trusted; None for a problem with a checkpoint that
    /// says nothing about a particular entry (a bad signature).
    pub index: Option<u64>,
    pub what: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.index {
            Some(index) => write!(f, "index {index}: {}", self.what),
            None => f.write_str(&self.what),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Entries read and hashed before stopping (all of them when there is no problem).
    pub entries: u64,
    /// Signed checkpoints whose root was recomputed and matched.
    pub checkpoints_matched: usize,
    /// The largest checkpoint that matched.
    pub latest: Option<Checkpoint>,
    /// Bytes of an unfinished write at the very end, beyond every checkpoint (what a
    /// crash leaves; the next start cuts it off). Not a problem.
    pub torn_tail_bytes: u64,
    pub problem: Option<Problem>,
}

impl VerifyReport {
    pub fn is_ok(&self) -> bool {
        self.problem.is_none()
    }
}

/// A checkpoint to check the tree against, and where it came from (for messages).
struct Anchor {
    source: String,
    checkpoint: Checkpoint,
}

/// Verifies the log in `dir` against `key`. `extra` are signed checkpoints kept elsewhere
/// (`--from-checkpoint`): the log must still contain exactly the tree they signed.
/// `Err` only when the files cannot be read at all.
pub fn verify_dir(
    dir: &Path,
    key: &VerifierKey,
    extra: &[(String, String)],
    options: VerifyOptions,
) -> Result<VerifyReport, AuditError> {
    let mut report = VerifyReport {
        entries: 0,
        checkpoints_matched: 0,
        latest: None,
        torn_tail_bytes: 0,
        problem: None,
    };
    let anchors = match anchors(dir, key, extra)? {
        Ok(anchors) => anchors,
        Err(problem) => {
            report.problem = Some(problem);
            return Ok(report);
        }
    };
    let covered = anchors.last().map_or(0, |a| a.checkpoint.size);

    let mut tree = CompactTree::new();
    let mut next_anchor = 0;
    let mut last_matched = 0u64;
    let fail = |report: &mut VerifyReport, index: Option<u64>, what: String| {
        report.problem = Some(Problem { index, what });
    };
    // Checks every anchor at the current size; false stops the scan.
    let mut check_anchors = |tree: &CompactTree,
                             report: &mut VerifyReport,
                             last_matched: &mut u64|
     -> bool {
        while next_anchor < anchors.len() && anchors[next_anchor].checkpoint.size == tree.size() {
            let anchor = &anchors[next_anchor];
            if tree.root() != anchor.checkpoint.root {
                fail(
                    report,
                    Some(*last_matched),
                    format!(
                        "entries {}..{} do not hash to the root signed in {} (size {}): an entry in that range was changed, removed or reordered",
                        last_matched, anchor.checkpoint.size, anchor.source, anchor.checkpoint.size
                    ),
                );
                return false;
            }
            *last_matched = tree.size();
            report.checkpoints_matched += 1;
            report.latest = Some(anchor.checkpoint.clone());
            next_anchor += 1;
        }
        true
    };
    if !check_anchors(&tree, &mut report, &mut last_matched) {
        return Ok(report);
    }

    let segments_dir = dir.join("segments");
    let segments = segment::list(&segments_dir)
        .map_err(io_error(format!("cannot read {}", segments_dir.display())))?;
    let count = segments.len();
    'segments: for (number, (first_index, path)) in segments.into_iter().enumerate() {
        if first_index != tree.size() {
            fail(
                &mut report,
                Some(tree.size()),
                format!(
                    "segment {} starts at index {first_index}, but the entries before it end at {}",
                    path.display(),
                    tree.size()
                ),
            );
            break;
        }
        let mut reader = match SegmentReader::open(&path, MAGIC, first_index)
            .map_err(io_error(format!("cannot read {}", path.display())))?
        {
            Ok(reader) => reader,
            Err(what) => {
                fail(
                    &mut report,
                    Some(first_index),
                    format!("{}: {what}", path.display()),
                );
                break;
            }
        };
        loop {
            let at = reader.next_index();
            match reader
                .next_entry()
                .map_err(io_error(format!("cannot read {}", path.display())))?
            {
                None => break,
                Some(Ok(entry)) => {
                    if options.deep
                        && let Err(error) = AuditEntry::decode(entry)
                    {
                        fail(&mut report, Some(at), error.to_string());
                        break 'segments;
                    }
                    tree.push(leaf_hash(entry));
                    if !check_anchors(&tree, &mut report, &mut last_matched) {
                        break 'segments;
                    }
                }
                Some(Err(FrameFault::Torn { bytes })) if number + 1 == count && at >= covered => {
                    report.torn_tail_bytes = bytes;
                    break;
                }
                Some(Err(fault)) => {
                    fail(&mut report, Some(at), fault.to_string());
                    break 'segments;
                }
            }
        }
    }
    report.entries = tree.size();
    if report.problem.is_none()
        && let Some(anchor) = anchors.get(next_anchor)
    {
        fail(
            &mut report,
            Some(tree.size()),
            format!(
                "the log ends after {} entries, but {} is signed at size {}: entries {}..{} are missing",
                tree.size(),
                anchor.source,
                anchor.checkpoint.size,
                tree.size(),
                anchor.checkpoint.size
            ),
        );
    }
    Ok(report)
}

/// Every checkpoint to check, each with a verified signature, ordered by size.
fn anchors(
    dir: &Path,
    key: &VerifierKey,
    extra: &[(String, String)],
) -> Result<Result<Vec<Anchor>, Problem>, AuditError> {
    let mut anchors = Vec::new();
    let history_path = dir.join("checkpoints.log");
    if history_path.exists() {
        let history = read_checkpoints(&history_path, key)?;
        for (number, checkpoint) in history.entries.into_iter().enumerate() {
            match checkpoint {
                Ok(signed) => anchors.push(Anchor {
                    source: format!("checkpoint #{number}"),
                    checkpoint: signed.checkpoint,
                }),
                Err(what) => {
                    return Ok(Err(Problem {
                        index: None,
                        what: format!("checkpoint #{number} in checkpoints.log: {what}"),
                    }));
                }
            }
        }
    }
    let mut notes: Vec<(String, String)> = extra.to_vec();
    let latest_path = dir.join("checkpoint");
    if let Ok(note) = std::fs::read_to_string(&latest_path) {
        notes.push(("the latest checkpoint file".into(), note));
    }
    for (source, note) in notes {
        match Checkpoint::open(&note, key) {
            Ok(checkpoint) => anchors.push(Anchor { source, checkpoint }),
            Err(error) => {
                return Ok(Err(Problem {
                    index: None,
                    what: format!("{source}: {error}"),
                }));
            }
        }
    }
    for anchor in &anchors {
        if anchor.checkpoint.origin != key.name() {
            return Ok(Err(Problem {
                index: None,
                what: format!(
                    "{} is for log {:?}, not {:?}",
                    anchor.source,
                    anchor.checkpoint.origin,
                    key.name()
                ),
            }));
        }
    }
    anchors.sort_by_key(|a| a.checkpoint.size);
    // Two signatures on different roots for one size: the key signed a fork.
    for pair in anchors.windows(2) {
        if pair[0].checkpoint.size == pair[1].checkpoint.size
            && pair[0].checkpoint.root != pair[1].checkpoint.root
        {
            return Ok(Err(Problem {
                index: None,
                what: format!(
                    "{} and {} sign different roots for size {}: the log was forked",
                    pair[0].source, pair[1].source, pair[0].checkpoint.size
                ),
            }));
        }
    }
    Ok(Ok(anchors))
}

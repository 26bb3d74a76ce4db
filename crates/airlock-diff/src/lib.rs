//! Unified diffs for airlock: parsing what agents submit, applying it strictly to base
//! content, and rendering diffs for changes submitted as text edits.
//!
//! Pure: no I/O, no processes, deterministic. Diffs come from agents and are treated as
//! hostile: no input makes these functions panic, memory stays linear in the input, and
//! parse errors name the 1-based diff line, what was wrong and what is accepted.
//! Paths are returned exactly as written; judging whether they are safe is the caller's job.

mod apply;
mod error;
mod parse;
mod patch;
mod path;
mod render;

pub use apply::apply;
pub use error::{ApplyError, HunkPlace, ParseError, ParseProblem};
pub use parse::{parse, parse_ref, parse_runs};
pub use patch::{
    ChangedRun, FileChangeKind, FilePatch, FilePatchRef, FileRuns, Hunk, HunkLine, HunkLineRef,
    HunkRef, LineKind, Patch, PatchRef, PatchRuns,
};
pub use render::render;

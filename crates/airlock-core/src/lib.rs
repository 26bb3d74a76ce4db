//! The domain of airlock: identifiers, configuration, change intake rules and the
//! pipeline state machine. Nothing here performs I/O; every function is deterministic
//! given its inputs, so the rules that decide a change can be tested without a disk,
//! a repository or a clock.

pub mod change;
pub mod config;
pub mod deploy;
pub mod event;
pub mod ids;
pub mod intake;
pub mod pipeline;
pub mod review;
pub mod units;

pub use change::{ChangeState, ChangedFile, FileOp, SourceForm, StepRecord, StepStatus, Verdict};
pub use event::{Actor, ActorKind, EventKind, NewEvent};
pub use ids::{ChangeId, Role, TokenId};

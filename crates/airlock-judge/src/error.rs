//! The crate's one error type: every message says what was wrong and what is accepted.

/// Why a configuration, an observation or a recording was refused.
///
/// A refused call changes nothing: the judge's evidence, its decision and its recording
/// are exactly as they were before the call.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum JudgeError {
    /// The configuration breaks a rule; `reason` names the key, the value and what is
    /// accepted.
    #[error("invalid canary judge configuration: {reason}")]
    InvalidConfig { reason: String },

    /// `observe` got a different number of samples than there are configured metrics.
    #[error(
        "expected one sample per configured metric ({expected}: {names}), in configuration order, \
         got {got}; pass None for a metric whose scrape is missing"
    )]
    WrongSampleCount {
        expected: usize,
        got: usize,
        names: String,
    },

    /// A counter value that is not a number from 0 to [`crate::MAX_COUNTER`].
    #[error(
        "metric `{metric}`: the {version} {field} counter is {value:?}; counters must be numbers \
         from 0 to 1e250 (pass None for a missing scrape instead of NaN)"
    )]
    InvalidCounter {
        metric: String,
        version: &'static str,
        field: &'static str,
        value: f64,
    },

    /// A time stamp that is not finite, or earlier than the previous observation's.
    #[error(
        "observation time {at_seconds} s is invalid: times must be finite and never earlier \
         than the previous observation ({previous_seconds} s)"
    )]
    InvalidTime {
        at_seconds: f64,
        previous_seconds: f64,
    },

    /// A recorded sample could not be replayed; the cause says why.
    #[error("recorded step {step} (`{label}`), sample {sample}: {source}")]
    Replay {
        step: usize,
        label: String,
        sample: usize,
        #[source]
        source: Box<JudgeError>,
    },
}

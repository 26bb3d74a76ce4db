//! The vocabulary every provider speaks: fencing tokens, environments, slots, versions,
//! traffic weights and what a slot served.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use airlock_proxy::LatencyHistogram;

use crate::RolloutError;

/// The deploy lease's fencing token: it only grows for a target, so a holder whose lease
/// was taken over has a smaller token than the high-water mark and is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FenceToken(pub u64);

impl fmt::Display for FenceToken {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(formatter)
    }
}

/// The deploy lease's fencing check, implemented by the server over its database (a
/// monotonic high-water mark per target).
///
/// Every provider action first calls `admit`; a stale token is refused
/// ([`RolloutError::StaleFence`]) before anything is touched. An implementation that cannot
/// reach its store refuses too ([`RolloutError::FenceUnavailable`]): never admit blindly.
pub trait Fence: Send + Sync {
    /// Admits `token` for `target` (recording it as the high-water mark if it is higher),
    /// or refuses it.
    fn admit(&self, target: &str, token: FenceToken) -> Result<(), RolloutError>;
}

/// Where a version runs: staging (Level 3) or production (Level 4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Environment {
    Staging,
    Production,
}

impl Environment {
    /// Both environments, staging first.
    pub const ALL: [Environment; 2] = [Environment::Staging, Environment::Production];

    /// `staging` or `production`: configuration keys and `AIRLOCK_ENVIRONMENT`.
    pub fn as_str(self) -> &'static str {
        match self {
            Environment::Staging => "staging",
            Environment::Production => "production",
        }
    }
}

impl fmt::Display for Environment {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// One of the three places a version runs in an environment.
///
/// `Stable` serves the current version; `Canary` the version being rolled out;
/// `Baseline` a fresh instance of the current version, as large as the canary, so the two
/// are compared like for like (same age, same share of traffic).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Slot {
    Stable,
    Baseline,
    Canary,
}

impl Slot {
    /// All three slots, in their order.
    pub const ALL: [Slot; 3] = [Slot::Stable, Slot::Baseline, Slot::Canary];

    /// `stable`, `baseline` or `canary`: route names, HAProxy's default server names,
    /// `AIRLOCK_SLOT`.
    pub fn as_str(self) -> &'static str {
        match self {
            Slot::Stable => "stable",
            Slot::Baseline => "baseline",
            Slot::Canary => "canary",
        }
    }

    /// The slot a name stands for, if any.
    pub fn parse(name: &str) -> Option<Slot> {
        Slot::ALL.into_iter().find(|slot| slot.as_str() == name)
    }
}

impl fmt::Display for Slot {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// A version to run: a commit and a directory holding its checked-out files, prepared by
/// the caller. The provider may build inside `tree`, and runs the service with it as the
/// working directory.
///
/// `commit` must be 4 to 64 lowercase hexadecimal digits (checked by every provider before
/// use: it becomes part of file names, environment variables and PromQL label values).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Version {
    pub commit: String,
    pub tree: PathBuf,
}

impl Version {
    /// Checks the commit id's form (see the type's documentation).
    pub fn validate(&self) -> Result<(), RolloutError> {
        validate_commit(&self.commit)
    }
}

/// Checks that `commit` is 4 to 64 lowercase hexadecimal digits.
pub(crate) fn validate_commit(commit: &str) -> Result<(), RolloutError> {
    let well_formed = (4..=64).contains(&commit.len())
        && commit
            .bytes()
            .all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte));
    if well_formed {
        Ok(())
    } else {
        Err(RolloutError::InvalidCommit {
            commit: commit.chars().take(80).collect(),
        })
    }
}

/// Traffic percentages per slot. Weights given to a provider sum to exactly 100; weights
/// read back from a router may not (a stopped slot reads 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Weights {
    pub stable: u32,
    pub baseline: u32,
    pub canary: u32,
}

impl Weights {
    /// All traffic on the stable version.
    pub const STABLE_ONLY: Weights = Weights {
        stable: 100,
        baseline: 0,
        canary: 0,
    };

    /// The weights of a canary step of `canary` percent: the canary gets `canary`, a fresh
    /// baseline of the previous version as much as fits beside it (`min(canary,
    /// 100 - canary)`), and the stable version the rest. Fails for more than 100.
    pub fn step(canary: u32) -> Result<Weights, RolloutError> {
        if canary > 100 {
            return Err(RolloutError::InvalidWeights {
                weights: Weights {
                    stable: 0,
                    baseline: 0,
                    canary,
                },
                reason: "a canary step is a percentage from 0 to 100".to_owned(),
            });
        }
        let baseline = canary.min(100 - canary);
        Ok(Weights {
            stable: 100 - canary - baseline,
            baseline,
            canary,
        })
    }

    /// The weight of one slot.
    pub fn get(&self, slot: Slot) -> u32 {
        match slot {
            Slot::Stable => self.stable,
            Slot::Baseline => self.baseline,
            Slot::Canary => self.canary,
        }
    }

    /// Sets the weight of one slot.
    pub fn set(&mut self, slot: Slot, weight: u32) {
        match slot {
            Slot::Stable => self.stable = weight,
            Slot::Baseline => self.baseline = weight,
            Slot::Canary => self.canary = weight,
        }
    }

    /// The sum of the three weights (no overflow for any value).
    pub fn total(&self) -> u64 {
        u64::from(self.stable) + u64::from(self.baseline) + u64::from(self.canary)
    }

    /// Checks that the weights are percentages summing to exactly 100.
    pub fn validate(&self) -> Result<(), RolloutError> {
        if self.total() != 100 {
            return Err(RolloutError::InvalidWeights {
                weights: *self,
                reason: format!(
                    "they sum to {}; the stable, baseline and canary percentages must sum to 100",
                    self.total()
                ),
            });
        }
        Ok(())
    }
}

impl fmt::Display for Weights {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            formatter,
            "stable {} %, baseline {} %, canary {} %",
            self.stable, self.baseline, self.canary
        )
    }
}

/// What one slot served, cumulative since its process started (callers subtract snapshots
/// with [`Observed::since`]).
///
/// `latency` is the full histogram when the source has one (the built-in proxy); `p99`
/// is a source's own figure when it has no histogram (Prometheus: a quantile over the
/// query's window, not cumulative). `None` in either means *no figure*, never zero.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Observed {
    pub requests: u64,
    pub errors: u64,
    pub latency: Option<LatencyHistogram>,
    pub p99: Option<Duration>,
}

impl Observed {
    /// What was served between `earlier` and `self`, two snapshots of the same slot.
    ///
    /// If a counter went backwards, the slot's process was replaced in between (counters
    /// restart at zero) and `self` alone is the window. The latency histogram is
    /// subtracted the same way; `p99` is then the window's quantile, or the source's own
    /// figure when there is no histogram.
    pub fn since(&self, earlier: &Observed) -> Observed {
        let restarted = self.requests < earlier.requests || self.errors < earlier.errors;
        if restarted {
            return self.clone();
        }
        let latency = match (&self.latency, &earlier.latency) {
            (Some(later), Some(earlier)) => Some(later.since(earlier)),
            (later, _) => later.clone(),
        };
        let p99 = match &latency {
            Some(histogram) => histogram.quantile(0.99),
            None => self.p99,
        };
        Observed {
            requests: self.requests - earlier.requests,
            errors: self.errors - earlier.errors,
            latency,
            p99,
        }
    }

    /// The 99th percentile latency: from the histogram if there is one, else the source's
    /// figure; `None` when neither exists.
    pub fn p99(&self) -> Option<Duration> {
        match &self.latency {
            Some(histogram) if histogram.count() > 0 => histogram.quantile(0.99),
            Some(_) => None,
            None => self.p99,
        }
    }
}

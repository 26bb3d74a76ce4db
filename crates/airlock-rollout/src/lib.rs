//! Deploy providers for Levels 3 and 4: running versions as local processes, shifting
//! traffic between the stable, baseline and canary slots (the built-in proxy, HAProxy's
//! runtime API, or an operator's command), reading per-slot metrics (the proxy or
//! Prometheus), and the absolute guards a canary must pass.
//!
//! Every provider action first asks a [`Fence`] to admit its fencing token, so a stale
//! holder of the deploy lease is refused before anything is touched. The API is
//! blocking; the server calls it from `spawn_blocking`.

mod builtin;
mod child;
mod command;
mod error;
mod guards;
mod haproxy;
mod process;
mod prometheus;
mod provider;
mod router;
#[cfg(feature = "testing")]
pub mod testing;
mod types;

pub use builtin::{BuiltinProxy, BuiltinProxyOptions};
pub use command::{CommandOptions, CommandProvider};
pub use error::RolloutError;
pub use guards::{GuardVerdict, Guards};
pub use haproxy::{Haproxy, HaproxyBackend, HaproxyOptions, HaproxySocket};
pub use process::{ProcessOptions, Service, ServiceRunner};
pub use prometheus::{PrometheusQueries, PrometheusSource};
pub use provider::ProcessProvider;
pub use router::Router;
pub use types::{Environment, Fence, FenceToken, Observed, Slot, Version, Weights};

use std::collections::BTreeMap;

/// A way to run versions and shift traffic between them, for one deploy target.
///
/// Every method that changes something takes the caller's fencing token and asks the
/// provider's [`Fence`] first: a stale token is refused with
/// [`RolloutError::StaleFence`] before anything is touched. Methods block; call them from
/// a blocking thread.
pub trait Provider: Send + Sync + std::fmt::Debug {
    /// The provider's configuration name: `local`, `haproxy` or `command`.
    fn name(&self) -> &'static str;

    /// Builds (if configured) and starts `version` in `slot`, replacing what ran there, and
    /// returns once it is ready. On error the previous occupant keeps serving. A slot that
    /// ran nothing starts at weight 0; a replaced one keeps its weight, so redeploying the
    /// stable version does not drop its traffic.
    fn deploy(
        &self,
        token: FenceToken,
        environment: Environment,
        slot: Slot,
        version: &Version,
    ) -> Result<(), RolloutError>;

    /// Sets traffic, then reads back what is in force and returns it; if that differs
    /// from `weights`, [`RolloutError::WeightMismatch`] (traffic may then be split as the
    /// error's `actual` says). A weight above 0 for a slot that runs nothing is refused
    /// before anything is touched.
    fn set_weights(
        &self,
        token: FenceToken,
        environment: Environment,
        weights: Weights,
    ) -> Result<Weights, RolloutError>;

    /// The canary becomes the stable version at 100 %; the baseline and the old stable
    /// version stop. Fails with [`RolloutError::SlotEmpty`] when no canary runs.
    fn promote(&self, token: FenceToken, environment: Environment) -> Result<(), RolloutError>;

    /// Stops a slot: its weight goes to 0 first, then its process stops. Stopping an empty
    /// slot succeeds.
    fn stop(
        &self,
        token: FenceToken,
        environment: Environment,
        slot: Slot,
    ) -> Result<(), RolloutError>;

    /// Where this environment's traffic enters (for staging: what integration tests get as
    /// `AIRLOCK_STAGING_URL`), if the provider knows.
    fn url(&self, environment: Environment) -> Option<String>;

    /// Cumulative per-slot measurements, when the provider measures (the built-in proxy
    /// does); `Ok(None)` when it does not, and metrics must come from Prometheus.
    fn observe(
        &self,
        environment: Environment,
    ) -> Result<Option<BTreeMap<Slot, Observed>>, RolloutError>;

    /// Stops everything this provider started. Called once, at shutdown; never fails.
    fn shutdown(&self);
}

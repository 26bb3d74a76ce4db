//! The seam between running versions and sending them traffic: a router points each slot
//! of an environment at an address and splits traffic by weight.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;

use crate::{Environment, Observed, RolloutError, Slot, Weights};

/// Sends an environment's traffic to the slots' addresses by weight.
///
/// Implementations: `BuiltinProxy` (airlock's own proxy) and `Haproxy` (HAProxy's runtime
/// API). A router holds no opinion on fencing; the provider checks the fence before
/// calling it. Every method blocks.
pub trait Router: Send + Sync + fmt::Debug {
    /// The provider name this router makes: `local` or `haproxy`.
    fn provider_name(&self) -> &'static str;

    /// Points `slot` at `addr`. A slot that had no address starts at weight 0; one that
    /// had keeps its weight, so traffic moves to the new address at once.
    fn point(
        &self,
        environment: Environment,
        slot: Slot,
        addr: SocketAddr,
    ) -> Result<(), RolloutError>;

    /// Takes `slot` out: weight 0, no address. Removing an empty slot succeeds.
    fn remove(&self, environment: Environment, slot: Slot) -> Result<(), RolloutError>;

    /// Sets the three weights (percentages). Does not verify: read them back with
    /// [`Router::weights`].
    fn set_weights(&self, environment: Environment, weights: Weights) -> Result<(), RolloutError>;

    /// The weights in force, read from the router itself (not from what was last set): a
    /// slot without an address, or one the router has taken out of service, reads 0.
    fn weights(&self, environment: Environment) -> Result<Weights, RolloutError>;

    /// Where the environment's traffic enters, if known.
    fn url(&self, environment: Environment) -> Option<String>;

    /// Cumulative per-slot measurements, if the router measures.
    fn observe(
        &self,
        environment: Environment,
    ) -> Result<Option<BTreeMap<Slot, Observed>>, RolloutError>;

    /// Stops whatever the router itself runs (the built-in proxy's listeners). Never fails.
    fn shutdown(&self) {}
}

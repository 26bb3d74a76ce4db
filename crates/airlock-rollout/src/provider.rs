//! The `local` and `haproxy` providers: versions run as local processes
//! ([`ServiceRunner`]), traffic shifted by a [`Router`] (the built-in proxy or HAProxy).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use crate::router::Router;
use crate::{
    Environment, Fence, FenceToken, Observed, Provider, RolloutError, ServiceRunner, Slot, Version,
    Weights,
};

/// A [`Provider`] that runs each slot's version as a local process and points a router at
/// it.
///
/// Actions are serialized per provider (one lock): deployments are serial per target
/// anyway, and a promotion must not interleave with a deploy into the slots it moves.
/// Every action asks the fence first, and a deploy asks again after its (possibly long)
/// build and start, before the router is touched: a lease lost meanwhile stops the new
/// process and changes nothing.
pub struct ProcessProvider {
    target: String,
    fence: Arc<dyn Fence>,
    runner: ServiceRunner,
    router: Box<dyn Router>,
    actions: Mutex<()>,
}

impl fmt::Debug for ProcessProvider {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("ProcessProvider")
            .field("target", &self.target)
            .field("runner", &self.runner)
            .field("router", &self.router)
            .finish_non_exhaustive()
    }
}

impl ProcessProvider {
    /// A provider for deploy target `target`, fenced by `fence`, running versions with
    /// `runner` and routing with `router`. Its name is the router's provider name.
    pub fn new(
        target: impl Into<String>,
        fence: Arc<dyn Fence>,
        runner: ServiceRunner,
        router: Box<dyn Router>,
    ) -> ProcessProvider {
        ProcessProvider {
            target: target.into(),
            fence,
            runner,
            router,
            actions: Mutex::new(()),
        }
    }

    /// The service runner (which services run where).
    pub fn runner(&self) -> &ServiceRunner {
        &self.runner
    }

    /// The router.
    pub fn router(&self) -> &dyn Router {
        self.router.as_ref()
    }

    /// The weights in force, read from the router. A read: no fencing token.
    pub fn weights(&self, environment: Environment) -> Result<Weights, RolloutError> {
        self.router.weights(environment)
    }

    /// Reads the weights in force and fails with [`RolloutError::WeightMismatch`] if they
    /// are not `wanted`: a check that nobody changed them behind airlock's back.
    pub fn verify_weights(
        &self,
        environment: Environment,
        wanted: Weights,
    ) -> Result<Weights, RolloutError> {
        let actual = self.router.weights(environment)?;
        if actual != wanted {
            return Err(RolloutError::WeightMismatch { wanted, actual });
        }
        Ok(actual)
    }
}

impl Provider for ProcessProvider {
    fn name(&self) -> &'static str {
        self.router.provider_name()
    }

    fn deploy(
        &self,
        token: FenceToken,
        environment: Environment,
        slot: Slot,
        version: &Version,
    ) -> Result<(), RolloutError> {
        let _serial = self.actions.lock().unwrap_or_else(PoisonError::into_inner);
        self.fence.admit(&self.target, token)?;
        let service = self.runner.start(environment, slot, version)?;
        // The build and start may have taken minutes; the lease may be gone. Dropping the
        // new service stops it.
        self.fence.admit(&self.target, token)?;
        if let Err(error) = self.router.point(environment, slot, service.addr()) {
            // A router that changes an address in several commands (HAProxy) may have
            // taken part of the change: point the slot back at what served before the new
            // service stops. Best effort; the first error is the one to report.
            if let Some(previous) = self.runner.addr(environment, slot) {
                let _ = self.router.point(environment, slot, previous);
            }
            return Err(error);
        }
        if let Some(previous) = self.runner.install(service) {
            previous.stop()?;
        }
        Ok(())
    }

    fn set_weights(
        &self,
        token: FenceToken,
        environment: Environment,
        weights: Weights,
    ) -> Result<Weights, RolloutError> {
        let _serial = self.actions.lock().unwrap_or_else(PoisonError::into_inner);
        self.fence.admit(&self.target, token)?;
        weights.validate()?;
        for slot in Slot::ALL {
            if weights.get(slot) > 0 && self.runner.addr(environment, slot).is_none() {
                return Err(RolloutError::SlotEmpty { environment, slot });
            }
        }
        self.router.set_weights(environment, weights)?;
        self.verify_weights(environment, weights)
    }

    fn promote(&self, token: FenceToken, environment: Environment) -> Result<(), RolloutError> {
        let _serial = self.actions.lock().unwrap_or_else(PoisonError::into_inner);
        self.fence.admit(&self.target, token)?;
        let canary =
            self.runner
                .addr(environment, Slot::Canary)
                .ok_or(RolloutError::SlotEmpty {
                    environment,
                    slot: Slot::Canary,
                })?;
        // The stable slot points at the canary's process first (keeping its weight), so
        // every request from then on reaches the new version; the runner's books follow
        // at once, since from here on nothing routes to the old stable process (dropped,
        // it stops). Then all weight goes to the stable slot and the others are emptied.
        // An error past this point leaves the new version serving as stable.
        self.router.point(environment, Slot::Stable, canary)?;
        let old_stable = self
            .runner
            .move_slot(environment, Slot::Canary, Slot::Stable)?;
        self.router.set_weights(environment, Weights::STABLE_ONLY)?;
        self.router.remove(environment, Slot::Canary)?;
        self.router.remove(environment, Slot::Baseline)?;
        self.verify_weights(environment, Weights::STABLE_ONLY)?;
        let baseline = self.runner.take(environment, Slot::Baseline);
        // Both got SIGTERM at once, so the stop takes one stop timeout, not two.
        for service in [&old_stable, &baseline].into_iter().flatten() {
            service.terminate();
        }
        for service in [old_stable, baseline].into_iter().flatten() {
            service.stop()?;
        }
        Ok(())
    }

    fn stop(
        &self,
        token: FenceToken,
        environment: Environment,
        slot: Slot,
    ) -> Result<(), RolloutError> {
        let _serial = self.actions.lock().unwrap_or_else(PoisonError::into_inner);
        self.fence.admit(&self.target, token)?;
        self.router.remove(environment, slot)?;
        self.runner.stop(environment, slot)
    }

    fn url(&self, environment: Environment) -> Option<String> {
        self.router.url(environment)
    }

    fn observe(
        &self,
        environment: Environment,
    ) -> Result<Option<BTreeMap<Slot, Observed>>, RolloutError> {
        self.router.observe(environment)
    }

    fn shutdown(&self) {
        self.runner.stop_all();
        self.router.shutdown();
    }
}

//! The `local` provider's router: airlock's own weighted proxy (`airlock-proxy`), one per
//! environment, which also measures every slot it routes to.

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::sync::{Mutex, PoisonError};

use airlock_proxy::{Proxy, Route};
use tokio::runtime::Handle;

use crate::router::Router;
use crate::{Environment, Observed, RolloutError, Slot, Weights};

/// Where the built-in proxies listen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BuiltinProxyOptions {
    /// Default 127.0.0.1:0 (any free port; [`Router::url`] tells which).
    pub staging: SocketAddr,
    /// Default 127.0.0.1:8080.
    pub production: SocketAddr,
}

impl Default for BuiltinProxyOptions {
    fn default() -> BuiltinProxyOptions {
        BuiltinProxyOptions {
            staging: SocketAddr::from(([127, 0, 0, 1], 0)),
            production: SocketAddr::from(([127, 0, 0, 1], 8080)),
        }
    }
}

/// One environment's proxy and what each slot points at.
#[derive(Debug)]
struct EnvironmentProxy {
    proxy: Proxy,
    /// The route table as airlock last set it, by slot. Changes are made under this lock
    /// and pushed whole to the proxy, so two changes never interleave.
    routes: Mutex<BTreeMap<Slot, (SocketAddr, u32)>>,
}

impl EnvironmentProxy {
    fn update(
        &self,
        environment: Environment,
        change: impl FnOnce(&mut BTreeMap<Slot, (SocketAddr, u32)>),
    ) -> Result<(), RolloutError> {
        let mut routes = self.routes.lock().unwrap_or_else(PoisonError::into_inner);
        let mut next = routes.clone();
        change(&mut next);
        let table = next
            .iter()
            .map(|(slot, &(addr, weight))| Route {
                name: slot.as_str().to_owned(),
                addr,
                weight,
            })
            .collect();
        self.proxy
            .set_routes(table)
            .map_err(|error| RolloutError::Proxy {
                environment,
                action: "set its routes",
                message: error.to_string(),
            })?;
        *routes = next;
        Ok(())
    }
}

/// A [`Router`] over airlock's built-in proxy: one [`Proxy`] per environment, its routes
/// named after the slots. It measures: [`Router::observe`] reads the proxy's per-route
/// counters and latency histogram.
///
/// The proxies serve on the tokio runtime whose handle is given, until
/// [`Router::shutdown`] or drop.
#[derive(Debug)]
pub struct BuiltinProxy {
    staging: EnvironmentProxy,
    production: EnvironmentProxy,
}

impl BuiltinProxy {
    /// Binds the configured addresses and starts both proxies on `runtime`. Fails if an
    /// address cannot be bound (in use, not local).
    pub fn start(
        options: BuiltinProxyOptions,
        runtime: &Handle,
    ) -> Result<BuiltinProxy, RolloutError> {
        let bind = |environment: Environment, addr: SocketAddr| {
            TcpListener::bind(addr).map_err(|source| RolloutError::Bind {
                environment,
                addr,
                source,
            })
        };
        BuiltinProxy::with_listeners(
            bind(Environment::Staging, options.staging)?,
            bind(Environment::Production, options.production)?,
            runtime,
        )
    }

    /// Starts both proxies on listeners the caller bound (so tests never race for a
    /// port).
    pub fn with_listeners(
        staging: TcpListener,
        production: TcpListener,
        runtime: &Handle,
    ) -> Result<BuiltinProxy, RolloutError> {
        let start = |environment: Environment, listener: TcpListener| {
            let proxy = Proxy::start(listener, runtime).map_err(|error| RolloutError::Proxy {
                environment,
                action: "start",
                message: error.to_string(),
            })?;
            Ok::<_, RolloutError>(EnvironmentProxy {
                proxy,
                routes: Mutex::new(BTreeMap::new()),
            })
        };
        Ok(BuiltinProxy {
            staging: start(Environment::Staging, staging)?,
            production: start(Environment::Production, production)?,
        })
    }

    fn environment(&self, environment: Environment) -> &EnvironmentProxy {
        match environment {
            Environment::Staging => &self.staging,
            Environment::Production => &self.production,
        }
    }

    /// Where an environment's proxy listens.
    pub fn local_addr(&self, environment: Environment) -> SocketAddr {
        self.environment(environment).proxy.local_addr()
    }
}

impl Router for BuiltinProxy {
    fn provider_name(&self) -> &'static str {
        "local"
    }

    fn point(
        &self,
        environment: Environment,
        slot: Slot,
        addr: SocketAddr,
    ) -> Result<(), RolloutError> {
        self.environment(environment).update(environment, |routes| {
            let weight = routes.get(&slot).map_or(0, |&(_, weight)| weight);
            routes.insert(slot, (addr, weight));
        })
    }

    fn remove(&self, environment: Environment, slot: Slot) -> Result<(), RolloutError> {
        self.environment(environment).update(environment, |routes| {
            routes.remove(&slot);
        })
    }

    fn set_weights(&self, environment: Environment, weights: Weights) -> Result<(), RolloutError> {
        let proxy = self.environment(environment);
        {
            let routes = proxy.routes.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(slot) = Slot::ALL
                .into_iter()
                .find(|&slot| weights.get(slot) > 0 && !routes.contains_key(&slot))
            {
                return Err(RolloutError::SlotEmpty { environment, slot });
            }
        }
        proxy.update(environment, |routes| {
            for (slot, (_, weight)) in routes.iter_mut() {
                *weight = weights.get(*slot);
            }
        })
    }

    fn weights(&self, environment: Environment) -> Result<Weights, RolloutError> {
        let mut weights = Weights {
            stable: 0,
            baseline: 0,
            canary: 0,
        };
        for route in self.environment(environment).proxy.routes() {
            let slot = Slot::parse(&route.name).ok_or_else(|| RolloutError::Proxy {
                environment,
                action: "report its routes",
                message: format!(
                    "it routes to `{}`, which is no slot (stable, baseline, canary)",
                    route.name
                ),
            })?;
            weights.set(slot, route.weight);
        }
        Ok(weights)
    }

    fn url(&self, environment: Environment) -> Option<String> {
        Some(format!("http://{}", self.local_addr(environment)))
    }

    /// Every slot the proxy ever routed to, with its counters since the proxy started
    /// (they continue across a slot's redeployments; subtract snapshots).
    fn observe(
        &self,
        environment: Environment,
    ) -> Result<Option<BTreeMap<Slot, Observed>>, RolloutError> {
        let observed = self
            .environment(environment)
            .proxy
            .metrics()
            .into_iter()
            .filter_map(|(name, metrics)| {
                let slot = Slot::parse(&name)?;
                let p99 = metrics.latency.quantile(0.99);
                Some((
                    slot,
                    Observed {
                        requests: metrics.requests,
                        errors: metrics.errors,
                        latency: Some(metrics.latency),
                        p99,
                    },
                ))
            })
            .collect();
        Ok(Some(observed))
    }

    fn shutdown(&self) {
        self.staging.proxy.shutdown();
        self.production.proxy.shutdown();
    }
}

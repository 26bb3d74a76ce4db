//! `Proxy`: the serving handle, its routing table and the per-route metrics registry.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use tokio::runtime::Handle;

use crate::forward::{self, BackendPool, ProxyBody};
use crate::routing::{self, RouteTable};
use crate::server::Server;
use crate::{ProxyError, Route, VersionMetrics, lock};

/// Timeouts and pool size of a [`Proxy`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProxyConfig {
    /// Longest wait for a TCP connection to a backend; past it the client gets 504 and
    /// the route a connect failure. Default 2 s.
    pub connect_timeout: Duration,
    /// Longest wait, once the request is on its way, for the backend's response head;
    /// past it the client gets 504 and the route a connect failure. It includes the
    /// upload of the request body when the backend reads all of it before answering;
    /// response bodies are not timed. Default 30 s.
    pub response_head_timeout: Duration,
    /// Idle keep-alive connections kept per backend address. Default 32.
    pub max_idle_per_backend: usize,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            connect_timeout: Duration::from_secs(2),
            response_head_timeout: Duration::from_secs(30),
            max_idle_per_backend: 32,
        }
    }
}

/// A running weighted reverse proxy (HTTP/1.1, plain TCP).
///
/// Each request goes to the route picked by smooth weighted round-robin over the table
/// in force: starting from any [`Proxy::set_routes`], every block of `sum(weights)`
/// consecutive requests gives each route exactly its weight. The method, target,
/// headers (less hop-by-hop ones, plus `x-forwarded-for`) and body are forwarded; bodies
/// stream both ways. Failures answer: 503 "no backend" when no route has a positive
/// weight (counted nowhere), 502 when the backend refuses or resets, 504 on a connect or
/// response-head timeout (both counted as the route's `connect_failures`), 400 when the
/// client's own request body fails mid-stream (counted as a request only).
///
/// Sharing: `Proxy` is `Send + Sync`; wrap it in an `Arc` to share. The hot path takes
/// the table lock only to pick a route, and the route's own metrics lock once per
/// response.
pub struct Proxy {
    server: Server,
    shared: Arc<Shared>,
}

struct Shared {
    table: Mutex<RouteTable>,
    /// Every name ever routed, with its cell; cells outlive their routes. Lock order:
    /// `registry` before `table`; the request path takes only `table`.
    registry: Mutex<BTreeMap<String, Arc<Mutex<VersionMetrics>>>>,
    pool: Arc<BackendPool>,
}

impl Proxy {
    /// Serves HTTP/1.1 on `listener` (already bound, so callers and tests never race)
    /// from tasks spawned on `runtime`, with [`ProxyConfig::default`] and an empty table
    /// (every request gets 503 until [`Proxy::set_routes`]).
    ///
    /// Fails only if the listener cannot be made non-blocking and registered with the
    /// runtime. The serving tasks run until [`Proxy::shutdown`] or drop.
    pub fn start(listener: std::net::TcpListener, runtime: &Handle) -> Result<Proxy, ProxyError> {
        Proxy::start_with_config(listener, runtime, ProxyConfig::default())
    }

    /// [`Proxy::start`] with explicit timeouts and pool size.
    pub fn start_with_config(
        listener: std::net::TcpListener,
        runtime: &Handle,
        config: ProxyConfig,
    ) -> Result<Proxy, ProxyError> {
        let (shutdown, signal) = tokio::sync::watch::channel(false);
        let shared = Arc::new(Shared {
            table: Mutex::new(RouteTable::default()),
            registry: Mutex::new(BTreeMap::new()),
            pool: Arc::new(BackendPool::new(
                config.max_idle_per_backend,
                config.connect_timeout,
                config.response_head_timeout,
                signal,
            )),
        });
        let handler_state = Arc::clone(&shared);
        let server = Server::start(listener, runtime, shutdown, move |request, client| {
            handle(Arc::clone(&handler_state), request, client)
        })?;
        Ok(Proxy { server, shared })
    }

    /// The address the proxy serves on.
    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// Replaces the whole routing table atomically; the next request picks from the new
    /// table, and the round-robin starts afresh (so the first `sum(weights)` requests
    /// after the change split exactly by the new weights).
    ///
    /// Names must be unique and non-empty: otherwise returns
    /// [`ProxyError::EmptyRouteName`] or [`ProxyError::DuplicateRouteName`] and changes
    /// nothing. An empty table, or all weights 0, is allowed: every request then gets 503
    /// "no backend". A name seen before continues its counters.
    pub fn set_routes(&self, routes: Vec<Route>) -> Result<(), ProxyError> {
        routing::validate(&routes)?;
        let mut registry = lock(&self.shared.registry);
        let metrics = routes
            .iter()
            .map(|route| Arc::clone(registry.entry(route.name.clone()).or_default()))
            .collect();
        let addrs: Vec<SocketAddr> = routes.iter().map(|route| route.addr).collect();
        *lock(&self.shared.table) = RouteTable::new(routes, metrics);
        drop(registry);
        self.shared.pool.retain(&addrs);
        Ok(())
    }

    /// The table in force, in the order it was set.
    pub fn routes(&self) -> Vec<Route> {
        lock(&self.shared.table).routes().to_vec()
    }

    /// Cumulative measurements per route name since the proxy started, for every name
    /// ever set (zero until its first request). Counters never reset and survive the
    /// route's removal; take differences with [`VersionMetrics::since`]. Each entry is a
    /// consistent snapshot of its route (see [`VersionMetrics`]); entries of different
    /// routes are read one after the other.
    pub fn metrics(&self) -> BTreeMap<String, VersionMetrics> {
        lock(&self.shared.registry)
            .iter()
            .map(|(name, cell)| (name.clone(), lock(cell).clone()))
            .collect()
    }

    /// Stops accepting and ends the serving tasks and backend connections: requests in
    /// flight are cut off. Idempotent; also done on drop. The metrics stay readable.
    pub fn shutdown(&self) {
        self.server.shutdown();
        self.shared.pool.clear();
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Proxy")
            .field("local_addr", &self.local_addr())
            .field("routes", &self.routes())
            .finish_non_exhaustive()
    }
}

/// Answers one client request: pick a route, forward, record the outcome.
async fn handle(
    shared: Arc<Shared>,
    request: Request<Incoming>,
    client: SocketAddr,
) -> Response<ProxyBody> {
    let received = Instant::now();
    if request.method() == Method::CONNECT {
        return forward::message(StatusCode::METHOD_NOT_ALLOWED, "CONNECT is not supported\n");
    }
    let pick = lock(&shared.table).pick();
    let Some(pick) = pick else {
        return forward::message(StatusCode::SERVICE_UNAVAILABLE, "no backend\n");
    };
    let (response, outcome) = forward::forward(&shared.pool, pick.addr, request, client).await;
    lock(&pick.metrics).record(outcome, received.elapsed());
    response
}

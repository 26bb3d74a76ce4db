//! The built-in weighted HTTP reverse proxy that measures each version it fronts.
//!
//! A [`Proxy`] serves HTTP/1.1 on a listener the caller bound, sends each request to
//! one [`Route`] chosen by smooth weighted round-robin, and keeps cumulative
//! [`VersionMetrics`] per route name (requests, backend 5xx, connect failures, and a
//! [`LatencyHistogram`]). Callers judge a version by subtracting two snapshots.
//! [`sample`] is a small service with configurable errors and latency that the demo
//! and the deployment tests put behind the proxy.
//!
//! What this crate does not do: TLS, HTTP/2, upgrades (WebSocket), retries of requests a
//! backend may have seen, or health checks; a backend is judged only by the traffic it
//! serves.

mod forward;
mod histogram;
mod metrics;
mod proxy;
mod routing;
pub mod sample;
mod server;

use std::path::PathBuf;

pub use histogram::LatencyHistogram;
pub use metrics::VersionMetrics;
pub use proxy::{Proxy, ProxyConfig};
pub use routing::Route;

/// Everything that can go wrong in this crate. Request-level failures (a dead backend,
/// a timeout) are not errors: the proxy answers them with a status code and counts them.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyError {
    /// A route table held a route with an empty name; the table was not applied.
    #[error(
        "route {index} of the table has an empty name; every route needs a unique, non-empty name"
    )]
    EmptyRouteName {
        /// Position of the offending route in the table passed in.
        index: usize,
    },
    /// A route table named two routes alike; the table was not applied.
    #[error("route name {name:?} appears more than once in the table; route names must be unique")]
    DuplicateRouteName {
        /// The repeated name.
        name: String,
    },
    /// The listener handed to a server could not be used (made non-blocking, registered
    /// with the runtime, or asked for its address).
    #[error("could not serve on the given listener")]
    Listener(#[source] std::io::Error),
    /// The runtime of [`sample::run`] could not be built.
    #[error("could not start the tokio runtime")]
    Runtime(#[source] std::io::Error),
    /// A sample behaviour was malformed or out of range. `origin` names the file (or
    /// "sample behaviour" for text without one) and the line; `problem` names the key and
    /// the accepted values.
    #[error("{origin}: {problem}")]
    InvalidSampleBehaviour {
        /// Where: file name or "sample behaviour", then the line, e.g. `behaviour.txt line 3`.
        origin: String,
        /// The key concerned, when the line had one.
        key: Option<String>,
        /// What was wrong and what is accepted.
        problem: String,
    },
    /// The sample behaviour file could not be read.
    #[error("could not read the sample behaviour file {path}")]
    ReadSampleBehaviour {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// Locks `mutex`, ignoring poisoning: no critical section in this crate can panic half-way,
/// and the proxy must keep serving rather than panic on a poisoned lock.
fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

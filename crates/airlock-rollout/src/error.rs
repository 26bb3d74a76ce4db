//! The crate's one error type: every message says what went wrong and what to do about it.

use std::io;
use std::path::PathBuf;

use crate::{Environment, Slot, Weights};

/// Why a provider action, a router, a service process or a metrics query failed.
///
/// A failed action leaves what was serving before serving, unless the variant says
/// otherwise (a `WeightMismatch` means traffic may already be split differently).
#[derive(Debug, thiserror::Error)]
pub enum RolloutError {
    /// The deploy lease's fencing check refused the token: another holder has taken the
    /// lease since. Nothing was touched.
    #[error(
        "fencing token {token} for target `{target}` is stale (the lease is at {current}): \
         another deployment holds the target; this one must stop without touching it"
    )]
    StaleFence {
        target: String,
        token: u64,
        current: u64,
    },

    /// The fencing check could not be made (the lease's store is unreachable). Nothing was
    /// touched.
    #[error(
        "could not check the deploy lease of target `{target}`: {message}; retry once the store is reachable"
    )]
    FenceUnavailable { target: String, message: String },

    /// Weights that are not percentages summing to 100.
    #[error("weights {weights} are invalid: {reason}")]
    InvalidWeights { weights: Weights, reason: String },

    /// After setting weights, the router reports something else in force.
    #[error(
        "traffic weights did not take: wanted {wanted}, the router has {actual} in force; \
         check the load balancer (another writer, a reload, a rejected command) and set them again"
    )]
    WeightMismatch { wanted: Weights, actual: Weights },

    /// A commit id that is not 4 to 64 lowercase hexadecimal digits.
    #[error("version `{commit}` is not a commit id: expected 4 to 64 lowercase hexadecimal digits")]
    InvalidCommit { commit: String },

    /// The version's tree is not a directory.
    #[error("the tree of version {commit} at {} is not a directory: check out the version there first", tree.display())]
    MissingTree { commit: String, tree: PathBuf },

    /// An action needs a process in a slot that has none.
    #[error("the {slot} slot of {environment} runs nothing: deploy a version there first")]
    SlotEmpty {
        environment: Environment,
        slot: Slot,
    },

    /// An option or configured name is not acceptable.
    #[error("invalid {what} `{value}`: {accepted}")]
    InvalidOption {
        what: &'static str,
        value: String,
        accepted: &'static str,
    },

    /// The provider has no configuration for this environment.
    #[error(
        "the {provider} provider has no {environment} environment configured: add one to its configuration"
    )]
    EnvironmentNotConfigured {
        provider: &'static str,
        environment: Environment,
    },

    /// A file or directory airlock needs could not be used.
    #[error("could not {action} {}: {source}", path.display())]
    File {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// No free port could be found on 127.0.0.1.
    #[error("could not find a free port on 127.0.0.1 for a service: {source}")]
    NoFreePort {
        #[source]
        source: io::Error,
    },

    /// A process could not be started at all.
    #[error("could not start `{program}` ({what}): {source}")]
    Spawn {
        what: &'static str,
        program: String,
        #[source]
        source: io::Error,
    },

    /// Waiting for a process failed (not expected on Linux).
    #[error("could not wait for {what}: {source}")]
    Wait {
        what: &'static str,
        #[source]
        source: io::Error,
    },

    /// The build command failed or did not finish in time.
    #[error(
        "the build of version {commit} {outcome}; fix the build command or the change. Output (tail):\n{output_tail}"
    )]
    Build {
        commit: String,
        outcome: String,
        output_tail: String,
    },

    /// The service process exited before it was ready.
    #[error(
        "{service} {outcome} before it was ready; see {}. Log (tail):\n{log_tail}",
        log.display()
    )]
    ExitedBeforeReady {
        /// "the canary service of staging (version abc123)".
        service: String,
        outcome: String,
        log: PathBuf,
        log_tail: String,
    },

    /// The service process did not become ready in time; it was stopped.
    #[error(
        "{service} was not ready {problem}; it was stopped. See {}. Log (tail):\n{log_tail}",
        log.display()
    )]
    NotReady {
        /// "the canary service of staging (version abc123)".
        service: String,
        /// Where, how long, the last problem seen and what readiness needs.
        problem: String,
        log: PathBuf,
        log_tail: String,
    },

    /// The operator's deploy command failed or did not finish in time.
    #[error(
        "the deploy command {} failed on `{action}`: {outcome}; fix the script. Output (tail):\n{output_tail}",
        program.display()
    )]
    Command {
        program: PathBuf,
        action: &'static str,
        outcome: String,
        output_tail: String,
    },

    /// The operator's deploy command printed something airlock cannot read.
    #[error(
        "the deploy command {} printed an unreadable answer to `{action}`: {problem}; it must print {expected}. It printed: {output}",
        program.display()
    )]
    CommandOutput {
        program: PathBuf,
        action: &'static str,
        problem: String,
        expected: &'static str,
        output: String,
    },

    /// The HAProxy runtime API could not be reached.
    #[error(
        "could not talk to HAProxy's runtime API at {socket}: {source}; check `stats socket` in haproxy.cfg (level admin) and that HAProxy runs"
    )]
    HaproxySocket {
        socket: String,
        #[source]
        source: io::Error,
    },

    /// HAProxy answered a runtime API command with something other than success.
    #[error(
        "HAProxy refused `{command}`: {answer:?}; check the backend and server names in the configuration"
    )]
    Haproxy { command: String, answer: String },

    /// The built-in proxy could not listen where configured.
    #[error(
        "could not listen on {addr} for {environment} traffic: {source}; choose a free local address for the {environment} proxy"
    )]
    Bind {
        environment: Environment,
        addr: std::net::SocketAddr,
        #[source]
        source: io::Error,
    },

    /// The built-in proxy failed.
    #[error("the built-in proxy of {environment} failed to {action}: {message}")]
    Proxy {
        environment: Environment,
        action: &'static str,
        message: String,
    },

    /// Prometheus could not be reached or answered with an HTTP error.
    #[error(
        "could not query Prometheus at {url}: {message}; check `base_url` and that Prometheus runs"
    )]
    PrometheusTransport { url: String, message: String },

    /// Prometheus refused or could not evaluate a query.
    #[error("Prometheus could not answer `{query}`: {message}; fix the query template")]
    PrometheusQuery { query: String, message: String },

    /// A query returned no series: the metric is missing, which is not the same as zero.
    #[error(
        "Prometheus has no data for `{query}` (the {slot} slot): the service is not scraped yet, \
         or the query's labels do not match what it exports"
    )]
    NoData { slot: Slot, query: String },
}

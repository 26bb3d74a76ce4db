//! Shifting traffic with an existing HAProxy through its runtime API (the `stats socket`),
//! without reloads: each slot is a server of a backend, pointed at a service's address and
//! weighted directly in percent.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

use crate::router::Router;
use crate::{Environment, Observed, RolloutError, Slot, Weights};

/// The largest answer read from the runtime API.
const ANSWER_LIMIT: u64 = 1024 * 1024;

/// Where HAProxy's runtime API listens (`stats socket … level admin` in haproxy.cfg).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HaproxySocket {
    /// A unix socket path.
    Unix(PathBuf),
    /// A TCP address (`stats socket ipv4@127.0.0.1:9999 level admin`).
    Tcp(SocketAddr),
}

impl std::fmt::Display for HaproxySocket {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HaproxySocket::Unix(path) => write!(formatter, "{}", path.display()),
            HaproxySocket::Tcp(addr) => write!(formatter, "{addr}"),
        }
    }
}

/// The HAProxy backend of one environment and its three servers, one per slot.
///
/// The servers must exist in haproxy.cfg (for example
/// `server canary 127.0.0.1:1 weight 0 disabled`) with a dynamic balance algorithm
/// (`roundrobin`, `leastconn`), so weights and addresses can change at run time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HaproxyBackend {
    pub backend: String,
    pub stable_server: String,
    pub baseline_server: String,
    pub canary_server: String,
    /// Where the environment's traffic enters HAProxy (its frontend), for
    /// [`Router::url`].
    pub url: Option<String>,
}

impl HaproxyBackend {
    /// A backend with servers named after the slots: `stable`, `baseline`, `canary`.
    pub fn new(backend: impl Into<String>) -> HaproxyBackend {
        HaproxyBackend {
            backend: backend.into(),
            stable_server: Slot::Stable.as_str().to_owned(),
            baseline_server: Slot::Baseline.as_str().to_owned(),
            canary_server: Slot::Canary.as_str().to_owned(),
            url: None,
        }
    }

    /// The server name of a slot.
    pub fn server(&self, slot: Slot) -> &str {
        match slot {
            Slot::Stable => &self.stable_server,
            Slot::Baseline => &self.baseline_server,
            Slot::Canary => &self.canary_server,
        }
    }
}

/// The HAProxy router's configuration.
#[derive(Clone, Debug)]
pub struct HaproxyOptions {
    pub socket: HaproxySocket,
    pub staging: Option<HaproxyBackend>,
    pub production: Option<HaproxyBackend>,
    /// The limit for one runtime API command (connect, write, read). Default 5 s.
    pub timeout: Duration,
}

impl HaproxyOptions {
    /// Options with no environment configured and the default timeout.
    pub fn new(socket: HaproxySocket) -> HaproxyOptions {
        HaproxyOptions {
            socket,
            staging: None,
            production: None,
            timeout: Duration::from_secs(5),
        }
    }
}

/// A [`Router`] over HAProxy's runtime API. Each command is one connection (HAProxy's
/// non-interactive mode: one command, one answer, then it closes). Nothing is reloaded,
/// so connections in flight are never cut.
///
/// Names are checked at construction to be HAProxy identifiers (letters, digits, `-`,
/// `_`, `.`, `:`), so no command can carry a second one; addresses and weights are
/// numbers. Any answer other than the documented success answers is an error quoting it.
#[derive(Debug)]
pub struct Haproxy {
    options: HaproxyOptions,
}

/// One server's line of `show servers state`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ServerState {
    operational: u32,
    admin: u32,
    weight: u32,
    port: Option<u16>,
}

/// `srv_admin_state` flags: forced, inherited or resolution maintenance, and forced or
/// inherited drain (HAProxy's SRV_ADMF_MAINT and SRV_ADMF_DRAIN).
const ADMIN_MAINTENANCE: u32 = 0x01 | 0x02 | 0x20;
const ADMIN_DRAIN: u32 = 0x08 | 0x10;
/// `srv_op_state`: 1 starting, 2 running; 0 stopped and 3 stopping get no new traffic.
const OPERATIONAL_SERVING: [u32; 2] = [1, 2];

impl ServerState {
    /// The weight HAProxy applies to new traffic: 0 in maintenance, drain, or when down.
    fn weight_in_force(&self) -> u32 {
        let serving = self.admin & (ADMIN_MAINTENANCE | ADMIN_DRAIN) == 0
            && OPERATIONAL_SERVING.contains(&self.operational);
        if serving { self.weight } else { 0 }
    }

    fn in_maintenance(&self) -> bool {
        self.admin & ADMIN_MAINTENANCE != 0
    }
}

impl Haproxy {
    /// Checks the names and returns the router. Nothing is contacted yet.
    pub fn new(options: HaproxyOptions) -> Result<Haproxy, RolloutError> {
        for backend in [&options.staging, &options.production]
            .into_iter()
            .flatten()
        {
            check_name("HAProxy backend name", &backend.backend)?;
            for slot in Slot::ALL {
                check_name("HAProxy server name", backend.server(slot))?;
            }
        }
        Ok(Haproxy { options })
    }

    fn backend(&self, environment: Environment) -> Result<&HaproxyBackend, RolloutError> {
        let backend = match environment {
            Environment::Staging => &self.options.staging,
            Environment::Production => &self.options.production,
        };
        backend
            .as_ref()
            .ok_or(RolloutError::EnvironmentNotConfigured {
                provider: "haproxy",
                environment,
            })
    }

    /// Sends one runtime API command and returns HAProxy's answer, trimmed.
    pub fn command(&self, command: &str) -> Result<String, RolloutError> {
        let socket_error = |source| RolloutError::HaproxySocket {
            socket: self.options.socket.to_string(),
            source,
        };
        let timeout = Some(self.options.timeout);
        let line = format!("{command}\n");
        let mut answer = Vec::new();
        match &self.options.socket {
            HaproxySocket::Unix(path) => {
                let mut stream = UnixStream::connect(path).map_err(socket_error)?;
                stream.set_read_timeout(timeout).map_err(socket_error)?;
                stream.set_write_timeout(timeout).map_err(socket_error)?;
                stream.write_all(line.as_bytes()).map_err(socket_error)?;
                stream
                    .take(ANSWER_LIMIT)
                    .read_to_end(&mut answer)
                    .map_err(socket_error)?;
            }
            HaproxySocket::Tcp(addr) => {
                let mut stream =
                    TcpStream::connect_timeout(addr, self.options.timeout).map_err(socket_error)?;
                stream.set_read_timeout(timeout).map_err(socket_error)?;
                stream.set_write_timeout(timeout).map_err(socket_error)?;
                stream.write_all(line.as_bytes()).map_err(socket_error)?;
                stream
                    .take(ANSWER_LIMIT)
                    .read_to_end(&mut answer)
                    .map_err(socket_error)?;
            }
        }
        Ok(String::from_utf8_lossy(&answer).trim().to_owned())
    }

    /// Sends a command whose success answer is empty.
    fn command_expecting_nothing(&self, command: &str) -> Result<(), RolloutError> {
        let answer = self.command(command)?;
        if answer.is_empty() {
            Ok(())
        } else {
            Err(RolloutError::Haproxy {
                command: command.to_owned(),
                answer,
            })
        }
    }

    fn set_weight(
        &self,
        backend: &HaproxyBackend,
        slot: Slot,
        weight: u32,
    ) -> Result<(), RolloutError> {
        self.command_expecting_nothing(&format!(
            "set weight {}/{} {weight}",
            backend.backend,
            backend.server(slot)
        ))
    }

    /// Every server of the backend, by name, from `show servers state BACKEND`.
    fn servers_state(
        &self,
        backend: &HaproxyBackend,
    ) -> Result<BTreeMap<String, ServerState>, RolloutError> {
        let command = format!("show servers state {}", backend.backend);
        let answer = self.command(&command)?;
        parse_servers_state(&answer).ok_or_else(|| RolloutError::Haproxy {
            command,
            answer: answer.chars().take(2000).collect(),
        })
    }

    fn server_state(
        &self,
        backend: &HaproxyBackend,
        slot: Slot,
    ) -> Result<ServerState, RolloutError> {
        let mut servers = self.servers_state(backend)?;
        servers
            .remove(backend.server(slot))
            .ok_or_else(|| RolloutError::Haproxy {
                command: format!("show servers state {}", backend.backend),
                answer: format!(
                    "no server `{}` in backend `{}` (the {slot} slot's server): add it to haproxy.cfg",
                    backend.server(slot),
                    backend.backend
                ),
            })
    }
}

impl Router for Haproxy {
    fn provider_name(&self) -> &'static str {
        "haproxy"
    }

    fn point(
        &self,
        environment: Environment,
        slot: Slot,
        addr: SocketAddr,
    ) -> Result<(), RolloutError> {
        let backend = self.backend(environment)?;
        let server = format!("{}/{}", backend.backend, backend.server(slot));
        let state = self.server_state(backend, slot)?;
        if state.in_maintenance() {
            // A slot that served nothing enters at weight 0, whatever haproxy.cfg says.
            self.set_weight(backend, slot, 0)?;
        }
        let command = format!(
            "set server {server} addr {} port {}",
            addr.ip(),
            addr.port()
        );
        let answer = self.command(&command)?;
        // HAProxy's success answers: "IP changed from …" or "no need to change the addr",
        // each followed by what happened to the port.
        if !(answer.starts_with("IP changed from")
            || answer.starts_with("no need to change the addr"))
        {
            return Err(RolloutError::Haproxy { command, answer });
        }
        self.command_expecting_nothing(&format!("set server {server} state ready"))?;
        let state = self.server_state(backend, slot)?;
        if state.port != Some(addr.port()) || state.in_maintenance() {
            return Err(RolloutError::Haproxy {
                command: format!("show servers state {}", backend.backend),
                answer: format!(
                    "server {server} did not take 127.0.0.1:{} (port {:?}, admin state {}): another writer may be changing it",
                    addr.port(),
                    state.port,
                    state.admin
                ),
            });
        }
        Ok(())
    }

    fn remove(&self, environment: Environment, slot: Slot) -> Result<(), RolloutError> {
        let backend = self.backend(environment)?;
        self.set_weight(backend, slot, 0)?;
        self.command_expecting_nothing(&format!(
            "set server {}/{} state maint",
            backend.backend,
            backend.server(slot)
        ))
    }

    fn set_weights(&self, environment: Environment, weights: Weights) -> Result<(), RolloutError> {
        let backend = self.backend(environment)?;
        if Slot::ALL.into_iter().any(|slot| weights.get(slot) > 256) {
            return Err(RolloutError::InvalidWeights {
                weights,
                reason: "HAProxy weights go from 0 to 256".to_owned(),
            });
        }
        // One command per server, so the change is not atomic: raise the slots that gain
        // traffic first, then lower the others, so the total never passes through zero
        // (HAProxy would answer 503 in between) and no slot gets more than the larger of
        // its old and new share.
        let mut order = Slot::ALL;
        if let Ok(current) = self.weights(environment) {
            order.sort_by_key(|&slot| weights.get(slot) <= current.get(slot));
        }
        for slot in order {
            self.set_weight(backend, slot, weights.get(slot))?;
        }
        Ok(())
    }

    fn weights(&self, environment: Environment) -> Result<Weights, RolloutError> {
        let backend = self.backend(environment)?;
        let servers = self.servers_state(backend)?;
        let mut weights = Weights {
            stable: 0,
            baseline: 0,
            canary: 0,
        };
        for slot in Slot::ALL {
            let state = servers
                .get(backend.server(slot))
                .ok_or_else(|| RolloutError::Haproxy {
                    command: format!("show servers state {}", backend.backend),
                    answer: format!(
                        "no server `{}` in backend `{}`: add it to haproxy.cfg",
                        backend.server(slot),
                        backend.backend
                    ),
                })?;
            weights.set(slot, state.weight_in_force());
        }
        Ok(weights)
    }

    fn url(&self, environment: Environment) -> Option<String> {
        self.backend(environment).ok()?.url.clone()
    }

    fn observe(
        &self,
        _environment: Environment,
    ) -> Result<Option<BTreeMap<Slot, Observed>>, RolloutError> {
        Ok(None)
    }
}

/// Parses `show servers state` (format version 1: a version line, a `#` header naming the
/// columns, one line per server). `None` if the answer is not in that form.
fn parse_servers_state(answer: &str) -> Option<BTreeMap<String, ServerState>> {
    let mut lines = answer
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty());
    if lines.next()? != "1" {
        return None;
    }
    let header: Vec<&str> = lines
        .next()?
        .strip_prefix('#')?
        .split_whitespace()
        .collect();
    let column = |name: &str| header.iter().position(|&column| column == name);
    let name = column("srv_name")?;
    let operational = column("srv_op_state")?;
    let admin = column("srv_admin_state")?;
    let weight = column("srv_uweight")?;
    let port = column("srv_port");
    let mut servers = BTreeMap::new();
    for line in lines {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let field = |index: usize| fields.get(index).copied();
        servers.insert(
            field(name)?.to_owned(),
            ServerState {
                operational: field(operational)?.parse().ok()?,
                admin: field(admin)?.parse().ok()?,
                weight: field(weight)?.parse().ok()?,
                port: port.and_then(field).and_then(|port| port.parse().ok()),
            },
        );
    }
    Some(servers)
}

/// Checks that `value` is an HAProxy identifier.
fn check_name(what: &'static str, value: &str) -> Result<(), RolloutError> {
    let valid = !value.is_empty()
        && value.len() <= 64
        && value
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b':'));
    if valid {
        Ok(())
    } else {
        Err(RolloutError::InvalidOption {
            what,
            value: value.to_owned(),
            accepted: "an HAProxy identifier: letters, digits, `-`, `_`, `.`, `:`",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_state_is_parsed_by_column_name() {
        let answer = "1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port srv_check_addr srv_agent_addr srv_agent_port\n\
3 app 1 stable 127.0.0.1 2 4 100 0 1 1 0 0 8 0 0 0 - 18091 - 0 0 - - 0\n\
3 app 2 baseline 127.0.0.1 0 5 7 0 2 1 0 0 8 0 0 0 - 1 - 0 0 - - 0\n";
        let servers = parse_servers_state(answer).expect("parses");
        let stable = &servers["stable"];
        assert_eq!(stable.weight_in_force(), 100);
        assert_eq!(stable.port, Some(18091));
        let baseline = &servers["baseline"];
        assert!(baseline.in_maintenance());
        assert_eq!(baseline.weight_in_force(), 0, "maintenance serves nothing");
        assert_eq!(parse_servers_state("Can't find backend."), None);
    }

    #[test]
    fn names_that_could_carry_a_second_command_are_refused() {
        for bad in ["", "app;shutdown", "app server", "app\nset", "a/b"] {
            assert!(check_name("name", bad).is_err(), "{bad:?}");
        }
        for good in ["app", "be-prod_1", "svc.v2:blue"] {
            assert!(check_name("name", good).is_ok(), "{good:?}");
        }
    }
}

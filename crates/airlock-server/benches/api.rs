//! API throughput on the machine's cores, SQLite store: the real service (HTTP on
//! 127.0.0.1, an SQLite file, a real git repository, the workers running Level 1) driven
//! by many keep-alive HTTP clients in the same process, on the same cores.
//!
//! Run: `cargo bench -p airlock-server --bench api`. Tuning: FILES (repository size,
//! default 2000), AGENTS (agent tokens the proposals are spread over, default 16),
//! CONCURRENCY (connections of the saturation runs, default 32), PACED_CONNECTIONS
//! (connections of the runs at the target rate, default 64), SEED (changes proposed and
//! checked before the reads, default 200), PHASE_SECS (length of each run, default 5),
//! CLIENT_THREADS (threads of the clients' runtime, default 1).
//!
//! Two ways to load a service, because a throughput and a latency target are measured
//! differently:
//! - saturation: each connection sends its next request as soon as the previous one is
//!   answered. The requests per second are the service's capacity; the latencies are
//!   then only the queue (connections ÷ throughput), whatever the service does.
//! - paced, at the target rate: requests are sent on a fixed schedule whether or not the
//!   earlier ones were answered, and each latency counts from when its request was due,
//!   so a stall is charged to every request it delays (no coordinated omission). The
//!   p99 target is judged here: the latency a client sees when the load is the target's.
//!
//! Phases, in order:
//! 1. seed: SEED changes are proposed and checked to the end (awaiting review), so the
//!    reads see what a status read usually returns: steps, obligations, approvals;
//! 2. status reads, `GET /v1/changes/{id}` of the seeded changes round robin, with the
//!    workers idle: saturation, then paced at 10 000/s;
//! 3. proposals, `POST /v1/changes` of 1-file diffs, each agent token shared by a few
//!    connections, while the workers check what was accepted (the queue grows; the API
//!    must not slow down for it): saturation, then paced at 1 000/s.
//!
//! Targets: ≥ 1 000 proposals/s accepted, ≥ 10 000 status reads/s, p99 < 20 ms.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use airlock_core::config::Config;
use airlock_core::event::Actor;
use airlock_core::ids::Role;
use airlock_server::ServiceOptions;
use airlock_store::SqliteStore;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;

mod support;
use support::{env_number, generate};

/// Per-agent limits far above what the bench can reach, so that the figure is the
/// service's and not the configured rate limits'.
const CHANGES_IN_FLIGHT_LIMIT: usize = 100_000;
const PROPOSALS_PER_HOUR_LIMIT: usize = 1_000_000;

const PROPOSALS_PER_SECOND_TARGET: f64 = 1_000.0;
const READS_PER_SECOND_TARGET: f64 = 10_000.0;
const P99_TARGET: Duration = Duration::from_millis(20);

/// The most changes one list request returns.
const LIST_LIMIT: usize = 1000;

/// How long the seeded changes may take to be checked before the bench gives up.
const SEED_CHECK_LIMIT: Duration = Duration::from_secs(90);

/// The `i`-th proposal: one line of one file, all on the same base, so every one applies.
fn patch(i: usize, files: usize) -> String {
    let n = i % files;
    let dir = n % 200;
    format!(
        "--- a/src/d{dir:03}/f{n}.txt\n+++ b/src/d{dir:03}/f{n}.txt\n@@ -1,3 +1,3 @@\n file {n}\n-line two\n+line two, edit {i}\n line three\n"
    )
}

type Sender = SendRequest<Full<Bytes>>;

/// One keep-alive HTTP/1 connection, as an agent's client keeps it.
async fn connect(addr: SocketAddr) -> Sender {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("the server accepts connections");
    stream.set_nodelay(true).expect("TCP_NODELAY");
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("HTTP/1 handshake");
    tokio::spawn(async move {
        let _ = connection.await;
    });
    sender
}

async fn send(sender: &mut Sender, request: Request<Full<Bytes>>) -> (StatusCode, Bytes) {
    sender.ready().await.expect("the connection stays open");
    let response = sender
        .send_request(request)
        .await
        .expect("the server answers");
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("the whole body arrives")
        .to_bytes();
    (status, body)
}

/// What the clients send.
#[derive(Clone)]
enum Workload {
    /// New changes, numbered from a shared counter so that every diff differs.
    Propose {
        files: usize,
        next: Arc<AtomicUsize>,
    },
    /// Status reads of these changes, round robin.
    Read { ids: Arc<Vec<String>> },
}

impl Workload {
    /// The number of the next request of a connection that sent `sent` so far, starting
    /// at `offset`: proposals are numbered over all connections.
    fn next_index(&self, offset: usize, sent: usize) -> usize {
        match self {
            Workload::Propose { next, .. } => next.fetch_add(1, Ordering::Relaxed),
            Workload::Read { .. } => offset + sent,
        }
    }

    /// Request number `i`.
    fn request(&self, token: &str, i: usize) -> Request<Full<Bytes>> {
        match self {
            Workload::Propose { files, .. } => {
                let body = serde_json::json!({
                    "title": format!("bench change {i}"),
                    "description": "a one-line edit proposed by the API benchmark",
                    "diff": patch(i, *files),
                });
                Request::post("/v1/changes")
                    .header("host", "127.0.0.1")
                    .header("authorization", format!("Bearer {token}"))
                    .header("content-type", "application/json")
                    .body(Full::new(Bytes::from(body.to_string())))
                    .expect("a valid request")
            }
            Workload::Read { ids } => Request::get(format!("/v1/changes/{}", ids[i % ids.len()]))
                .header("host", "127.0.0.1")
                .header("authorization", format!("Bearer {token}"))
                .body(Full::new(Bytes::new()))
                .expect("a valid request"),
        }
    }

    fn succeeded(&self, status: StatusCode) -> bool {
        match self {
            Workload::Propose { .. } => {
                status == StatusCode::CREATED || status == StatusCode::ACCEPTED
            }
            Workload::Read { .. } => status == StatusCode::OK,
        }
    }
}

/// When one connection sends.
#[derive(Clone, Copy)]
enum Pace {
    /// The next request as soon as the previous one is answered, up to request number
    /// `limit` (proposals are numbered over all connections).
    Saturate { limit: usize },
    /// Request `n` at `start + n × every`; latency counts from then.
    Schedule { start: Instant, every: Duration },
}

/// What one phase's clients saw.
#[derive(Default)]
struct Tally {
    latencies: Vec<Duration>,
    /// Ids of accepted proposals.
    ids: Vec<String>,
    /// Answers that were not a success, by status.
    refused: BTreeMap<u16, usize>,
    first_refusal: Option<String>,
}

impl Tally {
    fn merge(&mut self, other: Tally) {
        self.latencies.extend(other.latencies);
        self.ids.extend(other.ids);
        for (status, n) in other.refused {
            *self.refused.entry(status).or_default() += n;
        }
        if self.first_refusal.is_none() {
            self.first_refusal = other.first_refusal;
        }
    }

    fn refuse(&mut self, status: StatusCode, body: &Bytes) {
        *self.refused.entry(status.as_u16()).or_default() += 1;
        if self.first_refusal.is_none() {
            self.first_refusal = Some(format!("{status}: {}", String::from_utf8_lossy(body)));
        }
    }

    fn successes(&self) -> usize {
        self.latencies.len() - self.refused.values().sum::<usize>()
    }
}

/// One connection's requests until `deadline` (or the saturation limit).
async fn client(
    addr: SocketAddr,
    token: String,
    workload: Workload,
    pace: Pace,
    offset: usize,
    deadline: Instant,
) -> Tally {
    let mut sender = connect(addr).await;
    let mut tally = Tally::default();
    for n in 0.. {
        let due = match pace {
            Pace::Saturate { .. } => Instant::now(),
            Pace::Schedule { start, every } => {
                let due = start + every * n as u32;
                tokio::time::sleep_until(due.into()).await;
                due
            }
        };
        if due >= deadline {
            break;
        }
        let index = workload.next_index(offset, n);
        if matches!(pace, Pace::Saturate { limit } if index >= limit) {
            break;
        }
        let request = workload.request(&token, index);
        let (status, body) = send(&mut sender, request).await;
        tally.latencies.push(due.elapsed());
        if !workload.succeeded(status) {
            tally.refuse(status, &body);
        } else if let Workload::Propose { .. } = workload {
            let answer: serde_json::Value = serde_json::from_slice(&body).expect("a JSON answer");
            tally
                .ids
                .push(answer["id"].as_str().expect("an id").to_owned());
        }
    }
    tally
}

/// A phase: `connections` clients at once, each with its own token among `tokens`.
/// Paced phases spread `rate` requests per second evenly over the connections.
async fn run_phase(
    addr: SocketAddr,
    tokens: &[String],
    workload: &Workload,
    connections: usize,
    rate: Option<f64>,
    duration: Duration,
) -> (Tally, Duration) {
    let started = Instant::now();
    let deadline = started + duration;
    let handles: Vec<_> = (0..connections)
        .map(|n| {
            let pace = match rate {
                None => Pace::Saturate { limit: usize::MAX },
                Some(rate) => Pace::Schedule {
                    // Connection n sends requests n, n + connections, ... of the schedule.
                    start: started + Duration::from_secs_f64(n as f64 / rate),
                    every: Duration::from_secs_f64(connections as f64 / rate),
                },
            };
            tokio::spawn(client(
                addr,
                tokens[n % tokens.len()].clone(),
                workload.clone(),
                pace,
                n * 7919,
                deadline,
            ))
        })
        .collect();
    let mut tally = Tally::default();
    for handle in handles {
        tally.merge(handle.await.expect("a client task ends normally"));
    }
    (tally, started.elapsed())
}

/// Waits until every change in `ids` has left Level 1, by long polls; returns the states.
async fn wait_checked(addr: SocketAddr, token: &str, ids: &[String]) -> BTreeMap<String, usize> {
    let mut sender = connect(addr).await;
    let mut states = BTreeMap::new();
    let deadline = Instant::now() + SEED_CHECK_LIMIT;
    for id in ids {
        loop {
            assert!(
                Instant::now() < deadline,
                "the seeded changes were not checked within {SEED_CHECK_LIMIT:?}"
            );
            let request = Request::get(format!("/v1/changes/{id}?wait=10"))
                .header("host", "127.0.0.1")
                .header("authorization", format!("Bearer {token}"))
                .body(Full::new(Bytes::new()))
                .expect("a valid request");
            let (status, body) = send(&mut sender, request).await;
            assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
            let view: serde_json::Value = serde_json::from_slice(&body).expect("a JSON answer");
            let state = view["state"].as_str().expect("a state").to_owned();
            if !matches!(state.as_str(), "queued" | "checking" | "checks_passed") {
                *states.entry(state).or_default() += 1;
                break;
            }
        }
    }
    states
}

/// CPU time used so far by this process: the server, its workers' threads and the
/// clients (not the check commands, which are other processes).
fn process_cpu() -> Duration {
    // SAFETY: getrusage only writes the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let time = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    time(usage.ru_utime) + time(usage.ru_stime)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1e3)
}

/// One row of the table.
struct Row {
    name: String,
    tally: Tally,
    elapsed: Duration,
    /// CPU time of this process during the phase.
    cpu: Duration,
    /// The schedule's rate, for paced runs.
    rate: Option<f64>,
}

impl Row {
    fn per_second(&self) -> f64 {
        self.tally.successes() as f64 / self.elapsed.as_secs_f64()
    }

    fn p99(&self) -> Duration {
        percentile(&self.tally.latencies, 0.99)
    }

    fn print(&self) {
        let sorted = &self.tally.latencies;
        println!(
            "{:<44} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}",
            self.name,
            sorted.len(),
            format!("{:.0}", self.per_second()),
            ms(percentile(sorted, 0.5)),
            ms(percentile(sorted, 0.9)),
            ms(self.p99()),
            ms(*sorted.last().expect("at least one request")),
            format!("{:.0}", self.cpu.as_secs_f64() * 1e6 / sorted.len() as f64),
        );
    }
}

fn main() {
    let files = env_number("FILES", 2_000).max(1);
    let agents = env_number("AGENTS", 16).max(1);
    let concurrency = env_number("CONCURRENCY", 32).max(1);
    let paced_connections = env_number("PACED_CONNECTIONS", 64).max(1);
    let seed = env_number("SEED", 200).max(1);
    let phase = Duration::from_secs(env_number("PHASE_SECS", 5).max(1) as u64);
    let client_threads = env_number("CLIENT_THREADS", 1).max(1);
    let bench_started = Instant::now();

    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    let root = dir.path().join("repo");
    eprintln!("generating a {files}-file repository...");
    generate(&root, files);

    // The checks an operator would configure at the least: the scanner (always) and one
    // test command, `true`, sandboxed when bubblewrap is there (as `required` wants).
    let bwrap = Command::new("bwrap")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let sandbox = if bwrap { "required" } else { "off" };
    let config_text = format!(
        "[checks]\nsandbox = '{sandbox}'\ncommands = [{{ name = 'test', run = 'true' }}]\n\
         [limits]\nagent_changes_in_flight = {CHANGES_IN_FLIGHT_LIMIT}\n\
         agent_proposals_per_hour = {PROPOSALS_PER_HOUR_LIMIT}\n"
    );
    let config = Config::parse(&config_text, "airlock.toml").unwrap();
    let workers = config.server.workers;
    let state_dir = root.join(".airlock");
    std::fs::create_dir_all(&state_dir).unwrap();

    // The server's runtime is the one `airlock serve` builds: one worker thread per core.
    let server_runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let (running, tokens) = server_runtime.block_on(async {
        let store = SqliteStore::open(&state_dir.join("airlock.db"))
            .await
            .unwrap();
        let mut tokens = Vec::new();
        for n in 0..agents {
            let issued = airlock_server::tokens::issue(
                &store,
                &format!("agent-{n:02}"),
                Role::Agent,
                None,
                &[],
                Actor::system("bench"),
                airlock_server::now_ms(),
            )
            .await
            .unwrap();
            tokens.push(issued.secret);
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let options = ServiceOptions {
            repo_root: root.clone(),
            state_dir: state_dir.clone(),
            config,
            bwrap_path: None,
            clock: Arc::new(airlock_server::SystemClock),
        };
        (
            airlock_server::start(options, store, listener)
                .await
                .unwrap(),
            tokens,
        )
    });
    let addr = running.addr;

    // The clients' runtime, apart from the server's, on the same cores.
    let client_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(client_threads)
        .thread_name("bench-client")
        .enable_all()
        .build()
        .unwrap();
    let proposals = Workload::Propose {
        files,
        next: Arc::new(AtomicUsize::new(0)),
    };

    eprintln!("seeding {seed} changes and waiting for their checks...");
    let (seeded_ids, seeded_states) = client_runtime.block_on(async {
        let started = Instant::now();
        let far = started + Duration::from_secs(3600);
        let handles: Vec<_> = (0..concurrency.min(seed))
            .map(|n| {
                tokio::spawn(client(
                    addr,
                    tokens[n % agents].clone(),
                    proposals.clone(),
                    Pace::Saturate { limit: seed },
                    0,
                    far,
                ))
            })
            .collect();
        let mut tally = Tally::default();
        for handle in handles {
            tally.merge(handle.await.expect("a client task ends normally"));
        }
        assert!(
            tally.refused.is_empty(),
            "seed proposals refused: {:?}",
            tally.first_refusal
        );
        let states = wait_checked(addr, &tokens[0], &tally.ids).await;
        (tally.ids, states)
    });
    let reads = Workload::Read {
        ids: Arc::new(seeded_ids),
    };

    let mut rows = Vec::new();
    let plan = [
        ("status read, saturation", &reads, None),
        ("status read, paced", &reads, Some(READS_PER_SECOND_TARGET)),
        ("propose, saturation", &proposals, None),
        (
            "propose, paced",
            &proposals,
            Some(PROPOSALS_PER_SECOND_TARGET),
        ),
    ];
    for (name, workload, rate) in plan {
        let connections = if rate.is_some() {
            paced_connections
        } else {
            concurrency
        };
        eprintln!("{name} for {} s...", phase.as_secs());
        let cpu_before = process_cpu();
        let (tally, elapsed) =
            client_runtime.block_on(run_phase(addr, &tokens, workload, connections, rate, phase));
        let mut row = Row {
            name: match rate {
                None => format!("{name} ({connections} conns)"),
                Some(rate) => format!("{name} at {rate:.0}/s ({connections} conns)"),
            },
            tally,
            elapsed,
            cpu: process_cpu() - cpu_before,
            rate,
        };
        row.tally.latencies.sort();
        rows.push(row);
    }

    // How far the workers got with the proposals' queue by the end.
    let awaiting_review = client_runtime.block_on(async {
        let mut sender = connect(addr).await;
        let request = Request::get(format!(
            "/v1/changes?state=awaiting_review&limit={LIST_LIMIT}"
        ))
        .header("host", "127.0.0.1")
        .header("authorization", format!("Bearer {}", tokens[0]))
        .body(Full::new(Bytes::new()))
        .expect("a valid request");
        let (status, body) = send(&mut sender, request).await;
        assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
        serde_json::from_slice::<Vec<serde_json::Value>>(&body)
            .expect("a JSON list")
            .len()
    });
    drop(client_runtime);
    server_runtime.block_on(running.shutdown());

    let Workload::Read { ids: seeded_ids } = &reads else {
        unreachable!("the reads' workload")
    };
    println!(
        "\nAPI throughput: real server on 127.0.0.1, SQLite (WAL, synchronous = FULL), {files}-file git repository,\n\
         {cores} cores shared by the server and its clients ({client_threads} client thread(s)); {} s per run",
        phase.as_secs(),
        cores = std::thread::available_parallelism().map_or(0, |n| n.get()),
    );
    println!(
        "checks: {workers} workers run Level 1 on every accepted change: the scanner, then the test command `true` {}",
        if bwrap {
            "under bubblewrap (sandbox = required)"
        } else {
            "unsandboxed (bwrap missing: install the Debian package `bubblewrap`)"
        }
    );
    println!(
        "limits: {agents} agent tokens, each with agent_changes_in_flight = {CHANGES_IN_FLIGHT_LIMIT} and \
         agent_proposals_per_hour = {PROPOSALS_PER_HOUR_LIMIT}, so the rate limits never answer 429 here"
    );
    println!(
        "reads: {} seeded changes, checked to the end ({seeded_states:?}), read round robin with the workers idle",
        seeded_ids.len()
    );
    println!(
        "saturation: next request as soon as answered (capacity; latency = queue); paced: on a fixed schedule, latency from when due"
    );
    println!(
        "{:<44} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}",
        "run", "requests", "ok/s", "p50 ms", "p90 ms", "p99 ms", "max ms", "CPU µs"
    );
    for row in &rows {
        row.print();
    }
    println!(
        "(CPU µs: this process's CPU time per request: server, clients, workers' threads; not the check commands)"
    );
    let proposed: usize = rows[2..].iter().map(|row| row.tally.successes()).sum();
    let checked = awaiting_review.saturating_sub(seeded_ids.len());
    println!(
        "proposals: {proposed} accepted; meanwhile the workers brought {}{checked} of them to awaiting review (the rest wait in the queue)",
        if awaiting_review >= LIST_LIMIT {
            "≥ "
        } else {
            ""
        },
    );
    for row in &rows {
        if !row.tally.refused.is_empty() {
            println!(
                "{}: refused {:?}; first: {}",
                row.name,
                row.tally.refused,
                row.tally.first_refusal.as_deref().unwrap_or("")
            );
        }
    }
    let verdict = |met: bool| if met { "met" } else { "NOT met" };
    let [
        read_saturation,
        read_paced,
        propose_saturation,
        propose_paced,
    ] = &rows[..]
    else {
        unreachable!("four runs")
    };
    println!(
        "target ≥ {PROPOSALS_PER_SECOND_TARGET:.0} proposals/s accepted: {:.0}/s at saturation: {}",
        propose_saturation.per_second(),
        verdict(propose_saturation.per_second() >= PROPOSALS_PER_SECOND_TARGET)
    );
    println!(
        "target ≥ {READS_PER_SECOND_TARGET:.0} status reads/s: {:.0}/s at saturation: {}",
        read_saturation.per_second(),
        verdict(read_saturation.per_second() >= READS_PER_SECOND_TARGET)
    );
    for (what, row) in [("proposals", propose_paced), ("status reads", read_paced)] {
        // Every request due was sent (late ones count their lateness), so the schedule's
        // rate was offered; a refusal would make the latencies someone else's.
        let all_ok = row.tally.refused.is_empty();
        println!(
            "target p99 < {} ms, {what} offered at {:.0}/s: p99 {} ms{}: {}",
            P99_TARGET.as_millis(),
            row.rate.unwrap_or_default(),
            ms(row.p99()),
            if all_ok { "" } else { " (some were refused)" },
            verdict(all_ok && row.p99() < P99_TARGET)
        );
    }
    println!(
        "(whole benchmark: {:.0} s)",
        bench_started.elapsed().as_secs_f64()
    );
}

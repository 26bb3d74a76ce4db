//! Synthetic load: the GET requests airlock sends to production while a canary step lacks
//! data after its soak (`[deploy.judge.synthetic_load]`).
//!
//! They enter where real traffic does (the router), so the step's split applies and the
//! metrics source counts them like any other request: the judge needs no special case,
//! and a canary that fails them fails. Each request takes one of the paths at random,
//! never in turn: a weighted round-robin router at a 50 % split sends every other request
//! to the same version, so paths in turn could give the canary one path only (say,
//! nothing but its health check). Requests leave at a fixed rate whatever the service's
//! latency (each on its own connection, at most `MAX_IN_FLIGHT` at once, so a hanging
//! service is not flooded), and the load stops when its handle is dropped, which the
//! deployer does as soon as the step is decided.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use airlock_core::deploy::SyntheticLoadConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::{JoinHandle, JoinSet};

/// Requests without an answer yet; beyond it, a tick sends nothing.
const MAX_IN_FLIGHT: usize = 256;
/// How long one request may take, connection to last byte.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// The most of an answer read: the status line is all that counts, but the body is read
/// so the request completes (and is counted) as a client's would.
const MAX_ANSWER_BYTES: usize = 1 << 20;

#[derive(Debug, Default)]
struct Counts {
    sent: AtomicU64,
    /// Answered with a status below 500.
    answered: AtomicU64,
    /// Answered 5xx, or not answered at all (refused, reset, timed out).
    failed: AtomicU64,
    /// Ticks that sent nothing: `MAX_IN_FLIGHT` requests were outstanding.
    skipped: AtomicU64,
}

/// Synthetic load running for one step; dropping it stops it.
#[derive(Debug)]
pub(crate) struct SyntheticLoad {
    config: SyntheticLoadConfig,
    counts: Arc<Counts>,
    started: Instant,
    task: JoinHandle<()>,
}

impl SyntheticLoad {
    /// Starts sending `config.rate` requests per second to `config.address`, cycling
    /// through the paths, for at most `config.max_duration`.
    pub(crate) fn start(config: &SyntheticLoadConfig) -> SyntheticLoad {
        let counts = Arc::new(Counts::default());
        let task = tokio::spawn(send(config.clone(), counts.clone()));
        SyntheticLoad {
            config: config.clone(),
            counts,
            started: Instant::now(),
            task,
        }
    }

    /// What was sent so far, for the step's evidence.
    pub(crate) fn summary(&self) -> serde_json::Value {
        let elapsed = self.started.elapsed();
        serde_json::json!({
            "address": self.config.address.to_string(),
            "paths": self.config.paths,
            "rate": self.config.rate,
            "requests": self.counts.sent.load(Ordering::Relaxed),
            "answered": self.counts.answered.load(Ordering::Relaxed),
            "failed": self.counts.failed.load(Ordering::Relaxed),
            "skipped": self.counts.skipped.load(Ordering::Relaxed),
            "seconds": elapsed.min(self.config.max_duration).as_secs_f64(),
            "stopped_at_max_duration": elapsed >= self.config.max_duration,
        })
    }
}

impl Drop for SyntheticLoad {
    fn drop(&mut self) {
        // Aborting the sender drops its JoinSet, which aborts the requests in flight.
        self.task.abort();
    }
}

async fn send(config: SyntheticLoadConfig, counts: Arc<Counts>) {
    let deadline = tokio::time::Instant::now() + config.max_duration;
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(config.rate)));
    // A late tick (a busy runtime) is not made up with a burst.
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut in_flight = JoinSet::new();
    let mut random = Xorshift::seeded();
    loop {
        ticker.tick().await;
        if tokio::time::Instant::now() >= deadline {
            break;
        }
        while in_flight.try_join_next().is_some() {}
        if in_flight.len() >= MAX_IN_FLIGHT {
            counts.skipped.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        counts.sent.fetch_add(1, Ordering::Relaxed);
        let path = config.paths[random.below(config.paths.len())].clone();
        let (counts, address) = (counts.clone(), config.address);
        in_flight.spawn(async move {
            let ok = matches!(
                tokio::time::timeout(REQUEST_TIMEOUT, get(address, &path)).await,
                Ok(Ok(status)) if status < 500
            );
            let counter = if ok { &counts.answered } else { &counts.failed };
            counter.fetch_add(1, Ordering::Relaxed);
        });
    }
    // Past the deadline: let the last requests finish.
    while in_flight.join_next().await.is_some() {}
}

/// Picks paths; no statistical quality is needed, only no pattern a router shares.
struct Xorshift(u64);

impl Xorshift {
    fn seeded() -> Xorshift {
        let mut seed = [0u8; 8];
        // A fixed seed is no worse than none: the router's pattern is not random either.
        let _ = getrandom::fill(&mut seed);
        Xorshift(u64::from_le_bytes(seed) | 1)
    }

    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

/// One `GET path` over its own HTTP/1.1 connection; the answer's status.
async fn get(address: SocketAddr, path: &str) -> std::io::Result<u16> {
    let mut stream = tokio::net::TcpStream::connect(address).await?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nUser-Agent: airlock-synthetic-load\r\nX-Airlock-Synthetic: 1\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await?;
    // The status line is in the first bytes: "HTTP/1.1 200 OK".
    let mut head = Vec::with_capacity(64);
    let mut buffer = [0u8; 8192];
    let mut total = 0;
    while total < MAX_ANSWER_BYTES {
        let read = stream.read(&mut buffer).await?;
        if read == 0 {
            break;
        }
        let wanted = (64 - head.len()).min(read);
        head.extend_from_slice(&buffer[..wanted]);
        total += read;
    }
    std::str::from_utf8(&head)
        .ok()
        .and_then(|head| head.split(' ').nth(1))
        .and_then(|status| status.get(..3))
        .and_then(|status| status.parse().ok())
        .ok_or_else(|| std::io::Error::other("not an HTTP answer"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real HTTP server on 127.0.0.1 that answers 200 to `/ok` and 503 to anything
    /// else, keeping what it was asked.
    /// Each request's head is kept whole.
    async fn server() -> (SocketAddr, Arc<std::sync::Mutex<Vec<String>>>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = seen.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    return;
                };
                let log = log.clone();
                tokio::spawn(async move {
                    let mut request = vec![0u8; 4096];
                    let read = stream.read(&mut request).await.unwrap_or(0);
                    let head = String::from_utf8_lossy(&request[..read]).into_owned();
                    let path = head.split(' ').nth(1).unwrap_or_default().to_owned();
                    let status = if path == "/ok" { "200 OK" } else { "503 Busy" };
                    log.lock().unwrap().push(head);
                    let answer = format!("HTTP/1.1 {status}\r\nContent-Length: 2\r\n\r\nhi");
                    let _ = stream.write_all(answer.as_bytes()).await;
                });
            }
        });
        (address, seen)
    }

    #[tokio::test]
    async fn sends_the_paths_at_the_rate_and_counts_failures() {
        let (address, seen) = server().await;
        let load = SyntheticLoad::start(&SyntheticLoadConfig {
            address,
            paths: vec!["/ok".to_owned(), "/busy".to_owned()],
            rate: 100,
            max_duration: Duration::from_secs(60),
        });
        tokio::time::sleep(Duration::from_millis(500)).await;
        let summary = load.summary();
        drop(load);
        let sent = summary["requests"].as_u64().unwrap();
        // 100 per second for half a second, give or take a busy machine's scheduler.
        assert!((15..=60).contains(&sent), "{summary}");
        let (answered, failed) = (
            summary["answered"].as_u64().unwrap(),
            summary["failed"].as_u64().unwrap(),
        );
        assert!(
            answered + failed <= sent && answered + failed + 2 >= sent,
            "{summary}"
        );
        // One path in two fails, the paths taken at random.
        assert!(answered >= 5 && failed >= 5, "{summary}");
        // Dropped: nothing more goes out.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let count = seen.lock().unwrap().len();
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(seen.lock().unwrap().len(), count);
        let heads = seen.lock().unwrap();
        assert!(
            heads.iter().all(|h| (h.starts_with("GET /ok HTTP/1.1\r\n")
                || h.starts_with("GET /busy HTTP/1.1\r\n"))
                && h.contains("\r\nX-Airlock-Synthetic: 1\r\n")),
            "{heads:?}"
        );
    }

    #[tokio::test]
    async fn stops_by_itself_at_its_maximum_duration() {
        let (address, seen) = server().await;
        let load = SyntheticLoad::start(&SyntheticLoadConfig {
            address,
            paths: vec!["/ok".to_owned()],
            rate: 200,
            max_duration: Duration::from_millis(200),
        });
        tokio::time::sleep(Duration::from_millis(600)).await;
        let summary = load.summary();
        assert_eq!(summary["stopped_at_max_duration"], true, "{summary}");
        let sent = summary["requests"].as_u64().unwrap();
        assert!((5..=45).contains(&sent), "{summary}");
        assert_eq!(seen.lock().unwrap().len() as u64, sent);
    }
}

//! The proxy and the sample service against real HTTP servers and clients on 127.0.0.1.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use airlock_proxy::sample::{self, SampleBehaviour, SampleService};
use airlock_proxy::{LatencyHistogram, Proxy, ProxyConfig, ProxyError, Route, VersionMetrics};
use http_body_util::{BodyExt, Either, Full};
use hyper::body::{Bytes, Incoming};
use hyper::client::conn::http1::SendRequest;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::runtime::Runtime;

/// Bound on every test's asynchronous part, so a hang fails instead of blocking CI.
const TEST_TIMEOUT: Duration = Duration::from_secs(60);

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn block_on<T>(runtime: &Runtime, future: impl Future<Output = T>) -> T {
    runtime
        .block_on(async { tokio::time::timeout(TEST_TIMEOUT, future).await })
        .expect("test timed out")
}

fn bind() -> std::net::TcpListener {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0")
}

fn route(name: &str, addr: SocketAddr, weight: u32) -> Route {
    Route {
        name: name.to_owned(),
        addr,
        weight,
    }
}

// ---------------------------------------------------------------------------------------
// Test backends: real hyper servers that count what they receive.

#[derive(Clone, Copy, Debug)]
enum Behaviour {
    /// 200 with the backend's name as the body.
    Name,
    /// Like `Name`, but the k-th, 2k-th, … request it receives gets 500.
    FailEvery(u64),
    /// Like `Name`, but closes every connection after one response (no keep-alive).
    NameThenClose,
    /// Streams the request body back as the response body.
    Echo,
    /// 200 with the method, target and some headers it saw, one per line.
    Inspect,
}

/// What a test backend counted, by itself.
#[derive(Debug, Default)]
struct Counts {
    requests: AtomicU64,
    server_errors: AtomicU64,
    connections: AtomicU64,
}

struct Backend {
    addr: SocketAddr,
    counts: Arc<Counts>,
}

impl Backend {
    fn start(runtime: &Runtime, name: &str, behaviour: Behaviour) -> Backend {
        let listener = bind();
        let addr = listener.local_addr().expect("local addr");
        listener.set_nonblocking(true).expect("non-blocking");
        let counts = Arc::new(Counts::default());
        let name = Bytes::from(name.to_owned());
        let task_counts = Arc::clone(&counts);
        let _context = runtime.enter();
        let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
        runtime.spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                task_counts.connections.fetch_add(1, Ordering::SeqCst);
                let counts = Arc::clone(&task_counts);
                let name = name.clone();
                let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                    let response = respond(behaviour, &name, &counts, request);
                    async move { Ok::<_, Infallible>(response) }
                });
                let keep_alive = !matches!(behaviour, Behaviour::NameThenClose);
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .keep_alive(keep_alive)
                        .serve_connection(TokioIo::new(stream), service),
                );
            }
        });
        Backend { addr, counts }
    }

    fn requests(&self) -> u64 {
        self.counts.requests.load(Ordering::SeqCst)
    }

    fn server_errors(&self) -> u64 {
        self.counts.server_errors.load(Ordering::SeqCst)
    }
}

type BackendBody = Either<Full<Bytes>, Incoming>;

fn respond(
    behaviour: Behaviour,
    name: &Bytes,
    counts: &Counts,
    request: Request<Incoming>,
) -> Response<BackendBody> {
    let n = counts.requests.fetch_add(1, Ordering::SeqCst) + 1;
    let full = |status: StatusCode, body: Bytes| {
        let mut response = Response::new(Either::Left(Full::new(body)));
        *response.status_mut() = status;
        response
    };
    match behaviour {
        Behaviour::Name | Behaviour::NameThenClose => full(StatusCode::OK, name.clone()),
        Behaviour::FailEvery(k) if n.is_multiple_of(k) => {
            counts.server_errors.fetch_add(1, Ordering::SeqCst);
            full(StatusCode::INTERNAL_SERVER_ERROR, name.clone())
        }
        Behaviour::FailEvery(_) => full(StatusCode::OK, name.clone()),
        Behaviour::Echo => Response::new(Either::Right(request.into_body())),
        Behaviour::Inspect => {
            let header = |name: &str| {
                let values: Vec<&str> = request
                    .headers()
                    .get_all(name)
                    .iter()
                    .map(|value| value.to_str().unwrap_or("<binary>"))
                    .collect();
                format!("{name}: {}\n", values.join(" | "))
            };
            let mut seen = format!(
                "{} {} {:?}\n",
                request.method(),
                request.uri(),
                request.version()
            );
            for name in [
                "host",
                "x-forwarded-for",
                "x-custom",
                "x-private",
                "keep-alive",
                "connection",
            ] {
                seen.push_str(&header(name));
            }
            full(StatusCode::OK, Bytes::from(seen))
        }
    }
}

// ---------------------------------------------------------------------------------------
// A keep-alive HTTP/1.1 client.

struct Client {
    sender: SendRequest<Full<Bytes>>,
    connection: tokio::task::JoinHandle<()>,
}

impl Client {
    async fn connect(addr: SocketAddr) -> Client {
        let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .expect("handshake");
        let connection = tokio::spawn(async move {
            let _ = connection.await;
        });
        Client { sender, connection }
    }

    async fn send(
        &mut self,
        request: Request<Full<Bytes>>,
    ) -> Result<(StatusCode, String), hyper::Error> {
        self.sender.ready().await?;
        let response = self.sender.send_request(request).await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    }

    async fn get(&mut self, target: &str) -> (StatusCode, String) {
        let request = Request::get(target)
            .header("host", "proxy.test")
            .body(Full::new(Bytes::new()))
            .expect("request");
        self.send(request).await.expect("response")
    }
}

/// The body of `n` sequential GETs of `/`, one string each.
async fn get_many(addr: SocketAddr, n: usize) -> Vec<(StatusCode, String)> {
    let mut client = Client::connect(addr).await;
    let mut answers = Vec::with_capacity(n);
    for _ in 0..n {
        answers.push(client.get("/").await);
    }
    answers
}

/// The bodies of `n` sequential GETs of `/` on `client`, concatenated.
async fn bodies(client: &mut Client, n: usize) -> String {
    let mut bodies = String::new();
    for _ in 0..n {
        bodies.push_str(&client.get("/").await.1);
    }
    bodies
}

fn count<'a>(answers: impl IntoIterator<Item = &'a (StatusCode, String)>, body: &str) -> usize {
    answers.into_iter().filter(|(_, b)| b == body).count()
}

fn metrics_of(proxy: &Proxy, name: &str) -> VersionMetrics {
    proxy
        .metrics()
        .get(name)
        .cloned()
        .unwrap_or_else(|| panic!("no metrics for {name}"))
}

// ---------------------------------------------------------------------------------------
// Routing.

#[test]
fn weighted_split_is_exact_in_every_block_of_total_weight() {
    let runtime = runtime();
    let stable = Backend::start(&runtime, "stable", Behaviour::Name);
    let baseline = Backend::start(&runtime, "baseline", Behaviour::Name);
    let canary = Backend::start(&runtime, "canary", Behaviour::Name);
    let proxy = Proxy::start(bind(), runtime.handle()).expect("start proxy");
    proxy
        .set_routes(vec![
            route("stable", stable.addr, 94),
            route("baseline", baseline.addr, 5),
            route("canary", canary.addr, 1),
        ])
        .expect("routes");

    let answers = block_on(&runtime, get_many(proxy.local_addr(), 300));

    for (block, answers) in answers.chunks(100).enumerate() {
        let split = (
            count(answers, "stable"),
            count(answers, "baseline"),
            count(answers, "canary"),
        );
        assert_eq!(split, (94, 5, 1), "block {block}");
    }
    assert!(answers.iter().all(|(status, _)| *status == StatusCode::OK));
    assert_eq!(
        (stable.requests(), baseline.requests(), canary.requests()),
        (282, 15, 3)
    );
    let metrics = proxy.metrics();
    assert_eq!(
        metrics.keys().collect::<Vec<_>>(),
        ["baseline", "canary", "stable"]
    );
    assert_eq!(
        (
            metrics["stable"].requests,
            metrics["baseline"].requests,
            metrics["canary"].requests
        ),
        (282, 15, 3)
    );
}

#[test]
fn weight_change_applies_to_the_next_request() {
    let runtime = runtime();
    let a = Backend::start(&runtime, "a", Behaviour::Name);
    let b = Backend::start(&runtime, "b", Behaviour::Name);
    let proxy = Proxy::start(bind(), runtime.handle()).expect("start proxy");
    block_on(&runtime, async {
        let mut client = Client::connect(proxy.local_addr()).await;
        let table = vec![route("a", a.addr, 1), route("b", b.addr, 0)];
        proxy.set_routes(table.clone()).expect("routes");
        assert_eq!(proxy.routes(), table);
        assert_eq!(bodies(&mut client, 3).await, "aaa");

        proxy
            .set_routes(vec![route("a", a.addr, 0), route("b", b.addr, 1)])
            .expect("routes");
        assert_eq!(bodies(&mut client, 3).await, "bbb");

        // 1:3 in smooth order, from the change on.
        proxy
            .set_routes(vec![route("a", a.addr, 1), route("b", b.addr, 3)])
            .expect("routes");
        assert_eq!(bodies(&mut client, 8).await, "babbbabb");
    });
    assert_eq!((a.requests(), b.requests()), (5, 9));
}

#[test]
fn counts_are_exact_under_concurrency() {
    const THREADS: usize = 8;
    const PER_THREAD: usize = 250;
    let runtime = runtime();
    let a = Backend::start(&runtime, "a", Behaviour::Name);
    let b = Backend::start(&runtime, "b", Behaviour::FailEvery(4));
    let c = Backend::start(&runtime, "c", Behaviour::FailEvery(7));
    let proxy = Proxy::start(bind(), runtime.handle()).expect("start proxy");
    proxy
        .set_routes(vec![
            route("a", a.addr, 5),
            route("b", b.addr, 3),
            route("c", c.addr, 2),
        ])
        .expect("routes");
    let addr = proxy.local_addr();

    // Client threads with runtimes of their own, so the load is really concurrent.
    let threads: Vec<_> = (0..THREADS)
        .map(|_| {
            std::thread::spawn(move || {
                let client_runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("client runtime");
                client_runtime.block_on(get_many(addr, PER_THREAD))
            })
        })
        .collect();
    let answers: Vec<(StatusCode, String)> = threads
        .into_iter()
        .flat_map(|thread| thread.join().expect("client thread"))
        .collect();

    assert_eq!(answers.len(), THREADS * PER_THREAD);
    let client_500s = answers
        .iter()
        .filter(|(status, _)| *status == StatusCode::INTERNAL_SERVER_ERROR)
        .count();
    let metrics = proxy.metrics();
    for (name, backend) in [("a", &a), ("b", &b), ("c", &c)] {
        let m = &metrics[name];
        assert_eq!(m.requests, backend.requests(), "{name}: requests");
        assert_eq!(m.status_5xx, backend.server_errors(), "{name}: 5xx");
        assert_eq!(m.errors, m.status_5xx, "{name}: errors");
        assert_eq!(m.connect_failures, 0, "{name}: connect failures");
        assert_eq!(m.latency.count(), m.requests, "{name}: latency count");
        assert_eq!(
            m.requests as usize,
            count(&answers, name),
            "{name}: answers seen by clients"
        );
    }
    // 2000 picks from a fresh table of total weight 10: the split is exact however the
    // requests interleave.
    assert_eq!((a.requests(), b.requests(), c.requests()), (1000, 600, 400));
    assert_eq!((b.server_errors(), c.server_errors()), (150, 57));
    assert_eq!(client_500s as u64, b.server_errors() + c.server_errors());
}

// ---------------------------------------------------------------------------------------
// Failures.

#[test]
fn backend_5xx_passes_through_and_counts_as_errors() {
    let runtime = runtime();
    let flaky = Backend::start(&runtime, "flaky", Behaviour::FailEvery(2));
    let proxy = Proxy::start(bind(), runtime.handle()).expect("start proxy");
    proxy
        .set_routes(vec![route("flaky", flaky.addr, 1)])
        .expect("routes");
    block_on(&runtime, get_many(proxy.local_addr(), 2));
    let before = metrics_of(&proxy, "flaky");

    let answers = block_on(&runtime, get_many(proxy.local_addr(), 10));

    let statuses: Vec<u16> = answers.iter().map(|(status, _)| status.as_u16()).collect();
    assert_eq!(statuses, [200, 500, 200, 500, 200, 500, 200, 500, 200, 500]);
    assert!(
        answers.iter().all(|(_, body)| body == "flaky"),
        "bodies pass through"
    );
    let window = metrics_of(&proxy, "flaky").since(&before);
    assert_eq!(
        (
            window.requests,
            window.status_5xx,
            window.errors,
            window.connect_failures
        ),
        (10, 5, 5, 0)
    );
    assert_eq!(window.error_rate(), Some(0.5));
    assert_eq!(window.latency.count(), 10);
}

#[test]
fn dead_backend_answers_502_and_counts_connect_failures() {
    let runtime = runtime();
    // A port that was just bound and closed: nothing listens there.
    let dead_addr = bind().local_addr().expect("local addr");
    let live = Backend::start(&runtime, "live", Behaviour::Name);
    let proxy = Proxy::start(bind(), runtime.handle()).expect("start proxy");
    proxy
        .set_routes(vec![
            route("dead", dead_addr, 1),
            route("live", live.addr, 1),
        ])
        .expect("routes");

    let answers = block_on(&runtime, get_many(proxy.local_addr(), 6));

    let dead_answers: Vec<_> = answers.iter().filter(|(_, body)| body != "live").collect();
    assert_eq!(dead_answers.len(), 3);
    for (status, body) in dead_answers {
        assert_eq!(
            (*status, body.as_str()),
            (StatusCode::BAD_GATEWAY, "backend unreachable\n")
        );
    }
    let dead = metrics_of(&proxy, "dead");
    assert_eq!(
        (
            dead.requests,
            dead.connect_failures,
            dead.errors,
            dead.status_5xx
        ),
        (3, 3, 3, 0)
    );
    assert_eq!(dead.error_rate(), Some(1.0));
    let live_metrics = metrics_of(&proxy, "live");
    assert_eq!((live_metrics.requests, live_metrics.errors), (3, 0));
    assert_eq!(live.requests(), 3);
}

#[test]
fn silent_backend_answers_504_after_the_response_head_timeout() {
    let runtime = runtime();
    // Bound but never accepted: the kernel completes the handshake, nobody answers.
    let silent = bind();
    let config = ProxyConfig {
        response_head_timeout: Duration::from_millis(300),
        ..ProxyConfig::default()
    };
    let proxy = Proxy::start_with_config(bind(), runtime.handle(), config).expect("start proxy");
    proxy
        .set_routes(vec![route("silent", silent.local_addr().expect("addr"), 1)])
        .expect("routes");

    let started = Instant::now();
    let answers = block_on(&runtime, get_many(proxy.local_addr(), 1));

    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(answers[0].0, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(answers[0].1, "backend did not answer in time\n");
    let metrics = metrics_of(&proxy, "silent");
    assert_eq!(
        (metrics.requests, metrics.connect_failures, metrics.errors),
        (1, 1, 1)
    );
    assert!(metrics.latency.count_above(Duration::from_millis(300)) <= 1);
    assert!(metrics.latency.quantile(1.0).expect("one observation") >= Duration::from_millis(300));
}

#[test]
fn no_backend_answers_503_and_counts_nothing() {
    let runtime = runtime();
    let idle = Backend::start(&runtime, "idle", Behaviour::Name);
    let proxy = Proxy::start(bind(), runtime.handle()).expect("start proxy");
    let empty = block_on(&runtime, get_many(proxy.local_addr(), 1));
    assert_eq!(
        empty,
        [(StatusCode::SERVICE_UNAVAILABLE, "no backend\n".to_owned())]
    );

    proxy
        .set_routes(vec![route("idle", idle.addr, 0)])
        .expect("routes");
    let zero = block_on(&runtime, get_many(proxy.local_addr(), 2));
    assert!(
        zero.iter()
            .all(|(status, body)| *status == StatusCode::SERVICE_UNAVAILABLE
                && body == "no backend\n")
    );
    assert_eq!(metrics_of(&proxy, "idle"), VersionMetrics::default());
    assert_eq!(idle.requests(), 0);
}

// ---------------------------------------------------------------------------------------
// Measurements and the table.

#[test]
fn latency_quantiles_separate_a_slow_backend() {
    // Proxy and loopback overhead on a loaded 2-core machine; the lower bound has no slack.
    const OVERHEAD: Duration = Duration::from_millis(20);
    let runtime = runtime();
    let delay = Duration::from_millis(50);
    let slow = sample::serve(
        bind(),
        SampleBehaviour {
            error_rate: 0.0,
            latency: delay,
            ..SampleBehaviour::default()
        },
        "slow".to_owned(),
        runtime.handle(),
    )
    .expect("slow sample");
    let fast = sample::serve(
        bind(),
        SampleBehaviour::default(),
        "fast".to_owned(),
        runtime.handle(),
    )
    .expect("fast sample");
    let proxy = Proxy::start(bind(), runtime.handle()).expect("start proxy");
    proxy
        .set_routes(vec![
            route("slow", slow.local_addr(), 1),
            route("fast", fast.local_addr(), 1),
        ])
        .expect("routes");

    let answers = block_on(&runtime, get_many(proxy.local_addr(), 20));

    assert_eq!(
        (count(&answers, "ok slow\n"), count(&answers, "ok fast\n")),
        (10, 10)
    );
    let metrics = proxy.metrics();
    let slow_p50 = metrics["slow"]
        .latency
        .quantile(0.5)
        .expect("slow observations");
    let limit = (delay + OVERHEAD).mul_f64(1.0 + LatencyHistogram::RELATIVE_ERROR)
        + Duration::from_micros(1);
    assert!(
        slow_p50 >= delay && slow_p50 <= limit,
        "slow p50 {slow_p50:?}, expected in [{delay:?}, {limit:?}]"
    );
    let fast_p50 = metrics["fast"]
        .latency
        .quantile(0.5)
        .expect("fast observations");
    assert!(fast_p50 < delay, "fast p50 {fast_p50:?}");
    let threshold = Duration::from_millis(45);
    assert_eq!(metrics["slow"].latency.count_above(threshold), 10);
    assert_eq!(metrics["fast"].latency.count_above(threshold), 0);
}

#[test]
fn metrics_survive_route_removal() {
    let runtime = runtime();
    let a = Backend::start(&runtime, "a", Behaviour::Name);
    let b = Backend::start(&runtime, "b", Behaviour::Name);
    let proxy = Proxy::start(bind(), runtime.handle()).expect("start proxy");
    proxy
        .set_routes(vec![route("a", a.addr, 1), route("b", b.addr, 1)])
        .expect("routes");
    block_on(&runtime, get_many(proxy.local_addr(), 4));
    let before_removal = metrics_of(&proxy, "a");
    assert_eq!(before_removal.requests, 2);

    proxy
        .set_routes(vec![route("b", b.addr, 1)])
        .expect("routes");
    block_on(&runtime, get_many(proxy.local_addr(), 2));
    assert_eq!(
        metrics_of(&proxy, "a"),
        before_removal,
        "removed route keeps its counters"
    );
    assert_eq!(metrics_of(&proxy, "b").requests, 4);

    proxy
        .set_routes(vec![route("a", a.addr, 1)])
        .expect("routes");
    block_on(&runtime, get_many(proxy.local_addr(), 1));
    assert_eq!(
        metrics_of(&proxy, "a").requests,
        3,
        "a name set again continues its counters"
    );
    assert_eq!((a.requests(), b.requests()), (3, 4));
}

#[test]
fn set_routes_rejects_bad_tables_and_changes_nothing() {
    let runtime = runtime();
    let a = Backend::start(&runtime, "a", Behaviour::Name);
    let proxy = Proxy::start(bind(), runtime.handle()).expect("start proxy");
    let table = vec![route("a", a.addr, 1)];
    proxy.set_routes(table.clone()).expect("routes");

    let duplicate = proxy.set_routes(vec![
        route("x", a.addr, 1),
        route("a", a.addr, 1),
        route("a", a.addr, 2),
    ]);
    assert!(
        matches!(&duplicate, Err(ProxyError::DuplicateRouteName { name }) if name == "a"),
        "{duplicate:?}"
    );
    let empty_name = proxy.set_routes(vec![route("y", a.addr, 1), route("", a.addr, 1)]);
    assert!(
        matches!(empty_name, Err(ProxyError::EmptyRouteName { index: 1 })),
        "{empty_name:?}"
    );

    assert_eq!(proxy.routes(), table);
    assert_eq!(
        proxy.metrics().keys().collect::<Vec<_>>(),
        ["a"],
        "refused names leave no trace"
    );
    let answers = block_on(&runtime, get_many(proxy.local_addr(), 3));
    assert_eq!(count(&answers, "a"), 3);
}

// ---------------------------------------------------------------------------------------
// Forwarding.

#[test]
fn forwards_method_target_and_headers_without_hop_by_hop_ones() {
    let runtime = runtime();
    let inspect = Backend::start(&runtime, "inspect", Behaviour::Inspect);
    let proxy = Proxy::start(bind(), runtime.handle()).expect("start proxy");
    proxy
        .set_routes(vec![route("inspect", inspect.addr, 1)])
        .expect("routes");

    let (status, seen) = block_on(&runtime, async {
        let mut client = Client::connect(proxy.local_addr()).await;
        let request = Request::put("/some/path?a=1&b=two")
            .header("host", "app.example")
            .header("x-forwarded-for", "10.1.2.3")
            .header("x-custom", "kept")
            .header("connection", "x-private")
            .header("x-private", "dropped")
            .header("keep-alive", "timeout=5")
            .body(Full::new(Bytes::from_static(b"payload")))
            .expect("request");
        client.send(request).await.expect("response")
    });

    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        seen,
        "PUT /some/path?a=1&b=two HTTP/1.1\n\
         host: app.example\n\
         x-forwarded-for: 10.1.2.3, 127.0.0.1\n\
         x-custom: kept\n\
         x-private: \n\
         keep-alive: \n\
         connection: \n"
    );
}

#[test]
fn request_and_response_bodies_stream_through_intact() {
    const CHUNK: usize = 64 * 1024;
    const TOTAL: usize = 5 * 1024 * 1024;
    let runtime = runtime();
    let echo = Backend::start(&runtime, "echo", Behaviour::Echo);
    let proxy = Proxy::start(bind(), runtime.handle()).expect("start proxy");
    proxy
        .set_routes(vec![route("echo", echo.addr, 1)])
        .expect("routes");
    let payload: Vec<u8> = (0..TOTAL).map(|i| (i % 251) as u8).collect();

    let received = block_on(&runtime, async {
        let stream = tokio::net::TcpStream::connect(proxy.local_addr())
            .await
            .expect("connect");
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .expect("handshake");
        tokio::spawn(connection);
        let (mut body_sender, body) = http_body_util::channel::Channel::<Bytes, Infallible>::new(4);
        let request = Request::post("/echo")
            .header("host", "proxy.test")
            .body(body)
            .expect("request");
        let mut chunks: Vec<Bytes> = payload.chunks(CHUNK).map(Bytes::copy_from_slice).collect();
        let first = chunks.remove(0);
        body_sender
            .send_data(first)
            .await
            .expect("send first chunk");

        // The first chunk comes back before the rest is sent: neither the proxy nor the
        // backend waits for the whole request body.
        let response = sender.send_request(request).await.expect("response head");
        assert_eq!(response.status(), StatusCode::OK);
        let mut response_body = response.into_body();
        let mut received = Vec::with_capacity(TOTAL);
        while received.len() < CHUNK {
            let frame = response_body
                .frame()
                .await
                .expect("echo of the first chunk")
                .expect("frame");
            received.extend_from_slice(&frame.into_data().expect("data frame"));
        }

        let sending = tokio::spawn(async move {
            for chunk in chunks {
                body_sender.send_data(chunk).await.expect("send chunk");
            }
        });
        while let Some(frame) = response_body.frame().await {
            if let Ok(data) = frame.expect("frame").into_data() {
                received.extend_from_slice(&data);
            }
        }
        sending.await.expect("sender task");
        received
    });

    assert_eq!(received.len(), TOTAL);
    assert!(received == payload, "echoed body differs");
    assert_eq!(metrics_of(&proxy, "echo").requests, 1);
}

#[test]
fn keep_alive_reuses_backend_connections() {
    let runtime = runtime();
    let backend = Backend::start(&runtime, "b", Behaviour::Name);
    let proxy = Proxy::start(bind(), runtime.handle()).expect("start proxy");
    proxy
        .set_routes(vec![route("b", backend.addr, 1)])
        .expect("routes");

    block_on(&runtime, get_many(proxy.local_addr(), 50));

    assert_eq!(backend.requests(), 50);
    let connections = backend.counts.connections.load(Ordering::SeqCst);
    assert!(
        connections <= 2,
        "{connections} backend connections for 50 sequential requests"
    );
}

#[test]
fn backend_closing_connections_costs_no_request() {
    let runtime = runtime();
    let backend = Backend::start(&runtime, "b", Behaviour::NameThenClose);
    let proxy = Proxy::start(bind(), runtime.handle()).expect("start proxy");
    proxy
        .set_routes(vec![route("b", backend.addr, 1)])
        .expect("routes");

    let answers = block_on(&runtime, get_many(proxy.local_addr(), 30));

    assert_eq!(count(&answers, "b"), 30);
    let metrics = metrics_of(&proxy, "b");
    assert_eq!((metrics.requests, metrics.errors), (30, 0));
    assert_eq!(backend.counts.connections.load(Ordering::SeqCst), 30);
}

#[test]
fn shutdown_closes_connections_and_stops_accepting() {
    let runtime = runtime();
    let backend = Backend::start(&runtime, "b", Behaviour::Name);
    let proxy = Proxy::start(bind(), runtime.handle()).expect("start proxy");
    proxy
        .set_routes(vec![route("b", backend.addr, 1)])
        .expect("routes");
    let addr = proxy.local_addr();
    block_on(&runtime, async {
        let mut client = Client::connect(addr).await;
        assert_eq!(client.get("/").await.1, "b");

        proxy.shutdown();

        // The open keep-alive connection is closed by the proxy.
        client.connection.await.expect("client connection task");
        // A new connection is refused, or reset before any answer.
        if let Ok(stream) = tokio::net::TcpStream::connect(addr).await {
            let (mut sender, connection) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream))
                    .await
                    .expect("handshake");
            tokio::spawn(connection);
            let request = Request::get("/")
                .header("host", "proxy.test")
                .body(Full::new(Bytes::new()))
                .expect("request");
            assert!(
                sender.send_request(request).await.is_err(),
                "answered after shutdown"
            );
        }
    });
    assert_eq!(metrics_of(&proxy, "b").requests, 1);
}

// ---------------------------------------------------------------------------------------
// The sample service.

fn start_sample(runtime: &Runtime, behaviour: &str, version: &str) -> SampleService {
    let behaviour = SampleBehaviour::parse(behaviour).expect("behaviour");
    sample::serve(bind(), behaviour, version.to_owned(), runtime.handle()).expect("sample service")
}

/// The samples of a text exposition page: `name{labels}` to value. Fails on any line
/// that is neither a comment nor `series value`.
fn parse_exposition(page: &str) -> BTreeMap<String, f64> {
    let mut samples = BTreeMap::new();
    for line in page.lines() {
        if line.starts_with("# HELP ") || line.starts_with("# TYPE ") {
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("not a sample: {line:?}"));
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line:?}"));
        assert!(series.ends_with('}'), "labels expected in {line:?}");
        assert!(
            samples.insert(series.to_owned(), value).is_none(),
            "repeated series {series}"
        );
    }
    samples
}

#[test]
fn sample_error_rate_half_fails_exactly_half() {
    let runtime = runtime();
    let service = start_sample(&runtime, "error_rate = 0.5\n", "v1");

    let answers = block_on(&runtime, get_many(service.local_addr(), 100));

    assert_eq!(
        answers
            .iter()
            .filter(|(status, _)| *status == StatusCode::INTERNAL_SERVER_ERROR)
            .count(),
        50
    );
    assert_eq!(count(&answers, "ok v1\n"), 50);
    assert_eq!(count(&answers, "error v1\n"), 50);
    assert_eq!(answers[0].0, StatusCode::OK);
    assert_eq!(answers[1].0, StatusCode::INTERNAL_SERVER_ERROR);
}

#[test]
fn sample_metrics_match_what_was_served() {
    let runtime = runtime();
    let service = start_sample(
        &runtime,
        "# a tenth fails\nerror_rate = 0.1\nlatency_ms = 1\n",
        "v\"2",
    );
    let (answers, metrics_page, content_type, health) = block_on(&runtime, async {
        let answers = get_many(service.local_addr(), 40).await;
        let mut client = Client::connect(service.local_addr()).await;
        let response = client
            .sender
            .send_request(
                Request::get("/metrics")
                    .header("host", "s")
                    .body(Full::new(Bytes::new()))
                    .expect("request"),
            )
            .await
            .expect("metrics");
        let content_type = response.headers().get("content-type").cloned();
        let page = response
            .into_body()
            .collect()
            .await
            .expect("metrics body")
            .to_bytes();
        let health = client.get("/healthz").await;
        (
            answers,
            String::from_utf8(page.to_vec()).expect("utf-8"),
            content_type,
            health,
        )
    });

    assert_eq!(health, (StatusCode::OK, "ok\n".to_owned()));
    assert_eq!(
        content_type.as_ref().and_then(|value| value.to_str().ok()),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let served_500 = answers
        .iter()
        .filter(|(status, _)| *status == StatusCode::INTERNAL_SERVER_ERROR)
        .count();
    assert_eq!(served_500, 4);
    let samples = parse_exposition(&metrics_page);
    let sample = |series: &str| {
        *samples
            .get(series)
            .unwrap_or_else(|| panic!("{series} missing from\n{metrics_page}"))
    };
    assert_eq!(
        sample(r#"sample_requests_total{version="v\"2",code="200"}"#),
        36.0
    );
    assert_eq!(
        sample(r#"sample_requests_total{version="v\"2",code="500"}"#),
        4.0
    );
    assert_eq!(
        sample(r#"sample_request_duration_seconds_count{version="v\"2"}"#),
        40.0
    );
    assert_eq!(
        sample(r#"sample_request_duration_seconds_bucket{version="v\"2",le="+Inf"}"#),
        40.0
    );
    // Every request took the added millisecond, none took 10 s.
    let sum = sample(r#"sample_request_duration_seconds_sum{version="v\"2"}"#);
    assert!((0.040..10.0).contains(&sum), "sum {sum}");
    assert_eq!(
        sample(r#"sample_request_duration_seconds_bucket{version="v\"2",le="10"}"#),
        40.0
    );
    let mut previous = 0.0;
    for le in [
        "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf",
    ] {
        let cumulative = sample(&format!(
            r#"sample_request_duration_seconds_bucket{{version="v\"2",le="{le}"}}"#
        ));
        assert!(
            cumulative >= previous,
            "buckets must be cumulative at le={le}"
        );
        previous = cumulative;
    }
    assert!(metrics_page.contains("# TYPE sample_requests_total counter\n"));
    assert!(metrics_page.contains("# TYPE sample_request_duration_seconds histogram\n"));
    assert_eq!(samples.len(), 2 + 12 + 2);
}

#[test]
fn sample_health_always_answers_and_unknown_paths_get_404() {
    let runtime = runtime();
    let service = start_sample(&runtime, "error_rate = 1\n", "v3");
    let (root, health, missing) = block_on(&runtime, async {
        let mut client = Client::connect(service.local_addr()).await;
        (
            client.get("/").await,
            client.get("/healthz").await,
            client.get("/nope").await,
        )
    });
    assert_eq!(
        root,
        (StatusCode::INTERNAL_SERVER_ERROR, "error v3\n".to_owned())
    );
    assert_eq!(health, (StatusCode::OK, "ok\n".to_owned()));
    assert_eq!(missing.0, StatusCode::NOT_FOUND);

    let out_of_range = SampleBehaviour {
        error_rate: 2.0,
        latency: Duration::ZERO,
        ..SampleBehaviour::default()
    };
    let refused = sample::serve(bind(), out_of_range, "v".to_owned(), runtime.handle());
    assert!(
        matches!(refused, Err(ProxyError::InvalidSampleBehaviour { .. })),
        "{refused:?}"
    );
}

#[test]
fn sample_run_serves_from_a_runtime_of_its_own() {
    let listener = bind();
    let addr = listener.local_addr().expect("local addr");
    // `run` blocks for the life of the process, as under `airlock sample-service`; the
    // thread ends with the test binary.
    std::thread::spawn(move || {
        sample::run(
            listener,
            SampleBehaviour::default(),
            "standalone".to_owned(),
        )
    });
    let runtime = runtime();
    let answers = block_on(&runtime, get_many(addr, 3));
    assert_eq!(count(&answers, "ok standalone\n"), 3);
}

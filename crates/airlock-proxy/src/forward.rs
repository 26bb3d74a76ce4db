//! Forwarding one request to one backend: header rewriting, the keep-alive connection
//! pool, failure answers, and the response body that hands its connection back.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::{Body, Bytes, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::http::uri::PathAndQuery;
use hyper::{Request, Response, StatusCode, Uri, Version};
use hyper_util::rt::TokioIo;
use tokio::sync::watch;

use crate::lock;
use crate::metrics::Outcome;
use crate::server::shutdown_signalled;

/// Headers that describe one connection, not the message (RFC 9110 section 7.6.1, plus
/// the legacy ones other proxies drop): never forwarded in either direction.
const HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("proxy-connection"),
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Idle keep-alive connections to backends, by address.
///
/// A connection is returned only after its response body was read to the end, so a
/// pooled connection is idle or about to be. Its driver task ends when the backend closes
/// it, when the last handle to it is dropped, or at shutdown.
#[derive(Debug)]
pub(crate) struct BackendPool {
    idle: Mutex<HashMap<SocketAddr, Vec<SendRequest<Incoming>>>>,
    max_idle_per_backend: usize,
    connect_timeout: Duration,
    response_head_timeout: Duration,
    signal: watch::Receiver<bool>,
}

/// Why no connection to a backend could be had.
enum ConnectFailure {
    TimedOut,
    Failed,
}

impl BackendPool {
    pub(crate) fn new(
        max_idle_per_backend: usize,
        connect_timeout: Duration,
        response_head_timeout: Duration,
        signal: watch::Receiver<bool>,
    ) -> Self {
        BackendPool {
            idle: Mutex::new(HashMap::new()),
            max_idle_per_backend,
            connect_timeout,
            response_head_timeout,
            signal,
        }
    }

    /// Drops idle connections to backends not in `keep` (removed routes).
    pub(crate) fn retain(&self, keep: &[SocketAddr]) {
        lock(&self.idle).retain(|addr, _| keep.contains(addr));
    }

    /// Drops every idle connection.
    pub(crate) fn clear(&self) {
        lock(&self.idle).clear();
    }

    fn put_back(&self, addr: SocketAddr, sender: SendRequest<Incoming>) {
        if sender.is_closed() || *self.signal.borrow() {
            return;
        }
        let mut idle = lock(&self.idle);
        let connections = idle.entry(addr).or_default();
        if connections.len() < self.max_idle_per_backend {
            connections.push(sender);
        }
    }

    /// An idle connection to `addr` that is ready for a request, if the pool has one.
    async fn take_idle(&self, addr: SocketAddr) -> Option<SendRequest<Incoming>> {
        loop {
            let mut sender = lock(&self.idle).get_mut(&addr)?.pop()?;
            if sender.is_closed() {
                continue;
            }
            // A returned connection may still be finishing the previous exchange (its
            // request body, typically); one that stays busy is left to finish alone.
            if let Ok(Ok(())) = tokio::time::timeout(self.connect_timeout, sender.ready()).await {
                return Some(sender);
            }
        }
    }

    async fn connect(&self, addr: SocketAddr) -> Result<SendRequest<Incoming>, ConnectFailure> {
        let stream =
            match tokio::time::timeout(self.connect_timeout, tokio::net::TcpStream::connect(addr))
                .await
            {
                Err(_elapsed) => return Err(ConnectFailure::TimedOut),
                Ok(Err(_refused)) => return Err(ConnectFailure::Failed),
                Ok(Ok(stream)) => stream,
            };
        let _ = stream.set_nodelay(true);
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|_| ConnectFailure::Failed)?;
        let mut signal = self.signal.clone();
        tokio::spawn(async move {
            tokio::select! {
                biased;
                () = shutdown_signalled(&mut signal) => {}
                // The backend closed or broke the connection; the request in flight, if
                // any, has its error already.
                _ = connection => {}
            }
        });
        Ok(sender)
    }
}

/// Sends `request` (from `client`) to the backend at `addr` and returns the response to
/// give the client, with the outcome to record for the route.
///
/// Idle pooled connections are tried first; one the backend closed meanwhile hands the
/// request back unsent, and the next (finally a fresh one) is tried. A request that may
/// have reached the backend is never sent twice.
pub(crate) async fn forward(
    pool: &Arc<BackendPool>,
    addr: SocketAddr,
    request: Request<Incoming>,
    client: SocketAddr,
) -> (Response<ProxyBody>, Outcome) {
    let mut request = backend_request(request, client.ip(), addr);
    loop {
        let (mut sender, pooled) = match pool.take_idle(addr).await {
            Some(sender) => (sender, true),
            None => match pool.connect(addr).await {
                Ok(sender) => (sender, false),
                Err(ConnectFailure::TimedOut) => {
                    return (
                        message(StatusCode::GATEWAY_TIMEOUT, "backend connect timed out\n"),
                        Outcome::BackendFailed,
                    );
                }
                Err(ConnectFailure::Failed) => {
                    return (
                        message(StatusCode::BAD_GATEWAY, "backend unreachable\n"),
                        Outcome::BackendFailed,
                    );
                }
            },
        };
        let sent =
            tokio::time::timeout(pool.response_head_timeout, sender.try_send_request(request))
                .await;
        match sent {
            // Dropping the sender and the request future closes the connection.
            Err(_elapsed) => {
                return (
                    message(
                        StatusCode::GATEWAY_TIMEOUT,
                        "backend did not answer in time\n",
                    ),
                    Outcome::BackendFailed,
                );
            }
            Ok(Ok(response)) => {
                let server_error = response.status().is_server_error();
                let response = client_response(
                    response,
                    Lease {
                        pool: Arc::clone(pool),
                        addr,
                        sender,
                    },
                );
                return (response, Outcome::Answered { server_error });
            }
            Ok(Err(mut failed)) => {
                if pooled && let Some(unsent) = failed.take_message() {
                    request = unsent;
                    continue;
                }
                let error = failed.into_error();
                // A user error here is the client's request body failing mid-stream.
                return if error.is_user() {
                    (
                        message(StatusCode::BAD_REQUEST, "request body failed\n"),
                        Outcome::ClientFailed,
                    )
                } else {
                    (
                        message(StatusCode::BAD_GATEWAY, "backend failed\n"),
                        Outcome::BackendFailed,
                    )
                };
            }
        }
    }
}

/// The request as the backend gets it: origin-form target, HTTP/1.1, hop-by-hop headers
/// removed, the client's address appended to `x-forwarded-for`, the body untouched
/// (streamed as it arrives).
fn backend_request(
    request: Request<Incoming>,
    client: IpAddr,
    backend: SocketAddr,
) -> Request<Incoming> {
    let (mut parts, body) = request.into_parts();
    if !parts.headers.contains_key(header::HOST) {
        let host = parts
            .uri
            .authority()
            .map(|authority| authority.as_str().to_owned())
            .unwrap_or_else(|| backend.to_string());
        if let Ok(host) = HeaderValue::from_str(&host) {
            parts.headers.insert(header::HOST, host);
        }
    }
    let target = parts
        .uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    parts.uri = Uri::from(target);
    parts.version = Version::HTTP_11;
    // Extensions carry the client connection's state (upgrades), meaningless upstream.
    parts.extensions.clear();
    remove_hop_by_hop(&mut parts.headers);
    append_forwarded_for(&mut parts.headers, client);
    Request::from_parts(parts, body)
}

/// The backend's response as the client gets it: hop-by-hop headers removed, the body
/// streamed, its connection returned to the pool once the body was read to the end.
fn client_response(response: Response<Incoming>, lease: Lease) -> Response<ProxyBody> {
    let (mut parts, body) = response.into_parts();
    parts.extensions.clear();
    remove_hop_by_hop(&mut parts.headers);
    Response::from_parts(
        parts,
        ProxyBody {
            kind: BodyKind::Backend {
                body,
                finished: false,
                lease: Some(lease),
            },
        },
    )
}

/// A short plain-text answer of the proxy's own.
pub(crate) fn message(status: StatusCode, text: &'static str) -> Response<ProxyBody> {
    let mut response = Response::new(ProxyBody {
        kind: BodyKind::Message(Some(Bytes::from_static(text.as_bytes()))),
    });
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn remove_hop_by_hop(headers: &mut HeaderMap) {
    // Headers named in `Connection` are hop-by-hop too.
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named.iter().chain(HOP_BY_HOP.iter()) {
        headers.remove(name);
    }
}

fn append_forwarded_for(headers: &mut HeaderMap, client: IpAddr) {
    let client = client.to_string();
    let mut value: Vec<u8> = Vec::new();
    for earlier in headers.get_all("x-forwarded-for") {
        value.extend_from_slice(earlier.as_bytes());
        value.extend_from_slice(b", ");
    }
    value.extend_from_slice(client.as_bytes());
    // Joining valid header values with ", " gives a valid one; fall back to the client
    // alone rather than fail the request if not.
    let value = HeaderValue::from_bytes(&value).or_else(|_| HeaderValue::from_str(&client));
    if let Ok(value) = value {
        headers.insert("x-forwarded-for", value);
    }
}

/// A backend connection on loan to one response body.
struct Lease {
    pool: Arc<BackendPool>,
    addr: SocketAddr,
    sender: SendRequest<Incoming>,
}

/// The body of every response the proxy sends: a backend's, streamed, or a message of
/// the proxy's own.
pub(crate) struct ProxyBody {
    kind: BodyKind,
}

enum BodyKind {
    Backend {
        body: Incoming,
        /// The backend body ended cleanly (some bodies only know it when polled past their end).
        finished: bool,
        lease: Option<Lease>,
    },
    Message(Option<Bytes>),
}

impl std::fmt::Debug for ProxyBody {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.kind {
            BodyKind::Backend { .. } => "backend",
            BodyKind::Message(_) => "message",
        };
        formatter
            .debug_struct("ProxyBody")
            .field("kind", &kind)
            .finish()
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match &mut self.get_mut().kind {
            BodyKind::Backend { body, finished, .. } => {
                let polled = Pin::new(body).poll_frame(context);
                if let Poll::Ready(None) = polled {
                    *finished = true;
                }
                polled
            }
            BodyKind::Message(text) => Poll::Ready(text.take().map(|text| Ok(Frame::data(text)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            BodyKind::Backend { body, finished, .. } => *finished || body.is_end_stream(),
            BodyKind::Message(text) => text.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            BodyKind::Backend { body, .. } => body.size_hint(),
            BodyKind::Message(text) => {
                SizeHint::with_exact(text.as_ref().map_or(0, |text| text.len() as u64))
            }
        }
    }
}

impl Drop for ProxyBody {
    fn drop(&mut self) {
        // Only a body read to its end leaves the connection reusable; otherwise dropping
        // the sender lets hyper close it.
        if let BodyKind::Backend {
            body,
            finished,
            lease,
        } = &mut self.kind
            && (*finished || body.is_end_stream())
            && let Some(lease) = lease.take()
        {
            lease.pool.put_back(lease.addr, lease.sender);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(*name, HeaderValue::from_static(value));
        }
        headers
    }

    #[test]
    fn hop_by_hop_headers_and_those_named_in_connection_are_removed() {
        let mut map = headers(&[
            ("connection", "keep-alive, x-private"),
            ("connection", "X-Other"),
            ("keep-alive", "timeout=5"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("x-private", "1"),
            ("x-other", "2"),
            ("x-kept", "3"),
            ("content-length", "4"),
        ]);
        remove_hop_by_hop(&mut map);
        let mut names: Vec<&str> = map.keys().map(HeaderName::as_str).collect();
        names.sort_unstable();
        assert_eq!(names, ["content-length", "x-kept"]);
    }

    #[test]
    fn forwarded_for_appends_to_earlier_proxies() {
        let check = |pairs: &[(&'static str, &'static str)], client: IpAddr, expected: &str| {
            let mut map = headers(pairs);
            append_forwarded_for(&mut map, client);
            let values: Vec<&[u8]> = map
                .get_all("x-forwarded-for")
                .iter()
                .map(HeaderValue::as_bytes)
                .collect();
            assert_eq!(values, [expected.as_bytes()]);
        };
        let local = IpAddr::from([127, 0, 0, 1]);
        check(&[], local, "127.0.0.1");
        check(
            &[("x-forwarded-for", "10.0.0.1")],
            local,
            "10.0.0.1, 127.0.0.1",
        );
        check(
            &[
                ("x-forwarded-for", "10.0.0.1, 10.0.0.2"),
                ("x-forwarded-for", "10.0.0.3"),
            ],
            IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1]),
            "10.0.0.1, 10.0.0.2, 10.0.0.3, ::1",
        );
    }
}

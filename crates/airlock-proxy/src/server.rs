//! The HTTP/1.1 accept loop shared by the proxy and the sample service, and its shutdown.

use std::convert::Infallible;
use std::error::Error as StdError;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::{Body, Bytes, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::runtime::Handle;
use tokio::sync::watch;

use crate::ProxyError;

/// How long a client may take to send a request head; past it the connection is closed.
/// Bounds what an idle or trickling client can hold.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Pause after a failed `accept` (out of file descriptors, typically), so that the loop
/// does not spin while the condition lasts.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);

/// A running server: tasks on a runtime that end when [`Server::shutdown`] is called or
/// the `Server` is dropped.
#[derive(Debug)]
pub(crate) struct Server {
    local_addr: SocketAddr,
    shutdown: watch::Sender<bool>,
}

impl Server {
    /// Serves HTTP/1.1 on `listener` from tasks spawned on `runtime`, answering each
    /// request with `handler(request, client address)`. Sending `true` on `shutdown` (or
    /// dropping the `Server`) ends the tasks; other tasks may subscribe to it beforehand.
    pub(crate) fn start<H, F, B>(
        listener: std::net::TcpListener,
        runtime: &Handle,
        shutdown: watch::Sender<bool>,
        handler: H,
    ) -> Result<Server, ProxyError>
    where
        H: Fn(Request<Incoming>, SocketAddr) -> F + Send + Sync + 'static,
        F: Future<Output = Response<B>> + Send + 'static,
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn StdError + Send + Sync>>,
    {
        listener
            .set_nonblocking(true)
            .map_err(ProxyError::Listener)?;
        let local_addr = listener.local_addr().map_err(ProxyError::Listener)?;
        let listener = {
            let _context = runtime.enter();
            tokio::net::TcpListener::from_std(listener).map_err(ProxyError::Listener)?
        };
        runtime.spawn(accept_loop(
            listener,
            Arc::new(handler),
            shutdown.subscribe(),
        ));
        Ok(Server {
            local_addr,
            shutdown,
        })
    }

    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting and ends every connection task at its next poll (in-flight
    /// requests are cut off). Idempotent.
    pub(crate) fn shutdown(&self) {
        self.shutdown.send_replace(true);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Resolves once `signal`'s server has shut down (or was dropped).
pub(crate) async fn shutdown_signalled(signal: &mut watch::Receiver<bool>) {
    // An error means the sender is gone: the server was dropped, which is a shutdown too.
    let _ = signal.wait_for(|&stopped| stopped).await;
}

async fn accept_loop<H, F, B>(
    listener: tokio::net::TcpListener,
    handler: Arc<H>,
    mut signal: watch::Receiver<bool>,
) where
    H: Fn(Request<Incoming>, SocketAddr) -> F + Send + Sync + 'static,
    F: Future<Output = Response<B>> + Send + 'static,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    loop {
        // Biased: once shut down, never accept again, even with connections waiting.
        let accepted = tokio::select! {
            biased;
            () = shutdown_signalled(&mut signal) => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, client)) => {
                // Small responses must not wait for Nagle's algorithm.
                let _ = stream.set_nodelay(true);
                tokio::spawn(serve_connection(
                    stream,
                    client,
                    Arc::clone(&handler),
                    signal.clone(),
                ));
            }
            Err(_) => {
                tokio::select! {
                    biased;
                    () = shutdown_signalled(&mut signal) => return,
                    () = tokio::time::sleep(ACCEPT_ERROR_PAUSE) => {}
                }
            }
        }
    }
}

async fn serve_connection<H, F, B>(
    stream: tokio::net::TcpStream,
    client: SocketAddr,
    handler: Arc<H>,
    mut signal: watch::Receiver<bool>,
) where
    H: Fn(Request<Incoming>, SocketAddr) -> F + Send + Sync + 'static,
    F: Future<Output = Response<B>> + Send + 'static,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    let service = service_fn(move |request| {
        let response = handler(request, client);
        async move { Ok::<_, Infallible>(response.await) }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    tokio::select! {
        biased;
        () = shutdown_signalled(&mut signal) => {}
        // A connection error (client reset, malformed request) concerns that client only.
        _ = connection => {}
    }
}

//! The listener: HTTP/1.1 and HTTP/2 (prior knowledge) on one port, with at
//! most `max_connections` connections, not counting those that carry
//! long-lived streams capped on their own while they do (see
//! [`ConnectionSlot`]). On shutdown it stops accepting, lets in-flight
//! requests finish (HTTP/2 GOAWAY, HTTP/1 closes after the current
//! response), and drops what is left after `drain_timeout_secs`. With
//! `[http.tls]`, each connection's TLS handshake is done in its own task
//! (within the handshake timeout), and a client certificate's identity goes
//! with every request of its connection ([`PeerIdentity`]).

use super::connection::ConnectionSlot;
use super::router::Router;
use super::tls::{PeerIdentity, Tls, TlsConfig};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use serde::Deserialize;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The listener's settings (the `[http]` table of the collector's TOML).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Address to listen on. Default `127.0.0.1:8470`.
    #[serde(default = "ServerConfig::default_listen")]
    pub listen: SocketAddr,
    /// Most simultaneous client connections; more wait to be accepted.
    /// A connection carrying the dashboard's event streams does not count
    /// while they are open (they have their own cap, see
    /// [`ConnectionSlot`]). Default 1024.
    #[serde(default = "ServerConfig::default_max_connections")]
    pub max_connections: usize,
    /// Most simultaneous connections from one client address; more are
    /// closed as soon as they are accepted, so that one client (a
    /// misbehaving proxy, an attacker's idle sockets) cannot take every
    /// place. Default 512: half the default `max_connections`, and more
    /// than the dashboard's 256 event streams; raise it when more agents
    /// than that share one address (a NAT).
    #[serde(default = "ServerConfig::default_max_connections_per_client")]
    pub max_connections_per_client: usize,
    /// Seconds a client has to send a request's headers (HTTP/1; a
    /// slow-loris client is closed after it). Default 30.
    #[serde(default = "ServerConfig::default_header_timeout_secs")]
    pub header_timeout_secs: u64,
    /// How long shutdown waits for in-flight requests, in seconds. Default 30.
    #[serde(default = "ServerConfig::default_drain_timeout_secs")]
    pub drain_timeout_secs: u64,
    /// TLS on the listener (`[http.tls]`); plain HTTP without it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsConfig>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: Self::default_listen(),
            max_connections: Self::default_max_connections(),
            max_connections_per_client: Self::default_max_connections_per_client(),
            header_timeout_secs: Self::default_header_timeout_secs(),
            drain_timeout_secs: Self::default_drain_timeout_secs(),
            tls: None,
        }
    }
}

impl ServerConfig {
    fn default_listen() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 8470))
    }

    const fn default_max_connections() -> usize {
        1024
    }

    const fn default_drain_timeout_secs() -> u64 {
        30
    }

    const fn default_max_connections_per_client() -> usize {
        512
    }

    const fn default_header_timeout_secs() -> u64 {
        30
    }

    /// Checks the settings that cannot work.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_connections == 0 || self.max_connections_per_client == 0 {
            return Err("max_connections and max_connections_per_client must be positive".into());
        }
        if self.header_timeout_secs == 0 {
            return Err("header_timeout_secs must be positive".into());
        }
        if let Some(tls) = &self.tls {
            tls.validate()?;
        }
        Ok(())
    }
}

/// Decrements the connection gauge, and its client's count, when a
/// connection task ends.
struct ConnectionGuard {
    open: Arc<AtomicU64>,
    clients: Arc<PerClient>,
    client: IpAddr,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Relaxed);
        self.clients.release(self.client);
    }
}

/// Open connections per client address.
#[derive(Debug, Default)]
pub struct PerClient {
    open: Mutex<HashMap<IpAddr, usize>>,
    /// Connections closed at accept because their client had its maximum.
    pub refused: AtomicU64,
}

impl super::status::MetricsSource for PerClient {
    fn render(&self, out: &mut String) {
        use logmon_protocol::prometheus::{Kind, Text};
        let mut text = Text::new();
        text.single(
            "logmon_http_connections_refused_total",
            Kind::Counter,
            "Connections closed at accept: their client address had max_connections_per_client open.",
            self.refused.load(Relaxed),
        );
        out.push_str(text.as_str());
    }
}

impl PerClient {
    /// Counts a connection of `ip` unless it already has `max`.
    fn admit(&self, ip: IpAddr, max: usize) -> bool {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let n = open.entry(ip).or_insert(0);
        if *n >= max {
            self.refused.fetch_add(1, Relaxed);
            return false;
        }
        *n += 1;
        true
    }

    fn release(&self, ip: IpAddr) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = open.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                open.remove(&ip);
            }
        }
    }
}

/// Serves `router` on `listener` (over `tls` when given) until `shutdown`
/// is cancelled, then stops accepting, tells the router it drains, waits up
/// to `drain_timeout_secs` for open connections to finish their requests,
/// and returns. `connections` counts the open connections.
pub async fn run(
    listener: TcpListener,
    router: Arc<Router>,
    config: ServerConfig,
    tls: Option<Tls>,
    connections: Arc<AtomicU64>,
    clients: Arc<PerClient>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let limit = Arc::new(Semaphore::new(config.max_connections));
    let tracker = TaskTracker::new();
    let force = CancellationToken::new();
    let builder = builder(&config);
    let first_request = Duration::from_secs(config.header_timeout_secs);
    let mut backoff = Duration::from_millis(10);

    loop {
        let permit = tokio::select! {
            _ = shutdown.cancelled() => break,
            permit = Arc::clone(&limit).acquire_owned() => permit.expect("never closed"),
        };
        let stream = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    backoff = Duration::from_millis(10);
                    (stream, peer)
                }
                // Out of descriptors, a connection reset before accept:
                // transient; back off instead of spinning or dying.
                Err(_) => {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                    continue;
                }
            },
        };
        let (stream, peer) = stream;
        let client = peer.ip();
        if !clients.admit(client, config.max_connections_per_client) {
            // Closed at once; its place goes back with the permit.
            drop(stream);
            continue;
        }
        let _ = stream.set_nodelay(true);
        connections.fetch_add(1, Relaxed);
        let guard = ConnectionGuard {
            open: Arc::clone(&connections),
            clients: Arc::clone(&clients),
            client,
        };
        let slot = ConnectionSlot::new(Arc::clone(&limit), permit);
        let evicted = slot.evicted();
        let router = Arc::clone(&router);
        let builder = builder.clone();
        let (shutdown, force, tls) = (shutdown.clone(), force.clone(), tls.clone());
        tracker.spawn(async move {
            let _guard = guard;
            match tls {
                None => {
                    let io = TokioIo::new(stream);
                    let (cut, close) = (
                        Cut {
                            evicted,
                            shutdown,
                            force,
                        },
                        first_request,
                    );
                    serve(io, None, router, slot, builder, cut, close).await;
                }
                Some(tls) => {
                    let accepted = tokio::select! {
                        accepted = tls.accept(stream) => accepted,
                        _ = shutdown.cancelled() => return,
                    };
                    // A failed handshake is counted and logged by `accept`.
                    if let Ok((stream, identity)) = accepted {
                        let io = TokioIo::new(stream);
                        let cut = Cut {
                            evicted,
                            shutdown,
                            force,
                        };
                        serve(io, identity, router, slot, builder, cut, first_request).await;
                    }
                }
            }
        });
    }

    router.draining();
    drop(listener);
    tracker.close();
    let drain = Duration::from_secs(config.drain_timeout_secs);
    if tokio::time::timeout(drain, tracker.wait()).await.is_err() {
        force.cancel();
        tracker.wait().await;
    }
    Ok(())
}

/// The HTTP/1.1 and HTTP/2 connection builder, with its timers.
fn builder(config: &ServerConfig) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(config.header_timeout_secs));
    builder.http2().timer(TokioTimer::new());
    builder
}

/// What ends a connection from outside: eviction (its place is needed),
/// shutdown (close gracefully), and the end of the drain (drop it).
struct Cut {
    evicted: CancellationToken,
    shutdown: CancellationToken,
    force: CancellationToken,
}

/// Serves one connection that was accepted elsewhere (any byte stream: an
/// in-memory pipe in the fuzz targets, see `tests/src/fuzz.rs`) with
/// `config`'s timeouts, until it ends. It counts against no limit.
pub async fn serve_stream<S>(stream: S, router: Arc<Router>, config: &ServerConfig)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let limit = Arc::new(Semaphore::new(1));
    let permit = Arc::clone(&limit)
        .acquire_owned()
        .await
        .expect("never closed");
    let slot = ConnectionSlot::new(limit, permit);
    let cut = Cut {
        evicted: slot.evicted(),
        shutdown: CancellationToken::new(),
        force: CancellationToken::new(),
    };
    let first_request = Duration::from_secs(config.header_timeout_secs);
    let io = TokioIo::new(stream);
    serve(io, None, router, slot, builder(config), cut, first_request).await;
}

/// Serves one connection until it ends, or closes it gracefully on
/// shutdown or eviction (dropped after the drain timeout). A connection
/// that has not begun a request within `first_request` is closed: hyper's
/// header timeout starts only once the HTTP version is known, which takes
/// the client's first bytes, so a client that sends nothing would hold its
/// place forever.
async fn serve<I>(
    io: I,
    identity: Option<PeerIdentity>,
    router: Arc<Router>,
    slot: ConnectionSlot,
    builder: auto::Builder<TokioExecutor>,
    cut: Cut,
    first_request: Duration,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let begun = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let seen = Arc::clone(&begun);
    let service = service_fn(move |mut request| {
        seen.store(true, Relaxed);
        let (router, slot) = (Arc::clone(&router), slot.clone());
        if let Some(identity) = &identity {
            request.extensions_mut().insert(identity.clone());
        }
        async move { Ok::<_, std::convert::Infallible>(router.handle(request, &slot).await) }
    });
    let connection = builder.serve_connection(io, service);
    tokio::pin!(connection);
    let silent = tokio::time::sleep(first_request);
    tokio::pin!(silent);
    let mut waiting = true;
    loop {
        tokio::select! {
            _ = connection.as_mut() => return,
            _ = cut.shutdown.cancelled() => break,
            _ = cut.evicted.cancelled() => break,
            () = silent.as_mut(), if waiting => {
                if !begun.load(Relaxed) {
                    tracing::debug!("closing a connection that sent no request within {first_request:?}");
                    return;
                }
                waiting = false;
            }
        }
    }
    connection.as_mut().graceful_shutdown();
    tokio::select! {
        _ = connection.as_mut() => {}
        _ = cut.force.cancelled() => {}
    }
}

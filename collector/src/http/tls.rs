//! TLS on the collector's one listener (`[http.tls]`): rustls 1.2/1.3 with
//! HTTP/2 and HTTP/1.1 by ALPN; the certificate and key read from files and
//! read again when they change (checked every `reload_secs`, and at once on
//! SIGHUP), so a renewed certificate is served to new connections without a
//! restart; optionally client certificates from `client_ca` (mutual TLS),
//! whose DNS names say which agent a connection may write as.

use logmon_io::tls::{self, TlsError};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};
use tokio_util::sync::CancellationToken;

/// `[http.tls]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain, the collector's certificate first.
    pub cert: PathBuf,
    /// PEM private key of that certificate.
    pub key: PathBuf,
    /// PEM CA certificates client certificates must chain to; with it, a
    /// client that shows a certificate is identified by it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_ca: Option<PathBuf>,
    /// Refuse connections without a client certificate (needs `client_ca`).
    #[serde(default)]
    pub require_client_cert: bool,
    /// Seconds between checks of the certificate and key files for a
    /// change. Default 10.
    #[serde(default = "TlsConfig::default_reload_secs")]
    pub reload_secs: u64,
    /// Seconds a client has to complete its handshake. Default 10.
    #[serde(default = "TlsConfig::default_handshake_timeout_secs")]
    pub handshake_timeout_secs: u64,
}

impl TlsConfig {
    const fn default_reload_secs() -> u64 {
        10
    }

    const fn default_handshake_timeout_secs() -> u64 {
        10
    }

    /// A configuration of `cert` and `key` with the defaults.
    pub fn new(cert: PathBuf, key: PathBuf) -> TlsConfig {
        TlsConfig {
            cert,
            key,
            client_ca: None,
            require_client_cert: false,
            reload_secs: Self::default_reload_secs(),
            handshake_timeout_secs: Self::default_handshake_timeout_secs(),
        }
    }

    /// Checks what cannot work without reading a file.
    pub fn validate(&self) -> Result<(), String> {
        if self.require_client_cert && self.client_ca.is_none() {
            return Err("[http.tls] require_client_cert needs client_ca".into());
        }
        if self.reload_secs == 0 || self.handshake_timeout_secs == 0 {
            return Err(
                "[http.tls] reload_secs and handshake_timeout_secs must be positive".into(),
            );
        }
        Ok(())
    }
}

/// Who the client of a connection is, from its certificate: attached to
/// every request of a mutual-TLS connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerIdentity {
    /// The DNS names of the client's certificate.
    pub names: Vec<String>,
}

impl PeerIdentity {
    /// Whether the connection may write as agent `agent`.
    pub fn allows(&self, agent: &str) -> bool {
        self.names.iter().any(|n| n == agent)
    }
}

/// Handshake and reload counters, for `/metrics`.
#[derive(Debug, Default)]
pub struct TlsCounters {
    pub handshakes: AtomicU64,
    pub handshake_failures: AtomicU64,
    pub reloads: AtomicU64,
    pub reload_failures: AtomicU64,
    /// Unix second of the last handshake failure logged (one a minute).
    last_reported: AtomicU64,
}

impl super::status::MetricsSource for TlsCounters {
    fn render(&self, out: &mut String) {
        use logmon_protocol::prometheus::{Kind, Text};
        let mut text = Text::new();
        let families: [(&str, &str, &AtomicU64); 4] = [
            (
                "logmon_http_tls_handshakes_total",
                "TLS handshakes completed.",
                &self.handshakes,
            ),
            (
                "logmon_http_tls_handshake_failures_total",
                "TLS handshakes that failed or timed out (the connection was closed).",
                &self.handshake_failures,
            ),
            (
                "logmon_http_tls_reloads_total",
                "Times a changed certificate was loaded.",
                &self.reloads,
            ),
            (
                "logmon_http_tls_reload_failures_total",
                "Changed certificate files that could not be loaded (the old one is served).",
                &self.reload_failures,
            ),
        ];
        for (name, help, value) in families {
            text.single(name, Kind::Counter, help, value.load(Relaxed));
        }
        out.push_str(text.as_str());
    }
}

impl TlsCounters {
    /// Counts a failed handshake and logs it, at most once a minute (a
    /// scanner must not flood the log), with how many failed since.
    fn failed(&self, peer: Option<std::net::SocketAddr>, reason: &str) {
        let n = self.handshake_failures.fetch_add(1, Relaxed) + 1;
        let now = crate::clock::now_seconds().max(0) as u64;
        let last = self.last_reported.load(Relaxed);
        if now >= last + 60
            && self
                .last_reported
                .compare_exchange(last, now, Relaxed, Relaxed)
                .is_ok()
        {
            tracing::warn!(
                peer = ?peer,
                failures = n,
                "TLS handshake failed: {reason} (logged at most once a minute; \
                 logmon_http_tls_handshake_failures_total counts them all)"
            );
        }
    }
}

/// The listener's TLS side.
#[derive(Clone)]
pub struct Tls {
    acceptor: tokio_rustls::TlsAcceptor,
    resolver: Arc<Reloading>,
    pub counters: Arc<TlsCounters>,
    handshake_timeout: Duration,
    reload_every: Duration,
}

/// The certificate served, replaced when its files change.
#[derive(Debug)]
struct Reloading {
    cert: PathBuf,
    key: PathBuf,
    state: RwLock<(Arc<CertifiedKey>, Stamp)>,
}

/// What the files were when last read: modification times and lengths.
type Stamp = [(Option<SystemTime>, u64); 2];

fn stamp(cert: &Path, key: &Path) -> Stamp {
    [cert, key].map(|p| match std::fs::metadata(p) {
        Ok(m) => (m.modified().ok(), m.len()),
        Err(_) => (None, 0),
    })
}

fn certified(cert: &Path, key: &Path) -> Result<Arc<CertifiedKey>, TlsError> {
    let chain = tls::certificates(cert, "the certificate")?;
    let key = tls::private_key(key)?;
    Ok(Arc::new(CertifiedKey::from_der(
        chain,
        key,
        &tls::provider(),
    )?))
}

impl ResolvesServerCert for Reloading {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(
            &self.state.read().unwrap_or_else(|e| e.into_inner()).0,
        ))
    }
}

impl Reloading {
    /// Reads the files again when they changed; `Ok(true)` when the new
    /// certificate is served from now on. A file that cannot be read (half
    /// written by a renewal, say) leaves the old certificate served.
    fn check(&self) -> Result<bool, TlsError> {
        let now = stamp(&self.cert, &self.key);
        if self.state.read().unwrap_or_else(|e| e.into_inner()).1 == now {
            return Ok(false);
        }
        let key = certified(&self.cert, &self.key)?;
        *self.state.write().unwrap_or_else(|e| e.into_inner()) = (key, now);
        Ok(true)
    }
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("cert", &self.resolver.cert)
            .field("handshake_timeout", &self.handshake_timeout)
            .finish()
    }
}

impl Tls {
    /// Reads the certificate, key and client CA: an error names the file.
    pub fn new(config: &TlsConfig) -> Result<Tls, TlsError> {
        let provider = tls::provider();
        let resolver = Arc::new(Reloading {
            cert: config.cert.clone(),
            key: config.key.clone(),
            state: RwLock::new((
                certified(&config.cert, &config.key)?,
                stamp(&config.cert, &config.key),
            )),
        });
        let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_protocol_versions(tls::VERSIONS)?;
        let builder = match &config.client_ca {
            None => builder.with_no_client_auth(),
            Some(ca) => {
                let roots = Arc::new(tls::roots(ca, "the client CA file")?);
                let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider);
                let verifier = if config.require_client_cert {
                    verifier
                } else {
                    verifier.allow_unauthenticated()
                };
                builder.with_client_cert_verifier(
                    verifier
                        .build()
                        .map_err(|e| rustls::Error::General(e.to_string()))?,
                )
            }
        };
        let mut server =
            builder.with_cert_resolver(Arc::clone(&resolver) as Arc<dyn ResolvesServerCert>);
        server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Tls {
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(server)),
            resolver,
            counters: Arc::new(TlsCounters::default()),
            handshake_timeout: Duration::from_secs(config.handshake_timeout_secs),
            reload_every: Duration::from_secs(config.reload_secs),
        })
    }

    /// The handshake of an accepted connection, within the handshake
    /// timeout; the client's identity when it showed a certificate.
    pub async fn accept(
        &self,
        stream: tokio::net::TcpStream,
    ) -> Result<
        (
            tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
            Option<PeerIdentity>,
        ),
        String,
    > {
        let peer = stream.peer_addr().ok();
        let handshake =
            tokio::time::timeout(self.handshake_timeout, self.acceptor.accept(stream)).await;
        let stream = match handshake {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => {
                let reason = e.to_string();
                // A connection closed before any handshake is a port probe
                // (a load balancer's TCP check): counted, not logged.
                if e.kind() == std::io::ErrorKind::UnexpectedEof {
                    self.counters.handshake_failures.fetch_add(1, Relaxed);
                } else {
                    self.counters.failed(peer, &reason);
                }
                return Err(reason);
            }
            Err(_) => {
                let reason = format!("no handshake within {} s", self.handshake_timeout.as_secs());
                self.counters.failed(peer, &reason);
                return Err(reason);
            }
        };
        self.counters.handshakes.fetch_add(1, Relaxed);
        let identity = stream
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|certs| certs.first())
            .map(|cert| PeerIdentity {
                names: tls::dns_names(cert),
            });
        Ok((stream, identity))
    }

    /// Watches the certificate files until `stop`: every `reload_secs`, and
    /// at once on SIGHUP.
    pub async fn watch(self, stop: CancellationToken) {
        let mut hangup =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        let mut tick = tokio::time::interval(self.reload_every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let signalled = tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => false,
                Some(()) = async {
                    match hangup.as_mut() {
                        Some(h) => h.recv().await,
                        None => std::future::pending().await,
                    }
                } => true,
            };
            let resolver = Arc::clone(&self.resolver);
            let checked = tokio::task::spawn_blocking(move || resolver.check())
                .await
                .unwrap_or_else(|e| Err(TlsError::Rustls(rustls::Error::General(e.to_string()))));
            match checked {
                Ok(true) => {
                    self.counters.reloads.fetch_add(1, Relaxed);
                    tracing::info!(
                        cert = %self.resolver.cert.display(),
                        "TLS certificate reloaded: new connections get the new one"
                    );
                }
                Ok(false) => {
                    if signalled {
                        tracing::info!("SIGHUP: the TLS certificate files are unchanged");
                    }
                }
                Err(e) => {
                    self.counters.reload_failures.fetch_add(1, Relaxed);
                    tracing::warn!(
                        "TLS certificate not reloaded, the old one is still served: {e}"
                    );
                }
            }
        }
    }
}

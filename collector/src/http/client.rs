//! The collector's outgoing HTTP client (InfluxDB, webhooks, Slack,
//! Alertmanager): hyper over a connector that speaks TLS to `https://`
//! URLs (rustls, HTTP/1.1 and HTTP/2 by ALPN) and plain TCP to `http://`.

use bytes::Bytes;
use http_body_util::Full;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use logmon_io::tls::{ClientTls, TlsError};
use std::time::Duration;

/// An HTTP and HTTPS client.
pub type HttpsClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// How the client connects.
#[derive(Debug, Clone, Default)]
pub struct ClientOptions {
    /// What `https://` servers must show, and what the client shows them;
    /// `None`: `http://` only (no trust store is read).
    pub tls: Option<ClientTls>,
    pub connect_timeout: Option<Duration>,
    pub max_idle_per_host: Option<usize>,
}

/// A client for `options`; the TLS files are read now, so a bad one is an
/// error here rather than at the first request.
pub fn client(options: &ClientOptions) -> Result<HttpsClient, TlsError> {
    let tls = match &options.tls {
        Some(tls) => tls.config()?,
        None => ClientTls::trusting_nothing(),
    };
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    http.enforce_http(false);
    http.set_connect_timeout(options.connect_timeout);
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(http);
    let mut builder = Client::builder(TokioExecutor::new());
    builder.pool_idle_timeout(Duration::from_secs(30));
    if let Some(n) = options.max_idle_per_host {
        builder.pool_max_idle_per_host(n);
    }
    Ok(builder.build(connector))
}

/// A client for webhooks and the like: the system's roots. Where the
/// system has none, `https://` targets fail (each delivery says why) and
/// `http://` ones work.
pub fn default_client() -> HttpsClient {
    client(&ClientOptions {
        tls: Some(ClientTls::default()),
        ..ClientOptions::default()
    })
    .unwrap_or_else(|e| {
        tracing::warn!("no TLS roots for https:// notification targets: {e}");
        client(&ClientOptions::default()).expect("no file is read without TLS settings")
    })
}

//! Configuration of the InfluxDB writer, as read from the `[influx]` table of
//! the collector's TOML config, with documented defaults.
//!
//! ```toml
//! [influx]
//! url = "http://127.0.0.1:8086"   # plain http; a path prefix is kept
//! batch_lines = 5000
//! concurrency = 4
//! gzip = true
//!
//! [influx.api.v1]                 # InfluxDB 1.x, or 2.x/3.x v1-compat
//! database = "logmon"
//! retention_policy = "logmon_hot" # raw events, the DEFAULT policy
//! retention = "30d"
//! rollup_policy = "logmon_rollups"
//! rollup_retention = "400d"
//! # username = "..."; password = "..."
//!
//! # or, instead of v1:
//! # [influx.api.v2]               # InfluxDB 1.8+, 2.x, 3.x
//! # org = "acme"; bucket = "logmon"; token = "..."; rollup_bucket = "logmon_rollups"
//! ```

use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::Duration;

/// Where and how the collector writes to InfluxDB.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct InfluxConfig {
    /// Base URL of the server, `http://host:port[/prefix]` or `https://…`
    /// (then `[influx.tls]`). Default `http://127.0.0.1:8086`.
    pub url: String,
    /// For an `https://` URL: the CA file InfluxDB's certificate must chain
    /// to (default: the system's roots) and a client certificate.
    #[serde(skip_serializing_if = "InfluxTls::is_default")]
    pub tls: InfluxTls,
    /// Which write API to use. Default: v1 with the defaults of [`V1Config`].
    pub api: InfluxApi,
    /// Lines per write request. Default 5,000 (InfluxData's recommendation).
    pub batch_lines: usize,
    /// Write requests in flight at once. Default 4.
    pub concurrency: usize,
    /// Send bodies gzip-compressed (`Content-Encoding: gzip`). Default true.
    pub gzip: bool,
    /// Retries of one request after a network error, 429 or 5xx before
    /// giving up (the caller then keeps its bus offset and tries again
    /// later). Default 30, which with the default backoff is about 4 min.
    pub max_retries: u32,
    /// First backoff; it doubles on each retry. Default 100 ms.
    pub initial_backoff_ms: u64,
    /// Backoff cap, before jitter. Default 10 s. A `Retry-After` from the
    /// server is honoured when longer (up to 5 min).
    pub max_backoff_ms: u64,
    /// Time allowed to connect. Default 5 s.
    pub connect_timeout_ms: u64,
    /// Time allowed for one attempt, from sending to the end of the
    /// response body. Default 30 s.
    pub request_timeout_ms: u64,
}

impl Default for InfluxConfig {
    fn default() -> Self {
        InfluxConfig {
            url: "http://127.0.0.1:8086".into(),
            tls: InfluxTls::default(),
            api: InfluxApi::default(),
            batch_lines: 5_000,
            concurrency: 4,
            gzip: true,
            max_retries: 30,
            initial_backoff_ms: 100,
            max_backoff_ms: 10_000,
            connect_timeout_ms: 5_000,
            request_timeout_ms: 30_000,
        }
    }
}

impl InfluxConfig {
    pub fn initial_backoff(&self) -> Duration {
        Duration::from_millis(self.initial_backoff_ms)
    }

    pub fn max_backoff(&self) -> Duration {
        Duration::from_millis(self.max_backoff_ms)
    }

    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }
}

/// `[influx.tls]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct InfluxTls {
    /// PEM CA certificates; default the system's roots.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<std::path::PathBuf>,
    /// PEM client certificate chain and key, for an InfluxDB that asks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_cert: Option<std::path::PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_key: Option<std::path::PathBuf>,
}

impl InfluxTls {
    fn is_default(&self) -> bool {
        *self == InfluxTls::default()
    }

    /// As the TLS client settings both binaries share.
    pub fn client(&self) -> logmon_io::tls::ClientTls {
        logmon_io::tls::ClientTls {
            ca_file: self.ca_file.clone(),
            client_cert: self.client_cert.clone(),
            client_key: self.client_key.clone(),
            pins: Vec::new(),
        }
    }
}

/// The write API and its destination.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum InfluxApi {
    /// `/write?db=&rp=` and `/query` (InfluxDB 1.x; v1-compat in 2.x/3.x).
    V1(V1Config),
    /// `/api/v2/write?org=&bucket=` with a token (1.8+, 2.x, 3.x). Buckets
    /// and their retention are managed in InfluxDB, not by logmon.
    V2(V2Config),
}

impl Default for InfluxApi {
    fn default() -> Self {
        InfluxApi::V1(V1Config::default())
    }
}

/// InfluxDB 1.x database and retention policies, created when absent.
#[derive(Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct V1Config {
    /// Default `logmon`.
    pub database: String,
    /// Retention policy of raw events (`http_requests`) and alerts, made the
    /// database's DEFAULT. Default `logmon_hot`.
    pub retention_policy: String,
    /// How long raw events are kept, an InfluxQL duration. Default `30d`.
    pub retention: String,
    /// Retention policy of the `http_traffic` rollups. Default
    /// `logmon_rollups`.
    pub rollup_policy: String,
    /// Default `400d`.
    pub rollup_retention: String,
    /// Basic authentication, when the server has auth enabled.
    pub username: Option<String>,
    pub password: Option<String>,
}

impl Default for V1Config {
    fn default() -> Self {
        V1Config {
            database: "logmon".into(),
            retention_policy: "logmon_hot".into(),
            retention: "30d".into(),
            rollup_policy: "logmon_rollups".into(),
            rollup_retention: "400d".into(),
            username: None,
            password: None,
        }
    }
}

impl fmt::Debug for V1Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("V1Config")
            .field("database", &self.database)
            .field("retention_policy", &self.retention_policy)
            .field("retention", &self.retention)
            .field("rollup_policy", &self.rollup_policy)
            .field("rollup_retention", &self.rollup_retention)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// InfluxDB v2 write API destination; all fields but `rollup_bucket` are
/// required.
#[derive(Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct V2Config {
    pub org: String,
    /// Bucket of raw events and alerts.
    pub bucket: String,
    /// Bucket of the rollups; the main bucket when absent.
    #[serde(default)]
    pub rollup_bucket: Option<String>,
    /// Sent as `Authorization: Token <token>`.
    pub token: String,
}

impl fmt::Debug for V2Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("V2Config")
            .field("org", &self.org)
            .field("bucket", &self.bucket)
            .field("rollup_bucket", &self.rollup_bucket)
            .field("token", &"<redacted>")
            .finish()
    }
}

/// An InfluxQL duration literal (`30d`, `400d`, `1h30m`, `INF`) or a Go
/// duration as `SHOW RETENTION POLICIES` prints it (`720h0m0s`), in
/// nanoseconds; `INF` and `0s` (infinite) are 0.
pub fn parse_duration_ns(s: &str) -> Option<u128> {
    let s = s.trim();
    if s.eq_ignore_ascii_case("inf") {
        return Some(0);
    }
    let mut total: u128 = 0;
    let mut rest = s;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let n: u128 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .char_indices()
            .find(|(_, c)| c.is_ascii_digit())
            .map_or(rest.len(), |(i, _)| i);
        let per: u128 = match &rest[..unit_len] {
            "ns" => 1,
            "u" | "us" | "µ" | "µs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "d" => 86_400_000_000_000,
            "w" => 604_800_000_000_000,
            _ => return None,
        };
        total = total.checked_add(n.checked_mul(per)?)?;
        rest = &rest[unit_len..];
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_in_both_notations() {
        assert_eq!(parse_duration_ns("30d"), parse_duration_ns("720h0m0s"));
        assert_eq!(parse_duration_ns("400d"), parse_duration_ns("9600h0m0s"));
        assert_eq!(parse_duration_ns("1h30m"), Some(5_400_000_000_000));
        assert_eq!(parse_duration_ns("INF"), Some(0));
        assert_eq!(parse_duration_ns("0s"), Some(0));
        assert_eq!(parse_duration_ns("2w"), parse_duration_ns("14d"));
        for bad in ["", "30", "d", "30x", "-1d", "1.5h"] {
            assert_eq!(parse_duration_ns(bad), None, "{bad}");
        }
    }

    #[test]
    fn config_reads_from_toml_with_defaults() {
        let c: InfluxConfig = toml::from_str("").unwrap();
        assert_eq!(c, InfluxConfig::default());
        let InfluxApi::V1(v1) = &c.api else {
            panic!("v1 by default")
        };
        assert_eq!(
            (&*v1.retention_policy, &*v1.retention),
            ("logmon_hot", "30d")
        );

        let c: InfluxConfig = toml::from_str(
            r#"
            url = "http://influx:8086"
            concurrency = 2
            [api.v2]
            org = "acme"
            bucket = "logs"
            token = "s3cret"
            "#,
        )
        .unwrap();
        assert_eq!(c.concurrency, 2);
        assert_eq!(c.batch_lines, 5_000);
        let InfluxApi::V2(v2) = &c.api else {
            panic!("v2")
        };
        assert_eq!(
            (&*v2.org, &*v2.bucket, v2.rollup_bucket.as_deref()),
            ("acme", "logs", None)
        );
        assert!(
            !format!("{c:?}").contains("s3cret"),
            "the token is redacted"
        );

        assert!(toml::from_str::<InfluxConfig>("batch_size = 1").is_err());
        assert!(toml::from_str::<InfluxConfig>("[api.v2]\norg = \"a\"\nbucket = \"b\"").is_err());
        assert!(toml::from_str::<InfluxConfig>("[api.v1]\ndatabse = \"x\"").is_err());
    }
}

//! Persisting to InfluxDB: the schema as line protocol ([`schema`]), an HTTP
//! client for the v1 and v2 write APIs with retries ([`client`]), and a
//! batching, concurrent [`Writer`] whose success is the signal to commit a
//! bus offset ([`writer`]).
//!
//! A bus consumer uses it like this: render a run of events with
//! [`RequestEncoder`] (hot tier) and [`TrafficRollup`] (rollup tier), write
//! both with [`Writer::write`], and commit the offset of the last event only
//! after both returned `Ok` — partial writes are in the report, logged and
//! not retried.

pub mod client;
pub mod config;
pub mod consumer;
pub mod schema;
pub mod writer;

pub use client::{
    ClientStats, ConfigError, InfluxClient, QueryError, SchemaReport, Tier, WriteError,
};
pub use config::{InfluxApi, InfluxConfig, V1Config, V2Config};
pub use schema::{
    Lines, RequestEncoder, TimestampDeduper, TrafficRollup, push_alert, push_transition,
};
pub use writer::{WriteReport, Writer};

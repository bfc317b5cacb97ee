//! The collector's one HTTP server: a listener with bounded connections
//! ([`server`]) serving a [`Router`] that `serve.rs` composes from peers —
//! ingest's `/v1/batches`, the dashboard, and `/health` and `/metrics`
//! ([`status`]) that every part reports into. Responses and bearer tokens
//! are shared ([`response`], [`auth`]). [`tls`] puts TLS (and mutual TLS)
//! in front of it.

pub mod auth;
pub mod client;
pub mod connection;
pub mod response;
pub mod router;
pub mod server;
pub mod status;
pub mod tls;

pub use connection::{ConnectionSlot, SlotLoan};
pub use response::Body;
pub use router::{Answer, RequestHead, Router, Routes};
pub use server::ServerConfig;

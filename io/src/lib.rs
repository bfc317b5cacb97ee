//! The local I/O both logmon binaries share, kept out of `logmon-protocol`
//! (which does none):
//!
//! - [`tail`]: the synchronous, poll-driven tailer — files by glob, followed
//!   across rename rotation and copytruncate, checkpoints of acknowledged
//!   offsets. The agent ships what it reads; `logmon-collector replay
//!   --follow` reads a live log with it.
//! - [`log`]: the process's own log — `tracing` events on stderr, as text or
//!   one JSON object per line, with a level filter.
//! - [`signal`]: SIGINT or SIGTERM, awaited or as a flag.
//! - [`tls`]: rustls with the ring provider, PEM files, the agent's client
//!   side (roots, client certificate, pins), a certificate's names.
#![forbid(unsafe_code)]

pub mod log;
pub mod signal;
pub mod tail;
pub mod tls;

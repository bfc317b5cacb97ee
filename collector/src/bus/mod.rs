//! The event bus: where ingest makes batches durable and every consumer
//! (the engine, the InfluxDB writer) reads them back, each at its own
//! committed position.
//!
//! [`EventBus`] is the seam: ingest appends through it and every consumer
//! reads through it, so another implementation (NATS JetStream for a site on
//! several machines) replaces the local one without touching either side.
//! [`LocalBus`] is the embedded implementation: a segment log on local disk
//! ([`log`]) with the deduplication index that describes it ([`dedup`]).
//!
//! Contract of every implementation:
//! - `append` answers only after every new batch it reports as stored is
//!   durable; a batch whose byte range its stream already has is reported
//!   as a duplicate (or an overlap) and not stored again;
//! - offsets are dense record numbers, read back in order;
//! - the consumers a configuration implies are declared before anything is
//!   appended ([`EventBus::declare`]), and nothing a declared consumer has
//!   not committed is ever deleted.

pub mod dedup;
pub mod lag;
pub mod local;
pub mod log;
pub mod records;

pub use dedup::{DedupError, Rebuild, StreamKey};
pub use local::LocalBus;
pub use log::{BusError, ConsumerLag, Damage, LogConfig, MAX_RECORD_BYTES, SegmentLog};

use logmon_protocol::wire::Limits;

/// One checked batch to store: the wire body as received, and its identity
/// (stream and byte range).
#[derive(Debug, Clone, Copy)]
pub struct Append<'a> {
    pub body: &'a [u8],
    pub stream: &'a StreamKey,
    pub start: u64,
    pub end: u64,
    /// The sender's word that the batch follows the stream's bytes up to
    /// here (it has the batch before this one in flight): store it only
    /// once those are stored. `None`: judge by the range alone.
    pub after: Option<u64>,
}

/// What became of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// Durable as record `offset`; `gap` bytes of the stream were never
    /// received before it (see the ingest docs).
    New { offset: u64, gap: u64 },
    /// Everything in it is stored already, up to `stored`.
    Duplicate { stored: u64 },
    /// Part of it is stored: the stream is stored up to `stored`.
    Overlap { stored: u64 },
    /// The bytes before it are not all stored yet (the stream is stored up
    /// to `stored`): not stored; the sender tries again after its
    /// predecessor.
    Early { stored: u64 },
}

/// Where a consumer stands, for `/health` and `/metrics`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ConsumerStatus {
    pub name: String,
    /// Whether the configuration names it; one that it does not still holds
    /// its records until an operator removes it.
    pub configured: bool,
    /// The next offset it will read.
    pub offset: u64,
    pub lag_records: u64,
    pub lag_bytes: u64,
    /// Age of the oldest record it has not read (0 when caught up), where
    /// the log keeps append times.
    pub lag_seconds: Option<u64>,
    /// Why it cannot make progress, while it says so.
    pub problem: Option<String>,
    /// For how long it has said so, without a break.
    pub problem_seconds: Option<u64>,
}

/// A durable log of wire batches with named consumers. Blocking: call it
/// from a thread of its own or `spawn_blocking`.
pub trait EventBus: Send + Sync + std::fmt::Debug {
    /// Judges each batch against what its stream has stored (earlier ones
    /// of the same call included) and stores the new ones durably, together;
    /// answers in the order given. On an error nothing of the call is
    /// acknowledged.
    fn append(&self, batches: &[Append<'_>]) -> Result<Vec<Stored>, BusError>;

    /// Records from `from` on: at most `max_records`, and no more than
    /// `max_bytes` of payload except that the first is always returned.
    fn read(
        &self,
        from: u64,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>, BusError>;

    /// Registers every consumer of `configured` durably and remembers them
    /// as the configured ones; returns the registered consumers it does not
    /// name. Once, at start, before anything is appended or collected.
    fn declare(&self, configured: &[&str]) -> Result<Vec<ConsumerLag>, BusError>;

    /// The committed position of a declared consumer: the next offset it
    /// reads. A consumer never creates its own position.
    fn position(&self, consumer: &str) -> Result<u64, BusError>;

    /// Everything before `offset` is done with, as far as `consumer` goes.
    fn commit(&self, consumer: &str, offset: u64) -> Result<(), BusError>;

    /// Says why `consumer` cannot make progress (`Some`), or that it can
    /// again (`None`).
    fn report_problem(&self, consumer: &str, problem: Option<String>);

    /// Every registered consumer and how far behind it is.
    fn consumers(&self) -> Vec<ConsumerStatus>;

    /// Oldest offset still retained.
    fn first_offset(&self) -> u64;

    /// Offset the next record will get.
    fn next_offset(&self) -> u64;

    /// Bytes not yet read by the slowest consumer.
    fn backlog_bytes(&self) -> u64;

    /// The decoding limits the records were checked against: consumers
    /// decode with the same ones (see [`records`]).
    fn limits(&self) -> Limits;

    /// The largest byte offset of `stream` stored.
    fn high_water(&self, stream: &StreamKey) -> Option<u64>;

    /// Deletes what every consumer has passed; how many units went.
    fn gc(&self) -> Result<usize, BusError>;

    /// Persists what a restart would otherwise rebuild (at shutdown).
    fn close(&self) -> Result<(), BusError>;
}

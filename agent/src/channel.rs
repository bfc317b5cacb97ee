//! What the reader thread and the shipper task send each other: sealed
//! batches one way, acknowledgements and releases the other. Both sides
//! import this module and not each other.

use bytes::Bytes;
use logmon_protocol::wire::Batch;

use crate::tail::StreamId;

/// A batch ready to send, with what a 413 split needs.
#[derive(Debug)]
pub(crate) struct Sealed {
    /// Index of its source.
    pub source: usize,
    /// The source's rewind epoch when it was read.
    pub epoch: u64,
    pub stream: StreamId,
    /// The batch's fields; its events are only in `body` (`batch.events` is
    /// empty).
    pub batch: Batch,
    /// How many events `body` holds.
    pub events: usize,
    /// Start offset of the line of each event.
    pub offsets: Vec<u64>,
    /// Start offsets of the malformed lines.
    pub malformed_offsets: Vec<u64>,
    /// `wire::encode(batch)`.
    pub body: Bytes,
}

/// Reader → shipper.
#[derive(Debug)]
pub(crate) enum ToShipper {
    Batch(Box<Sealed>),
    /// The source was rewound: drop its queued batches older than `epoch`.
    Invalidate {
        source: usize,
        epoch: u64,
    },
}

/// Shipper → reader.
#[derive(Debug)]
pub(crate) enum ToReader {
    /// The collector has everything of `stream` before `end`.
    Acked {
        source: usize,
        stream: StreamId,
        end: u64,
    },
    /// The collector has `stream` up to `to` and the batch sent did not line
    /// up with it: acknowledge `to` and re-read the source from its
    /// acknowledged offsets (if nothing rewound it since `epoch`).
    Rewind {
        source: usize,
        epoch: u64,
        stream: StreamId,
        to: u64,
    },
    /// A sealed batch is finished (delivered, dropped or abandoned).
    Released,
}

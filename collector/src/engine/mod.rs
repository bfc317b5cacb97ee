//! The engine: events in UTC event time become closed seconds, in order.
//!
//! - [`seconds`]: per-second aggregates closed by a watermark
//!   ([`EventTimeEngine`]);
//! - [`watermark`]: per-stream watermarks and the global one;
//! - [`stats`]: the 10-second statistics blocks;
//! - [`pipeline`]: what happens to each closed second — the rules evaluate
//!   it, and observers hear of it;
//! - [`observer`]: the trait the console and the dashboard implement, so the
//!   engine imports neither;
//! - [`snapshot`]: the engine's state on disk;
//! - [`consumer`]: the live engine, a bus consumer.

pub mod consumer;
pub mod observer;
pub mod pipeline;
pub mod seconds;
pub mod snapshot;
pub mod stats;
pub mod watermark;

pub use seconds::{
    EngineCounters, EventTimeEngine, Observed, SavedEngine, SecondStats, SectionAgg, StatusClasses,
};

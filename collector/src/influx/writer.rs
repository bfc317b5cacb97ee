//! Writes a large body of line protocol as batches of about `batch_lines`
//! lines, at most `concurrency` requests in flight.
//!
//! Invariant: [`Writer::write`] returns only once every batch has been
//! answered for good — accepted, or rejected as a partial write — or a fatal
//! error stopped it. An `Ok` therefore means InfluxDB holds everything it
//! will ever accept from this body, and the caller may commit its bus offset;
//! an `Err` means some batch may be missing, and the caller must not. Batches
//! still in flight when the future is dropped are aborted.

use super::client::{InfluxClient, Tier, WriteError};
use bytes::Bytes;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::task::JoinSet;

/// What a successful [`Writer::write`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteReport {
    /// Lines sent.
    pub lines: usize,
    /// Requests that carried them (one per batch; retries not counted).
    pub batches: usize,
    /// Attempts, retries included.
    pub attempts: u64,
    /// Messages of the batches InfluxDB partly rejected (HTTP 400); their
    /// other lines are stored, the rejected ones never will be.
    pub partial: Vec<String>,
}

/// Splits bodies into batches and sends them concurrently.
#[derive(Debug, Clone)]
pub struct Writer {
    client: InfluxClient,
}

impl Writer {
    pub fn new(client: InfluxClient) -> Writer {
        Writer { client }
    }

    pub fn client(&self) -> &InfluxClient {
        &self.client
    }

    /// Writes `lines` (newline-separated line protocol) to `tier`; see the
    /// module documentation for what the result promises.
    pub async fn write(
        &self,
        tier: Tier,
        lines: impl Into<Bytes>,
    ) -> Result<WriteReport, WriteError> {
        let config = self.client.config();
        let batches = split_batches(&lines.into(), config.batch_lines);
        let mut report = WriteReport {
            lines: batches.iter().map(|(_, n)| n).sum(),
            batches: batches.len(),
            ..WriteReport::default()
        };
        let workers = config.concurrency.min(batches.len());
        let queue = Arc::new(Mutex::new(
            batches.into_iter().map(|(b, _)| b).collect::<VecDeque<_>>(),
        ));
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = JoinSet::new();
        for _ in 0..workers {
            let (client, queue, stop) = (self.client.clone(), queue.clone(), stop.clone());
            tasks.spawn(async move {
                let mut done = Worked::default();
                while !stop.load(Ordering::Relaxed) {
                    let Some(batch) = queue.lock().expect("queue lock").pop_front() else {
                        break;
                    };
                    match client.write(tier, batch).await {
                        Ok(attempts) => done.attempts += u64::from(attempts),
                        Err(WriteError::Partial(message)) => {
                            done.attempts += 1;
                            done.partial.push(message);
                        }
                        Err(fatal) => {
                            stop.store(true, Ordering::Relaxed);
                            done.fatal = Some(fatal);
                            break;
                        }
                    }
                }
                done
            });
        }
        let mut fatal = None;
        while let Some(done) = tasks.join_next().await {
            let done = done.expect("a write worker panicked");
            report.attempts += done.attempts;
            report.partial.extend(done.partial);
            if fatal.is_none() {
                fatal = done.fatal;
            }
        }
        match fatal {
            Some(e) => Err(e),
            None => Ok(report),
        }
    }
}

#[derive(Debug, Default)]
struct Worked {
    attempts: u64,
    partial: Vec<String>,
    fatal: Option<WriteError>,
}

/// Cuts `body` after every `lines_per_batch`-th newline, without copying;
/// a last line without a newline counts. Empty lines are kept (InfluxDB
/// skips them) but do not count. Returns the batches and their line counts.
pub fn split_batches(body: &Bytes, lines_per_batch: usize) -> Vec<(Bytes, usize)> {
    let per = lines_per_batch.max(1);
    let mut batches = Vec::new();
    let (mut start, mut lines, mut line_start) = (0, 0, 0);
    for (i, &b) in body.iter().enumerate() {
        if b != b'\n' {
            continue;
        }
        if i > line_start {
            lines += 1;
        }
        line_start = i + 1;
        if lines == per {
            batches.push((body.slice(start..i + 1), lines));
            start = i + 1;
            lines = 0;
        }
    }
    if line_start < body.len() {
        lines += 1;
    }
    if lines > 0 {
        batches.push((body.slice(start..), lines));
    }
    batches
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_cut_at_line_boundaries() {
        let body = Bytes::from_static(b"a 1\nb 2\nc 3\nd 4\ne 5");
        let b = split_batches(&body, 2);
        let got: Vec<(&[u8], usize)> = b.iter().map(|(b, n)| (&b[..], *n)).collect();
        assert_eq!(
            got,
            [
                (&b"a 1\nb 2\n"[..], 2),
                (&b"c 3\nd 4\n"[..], 2),
                (&b"e 5"[..], 1)
            ]
        );
        assert!(split_batches(&Bytes::new(), 5).is_empty());
        assert!(split_batches(&Bytes::from_static(b"\n\n"), 5).is_empty());
        let b = split_batches(&Bytes::from_static(b"a 1\n\nb 2\n"), 1);
        assert_eq!(b.len(), 2);
        assert_eq!(&b[1].0[..], b"\nb 2\n");
    }
}

//! The reader: drives the synchronous tailers on a thread of their own,
//! parses each file's lines in its source's format (or the one detected from
//! its first lines), and seals them into encoded batches for the shipper.
//!
//! Invariants:
//! - a sealed batch covers exactly `[start, end)` of one file, whole lines,
//!   and the batches of a file are sealed in file order;
//! - acknowledgements reach the tailer only through [`ToReader`] messages,
//!   so checkpoints hold acknowledged offsets only;
//! - at most `max_buffered_batches` batches are sealed and unfinished (plus
//!   what one poll of `read_budget_bytes` yields): beyond that the reader
//!   stops polling and the log files are the buffer.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use logmon_protocol::wire::{self, Batch};
use logmon_protocol::{Event, Format, LineParser, Parsed};
use tokio::sync::mpsc::UnboundedSender;
use tokio_util::sync::CancellationToken;

use crate::channel::{Sealed, ToReader, ToShipper};
use crate::config::{Settings, SourceSettings};
use crate::filter::Chain;
use crate::metrics::{FileState, Metrics, TailTotals, unix_ms, unix_nanos};
use crate::parser::SourceParser;
use crate::tail::{Checkpoints, FileFingerprint, ReadLines, StreamId, Tailer};

/// A batch being filled.
#[derive(Debug)]
struct OpenBatch {
    stream: StreamId,
    format: Format,
    start: u64,
    end: u64,
    /// The events so far, already in their columns.
    encoder: wire::Encoder,
    offsets: Vec<u64>,
    malformed_offsets: Vec<u64>,
    /// With filters: the events, waiting for the chain at sealing (then
    /// `encoder` gets the ones kept). Only the first `pending_len` count;
    /// the others are kept for their allocations.
    pending: Vec<Event>,
    pending_len: usize,
    opened: Instant,
}

impl OpenBatch {
    /// Whether the batch reached its size limit in events or bytes.
    fn full(&self, settings: &Settings) -> bool {
        self.encoder.len() + self.pending_len >= settings.batch_max_events
            || self.end - self.start >= settings.batch_max_bytes
    }
}

/// What the reader knows of one file.
#[derive(Debug, Default)]
struct StreamState {
    parser: Option<LineParser>,
    open: Option<OpenBatch>,
    /// The encoder of the last sealed batch, kept for the next one.
    spare: Option<wire::Encoder>,
    /// With filters: the last batch's events, kept for their allocations.
    spare_events: Vec<Event>,
    /// Each line is parsed into this one event, reusing its strings.
    event: Event,
}

#[derive(Debug)]
struct Source {
    settings: SourceSettings,
    tailer: Tailer,
    epoch: u64,
    streams: HashMap<FileFingerprint, StreamState>,
    saved: Option<Checkpoints>,
    /// Its edge filters, if it has any.
    chain: Option<Chain>,
    /// Its edge parser, when its format is a component.
    parser: Option<SourceParser>,
    /// The tailer's I/O errors already logged.
    errors_logged: u64,
}

/// The reader thread's state.
#[derive(Debug)]
pub(crate) struct Reader {
    settings: Arc<Settings>,
    sources: Vec<Source>,
    to_shipper: Option<UnboundedSender<ToShipper>>,
    from_shipper: Receiver<ToReader>,
    metrics: Arc<Metrics>,
    /// Stop reading, seal, wait for the shipper, save.
    stop: CancellationToken,
    /// Exit at once without saving (a simulated crash).
    kill: CancellationToken,
    buffered: usize,
    last_save: Option<Instant>,
    /// Checkpoint save rounds that failed in a row.
    checkpoint_failures: u64,
    last_checkpoint_log: Option<Instant>,
    last_malformed_log: Option<Instant>,
    malformed_unlogged: u64,
    /// When each file last had a batch or heartbeat sealed.
    last_sent: HashMap<(usize, FileFingerprint), Instant>,
    last_heartbeat_scan: Option<Instant>,
    /// Identified files at the last heartbeat scan, with their read offset.
    live_files: HashMap<(usize, FileFingerprint), (PathBuf, u64, Format)>,
    /// Scratch of the filter chains' verdicts.
    keep: Vec<bool>,
}

impl Reader {
    pub(crate) fn new(
        settings: Arc<Settings>,
        tailers: Vec<((SourceSettings, Tailer), Option<Chain>)>,
        to_shipper: UnboundedSender<ToShipper>,
        from_shipper: Receiver<ToReader>,
        metrics: Arc<Metrics>,
        stop: CancellationToken,
        kill: CancellationToken,
    ) -> Self {
        let sources = tailers
            .into_iter()
            .map(|((settings, tailer), chain)| Source {
                settings,
                tailer,
                epoch: 0,
                streams: HashMap::new(),
                saved: None,
                chain,
                parser: None,
                errors_logged: 0,
            })
            .collect();
        Self {
            settings,
            sources,
            to_shipper: Some(to_shipper),
            from_shipper,
            metrics,
            stop,
            kill,
            buffered: 0,
            last_save: None,
            checkpoint_failures: 0,
            last_checkpoint_log: None,
            last_malformed_log: None,
            malformed_unlogged: 0,
            last_sent: HashMap::new(),
            last_heartbeat_scan: None,
            live_files: HashMap::new(),
            keep: Vec::new(),
        }
    }

    /// Gives each source its edge parser (`None`: its line format's).
    pub(crate) fn set_parsers(&mut self, parsers: Vec<Option<SourceParser>>) {
        for (src, parser) in self.sources.iter_mut().zip(parsers) {
            src.parser = parser;
        }
    }

    /// Runs until stopped (then drains and saves) or killed (then returns at
    /// once, leaving the last periodic checkpoints).
    pub(crate) fn run(mut self) {
        self.save_if_due(true);
        while !self.stop.is_cancelled() {
            if self.kill.is_cancelled() {
                return;
            }
            while let Ok(msg) = self.from_shipper.try_recv() {
                self.handle(msg, true);
            }
            self.save_if_due(false);
            let mut read_any = false;
            for i in 0..self.sources.len() {
                if self.buffered >= self.settings.max_buffered_batches {
                    break;
                }
                let polled = self.sources[i].tailer.poll(self.settings.read_budget_bytes);
                for lines in polled {
                    read_any = true;
                    self.ingest(i, lines);
                }
            }
            let paused = self.buffered >= self.settings.max_buffered_batches;
            self.metrics
                .reading_paused
                .store(u64::from(paused), std::sync::atomic::Ordering::Relaxed);
            let next_linger = self.seal_lingering();
            if !paused {
                self.heartbeats();
            }
            if !read_any || paused {
                let wait =
                    next_linger.map_or(self.settings.idle_poll, |d| d.min(self.settings.idle_poll));
                match self.from_shipper.recv_timeout(wait) {
                    Ok(msg) => self.handle(msg, true),
                    Err(RecvTimeoutError::Timeout) => {}
                    // The shipper is gone: nothing can be delivered any more.
                    Err(RecvTimeoutError::Disconnected) => break,
                }
            }
        }
        // Shutdown: ship what was read, wait for the shipper to finish
        // (delivered, or abandoned at the deadline), save last.
        for i in 0..self.sources.len() {
            let open: Vec<FileFingerprint> = self.sources[i].streams.keys().copied().collect();
            for fingerprint in open {
                self.seal(i, fingerprint);
            }
        }
        self.to_shipper = None;
        loop {
            if self.kill.is_cancelled() {
                return;
            }
            match self.from_shipper.recv_timeout(Duration::from_millis(50)) {
                Ok(msg) => self.handle(msg, false),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        self.save_if_due(true);
    }

    fn handle(&mut self, msg: ToReader, may_rewind: bool) {
        match msg {
            ToReader::Acked {
                source,
                stream,
                end,
            } => {
                self.sources[source].tailer.ack(&stream, end);
            }
            ToReader::Released => {
                self.buffered = self.buffered.saturating_sub(1);
                self.metrics
                    .batches_buffered
                    .store(self.buffered as u64, std::sync::atomic::Ordering::Relaxed);
            }
            ToReader::Rewind {
                source,
                epoch,
                stream,
                to,
            } => {
                let src = &mut self.sources[source];
                src.tailer.ack(&stream, to);
                if may_rewind && epoch == src.epoch {
                    src.tailer.rewind_to_acked();
                    src.epoch += 1;
                    for state in src.streams.values_mut() {
                        state.open = None;
                    }
                    Metrics::add(&self.metrics.rewinds, 1);
                    if let Some(tx) = &self.to_shipper {
                        let _ = tx.send(ToShipper::Invalidate {
                            source,
                            epoch: src.epoch,
                        });
                    }
                }
            }
        }
    }

    /// Adds one poll's lines of one file to its open batch, sealing as the
    /// batch fills.
    fn ingest(&mut self, source: usize, lines: ReadLines) {
        let settings = self.settings.clone();
        let fingerprint = lines.stream.fingerprint;
        Metrics::add(&self.metrics.lines_read, lines.lines.len() as u64);
        Metrics::add(&self.metrics.bytes_read, lines.end - lines.start);
        // A batch covers one contiguous range of one path: a jump (truncation)
        // or a rename closes it.
        let discontinuous = self.sources[source]
            .streams
            .get(&fingerprint)
            .and_then(|s| s.open.as_ref())
            .is_some_and(|o| o.end != lines.start || o.stream.path != lines.stream.path);
        if discontinuous {
            self.seal(source, fingerprint);
        }
        let src = &mut self.sources[source];
        let state = src.streams.entry(fingerprint).or_default();
        if state.parser.is_none() && src.parser.is_none() {
            let head = lines.lines.iter().map(|l| l.text.as_str());
            state.parser = src.settings.format.parser_for(head);
        }
        // An edge parser reads the poll's lines in one call, up front; the
        // loop below takes its outcomes line by line (the parser is out of
        // its source meanwhile, put back after the loop).
        let mut component = src.parser.take();
        let mut outcomes = component.as_mut().map(|p| p.parse(&src.tailer, &lines));
        let fallback = if outcomes.is_some() {
            Format::Combined
        } else {
            Format::Clf
        };
        let mut malformed = 0u64;
        let mut parsed = 0u64;
        let mut skipped = 0u64;
        let count = lines.lines.len();
        let filtering = self.sources[source].chain.is_some();
        for i in 0..count {
            let line = &lines.lines[i];
            let line_end = lines.lines.get(i + 1).map_or(lines.end, |l| l.offset);
            let mut state = self.sources[source]
                .streams
                .get_mut(&fingerprint)
                .expect("inserted above");
            if state.open.as_ref().is_some_and(|o| o.full(&settings)) {
                self.seal(source, fingerprint);
                state = self.sources[source]
                    .streams
                    .get_mut(&fingerprint)
                    .expect("inserted above");
            }
            // Lines of a file whose format could not be detected yet are
            // malformed; the batch still names a format (CLF) for the wire
            // (Combined for an edge parser's: its events have every field).
            let format = state.parser.as_ref().map_or(fallback, LineParser::format);
            let spare = &mut state.spare;
            let spare_events = &mut state.spare_events;
            let open = state.open.get_or_insert_with(|| OpenBatch {
                stream: lines.stream.clone(),
                format,
                start: line.offset,
                end: line.offset,
                encoder: spare.take().unwrap_or_default(),
                offsets: Vec::with_capacity(settings.batch_max_events.min(4096)),
                malformed_offsets: Vec::new(),
                pending: std::mem::take(spare_events),
                pending_len: 0,
                opened: Instant::now(),
            });
            open.end = line_end;
            // With filters, the line is parsed straight into the batch's
            // next pending event (its strings reused batch after batch);
            // without, into the one reused event the encoder copies.
            let target = if filtering {
                if open.pending.len() == open.pending_len {
                    open.pending.push(Event::empty());
                }
                &mut open.pending[open.pending_len]
            } else {
                &mut state.event
            };
            let result = match (&mut outcomes, state.parser.as_mut()) {
                (Some(outcomes), _) => outcomes.take(i, target),
                (None, Some(parser)) => parser.parse_into(&line.text, target),
                (None, None) => Err(logmon_protocol::ParseError::new(
                    "log format not recognised",
                )),
            };
            match result {
                Ok(Parsed::Event) => {
                    // A format string's unknown variables, kept as labels.
                    match state.parser.as_ref().and_then(LineParser::extras) {
                        Some(x) => target.labels.clone_from(&x.labels),
                        None => target.labels.clear(),
                    }
                    if filtering {
                        open.pending_len += 1;
                    } else {
                        open.encoder.push(target);
                    }
                    open.offsets.push(line.offset);
                    parsed += 1;
                }
                Ok(Parsed::Skipped) => skipped += 1,
                Err(e) => {
                    open.malformed_offsets.push(line.offset);
                    malformed += 1;
                    self.note_malformed(&lines.stream, line.offset, &e);
                }
            }
        }
        self.sources[source].parser = component;
        let state = self.sources[source]
            .streams
            .get_mut(&fingerprint)
            .expect("inserted above");
        if state.open.as_ref().is_some_and(|o| o.full(&settings)) {
            self.seal(source, fingerprint);
        }
        Metrics::add(&self.metrics.events_parsed, parsed);
        Metrics::add(&self.metrics.lines_malformed, malformed);
        Metrics::add(&self.metrics.lines_skipped, skipped);
    }

    /// A checkpoint directory that cannot be written (full, read-only):
    /// reported in `/health` and `/metrics`, logged once per burst (the
    /// first failure, then at most once a minute), while shipping goes on.
    /// The checkpoint file on disk stays the last one written whole, so a
    /// restart now reads again only what was acknowledged since then.
    fn checkpoints_failed(&mut self, reason: String, now: Instant) {
        self.checkpoint_failures += 1;
        if self
            .last_checkpoint_log
            .is_none_or(|at| now.duration_since(at) >= Duration::from_secs(60))
        {
            tracing::error!(
                failed_attempts = self.checkpoint_failures,
                "checkpoints cannot be written: {reason}; shipping goes on, and a restart would read again what was acknowledged since the last checkpoint written"
            );
            self.last_checkpoint_log = Some(now);
        }
        self.metrics.set_checkpoint_failure(Some(reason));
    }

    /// Logs a malformed line, at most one log line per 10 s (with a count).
    fn note_malformed(
        &mut self,
        stream: &StreamId,
        offset: u64,
        error: &logmon_protocol::ParseError,
    ) {
        let now = Instant::now();
        if self
            .last_malformed_log
            .is_some_and(|at| now.duration_since(at) < Duration::from_secs(10))
        {
            self.malformed_unlogged += 1;
            return;
        }
        let more = std::mem::take(&mut self.malformed_unlogged);
        tracing::warn!(
            file = %stream.path.display(),
            offset,
            more_since_last_report = more,
            "malformed line skipped: {error}"
        );
        self.last_malformed_log = Some(now);
    }

    /// Sends a heartbeat (an empty batch at the acknowledged end, marked
    /// caught up) for each file that is read to its end, has everything
    /// acknowledged and nothing open, and had nothing sent for a heartbeat
    /// interval. Since nothing of the file is in flight, the heartbeat cannot
    /// overtake its lines: the collector may take it as "no line older than
    /// `sent_at` is coming from this file".
    fn heartbeats(&mut self) {
        let Some(every) = self.settings.heartbeat else {
            return;
        };
        let now = Instant::now();
        if self
            .last_heartbeat_scan
            .is_some_and(|at| now.duration_since(at) < every / 4)
        {
            return;
        }
        self.last_heartbeat_scan = Some(now);
        let mut live = HashMap::new();
        for i in 0..self.sources.len() {
            let files = self.sources[i].tailer.stats().files;
            for f in files {
                let Some(fingerprint) = f.fingerprint else {
                    continue;
                };
                let src = &self.sources[i];
                let format = src
                    .streams
                    .get(&fingerprint)
                    .and_then(|s| s.parser.as_ref())
                    .map_or(Format::Clf, LineParser::format);
                live.insert((i, fingerprint), (f.path.clone(), f.read, format));
                let quiet = f.read == f.acked && f.size <= f.read;
                let open = src
                    .streams
                    .get(&fingerprint)
                    .is_some_and(|s| s.open.is_some());
                let recent = self
                    .last_sent
                    .get(&(i, fingerprint))
                    .is_some_and(|at| now.duration_since(*at) < every);
                if !quiet || open || recent || self.buffered >= self.settings.max_buffered_batches {
                    continue;
                }
                self.last_sent.insert((i, fingerprint), now);
                if self.send_marker(i, fingerprint, &f.path, f.read, format, false) {
                    Metrics::add(&self.metrics.heartbeats, 1);
                }
            }
        }
        // Files the tailer closed (rotated away or deleted, and finished):
        // tell the collector they will send nothing more.
        let closed: Vec<_> = self
            .live_files
            .iter()
            .filter(|(k, _)| !live.contains_key(k))
            .map(|(k, v)| (*k, v.clone()))
            .collect();
        for ((i, fingerprint), (path, end, format)) in closed {
            self.send_marker(i, fingerprint, &path, end, format, true);
            self.last_sent.remove(&(i, fingerprint));
            if let Some(src) = self.sources.get_mut(i) {
                src.streams.remove(&fingerprint);
                if let Some(parser) = &mut src.parser {
                    parser.forget(fingerprint);
                }
            }
        }
        self.live_files = live;
    }

    /// Sends an empty, caught-up batch at `end` of a file: a heartbeat, or
    /// with `finished` the file's last word.
    fn send_marker(
        &mut self,
        source: usize,
        fingerprint: FileFingerprint,
        path: &std::path::Path,
        end: u64,
        format: Format,
        finished: bool,
    ) -> bool {
        let src = &self.sources[source];
        let stream = StreamId {
            fingerprint,
            path: path.to_path_buf(),
        };
        let batch = Batch {
            agent_id: self.settings.agent_id.clone(),
            host: self.settings.host.clone(),
            stream: (&stream).into(),
            start: end,
            end,
            format,
            labels: src.settings.labels.clone(),
            events: Vec::new(),
            malformed: 0,
            caught_up: true,
            finished,
            sent_at: unix_nanos(),
        };
        let Ok(body) = wire::encode(&batch, self.settings.zstd_level) else {
            return false;
        };
        let sealed = Sealed {
            source,
            epoch: src.epoch,
            stream,
            batch,
            events: 0,
            offsets: Vec::new(),
            malformed_offsets: Vec::new(),
            body: Bytes::from(body),
        };
        self.send(sealed)
    }

    /// Seals batches open longer than the linger time; returns the time until
    /// the next one is due.
    fn seal_lingering(&mut self) -> Option<Duration> {
        let now = Instant::now();
        let linger = self.settings.linger;
        let mut next: Option<Duration> = None;
        for i in 0..self.sources.len() {
            let due: Vec<FileFingerprint> = self.sources[i]
                .streams
                .iter()
                .filter_map(|(fp, s)| {
                    let open = s.open.as_ref()?;
                    let age = now.duration_since(open.opened);
                    if age >= linger {
                        Some(*fp)
                    } else {
                        let left = linger - age;
                        next = Some(next.map_or(left, |n| n.min(left)));
                        None
                    }
                })
                .collect();
            for fingerprint in due {
                self.seal(i, fingerprint);
            }
        }
        next
    }

    /// Closes the open batch of a file, encodes it and hands it over.
    fn seal(&mut self, source: usize, fingerprint: FileFingerprint) {
        let src = &mut self.sources[source];
        let Some(mut open) = src
            .streams
            .get_mut(&fingerprint)
            .and_then(|s| s.open.take())
        else {
            return;
        };
        if let Some(chain) = &mut src.chain {
            let file = open.stream.path.display().to_string();
            let events = &mut open.pending[..open.pending_len];
            let mut keep = std::mem::take(&mut self.keep);
            let stats = chain.run(&file, events, &mut keep);
            Metrics::add(&self.metrics.events_filtered, stats.dropped);
            let mut k = 0;
            open.offsets.retain(|_| {
                k += 1;
                keep[k - 1]
            });
            chain.encode_kept(events, &keep, &mut open.encoder);
            self.keep = keep;
            if let Some(state) = src.streams.get_mut(&fingerprint) {
                state.spare_events = std::mem::take(&mut open.pending);
            }
        }
        let batch = Batch {
            agent_id: self.settings.agent_id.clone(),
            host: self.settings.host.clone(),
            stream: (&open.stream).into(),
            start: open.start,
            end: open.end,
            format: open.format,
            labels: src.settings.labels.clone(),
            malformed: open.malformed_offsets.len() as u64,
            events: Vec::new(),
            caught_up: false,
            finished: false,
            sent_at: unix_nanos(),
        };
        let events = open.encoder.len();
        let encoded = open.encoder.finish(&batch, self.settings.zstd_level);
        if let Some(state) = src.streams.get_mut(&fingerprint) {
            state.spare = Some(open.encoder);
        }
        let body = match encoded {
            Ok(body) => Bytes::from(body),
            Err(e) => {
                // Never seen in practice; the range cannot be shipped, so
                // count it and move on rather than stall the file.
                tracing::error!(
                    file = %open.stream.path.display(),
                    start = open.start,
                    end = open.end,
                    "cannot encode a batch: {e}; dropped"
                );
                Metrics::add(&self.metrics.batches_rejected, 1);
                src.tailer.ack(&open.stream, open.end);
                return;
            }
        };
        let sealed = Sealed {
            source,
            epoch: src.epoch,
            stream: open.stream,
            batch,
            events,
            offsets: open.offsets,
            malformed_offsets: open.malformed_offsets,
            body,
        };
        self.last_sent.insert((source, fingerprint), Instant::now());
        if self.send(sealed) {
            Metrics::add(&self.metrics.batches_sealed, 1);
        }
    }

    /// Hands a sealed batch to the shipper; `false` once it is gone.
    fn send(&mut self, sealed: Sealed) -> bool {
        let Some(tx) = &self.to_shipper else {
            return false;
        };
        if tx.send(ToShipper::Batch(Box::new(sealed))).is_err() {
            return false;
        }
        self.buffered += 1;
        self.metrics
            .batches_buffered
            .store(self.buffered as u64, std::sync::atomic::Ordering::Relaxed);
        self.metrics
            .batches_buffered_max
            .fetch_max(self.buffered as u64, std::sync::atomic::Ordering::Relaxed);
        true
    }

    /// Writes changed checkpoints when the interval has passed (or `now`),
    /// and refreshes the per-file metrics.
    fn save_if_due(&mut self, force: bool) {
        let now = Instant::now();
        if !force
            && self
                .last_save
                .is_some_and(|at| now.duration_since(at) < self.settings.checkpoint_interval)
        {
            return;
        }
        self.last_save = Some(now);
        let mut current = true;
        let mut failure = None;
        let mut files = Vec::new();
        let mut tail = TailTotals::default();
        for src in &mut self.sources {
            let checkpoints = src.tailer.checkpoints();
            if src.saved.as_ref() != Some(checkpoints) {
                match checkpoints.save(&src.settings.checkpoint_dir) {
                    Ok(()) => {
                        src.saved = Some(checkpoints.clone());
                        Metrics::add(&self.metrics.checkpoint_saves, 1);
                    }
                    Err(e) => {
                        current = false;
                        Metrics::add(&self.metrics.checkpoint_errors, 1);
                        failure.get_or_insert_with(|| e.to_string());
                    }
                }
            }
            let stats = src.tailer.stats();
            tail.add(&stats);
            if stats.io_errors > src.errors_logged {
                tracing::warn!(
                    source = %src.settings.name,
                    errors = stats.io_errors - src.errors_logged,
                    last = src.tailer.last_error().unwrap_or(""),
                    "log file errors (each file is retried)"
                );
                src.errors_logged = stats.io_errors;
            }
            for f in stats.files {
                files.push(FileState {
                    source: src.settings.name.clone(),
                    path: f.path.display().to_string(),
                    size: f.size,
                    read: f.read,
                    acked: f.acked,
                });
            }
        }
        if current {
            self.metrics
                .checkpoint_current_unix_ms
                .store(unix_ms(), std::sync::atomic::Ordering::Relaxed);
        }
        match failure {
            Some(reason) => self.checkpoints_failed(reason, now),
            None if current && self.checkpoint_failures > 0 => {
                tracing::info!(
                    failed_attempts = self.checkpoint_failures,
                    "checkpoints are written again"
                );
                self.checkpoint_failures = 0;
                self.last_checkpoint_log = None;
                self.metrics.set_checkpoint_failure(None);
            }
            None => {}
        }
        self.metrics.set_files(files);
        tail.publish(&self.metrics);
        let filters = self
            .sources
            .iter()
            .filter_map(|s| s.chain.as_ref())
            .flat_map(|c| c.states().cloned())
            .collect::<Vec<_>>();
        if !filters.is_empty() {
            self.metrics.set_filters(filters);
        }
        let parsers = self
            .sources
            .iter()
            .filter_map(|s| s.parser.as_ref())
            .map(|p| p.state().clone())
            .collect::<Vec<_>>();
        if !parsers.is_empty() {
            self.metrics.set_parsers(parsers);
        }
    }
}

//! The running agent: wires the reader thread, the shipper task and the
//! metrics server together, and shuts them down in order.
//!
//! Shutdown (SIGTERM/SIGINT, or [`Agent::shutdown`]): the reader stops
//! reading and seals what it has read; the shipper delivers every batch
//! until none is left or `shutdown_deadline` passes (then abandons the rest,
//! whose lines stay unacknowledged); the reader saves its checkpoints last;
//! the metrics server stops after that. [`Agent::kill`] (and dropping an
//! [`Agent`]) stops everything at once without the final save, as a crash
//! would: a restart then resends at most what was not acknowledged by the
//! last periodic checkpoint.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::{Settings, SourceSettings};
use crate::metrics::{self, Metrics};
use crate::reader::Reader;
use crate::ship;
use crate::tail::{CheckpointError, Checkpoints, TailError, Tailer};

/// Why the agent could not start or did not stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// A tailer could not be built.
    #[error(transparent)]
    Tail(#[from] TailError),
    /// The checkpoints could not be loaded.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// The checkpoint directory could not be created.
    #[error("cannot create checkpoint directory {0}: {1}")]
    CheckpointDir(PathBuf, #[source] std::io::Error),
    /// The metrics address could not be bound.
    #[error("cannot listen on {0} for /metrics: {1}")]
    MetricsListen(SocketAddr, #[source] std::io::Error),
    /// The reader thread could not start or panicked.
    #[error("the reader thread failed: {0}")]
    Reader(String),
    /// An edge filter could not start.
    #[error("{0}")]
    Filter(String),
    /// An edge parser could not start.
    #[error("{0}")]
    Parser(String),
}

/// Builds a tailer per source from its checkpoint directory.
pub(crate) fn open_sources(
    settings: &Settings,
) -> Result<Vec<(SourceSettings, Tailer)>, AgentError> {
    let mut out = Vec::new();
    for source in &settings.sources {
        std::fs::create_dir_all(&source.checkpoint_dir)
            .map_err(|e| AgentError::CheckpointDir(source.checkpoint_dir.clone(), e))?;
        let checkpoints = Checkpoints::load(&source.checkpoint_dir)?;
        let tailer = Tailer::new(source.tailer.clone(), checkpoints)?;
        out.push((source.clone(), tailer));
    }
    Ok(out)
}

/// A running agent. Dropping it kills it (no final checkpoint).
#[derive(Debug)]
pub struct Agent {
    shutdown: CancellationToken,
    kill: CancellationToken,
    metrics: Arc<Metrics>,
    metrics_addr: Option<SocketAddr>,
    done: Option<JoinHandle<Result<(), AgentError>>>,
}

impl Agent {
    /// Opens the files and checkpoints, binds the metrics address and starts
    /// reading and shipping. Must run inside a tokio runtime.
    pub async fn start(settings: Settings) -> Result<Agent, AgentError> {
        let settings = Arc::new(settings);
        let named: Vec<_> = settings
            .sources
            .iter()
            .map(|s| (s.name.as_str(), s.filters.as_slice()))
            .collect();
        let chains = crate::filter::load_chains(&named).map_err(AgentError::Filter)?;
        let parsing: Vec<_> = settings
            .sources
            .iter()
            .map(|s| (s.name.as_str(), s.parser.as_ref(), s.tailer.max_line_bytes))
            .collect();
        let parsers = crate::parser::load_parsers(&parsing).map_err(AgentError::Parser)?;
        let tailers = open_sources(&settings)?;
        let metrics = Arc::new(Metrics::default());
        let shutdown = CancellationToken::new();
        let kill = CancellationToken::new();
        let server_stop = CancellationToken::new();
        let mut metrics_addr = None;
        let mut server = None;
        if let Some(addr) = settings.metrics_listen {
            let (listener, local) = metrics::bind(addr)
                .await
                .map_err(|e| AgentError::MetricsListen(addr, e))?;
            metrics_addr = Some(local);
            server = Some(tokio::spawn(metrics::serve(
                listener,
                metrics.clone(),
                server_stop.clone(),
            )));
        }

        let (to_shipper, intake) = tokio::sync::mpsc::unbounded_channel();
        let (to_reader, from_shipper) = std::sync::mpsc::channel();
        let mut reader = Reader::new(
            settings.clone(),
            tailers.into_iter().zip(chains).collect(),
            to_shipper,
            from_shipper,
            metrics.clone(),
            shutdown.clone(),
            kill.clone(),
        );
        reader.set_parsers(parsers);
        let reader_shutdown = shutdown.clone();
        let reader = std::thread::Builder::new()
            .name("logmon-reader".into())
            .spawn(move || {
                // Whatever ends the reader ends the agent.
                let _stop = reader_shutdown.drop_guard();
                reader.run();
            })
            .map_err(|e| AgentError::Reader(e.to_string()))?;

        let abort = CancellationToken::new();
        let shipper = {
            let settings = settings.clone();
            let metrics = metrics.clone();
            let abort = abort.clone();
            tokio::spawn(async move {
                ship::ship(&settings, intake, to_reader, metrics, abort).await;
            })
        };

        let deadline = settings.shutdown_deadline;
        let done = {
            let shutdown = shutdown.clone();
            let kill = kill.clone();
            tokio::spawn(async move {
                shutdown.cancelled().await;
                // Deliver until the deadline, then abandon.
                let timer = {
                    let abort = abort.clone();
                    let kill = kill.clone();
                    tokio::spawn(async move {
                        tokio::select! {
                            () = tokio::time::sleep(deadline) => {}
                            () = kill.cancelled() => {}
                        }
                        abort.cancel();
                    })
                };
                let _ = shipper.await;
                timer.abort();
                let joined = tokio::task::spawn_blocking(move || reader.join()).await;
                server_stop.cancel();
                if let Some(server) = server {
                    let _ = server.await;
                }
                match joined {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(_)) => Err(AgentError::Reader("panicked".into())),
                    Err(e) => Err(AgentError::Reader(e.to_string())),
                }
            })
        };
        Ok(Agent {
            shutdown,
            kill,
            metrics,
            metrics_addr,
            done: Some(done),
        })
    }

    /// The agent's counters.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Where `/metrics` and `/health` are served, if enabled.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// A token that starts a graceful shutdown when cancelled.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Stops gracefully (see the module docs) and waits until done.
    pub async fn shutdown(mut self) -> Result<(), AgentError> {
        self.shutdown.cancel();
        self.wait().await
    }

    /// Waits until the agent stopped (after a shutdown started elsewhere, or
    /// the reader ended).
    pub async fn wait(&mut self) -> Result<(), AgentError> {
        match self.done.take() {
            Some(done) => done
                .await
                .unwrap_or_else(|e| Err(AgentError::Reader(e.to_string()))),
            None => Ok(()),
        }
    }

    /// Stops at once, without delivering or saving, like a crash, and waits
    /// until every thread and task is gone.
    pub async fn kill(mut self) {
        self.kill.cancel();
        self.shutdown.cancel();
        let _ = self.wait().await;
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if self.done.is_some() {
            self.kill.cancel();
            self.shutdown.cancel();
        }
    }
}

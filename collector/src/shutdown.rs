//! One supervisor for `serve`: the tasks it starts, what happens when one of
//! them ends before its time, and the order of shutdown.
//!
//! - **Tokens.** [`Supervisor::shutdown`] is cancelled by a signal or by a
//!   fatal failure: stop taking work. [`Supervisor::drain`] is cancelled by
//!   `serve` once intake has stopped and the engine has taken its last
//!   snapshot: the writers finish what is there and end. [`Supervisor::hard`]
//!   is cancelled `deadline` after `shutdown`: everything still running stops
//!   now (each at a point where its committed state is consistent).
//! - **A task that dies is never silent.** A task started with
//!   [`Supervisor::restarting`] that fails, panics or ends before shutdown is
//!   logged, counted (`logmon_task_restarts_total`), shown down in `/health`
//!   (503, with the reason) until it runs again, and started again after a
//!   backoff (1 s doubling to 60 s). One started with
//!   [`Supervisor::fatal_thread`] that fails or panics stops the collector:
//!   `serve` shuts down in order and exits non-zero with the reason.
//!
//! Which is which is decided in `serve.rs`: the InfluxDB writer, the
//! notifiers and gc restart (their progress is committed on disk, so a new
//! run resumes it); the engine is fatal (a collector whose engine is gone
//! would keep taking batches it never evaluates).

use crate::http::status::{Health, HealthSource, Level, MetricsSource};
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// First wait before a failed task is started again; it doubles up to
/// [`MAX_BACKOFF`].
pub const FIRST_BACKOFF: Duration = Duration::from_secs(1);
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);

#[derive(Debug, Default, Clone)]
struct PartState {
    /// Why it is down, while it waits to run again.
    down: Option<String>,
    restarts: u64,
}

/// What the supervised tasks are doing, for `/health` and `/metrics`.
#[derive(Debug, Default)]
pub struct Parts {
    parts: Mutex<BTreeMap<String, PartState>>,
}

impl Parts {
    fn with<T>(&self, name: &str, f: impl FnOnce(&mut PartState) -> T) -> T {
        let mut parts = self.parts.lock().unwrap_or_else(|e| e.into_inner());
        f(parts.entry(name.to_owned()).or_default())
    }

    /// Restarts of `name` so far.
    pub fn restarts(&self, name: &str) -> u64 {
        self.with(name, |p| p.restarts)
    }
}

impl HealthSource for Parts {
    fn health(&self) -> Health {
        let parts = self.parts.lock().unwrap_or_else(|e| e.into_inner());
        let reasons: Vec<String> = parts
            .iter()
            .filter_map(|(name, p)| p.down.as_ref().map(|why| format!("{name}: {why}")))
            .collect();
        if reasons.is_empty() {
            return Health::ok();
        }
        Health {
            level: Level::Down,
            status: "part_down",
            reasons,
            details: serde_json::Map::new(),
        }
    }
}

impl MetricsSource for Parts {
    fn render(&self, out: &mut String) {
        use logmon_protocol::prometheus::{Kind, Text};
        let parts = self.parts.lock().unwrap_or_else(|e| e.into_inner());
        let mut text = Text::new();
        let name = "logmon_task_restarts_total";
        text.family(
            name,
            Kind::Counter,
            "Times a supervised task was started again after it failed.",
        );
        for (task, p) in parts.iter() {
            text.sample(name, &[("task", task)], p.restarts);
        }
        let name = "logmon_task_up";
        text.family(
            name,
            Kind::Gauge,
            "1 while a supervised task runs, 0 while it waits to be started again.",
        );
        for (task, p) in parts.iter() {
            text.sample(name, &[("task", task)], u8::from(p.down.is_none()));
        }
        out.push_str(text.as_str());
    }
}

/// See the module documentation.
#[derive(Debug)]
pub struct Supervisor {
    shutdown: CancellationToken,
    drain: CancellationToken,
    hard: CancellationToken,
    tracker: TaskTracker,
    parts: Arc<Parts>,
    fatal: Arc<Mutex<Option<String>>>,
}

impl Supervisor {
    /// `deadline`: how long after `shutdown` everything is stopped hard.
    pub fn new(deadline: Duration) -> Supervisor {
        let supervisor = Supervisor {
            shutdown: CancellationToken::new(),
            drain: CancellationToken::new(),
            hard: CancellationToken::new(),
            tracker: TaskTracker::new(),
            parts: Arc::default(),
            fatal: Arc::default(),
        };
        let (shutdown, hard) = (supervisor.shutdown.clone(), supervisor.hard.clone());
        tokio::spawn(async move {
            shutdown.cancelled().await;
            tokio::time::sleep(deadline).await;
            hard.cancel();
        });
        supervisor
    }

    /// Stop taking work.
    pub fn shutdown(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Finish what is there, then end.
    pub fn drain(&self) -> CancellationToken {
        self.drain.clone()
    }

    /// Stop now.
    pub fn hard(&self) -> CancellationToken {
        self.hard.clone()
    }

    pub fn parts(&self) -> Arc<Parts> {
        Arc::clone(&self.parts)
    }

    /// The reason of the fatal failure that stopped the collector, if one did.
    pub fn fatal(&self) -> Option<String> {
        self.fatal.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Records a fatal failure and starts the shutdown.
    pub fn fail(&self, why: String) {
        fail(&self.fatal, &self.shutdown, why);
    }

    /// Runs `task` (given the supervisor's tokens) until it returns `Ok`
    /// after shutdown began; if it fails, panics or returns before that, the
    /// failure is logged and shown, and it runs again after a backoff.
    pub fn restarting<F, Fut>(&self, name: impl Into<String>, mut task: F)
    where
        F: FnMut(Tokens) -> Fut + Send + 'static,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let tokens = Tokens {
            shutdown: self.shutdown.clone(),
            drain: self.drain.clone(),
            hard: self.hard.clone(),
        };
        let name = name.into();
        let parts = Arc::clone(&self.parts);
        parts.with(&name, |_| ());
        self.tracker.spawn(async move {
            let mut backoff = FIRST_BACKOFF;
            loop {
                let outcome = tokio::spawn(task(tokens.clone())).await;
                let why = match outcome {
                    Ok(Ok(())) if tokens.shutdown.is_cancelled() => return,
                    Ok(Ok(())) => "ended by itself".to_owned(),
                    Ok(Err(e)) => format!("failed: {e:#}"),
                    Err(e) if e.is_panic() => format!("panicked: {}", panic_text(e)),
                    Err(e) => format!("stopped: {e}"),
                };
                if tokens.hard.is_cancelled() {
                    return;
                }
                let restarts = parts.with(&name, |p| {
                    p.restarts += 1;
                    p.down = Some(format!("{why}; starting again in {} s", backoff.as_secs()));
                    p.restarts
                });
                tracing::error!(
                    task = %name,
                    restarts,
                    retry_in_secs = backoff.as_secs(),
                    "{name} {why}; starting it again in {} s",
                    backoff.as_secs()
                );
                tokio::select! {
                    _ = tokens.shutdown.cancelled() => {}
                    _ = tokio::time::sleep(backoff) => {}
                }
                parts.with(&name, |p| p.down = None);
                if tokens.shutdown.is_cancelled() && tokens.drain.is_cancelled() {
                    return;
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        });
    }

    /// Runs `work` on a thread of its own; if it fails or panics, the
    /// collector stops (see [`Supervisor::fatal`]). Its result, if it
    /// succeeded, comes back through the handle.
    pub fn fatal_thread<T, F>(
        &self,
        name: &'static str,
        work: F,
    ) -> std::io::Result<std::thread::JoinHandle<Option<T>>>
    where
        T: Send + 'static,
        F: FnOnce() -> anyhow::Result<T> + Send + 'static,
    {
        let (fatal, shutdown) = (Arc::clone(&self.fatal), self.shutdown.clone());
        std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(work));
                let why = match outcome {
                    Ok(Ok(value)) => return Some(value),
                    Ok(Err(e)) => format!("{name} failed: {e:#}"),
                    Err(panic) => format!("{name} panicked: {}", panic_message(&*panic)),
                };
                tracing::error!(task = name, "{why}; stopping the collector");
                fail(&fatal, &shutdown, why);
                None
            })
    }

    /// Waits for every restarting task to end (after `drain` or `hard`).
    pub async fn wait(&self) {
        self.tracker.close();
        self.tracker.wait().await;
    }
}

/// The tokens a supervised task watches (see the module documentation).
#[derive(Debug, Clone)]
pub struct Tokens {
    pub shutdown: CancellationToken,
    pub drain: CancellationToken,
    pub hard: CancellationToken,
}

fn fail(fatal: &Mutex<Option<String>>, shutdown: &CancellationToken, why: String) {
    fatal
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get_or_insert(why);
    shutdown.cancel();
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned())
}

fn panic_text(e: tokio::task::JoinError) -> String {
    match e.try_into_panic() {
        Ok(panic) => panic_message(&*panic),
        Err(e) => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test(start_paused = true)]
    async fn a_failing_task_is_shown_down_and_started_again() {
        let supervisor = Supervisor::new(Duration::from_secs(5));
        let runs = Arc::new(AtomicU32::new(0));
        let counted = Arc::clone(&runs);
        supervisor.restarting("writer", move |tokens| {
            let runs = Arc::clone(&counted);
            async move {
                let run = runs.fetch_add(1, Ordering::SeqCst);
                if run < 2 {
                    anyhow::bail!("target unreachable (run {run})");
                }
                tokens.shutdown.cancelled().await;
                Ok(())
            }
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        let parts = supervisor.parts();
        let health = parts.health();
        assert_eq!(health.level, Level::Down);
        assert_eq!(
            health.reasons,
            ["writer: failed: target unreachable (run 0); starting again in 1 s"]
        );
        tokio::time::sleep(Duration::from_millis(1_100)).await;
        // The second run failed too: 2 s this time.
        assert_eq!(
            parts.health().reasons,
            ["writer: failed: target unreachable (run 1); starting again in 2 s"]
        );
        tokio::time::sleep(Duration::from_millis(2_100)).await;
        assert_eq!(parts.health(), Health::ok());
        assert_eq!(parts.restarts("writer"), 2);
        let mut metrics = String::new();
        parts.render(&mut metrics);
        assert!(metrics.contains("logmon_task_restarts_total{task=\"writer\"} 2\n"));
        assert!(metrics.contains("logmon_task_up{task=\"writer\"} 1\n"));
        supervisor.shutdown().cancel();
        supervisor.wait().await;
        assert_eq!(runs.load(Ordering::SeqCst), 3);
        assert_eq!(supervisor.fatal(), None);
    }

    #[tokio::test]
    async fn a_fatal_thread_that_fails_stops_the_collector() {
        let supervisor = Supervisor::new(Duration::from_secs(5));
        let ok = supervisor.fatal_thread("fine", || Ok(7)).unwrap();
        assert_eq!(ok.join().unwrap(), Some(7));
        assert!(!supervisor.shutdown().is_cancelled());
        let failed = supervisor
            .fatal_thread::<(), _>("engine", || anyhow::bail!("the bus is corrupt"))
            .unwrap();
        assert_eq!(failed.join().unwrap(), None);
        assert!(supervisor.shutdown().is_cancelled());
        assert_eq!(
            supervisor.fatal().as_deref(),
            Some("engine failed: the bus is corrupt")
        );
        let panicked = supervisor
            .fatal_thread::<(), _>("other", || panic!("boom"))
            .unwrap();
        assert_eq!(panicked.join().unwrap(), None);
        // The first failure is the one reported.
        assert_eq!(
            supervisor.fatal().as_deref(),
            Some("engine failed: the bus is corrupt")
        );
    }
}

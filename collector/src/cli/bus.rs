//! `logmon-collector bus consumers`: the consumers registered in a data
//! directory's event bus and alert outbox, and their removal.
//!
//! A consumer holds every record it has not committed from deletion. The
//! collector registers the consumers its configuration implies at start and
//! never removes one by itself: one that the configuration stopped naming
//! (InfluxDB no longer configured, a notifier renamed) keeps its records
//! until an operator says here that it is gone. Both logs are locked by a
//! running collector, so this works on a stopped one.

use crate::bus::{BusError, ConsumerLag, LogConfig, SegmentLog};
use anyhow::Context as _;
use clap::{Args, Subcommand, ValueEnum};
use std::path::{Path, PathBuf};

#[derive(Debug, Args)]
pub struct BusArgs {
    #[command(subcommand)]
    pub command: BusCommand,
}

#[derive(Debug, Subcommand)]
pub enum BusCommand {
    /// List the consumers of the event bus and the alert outbox (default),
    /// or remove one.
    Consumers(ConsumersArgs),
}

#[derive(Debug, Args)]
pub struct ConsumersArgs {
    /// The collector's data directory.
    #[arg(
        long,
        env = "LOGMON_DATA_DIR",
        default_value = "logmon-data",
        global = true
    )]
    pub data_dir: PathBuf,
    #[command(subcommand)]
    pub action: Option<ConsumersAction>,
}

#[derive(Debug, Subcommand)]
pub enum ConsumersAction {
    /// Every consumer: its offset and how far behind the end it is.
    List,
    /// Forget a consumer, so its records can be deleted. One the
    /// configuration still names is registered again at the next start, at
    /// the oldest record then retained.
    Remove {
        name: String,
        /// Which log it consumes.
        #[arg(long, value_enum, default_value = "bus")]
        log: LogName,
    },
}

/// The data directory's logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogName {
    /// The event bus (`DATA_DIR/bus`).
    Bus,
    /// The alert outbox (`DATA_DIR/outbox`).
    Outbox,
}

impl LogName {
    fn dir(self, data_dir: &Path) -> PathBuf {
        data_dir.join(match self {
            LogName::Bus => "bus",
            LogName::Outbox => "outbox",
        })
    }

    fn label(self) -> &'static str {
        match self {
            LogName::Bus => "bus",
            LogName::Outbox => "outbox",
        }
    }
}

fn open(data_dir: &Path, log: LogName) -> anyhow::Result<Option<SegmentLog>> {
    let dir = log.dir(data_dir);
    if !dir.is_dir() {
        return Ok(None);
    }
    match SegmentLog::open(LogConfig::new(&dir)) {
        Ok((log, _)) => Ok(Some(log)),
        Err(e @ BusError::Locked { .. }) => {
            Err(anyhow::Error::new(e).context("stop the collector that uses it first"))
        }
        Err(e) => Err(anyhow::Error::new(e).context(format!("opening {}", dir.display()))),
    }
}

/// Runs the command, writing its report to `out`.
pub fn run(args: BusArgs, out: &mut impl std::io::Write) -> anyhow::Result<()> {
    let BusCommand::Consumers(args) = args.command;
    match args.action.unwrap_or(ConsumersAction::List) {
        ConsumersAction::List => {
            let mut rows: Vec<(LogName, ConsumerLag)> = Vec::new();
            for log in [LogName::Bus, LogName::Outbox] {
                if let Some(opened) = open(&args.data_dir, log)? {
                    rows.extend(opened.consumers().into_iter().map(|c| (log, c)));
                }
            }
            writeln!(
                out,
                "{:<8} {:<32} {:>12} {:>12} {:>14}",
                "log", "consumer", "offset", "lag records", "lag bytes"
            )?;
            for (log, c) in rows {
                writeln!(
                    out,
                    "{:<8} {:<32} {:>12} {:>12} {:>14}",
                    log.label(),
                    c.name,
                    c.offset,
                    c.records,
                    c.bytes
                )?;
            }
        }
        ConsumersAction::Remove { name, log } => {
            let mut opened = open(&args.data_dir, log)?
                .with_context(|| format!("{} holds no {}", args.data_dir.display(), log.label()))?;
            let lag = opened.consumers().into_iter().find(|c| c.name == name);
            anyhow::ensure!(
                opened.unregister(&name)?,
                "the {} has no consumer named `{name}`",
                log.label()
            );
            let lag = lag.expect("it was registered");
            writeln!(
                out,
                "removed {} consumer `{name}` at offset {} ({} records, {} bytes it held can now be deleted)",
                log.label(),
                lag.offset,
                lag.records,
                lag.bytes
            )?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_to_string(data_dir: &Path, action: Option<ConsumersAction>) -> anyhow::Result<String> {
        let mut out = Vec::new();
        let args = BusArgs {
            command: BusCommand::Consumers(ConsumersArgs {
                data_dir: data_dir.to_path_buf(),
                action,
            }),
        };
        run(args, &mut out)?;
        Ok(String::from_utf8(out).unwrap())
    }

    #[test]
    fn lists_and_removes_consumers_only_while_the_logs_are_free() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut bus, _) = SegmentLog::open(LogConfig::new(dir.path().join("bus"))).unwrap();
            bus.declare(&["engine", "influx"]).unwrap();
            bus.append(&[b"one", b"two"]).unwrap();
            bus.commit("engine", 2).unwrap();
            let (mut outbox, _) =
                SegmentLog::open(LogConfig::new(dir.path().join("outbox"))).unwrap();
            outbox.declare(&["notify:ops"]).unwrap();
            // A running collector holds the logs: nothing is changed then.
            let err = run_to_string(dir.path(), None).unwrap_err();
            assert!(format!("{err:#}").contains("stop the collector"), "{err:#}");
        }
        let listed = run_to_string(dir.path(), Some(ConsumersAction::List)).unwrap();
        let rows: Vec<Vec<&str>> = listed
            .lines()
            .skip(1)
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(
            rows,
            [
                ["bus", "engine", "2", "0", "0"],
                ["bus", "influx", "0", "2", "22"],
                ["outbox", "notify:ops", "0", "0", "0"],
            ]
        );
        let removed = run_to_string(
            dir.path(),
            Some(ConsumersAction::Remove {
                name: "influx".into(),
                log: LogName::Bus,
            }),
        )
        .unwrap();
        assert_eq!(
            removed,
            "removed bus consumer `influx` at offset 0 (2 records, 22 bytes it held can now be deleted)\n"
        );
        let again = run_to_string(
            dir.path(),
            Some(ConsumersAction::Remove {
                name: "influx".into(),
                log: LogName::Bus,
            }),
        )
        .unwrap_err();
        assert_eq!(again.to_string(), "the bus has no consumer named `influx`");
        let listed = run_to_string(dir.path(), None).unwrap();
        assert_eq!(listed.lines().count(), 3, "{listed}");
    }
}

//! `logmon-collector lake ls|export`: what the lake holds, and its events
//! rendered back as log lines.
//!
//! Both read only complete files (names ending in `.parquet`); a file that
//! cannot be read is reported on stderr with its path and the reason and
//! skipped, the rest goes on. `ls` reads only the files' footers (row
//! counts, the time column's statistics), never their data.

use crate::console::printer::OutputKind;
use crate::lake::layout::{self, Partition};
use crate::lake::read::{LakeEvents, Projection};
use anyhow::Context as _;
use clap::{Args, Subcommand, ValueEnum};
use logmon_protocol::{Event, Format};
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::file::statistics::Statistics;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Debug, Args)]
pub struct LakeArgs {
    #[command(subcommand)]
    pub command: LakeCommand,
}

#[derive(Debug, Subcommand)]
pub enum LakeCommand {
    /// The lake's hour partitions: files, rows, bytes and the time range of
    /// their events (from the files' footers).
    Ls(LsArgs),
    /// The lake's events of a window as log lines, in time order.
    Export(ExportArgs),
}

#[derive(Debug, Args)]
pub struct LsArgs {
    /// The lake's directory (serve's `--lake-dir`).
    #[arg(default_value = "logmon-data/lake")]
    pub dir: PathBuf,
    /// text (a table and a total) or json (one object per partition, then
    /// the total).
    #[arg(long, value_enum, default_value = "text")]
    pub output: OutputKind,
}

/// The formats `lake export` writes: those the parsers read back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    Csv,
    Clf,
    Combined,
    Json,
}

impl From<ExportFormat> for Format {
    fn from(f: ExportFormat) -> Format {
        match f {
            ExportFormat::Csv => Format::Csv,
            ExportFormat::Clf => Format::Clf,
            ExportFormat::Combined => Format::Combined,
            ExportFormat::Json => Format::Json,
        }
    }
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The lake's directory (serve's `--lake-dir`).
    #[arg(default_value = "logmon-data/lake")]
    pub dir: PathBuf,
    /// The window's start, unix seconds or RFC 3339, inclusive.
    #[arg(long, value_parser = super::parse_time)]
    pub since: Option<i64>,
    /// The window's end, exclusive.
    #[arg(long, value_parser = super::parse_time)]
    pub until: Option<i64>,
    /// The lines' format. CLF has no referer, user agent or request time and
    /// CLF/Combined only whole seconds; CSV has no referer or user agent
    /// either; JSON keeps every field of an event.
    #[arg(long, value_enum)]
    pub format: ExportFormat,
    /// Write here instead of standard output.
    #[arg(long, short)]
    pub out: Option<PathBuf>,
}

/// Runs the command; true when every file could be read.
pub fn run(args: LakeArgs, out: &mut dyn Write, diag: &mut dyn Write) -> anyhow::Result<bool> {
    match args.command {
        LakeCommand::Ls(args) => ls(&args, out, diag),
        LakeCommand::Export(args) => match &args.out {
            None => export(&args, out, diag),
            Some(path) => {
                let file = std::fs::File::create(path)
                    .with_context(|| format!("creating {}", path.display()))?;
                let mut file = std::io::BufWriter::new(file);
                let complete = export(&args, &mut file, diag)?;
                file.flush()
                    .and_then(|()| file.get_ref().sync_all())
                    .with_context(|| format!("writing {}", path.display()))?;
                Ok(complete)
            }
        },
    }
}

fn existing(dir: &Path) -> anyhow::Result<()> {
    anyhow::ensure!(
        dir.is_dir(),
        "the lake {} is not a directory",
        dir.display()
    );
    Ok(())
}

/// What one partition holds.
#[derive(Debug, Default)]
struct PartitionSummary {
    files: u64,
    rows: u64,
    bytes: u64,
    /// First and last event, ns; `None` while no file said.
    first: Option<i64>,
    last: Option<i64>,
    unreadable: u64,
}

impl PartitionSummary {
    /// Adds `other`'s files, rows, bytes, unreadable files and times.
    fn add(&mut self, other: &PartitionSummary) {
        self.files += other.files;
        self.rows += other.rows;
        self.bytes += other.bytes;
        self.unreadable += other.unreadable;
        self.add_times(other.first, other.last);
    }

    /// The JSON line of `kind`, with `extra` fields first.
    fn json(&self, kind: &str, extra: (&str, serde_json::Value)) -> serde_json::Value {
        serde_json::json!({
            "kind": kind,
            extra.0: extra.1,
            "files": self.files,
            "rows": self.rows,
            "bytes": self.bytes,
            "first": self.first.map(|t| rfc3339(Some(t))),
            "last": self.last.map(|t| rfc3339(Some(t))),
            "unreadable_files": self.unreadable,
        })
    }

    fn add_times(&mut self, first: Option<i64>, last: Option<i64>) {
        self.first = match (self.first, first) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.last = match (self.last, last) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
    }
}

/// Rows and the time column's range of a file, from its footer.
fn footer(path: &Path) -> Result<(u64, Option<i64>, Option<i64>), String> {
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let reader = SerializedFileReader::new(file).map_err(|e| e.to_string())?;
    let meta = reader.metadata();
    let time = meta
        .file_metadata()
        .schema_descr()
        .columns()
        .iter()
        .position(|c| c.path().string() == "time")
        .ok_or("no `time` column")?;
    let rows = u64::try_from(meta.file_metadata().num_rows()).map_err(|e| e.to_string())?;
    let (mut first, mut last) = (None::<i64>, None::<i64>);
    for group in meta.row_groups() {
        if let Some(Statistics::Int64(s)) = group.column(time).statistics() {
            if let Some(&min) = s.min_opt() {
                first = Some(first.map_or(min, |f| f.min(min)));
            }
            if let Some(&max) = s.max_opt() {
                last = Some(last.map_or(max, |l| l.max(max)));
            }
        }
    }
    Ok((rows, first, last))
}

fn rfc3339(ns: Option<i64>) -> String {
    ns.and_then(|ns| time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ns)).ok())
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| "-".into())
}

fn ls(args: &LsArgs, out: &mut dyn Write, diag: &mut dyn Write) -> anyhow::Result<bool> {
    existing(&args.dir)?;
    let scan = layout::scan(&args.dir, false)
        .with_context(|| format!("listing the lake {}", args.dir.display()))?;
    let mut partitions: BTreeMap<Partition, PartitionSummary> = BTreeMap::new();
    for file in &scan.files {
        let p = partitions.entry(file.partition).or_default();
        match footer(&file.path) {
            Ok((rows, first, last)) => {
                p.files += 1;
                p.rows += rows;
                p.bytes += file.bytes;
                p.add_times(first, last);
            }
            Err(reason) => {
                p.unreadable += 1;
                writeln!(
                    diag,
                    "logmon: {}: skipped, not a readable lake file: {reason}",
                    file.path.display()
                )?;
            }
        }
    }
    let mut total = PartitionSummary::default();
    let json = args.output == OutputKind::Json;
    if !json {
        writeln!(
            out,
            "{:<26} {:>6} {:>12} {:>14}  {:<21} last event",
            "partition", "files", "rows", "bytes", "first event"
        )?;
    }
    for (partition, p) in &partitions {
        let name = partition.relative_dir().display().to_string();
        if json {
            writeln!(out, "{}", p.json("partition", ("partition", name.into())))?;
        } else {
            writeln!(
                out,
                "{name:<26} {:>6} {:>12} {:>14}  {:<21} {}{}",
                p.files,
                p.rows,
                p.bytes,
                rfc3339(p.first),
                rfc3339(p.last),
                if p.unreadable > 0 {
                    format!(" ({} unreadable)", p.unreadable)
                } else {
                    String::new()
                }
            )?;
        }
        total.add(p);
    }
    if json {
        let line = total.json("total", ("partitions", partitions.len().into()));
        writeln!(out, "{line}")?;
    } else {
        writeln!(
            out,
            "total: {} partitions, {} files, {} rows, {} bytes, {} to {}{}",
            partitions.len(),
            total.files,
            total.rows,
            total.bytes,
            rfc3339(total.first),
            rfc3339(total.last),
            if total.unreadable > 0 {
                format!(", {} unreadable files skipped", total.unreadable)
            } else {
                String::new()
            }
        )?;
    }
    Ok(total.unreadable == 0)
}

fn export(args: &ExportArgs, out: &mut dyn Write, diag: &mut dyn Write) -> anyhow::Result<bool> {
    existing(&args.dir)?;
    if let (Some(since), Some(until)) = (args.since, args.until) {
        anyhow::ensure!(since < until, "--since must come before --until");
    }
    let mut events = LakeEvents::open(&args.dir, args.since, args.until, Projection::Event)
        .with_context(|| format!("opening the lake {}", args.dir.display()))?;
    let format = Format::from(args.format);
    if let Some(header) = logmon_protocol::render::header(format) {
        writeln!(out, "{header}")?;
    }
    let (mut event, mut line) = (Event::empty(), String::new());
    let mut problems = 0;
    let mut report = |events: &mut LakeEvents, diag: &mut dyn Write| -> std::io::Result<()> {
        for problem in events.take_problems() {
            problems += 1;
            writeln!(diag, "logmon: {problem}")?;
        }
        Ok(())
    };
    while events.next_into(&mut event) {
        line.clear();
        logmon_protocol::render::render(format, &event, &mut line);
        line.push('\n');
        out.write_all(line.as_bytes())?;
        report(&mut events, diag)?;
    }
    report(&mut events, diag)?;
    if problems > 0 {
        writeln!(
            diag,
            "logmon: the export lacks the rows of {problems} unreadable file(s) (above)"
        )?;
    }
    Ok(problems == 0)
}

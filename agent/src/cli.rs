//! `logmon-agent filters …`: write a filter from the template, list the
//! shipped ones, and show what a filter does to a log file.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::Subcommand;

use crate::filter::{FilterConfig, OnError, ParamValue};
use logmon_protocol::FormatChoice;

#[derive(Debug, Subcommand)]
pub enum FiltersCommand {
    /// The shipped filters, with their parameters.
    List,
    /// Show what a filter keeps, drops and changes in a log file.
    Test {
        /// A shipped filter's name or the path of a `.wasm` component.
        filter: String,
        /// The access log.
        logfile: PathBuf,
        /// A parameter of the filter (repeatable).
        #[arg(long = "param", value_name = "NAME=VALUE")]
        params: Vec<String>,
        /// The log's format (auto, csv, clf, combined, json, nginx:'…', apache:'…').
        #[arg(long, default_value = "auto")]
        format: String,
        /// Events per batch, as the agent's `batch_max_events`.
        #[arg(long, default_value_t = 1000)]
        batch: usize,
        /// Only the summary, not every event.
        #[arg(long)]
        quiet: bool,
    },
    /// Create a filter crate from the template (builds and tests as is).
    New {
        /// The filter's name: lowercase letters, digits and dashes.
        name: String,
        /// Where to create it.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// The filter SDK to depend on: `wasm-rules/filter-sdk` of a logmon
        /// checkout (default: the one this binary was built from).
        #[arg(long, env = "LOGMON_FILTER_SDK")]
        sdk: Option<PathBuf>,
    },
}

/// Runs a `filters` command; the error is for stderr.
pub fn filters(command: FiltersCommand, out: &mut dyn Write) -> Result<(), String> {
    match command {
        FiltersCommand::List => list(out),
        FiltersCommand::Test {
            filter,
            logfile,
            params,
            format,
            batch,
            quiet,
        } => {
            let format = parse_format(&format)?;
            let mut config = FilterConfig::new(&filter, &[]);
            config.on_error = OnError::Pass;
            for p in params {
                let (k, v) = p
                    .split_once('=')
                    .ok_or_else(|| format!("--param {p}: NAME=VALUE"))?;
                config
                    .params
                    .insert(k.to_owned(), ParamValue::Text(v.to_owned()));
            }
            test(&config, &logfile, &format, batch, quiet, out)
        }
        FiltersCommand::New { name, dir, sdk } => new(&name, &dir, sdk, out),
    }
}

fn parse_format(s: &str) -> Result<FormatChoice, String> {
    s.parse::<FormatChoice>()
        .map_err(|e| format!("--format {s}: {e}"))
}

fn io(e: std::io::Error) -> String {
    e.to_string()
}

#[cfg(feature = "wasm")]
fn list(out: &mut dyn Write) -> Result<(), String> {
    let runtime = crate::filter::Runtime::new().map_err(|e| e.to_string())?;
    for (name, bytes) in crate::filter::SHIPPED {
        let info = runtime.describe(name).map_err(|e| e.to_string())?;
        writeln!(
            out,
            "{name} {} ({} KiB): {}",
            info.version,
            bytes.len() / 1024,
            info.description
        )
        .map_err(io)?;
        for p in info.params {
            writeln!(
                out,
                "    {} = {:?}: {}",
                p.name, p.default_value, p.description
            )
            .map_err(io)?;
        }
    }
    Ok(())
}

#[cfg(not(feature = "wasm"))]
fn list(_: &mut dyn Write) -> Result<(), String> {
    Err("this agent was built without the `wasm` feature: no filters".into())
}

#[cfg(feature = "wasm")]
fn test(
    config: &FilterConfig,
    logfile: &Path,
    format: &FormatChoice,
    batch: usize,
    quiet: bool,
    out: &mut dyn Write,
) -> Result<(), String> {
    let tested = crate::filter::test_file(std::slice::from_ref(config), logfile, format, batch)
        .map_err(|e| e.to_string())?;
    let (mut kept, mut changed, mut dropped) = (0u64, 0u64, 0u64);
    for (line, before, after) in &tested.events {
        let Some(after) = after else {
            dropped += 1;
            if !quiet {
                writeln!(
                    out,
                    "line {line}: drop   {} {} {}",
                    before.method, before.path, before.status
                )
                .map_err(io)?;
            }
            continue;
        };
        kept += 1;
        let changes = differences(before, after);
        if changes.is_empty() {
            if !quiet {
                writeln!(
                    out,
                    "line {line}: keep   {} {} {}",
                    before.method, before.path, before.status
                )
                .map_err(io)?;
            }
        } else {
            changed += 1;
            if !quiet {
                writeln!(out, "line {line}: change {}", changes.join("; ")).map_err(io)?;
            }
        }
    }
    writeln!(
        out,
        "{} lines, {} events: {kept} kept ({changed} changed), {dropped} dropped; {} malformed lines; {} filter errors",
        tested.lines,
        tested.events.len(),
        tested.malformed,
        tested.errors
    )
    .map_err(io)
}

#[cfg(not(feature = "wasm"))]
fn test(
    _: &FilterConfig,
    _: &Path,
    _: &FormatChoice,
    _: usize,
    _: bool,
    _: &mut dyn Write,
) -> Result<(), String> {
    Err("this agent was built without the `wasm` feature: no filters".into())
}

/// What a filter changed in an event, as `field: before → after`.
pub fn differences(a: &logmon_protocol::Event, b: &logmon_protocol::Event) -> Vec<String> {
    let mut d = Vec::new();
    let mut text = |name: &str, x: &str, y: &str| {
        if x != y {
            d.push(format!("{name}: {x:?} → {y:?}"));
        }
    };
    text("client", &a.client, &b.client);
    text("user", &a.user, &b.user);
    text("method", &a.method, &b.method);
    text("path", &a.path, &b.path);
    text("protocol", &a.protocol, &b.protocol);
    text(
        "referer",
        a.referer.as_deref().unwrap_or("-"),
        b.referer.as_deref().unwrap_or("-"),
    );
    text(
        "user_agent",
        a.user_agent.as_deref().unwrap_or("-"),
        b.user_agent.as_deref().unwrap_or("-"),
    );
    for (k, v) in &b.labels {
        if !a.labels.iter().any(|(x, w)| x == k && w == v) {
            d.push(format!("label {k}={v}"));
        }
    }
    d
}

/// The SDK of the checkout this binary was built from.
const BUILT_FROM_SDK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../wasm-rules/filter-sdk");

const TEMPLATE: &[(&str, &str)] = &[
    (
        "Cargo.toml",
        include_str!("../templates/filter/Cargo.toml.tmpl"),
    ),
    (
        "src/lib.rs",
        include_str!("../templates/filter/lib.rs.tmpl"),
    ),
    (
        "README.md",
        include_str!("../templates/filter/README.md.tmpl"),
    ),
    (
        ".gitignore",
        include_str!("../templates/filter/gitignore.tmpl"),
    ),
];

/// Names the filter's type cannot take (what the template uses).
const TAKEN_TYPES: &[&str] = &[
    "Batch",
    "Default",
    "Field",
    "Filter",
    "FilterInfo",
    "Params",
    "Result",
    "Self",
    "String",
    "Verdict",
    "Vec",
];

fn new(name: &str, dir: &Path, sdk: Option<PathBuf>, out: &mut dyn Write) -> Result<(), String> {
    let valid = name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.split('-').all(|p| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        });
    if !valid || ["logmon-filter", "wit-bindgen", "std", "core", "test"].contains(&name) {
        return Err(format!(
            "`{name}` cannot name a filter: use lowercase letters, digits and single dashes, starting with a letter (`drop-bots`)"
        ));
    }
    let given = sdk.is_some();
    let sdk = sdk.unwrap_or_else(|| PathBuf::from(BUILT_FROM_SDK));
    let manifest = std::fs::read_to_string(sdk.join("Cargo.toml")).unwrap_or_default();
    if !manifest.contains("name = \"logmon-filter\"") {
        return Err(if given {
            format!(
                "{} is not the logmon filter SDK (wasm-rules/filter-sdk of a logmon checkout)",
                sdk.display()
            )
        } else {
            format!(
                "the filter SDK this binary was built from ({}) is gone; pass --sdk <logmon checkout>/wasm-rules/filter-sdk",
                sdk.display()
            )
        });
    }
    let sdk = std::fs::canonicalize(&sdk).map_err(|e| format!("{}: {e}", sdk.display()))?;
    let path = sdk.to_str().ok_or("the SDK's path is not UTF-8")?;
    let dependency = format!(
        "logmon-filter = {{ path = {} }}",
        toml::Value::String(path.to_owned())
    );
    let target = dir.join(name);
    if target.exists() {
        return Err(format!("{} already exists", target.display()));
    }
    let lib = name.replace('-', "_");
    let camel: String = name
        .split('-')
        .map(|p| {
            let mut c = p.chars();
            c.next().map_or_else(String::new, |f| {
                f.to_ascii_uppercase().to_string() + c.as_str()
            })
        })
        .collect();
    let ty = if TAKEN_TYPES.contains(&camel.as_str()) {
        camel + "Filter"
    } else {
        camel
    };
    for (file, text) in TEMPLATE {
        let p = target.join(file);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        }
        let text = text
            .replace("{{name}}", name)
            .replace("{{crate}}", &lib)
            .replace("{{Struct}}", &ty)
            .replace("{{sdk_dependency}}", &dependency);
        std::fs::write(&p, text).map_err(|e| format!("{}: {e}", p.display()))?;
    }
    // The checkout's lock pins the versions the SDK is tested with.
    if let Some(lock) = sdk
        .parent()
        .and_then(Path::parent)
        .map(|r| r.join("Cargo.lock"))
        && lock.is_file()
    {
        std::fs::copy(&lock, target.join("Cargo.lock"))
            .map_err(|e| format!("{}: {e}", lock.display()))?;
    }
    let shown = target.display();
    writeln!(
        out,
        "created filter `{name}` (type {ty}) in {shown}\n  {dependency}\n\nnext:\n  cd {shown}\n  cargo test\n  cargo build --target wasm32-wasip2 --release\n  logmon-agent filters test target/wasm32-wasip2/release/{lib}.wasm <access log>"
    )
    .map_err(io)
}

//! `logmon-collector rules`: the rule author's workflow.
//!
//! - `rules test` runs one rule over a log file in event time, through the
//!   same log reader and engine as `replay` ([`crate::console::replay::read_log`]) and
//!   the same rule host as the live collector ([`RuleSet`]), and prints its
//!   transitions and what its evaluation cost;
//! - `rules list` and `rules describe` show what rules say of themselves;
//! - `rules new` writes a rule from the templates in `collector/templates/`,
//!   kept inside the binary: a Rust crate (`rule/`), or a Python
//!   (`rule-python/`) or JavaScript (`rule-js/`) project with a copy of its
//!   SDK;
//! - `rules build` builds a rule directory of any of the three languages
//!   into a component with its toolchain (cargo; componentize-py;
//!   componentize-js), found in the checkout this binary was built from
//!   (`scripts/setup.sh --rules` installs them there) or on `PATH`.
//!
//! Exit codes: 0 done; 1 the rule faulted (trapped, overran a limit) or the
//! output failed; 2 bad input (unknown rule, unreadable file, a parameter
//! the rule refuses, a name `rules new` cannot use).

use crate::clock::utc;
use crate::console::printer::OutputKind;
use crate::console::replay::{FormatChoice, ReplayOptions, SecondSink, read_log};
use crate::engine::SecondStats;
use crate::rules::{
    AlertState, Quarantine, RuleInstance, RuleLoadError, RuleRuntime, RuleSet, RuleSource,
    RuleSpec, SandboxLimits, Transition, shipped,
};
use anyhow::Context as _;
use clap::{Args, Subcommand};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

#[derive(Debug, Args)]
pub struct RulesArgs {
    #[command(subcommand)]
    pub command: RulesCommand,
}

#[derive(Debug, Subcommand)]
pub enum RulesCommand {
    /// Run one rule over an access log in event time, as the live engine
    /// would, and print its transitions and evaluation cost.
    Test(TestArgs),
    /// The rules shipped in this binary, with their parameters and defaults.
    List(ListArgs),
    /// What a rule says of itself: name, version, parameters and defaults.
    Describe(DescribeArgs),
    /// Create a rule from the template of its language (builds as is).
    New(NewArgs),
    /// Build a rule directory (Rust, Python or JavaScript) into a component.
    Build(BuildArgs),
}

/// The languages `rules new` and `rules build` know.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    Rust,
    Python,
    Js,
}

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// The rule's directory (what `rules new` created).
    #[arg(default_value = ".")]
    pub dir: PathBuf,
    /// Its language; by default told by its files (`Cargo.toml`, `app.py`,
    /// `rule.js`).
    #[arg(long, value_enum)]
    pub lang: Option<Lang>,
    /// Where the component is written; by default `DIR/<directory name>.wasm`.
    #[arg(long, short)]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct TestArgs {
    /// A rule component (`.wasm` file) or a shipped rule's name.
    pub component: String,
    /// The access log; `-` reads standard input.
    #[arg(long, required_unless_present = "lake", conflicts_with = "lake")]
    pub input: Option<PathBuf>,
    /// Backtest: the events of a Parquet lake (serve's `--lake-dir`)
    /// instead of a log, in event time.
    #[arg(long, value_name = "DIR")]
    pub lake: Option<PathBuf>,
    /// With --lake: the window's start, unix seconds or RFC 3339, inclusive.
    #[arg(long, visible_alias = "since", requires = "lake", value_parser = super::parse_time)]
    pub from: Option<i64>,
    /// With --lake: the window's end, exclusive.
    #[arg(long, visible_alias = "until", requires = "lake", value_parser = super::parse_time)]
    pub to: Option<i64>,
    /// A parameter `key=value` for the rule. Repeatable.
    #[arg(long = "param", value_name = "KEY=VALUE", value_parser = parse_param)]
    pub params: Vec<(String, String)>,
    /// auto, csv, clf, combined, json, or `nginx:'<log_format>'` /
    /// `apache:'<LogFormat>'` (docs/formats.md).
    #[arg(long, default_value = "auto")]
    pub input_format: FormatChoice,
    /// Seconds an event may trail the newest one and still be counted.
    #[arg(long, default_value_t = 5)]
    pub lateness: u32,
    /// text or json (one object per line).
    #[arg(long, value_enum, default_value = "text")]
    pub output: OutputKind,
    /// The rule's memory cap, MiB.
    #[arg(long, default_value_t = 64)]
    pub rule_memory_mib: usize,
    /// The rule's time budget per call, milliseconds.
    #[arg(long, default_value_t = 200)]
    pub rule_deadline_ms: u64,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// text or json (one object per line).
    #[arg(long, value_enum, default_value = "text")]
    pub output: OutputKind,
}

#[derive(Debug, Args)]
pub struct DescribeArgs {
    /// A rule component (`.wasm` file) or a shipped rule's name.
    pub component: String,
    /// text or json.
    #[arg(long, value_enum, default_value = "text")]
    pub output: OutputKind,
}

#[derive(Debug, Args)]
pub struct NewArgs {
    /// The rule's language.
    #[arg(long, value_enum, default_value = "rust")]
    pub lang: Lang,
    /// The rule's name: lowercase letters, digits and dashes (`slow-api`).
    /// It names the crate, the directory and the rule; its CamelCase names
    /// the rule's type.
    pub name: String,
    /// Where the crate's directory is created.
    #[arg(long, default_value = ".")]
    pub dir: PathBuf,
    /// The rule SDK to depend on: the `wasm-rules/sdk` directory of a logmon
    /// checkout. By default, the one this binary was built from.
    #[arg(long, env = "LOGMON_RULE_SDK", conflicts_with = "sdk_git")]
    pub sdk: Option<PathBuf>,
    /// Depend on the SDK from a git repository of logmon instead of a path.
    #[arg(long, value_name = "URL")]
    pub sdk_git: Option<String>,
    /// With --sdk-git: the commit, tag or branch to use.
    #[arg(long, value_name = "REV", requires = "sdk_git")]
    pub sdk_rev: Option<String>,
}

fn parse_param(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_owned(), v.trim().to_owned())),
        _ => Err(format!("`{s}` is not key=value")),
    }
}

/// Why a command failed, which decides its exit code.
#[derive(Debug)]
enum Failure {
    /// Bad input: exit 2.
    Usage(anyhow::Error),
    /// The rule faulted, or something else went wrong: exit 1.
    Failed(anyhow::Error),
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Self {
        Failure::Failed(e.into())
    }
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::Failed(e)
    }
}

fn usage(e: impl Into<anyhow::Error>) -> Failure {
    Failure::Usage(e.into())
}

/// Run a `rules` command; the exit code says how it went.
pub fn main(args: RulesArgs) -> ExitCode {
    let stdout = std::io::stdout().lock();
    let mut out = std::io::LineWriter::new(stdout);
    let result = match args.command {
        RulesCommand::Test(args) => test(&args, &mut out, &mut std::io::stderr().lock()),
        RulesCommand::List(args) => list(args.output, &mut out),
        RulesCommand::Describe(args) => describe(&args, &mut out),
        RulesCommand::New(args) => new_rule(&args, &mut out),
        RulesCommand::Build(args) => build(&args, &mut out),
    };
    let flushed = out.flush();
    let (code, error) = match (result, flushed) {
        (Ok(()), Ok(())) => return ExitCode::SUCCESS,
        (Ok(()), Err(e)) => (1, e.into()),
        (Err(Failure::Usage(e)), _) => (2, e),
        (Err(Failure::Failed(e)), _) => (1, e),
    };
    eprintln!("logmon-collector: {error:#}");
    ExitCode::from(code)
}

/// A shipped rule's name, or a path to a component.
fn source(component: &str) -> RuleSource {
    let path = Path::new(component);
    let looks_like_path = component.contains('/') || component.ends_with(".wasm");
    if !looks_like_path && (shipped::by_name(component).is_some() || !path.exists()) {
        RuleSource::Shipped(component.to_owned())
    } else {
        RuleSource::File(path.to_owned())
    }
}

/// Start one instance; a fault while starting is the rule's (exit 1), any
/// other refusal is the caller's (exit 2).
fn start(
    rules: &mut RuleSet,
    component: &str,
    params: &[(String, String)],
) -> Result<usize, Failure> {
    let spec = RuleSpec::new(source(component), params.to_vec());
    match rules.add(&spec) {
        Ok(_) => Ok(rules.instances().len() - 1),
        Err(e @ RuleLoadError::Fault(..)) => Err(Failure::Failed(e.into())),
        Err(e) => Err(usage(e)),
    }
}

fn runtime(limits: SandboxLimits) -> Result<RuleRuntime, Failure> {
    Ok(RuleRuntime::new(limits).context("starting the WebAssembly runtime")?)
}

/// Each declared parameter with the value it runs with: given, or default.
fn effective_params(instance: &RuleInstance) -> Vec<(String, String)> {
    instance
        .info
        .params
        .iter()
        .map(|p| {
            let given = instance.params.iter().rev().find(|(k, _)| *k == p.name);
            let value = given.map_or(&p.default_value, |(_, v)| v);
            (p.name.clone(), value.clone())
        })
        .collect()
}

// --- rules test ------------------------------------------------------------------

/// What `rules test` found, for its summary line.
#[derive(Debug, Default, serde::Serialize)]
struct TestSummary {
    rule: String,
    /// Seconds the rule evaluated (fewer than `closed` once it faulted).
    seconds: u64,
    /// Seconds of the log, closed in order.
    closed: u64,
    first: Option<i64>,
    last: Option<i64>,
    transitions: u64,
    /// Mean time of one `evaluate` call, nanoseconds.
    eval_ns_per_second: u64,
    lines: u64,
    events: u64,
    malformed: u64,
    late: u64,
    fault: Option<String>,
}

fn test(args: &TestArgs, out: &mut dyn Write, diag: &mut dyn Write) -> Result<(), Failure> {
    if let Some(input) = args.input.as_ref().filter(|i| *i != Path::new("-")) {
        std::fs::metadata(input)
            .with_context(|| format!("reading the log {}", input.display()))
            .map_err(usage)?;
    }
    if let Some(lake) = &args.lake
        && !lake.is_dir()
    {
        return Err(usage(anyhow::anyhow!(
            "the lake {} is not a directory",
            lake.display()
        )));
    }
    let limits = SandboxLimits {
        memory: args.rule_memory_mib << 20,
        call_deadline: Duration::from_millis(args.rule_deadline_ms),
        ..SandboxLimits::default()
    };
    let mut rules = RuleSet::new(runtime(limits)?);
    let index = start(&mut rules, &args.component, &args.params)?;
    let instance = &rules.instances()[index];
    let name = instance.name.clone();
    let json = args.output == OutputKind::Json;
    let params = effective_params(instance);
    if json {
        let line = serde_json::json!({
            "kind": "rule",
            "rule": name,
            "version": instance.info.version,
            "params": params.iter().cloned().collect::<std::collections::BTreeMap<_, _>>(),
        });
        writeln!(out, "{line}")?;
    } else {
        let shown: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
        writeln!(
            out,
            "rule {name} {}{}{}",
            instance.info.version,
            if shown.is_empty() { "" } else { ": " },
            shown.join(" ")
        )?;
    }

    let opts = ReplayOptions {
        input: args.input.clone(),
        lake: args.lake.clone(),
        from: args.from,
        to: args.to,
        format: args.input_format.clone(),
        lateness: args.lateness,
        ..ReplayOptions::default()
    };
    let mut summary = TestSummary {
        rule: name,
        ..TestSummary::default()
    };
    let mut tester = Tester {
        rules: &mut rules,
        summary: &mut summary,
        out,
        json,
        transitions: Vec::new(),
        faults: Vec::new(),
    };
    let counts = read_log(&opts, diag, &mut tester).map_err(|e| {
        // The log could not be read (or its format told); the output failing
        // is ours.
        if e.downcast_ref::<std::io::Error>().is_some() {
            Failure::Failed(e)
        } else {
            usage(e)
        }
    })?;
    let health = &rules.instances()[index].health;
    summary.seconds = health.evaluations;
    summary.eval_ns_per_second = if health.evaluations > 0 {
        (health.busy.as_nanos() / u128::from(health.evaluations)) as u64
    } else {
        0
    };
    summary.lines = counts.lines;
    summary.events = counts.events;
    summary.malformed = counts.malformed;
    summary.late = counts.late;
    print_summary(out, json, &summary)?;
    match summary.fault {
        Some(fault) => Err(Failure::Failed(anyhow::anyhow!(fault))),
        None => Ok(()),
    }
}

/// `rules test`'s receiver of closed seconds: the rule evaluates each and
/// its transitions and faults are printed; a long silence is passed over
/// once the rule is steady, as in `replay` (see [`crate::engine::pipeline`]).
struct Tester<'a> {
    rules: &'a mut RuleSet,
    summary: &'a mut TestSummary,
    out: &'a mut dyn Write,
    json: bool,
    transitions: Vec<Transition>,
    faults: Vec<Quarantine>,
}

impl Tester<'_> {
    fn closed(&mut self, time: i64) {
        self.summary.closed += 1;
        self.summary.first.get_or_insert(time);
        self.summary.last = Some(time);
    }

    fn report(&mut self) -> std::io::Result<()> {
        for t in self.transitions.drain(..) {
            self.summary.transitions += 1;
            print_transition(self.out, self.json, &t)?;
        }
        for q in self.faults.drain(..) {
            print_fault(self.out, self.json, &q)?;
            self.summary.fault = Some(format!(
                "rule {} faulted at {} ({}): {}",
                q.rule,
                utc(q.at),
                q.at,
                q.reason
            ));
        }
        Ok(())
    }
}

impl SecondSink for Tester<'_> {
    fn second(&mut self, s: &SecondStats) -> std::io::Result<()> {
        self.closed(s.time);
        self.rules
            .evaluate(s, &mut self.transitions, &mut self.faults);
        self.report()
    }

    fn silence(&mut self, from: i64, to: i64) -> std::io::Result<()> {
        if to - from < crate::engine::pipeline::QUIET_AFTER {
            for time in from..to {
                self.second(&SecondStats::silent(time))?;
            }
            return Ok(());
        }
        let mut time = from;
        while time < to {
            self.closed(time);
            let steady = self
                .rules
                .evaluate_silent(time, &mut self.transitions, &mut self.faults);
            self.report()?;
            time += 1;
            if steady {
                break;
            }
        }
        if time < to {
            self.summary.closed += (to - time) as u64;
            self.summary.last = Some(to - 1);
        }
        Ok(())
    }
}

fn print_transition(out: &mut dyn Write, json: bool, t: &Transition) -> std::io::Result<()> {
    let state = match t.state {
        AlertState::Firing => "firing",
        AlertState::Resolved => "resolved",
    };
    if json {
        let line = serde_json::json!({
            "kind": "transition",
            "rule": t.rule,
            "key": t.key,
            "state": state,
            "at": t.at,
            "utc": utc(t.at),
            "value": t.value,
            "message": t.message,
        });
        return writeln!(out, "{line}");
    }
    let key = if t.key.is_empty() { "-" } else { &t.key };
    writeln!(
        out,
        "{state:<8}  {key}  {} ({})  value={}  {}",
        utc(t.at),
        t.at,
        t.value,
        t.message
    )
}

fn print_fault(out: &mut dyn Write, json: bool, q: &Quarantine) -> std::io::Result<()> {
    if json {
        let line = serde_json::json!({
            "kind": "fault",
            "rule": q.rule,
            "at": q.at,
            "utc": utc(q.at),
            "reason": q.reason,
        });
        return writeln!(out, "{line}");
    }
    writeln!(out, "FAULT     {} ({})  {}", utc(q.at), q.at, q.reason)
}

fn print_summary(out: &mut dyn Write, json: bool, s: &TestSummary) -> std::io::Result<()> {
    if json {
        let mut line = serde_json::to_value(s).map_err(std::io::Error::other)?;
        line["kind"] = "summary".into();
        return writeln!(out, "{line}");
    }
    let span = match (s.first, s.last) {
        (Some(first), Some(last)) => format!(" ({} .. {})", utc(first), utc(last)),
        _ => String::new(),
    };
    let of = if s.seconds == s.closed {
        String::new()
    } else {
        format!(" of {}", s.closed)
    };
    writeln!(
        out,
        "── {}{of} seconds evaluated{span}, {} transitions, {} per second evaluated; {} events, {} malformed, {} late{}",
        s.seconds,
        s.transitions,
        duration(s.eval_ns_per_second),
        s.events,
        s.malformed,
        s.late,
        if s.fault.is_some() {
            ", rule faulted"
        } else {
            ""
        }
    )
}

/// `850 ns`, `12.3 µs`, `4.56 ms`.
fn duration(ns: u64) -> String {
    match ns {
        0..1_000 => format!("{ns} ns"),
        1_000..1_000_000 => format!("{:.1} µs", ns as f64 / 1e3),
        _ => format!("{:.2} ms", ns as f64 / 1e6),
    }
}

// --- rules list / describe -----------------------------------------------------

fn list(output: OutputKind, out: &mut dyn Write) -> Result<(), Failure> {
    let mut rules = RuleSet::new(runtime(SandboxLimits::default())?);
    for (i, (name, _)) in shipped::SHIPPED.iter().enumerate() {
        let index = start(&mut rules, name, &[])?;
        if i > 0 && output == OutputKind::Text {
            writeln!(out)?;
        }
        print_info(out, output, &rules.instances()[index], name)?;
    }
    Ok(())
}

fn describe(args: &DescribeArgs, out: &mut dyn Write) -> Result<(), Failure> {
    let mut rules = RuleSet::new(runtime(SandboxLimits::default())?);
    let index = start(&mut rules, &args.component, &[])?;
    print_info(out, args.output, &rules.instances()[index], &args.component)?;
    Ok(())
}

fn print_info(
    out: &mut dyn Write,
    output: OutputKind,
    instance: &RuleInstance,
    component: &str,
) -> std::io::Result<()> {
    let info = &instance.info;
    if output == OutputKind::Json {
        let line = serde_json::json!({
            "component": component,
            "name": info.name,
            "version": info.version,
            "description": info.description,
            "params": info.params.iter().map(|p| serde_json::json!({
                "name": p.name,
                "default": p.default_value,
                "description": p.description,
            })).collect::<Vec<_>>(),
        });
        return writeln!(out, "{line}");
    }
    writeln!(out, "{} {}: {}", info.name, info.version, info.description)?;
    let width = info.params.iter().map(|p| p.name.len()).max().unwrap_or(0);
    let value_width = info
        .params
        .iter()
        .map(|p| p.default_value.len())
        .max()
        .unwrap_or(0);
    for p in &info.params {
        writeln!(
            out,
            "  {:<width$} = {:<value_width$}  {}",
            p.name, p.default_value, p.description
        )?;
    }
    Ok(())
}

// --- rules new -------------------------------------------------------------------

/// The template's files: (path in the new crate, text).
const TEMPLATE: &[(&str, &str)] = &[
    (
        "Cargo.toml",
        include_str!("../../templates/rule/Cargo.toml.tmpl"),
    ),
    (
        "src/lib.rs",
        include_str!("../../templates/rule/lib.rs.tmpl"),
    ),
    (
        "README.md",
        include_str!("../../templates/rule/README.md.tmpl"),
    ),
    (
        ".gitignore",
        include_str!("../../templates/rule/gitignore.tmpl"),
    ),
];

/// The SDK of the checkout this binary was built from.
const BUILT_FROM_SDK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../wasm-rules/sdk");

/// Names the rule's type cannot take (what the template imports or uses).
const TAKEN_TYPES: &[&str] = &[
    "Alert",
    "BTreeSet",
    "Default",
    "KeyedWindow",
    "Option",
    "Params",
    "Result",
    "Rule",
    "RuleInfo",
    "Second",
    "SectionStats",
    "Self",
    "StateReader",
    "StateWriter",
    "StatusClasses",
    "String",
    "Vec",
];

/// Package names cargo refuses or that clash with the crate's dependencies.
const TAKEN_CRATES: &[&str] = &[
    "alloc",
    "core",
    "logmon-rule",
    "proc-macro",
    "std",
    "test",
    "wit-bindgen",
];

/// The rule's type: `slow-api` → `SlowApi`.
fn type_name(name: &str) -> String {
    let camel: String = name
        .split('-')
        .map(|part| {
            let mut chars = part.chars();
            chars.next().map_or_else(String::new, |c| {
                c.to_ascii_uppercase().to_string() + chars.as_str()
            })
        })
        .collect();
    if TAKEN_TYPES.contains(&camel.as_str()) {
        camel + "Rule"
    } else {
        camel
    }
}

fn check_name(name: &str) -> anyhow::Result<()> {
    let valid = name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.split('-').all(|part| {
            !part.is_empty()
                && part
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        });
    anyhow::ensure!(
        valid,
        "`{name}` cannot name a rule: use lowercase letters, digits and single dashes, starting with a letter (`slow-api`)"
    );
    anyhow::ensure!(
        !TAKEN_CRATES.contains(&name),
        "`{name}` cannot name a rule crate (cargo or the SDK uses it)"
    );
    Ok(())
}

/// The `logmon-rule = …` line of the new crate, and the lock file to start
/// it with (the checkout's, which pins the versions the SDK is tested with).
fn sdk_dependency(args: &NewArgs) -> anyhow::Result<(String, Option<PathBuf>)> {
    if let Some(url) = &args.sdk_git {
        let rev = match &args.sdk_rev {
            Some(rev) => format!(", rev = {}", toml_string(rev)),
            None => String::new(),
        };
        return Ok((
            format!("logmon-rule = {{ git = {}{rev} }}", toml_string(url)),
            None,
        ));
    }
    let (sdk, given) = match &args.sdk {
        Some(path) => (path.clone(), true),
        None => (PathBuf::from(BUILT_FROM_SDK), false),
    };
    let manifest = std::fs::read_to_string(sdk.join("Cargo.toml")).ok();
    if !manifest.is_some_and(|m| m.contains("name = \"logmon-rule\"")) {
        if given {
            anyhow::bail!(
                "{} is not the logmon rule SDK (wasm-rules/sdk of a logmon checkout)",
                sdk.display()
            );
        }
        anyhow::bail!(
            "the rule SDK this binary was built from ({}) is gone; pass --sdk <logmon checkout>/wasm-rules/sdk, or --sdk-git <url of logmon's repository>",
            sdk.display()
        );
    }
    let sdk =
        std::fs::canonicalize(&sdk).with_context(|| format!("resolving {}", sdk.display()))?;
    let path = sdk
        .to_str()
        .with_context(|| format!("{} is not UTF-8", sdk.display()))?;
    let lock = sdk
        .parent()
        .and_then(Path::parent)
        .map(|root| root.join("Cargo.lock"))
        .filter(|lock| lock.is_file());
    Ok((
        format!("logmon-rule = {{ path = {} }}", toml_string(path)),
        lock,
    ))
}

/// A TOML basic string.
fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

fn new_rule(args: &NewArgs, out: &mut dyn Write) -> Result<(), Failure> {
    check_name(&args.name).map_err(usage)?;
    if args.lang != Lang::Rust {
        return new_scripted(args, out);
    }
    let (dependency, lock) = sdk_dependency(args).map_err(usage)?;
    let dir = args.dir.join(&args.name);
    if dir.exists() {
        return Err(usage(anyhow::anyhow!("{} already exists", dir.display())));
    }
    let lib = args.name.replace('-', "_");
    let ty = type_name(&args.name);
    let fill = |text: &str| {
        text.replace("{{name}}", &args.name)
            .replace("{{crate}}", &lib)
            .replace("{{Struct}}", &ty)
            .replace("{{sdk_dependency}}", &dependency)
    };
    for (file, text) in TEMPLATE {
        let path = dir.join(file);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&path, fill(text)).with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(lock) = lock {
        // Cargo drops what the new crate does not use on its first build.
        std::fs::copy(&lock, dir.join("Cargo.lock"))
            .with_context(|| format!("copying {}", lock.display()))?;
    }
    let shown = dir.display();
    writeln!(
        out,
        "created rule `{}` (type {ty}) in {shown}\n  {dependency}\n\nnext:\n  cd {shown}\n  cargo test\n  cargo build --target wasm32-wasip2 --release\n  logmon-collector rules test target/wasm32-wasip2/release/{lib}.wasm --input <access log>",
        args.name
    )?;
    Ok(())
}

// --- rules new --lang python|js, rules build -----------------------------------

/// The checkout this binary was built from: its toolchains and SDKs.
const BUILT_FROM: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
/// The rule world, for toolchains that read WIT.
const RULE_WIT: &str = include_str!("../../../wasm-rules/wit/rule.wit");
const PYTHON_SDK: &str = include_str!("../../../wasm-rules/python/sdk/logmon_rule/__init__.py");
const JS_SDK: &str = include_str!("../../../wasm-rules/js/sdk/logmon-rule.js");

const PYTHON_TEMPLATE: &[(&str, &str)] = &[
    (
        "app.py",
        include_str!("../../templates/rule-python/app.py.tmpl"),
    ),
    (
        "test_app.py",
        include_str!("../../templates/rule-python/test_app.py.tmpl"),
    ),
    (
        "README.md",
        include_str!("../../templates/rule-python/README.md.tmpl"),
    ),
    (
        ".gitignore",
        include_str!("../../templates/rule-python/gitignore.tmpl"),
    ),
    ("logmon_rule/__init__.py", PYTHON_SDK),
];

const JS_TEMPLATE: &[(&str, &str)] = &[
    (
        "rule.js",
        include_str!("../../templates/rule-js/rule.js.tmpl"),
    ),
    (
        "rule.test.js",
        include_str!("../../templates/rule-js/rule.test.js.tmpl"),
    ),
    (
        "package.json",
        include_str!("../../templates/rule-js/package.json.tmpl"),
    ),
    (
        "README.md",
        include_str!("../../templates/rule-js/README.md.tmpl"),
    ),
    (
        ".gitignore",
        include_str!("../../templates/rule-js/gitignore.tmpl"),
    ),
    ("logmon-rule.js", JS_SDK),
];

/// `rules new --lang python|js`: the project, with its SDK copied in, so
/// its tests and build need nothing else.
fn new_scripted(args: &NewArgs, out: &mut dyn Write) -> Result<(), Failure> {
    let dir = args.dir.join(&args.name);
    if dir.exists() {
        return Err(usage(anyhow::anyhow!("{} already exists", dir.display())));
    }
    let class = type_name(&args.name);
    let (template, test) = match args.lang {
        Lang::Python => (PYTHON_TEMPLATE, "python3 -m unittest"),
        _ => (JS_TEMPLATE, "node --test"),
    };
    for (file, text) in template {
        let path = dir.join(file);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        let filled = text
            .replace("{{name}}", &args.name)
            .replace("{{Class}}", &class);
        std::fs::write(&path, filled).with_context(|| format!("writing {}", path.display()))?;
    }
    let shown = dir.display();
    writeln!(
        out,
        "created rule `{}` (class {class}) in {shown}\n\nnext:\n  cd {shown}\n  {test}\n  logmon-collector rules build .\n  logmon-collector rules test {}.wasm --input <access log>",
        args.name, args.name
    )?;
    Ok(())
}

/// The language of a rule directory, by its files.
fn detect_lang(dir: &Path) -> Option<Lang> {
    [
        ("Cargo.toml", Lang::Rust),
        ("app.py", Lang::Python),
        ("rule.js", Lang::Js),
    ]
    .into_iter()
    .find(|(file, _)| dir.join(file).is_file())
    .map(|(_, lang)| lang)
}

/// A toolchain program: `$VAR`, else where `scripts/setup.sh --rules`
/// installs it in the checkout this binary was built from, else `name` on
/// `PATH`.
fn tool(var: &str, installed: &str, name: &str) -> PathBuf {
    if let Some(path) = std::env::var_os(var).filter(|v| !v.is_empty()) {
        return PathBuf::from(path);
    }
    let path = Path::new(BUILT_FROM).join(installed);
    if path.is_file() {
        path
    } else {
        PathBuf::from(name)
    }
}

/// Run a build step; its output goes to our stderr, a failure says how to
/// install the tool when it is missing.
fn run_tool(cmd: &mut std::process::Command, install: &str) -> Result<(), Failure> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let status = match cmd.stdout(std::process::Stdio::inherit()).status() {
        Ok(status) => status,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(usage(anyhow::anyhow!("{program} not found: {install}")));
        }
        Err(e) => return Err(Failure::Failed(anyhow::anyhow!("running {program}: {e}"))),
    };
    if status.success() {
        Ok(())
    } else {
        Err(Failure::Failed(anyhow::anyhow!(
            "{program} failed ({status})"
        )))
    }
}

const INSTALL: &str =
    "run `make setup-rules` (scripts/setup.sh --rules) in a logmon checkout, or put it on PATH";

fn build(args: &BuildArgs, out: &mut dyn Write) -> Result<(), Failure> {
    let dir = &args.dir;
    let lang = match args.lang.or_else(|| detect_lang(dir)) {
        Some(lang) => lang,
        None => {
            return Err(usage(anyhow::anyhow!(
                "{} holds no rule: no Cargo.toml, app.py or rule.js",
                dir.display()
            )));
        }
    };
    let dir = std::fs::canonicalize(dir)
        .with_context(|| format!("reading {}", dir.display()))
        .map_err(usage)?;
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "rule".into());
    let target = match &args.out {
        Some(out) => std::path::absolute(out)?,
        None => dir.join(format!("{name}.wasm")),
    };
    // The toolchains read the world and the SDK from here.
    let work = tempfile::tempdir()?;
    let wit = work.path().join("wit");
    std::fs::create_dir_all(&wit)?;
    std::fs::write(wit.join("rule.wit"), RULE_WIT)?;
    match lang {
        Lang::Rust => build_rust(&dir, &target)?,
        Lang::Python => {
            // The rule's own `logmon_rule/` comes first; the SDK of this
            // binary serves a rule without one (the shipped examples).
            let sdk = work.path().join("sdk");
            std::fs::create_dir_all(sdk.join("logmon_rule"))?;
            std::fs::write(sdk.join("logmon_rule/__init__.py"), PYTHON_SDK)?;
            let mut cmd = std::process::Command::new(tool(
                "LOGMON_COMPONENTIZE_PY",
                "wasm-rules/python/.venv/bin/componentize-py",
                "componentize-py",
            ));
            cmd.arg("-d")
                .arg(&wit)
                .args(["--quiet", "-w", "rule", "componentize", "-p"])
                .arg(&dir)
                .arg("-p")
                .arg(&sdk)
                .arg("app")
                .arg("-o")
                .arg(&target);
            run_tool(&mut cmd, INSTALL)?;
        }
        Lang::Js => {
            // componentize-js reads one directory: the rule's files (links
            // followed) and the SDK beside them, unless the rule has its own.
            let src = work.path().join("src");
            std::fs::create_dir_all(&src)?;
            for entry in std::fs::read_dir(&dir)? {
                let path = entry?.path();
                let js = path.extension().is_some_and(|x| x == "js" || x == "mjs");
                if js && path.is_file() {
                    std::fs::copy(&path, src.join(path.file_name().expect("a file")))?;
                }
            }
            if !src.join("logmon-rule.js").exists() {
                std::fs::write(src.join("logmon-rule.js"), JS_SDK)?;
            }
            let mut cmd = std::process::Command::new(tool(
                "LOGMON_COMPONENTIZE_JS",
                "wasm-rules/js/node_modules/.bin/componentize-js",
                "componentize-js",
            ));
            cmd.arg("--wit")
                .arg(&wit)
                .args([
                    "--world-name",
                    "rule",
                    "--disable",
                    "http",
                    "fetch-event",
                    "-o",
                ])
                .arg(&target)
                .arg(src.join("rule.js"))
                .current_dir(&src);
            run_tool(&mut cmd, INSTALL)?;
        }
    }
    let size = std::fs::metadata(&target)
        .with_context(|| format!("the build wrote no {}", target.display()))?
        .len();
    writeln!(out, "built {} ({size} bytes)", target.display())?;
    Ok(())
}

/// `cargo build --target wasm32-wasip2 --release` in `dir`, then the
/// crate's `.wasm` copied to `target`.
fn build_rust(dir: &Path, target: &Path) -> Result<(), Failure> {
    let manifest = std::fs::read_to_string(dir.join("Cargo.toml"))?;
    let table: toml::Table = toml::from_str(&manifest)
        .with_context(|| format!("reading {}/Cargo.toml", dir.display()))
        .map_err(usage)?;
    let package = table
        .get("package")
        .and_then(|p| p.get("name"))
        .and_then(toml::Value::as_str)
        .context("Cargo.toml names no package")
        .map_err(usage)?
        .replace('-', "_");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = std::process::Command::new(cargo);
    cmd.args([
        "build",
        "--target",
        "wasm32-wasip2",
        "--release",
        "--manifest-path",
    ])
    .arg(dir.join("Cargo.toml"));
    run_tool(
        &mut cmd,
        "install Rust with rustup (scripts/setup.sh adds the wasm32-wasip2 target)",
    )?;
    let metadata =
        std::process::Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
            .args([
                "metadata",
                "--format-version",
                "1",
                "--no-deps",
                "--manifest-path",
            ])
            .arg(dir.join("Cargo.toml"))
            .output()?;
    let meta: serde_json::Value =
        serde_json::from_slice(&metadata.stdout).context("reading cargo metadata")?;
    let target_dir = meta["target_directory"]
        .as_str()
        .map(PathBuf::from)
        .unwrap_or_else(|| dir.join("target"));
    let built = target_dir
        .join("wasm32-wasip2/release")
        .join(format!("{package}.wasm"));
    std::fs::copy(&built, target).with_context(|| format!("copying {}", built.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_names_are_camel_case_and_avoid_the_templates_names() {
        assert_eq!(type_name("slow-api"), "SlowApi");
        assert_eq!(type_name("x"), "X");
        assert_eq!(type_name("a1-b2c"), "A1B2c");
        assert_eq!(type_name("rule"), "RuleRule");
        assert_eq!(type_name("second"), "SecondRule");
    }

    #[test]
    fn names_are_checked() {
        for good in ["slow-api", "x", "p99-latency"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "Slow",
            "9lives",
            "slow_api",
            "slow--api",
            "slow-",
            "-slow",
            "a b",
            "test",
            "std",
        ] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn params_are_key_value() {
        assert_eq!(parse_param("a=1"), Ok(("a".into(), "1".into())));
        assert_eq!(parse_param("a = x=y"), Ok(("a".into(), "x=y".into())));
        assert!(parse_param("a").is_err());
        assert!(parse_param("=1").is_err());
    }

    #[test]
    fn components_are_shipped_names_or_paths() {
        assert_eq!(
            source("high-traffic"),
            RuleSource::Shipped("high-traffic".into())
        );
        assert_eq!(source("nope"), RuleSource::Shipped("nope".into()));
        assert_eq!(source("x.wasm"), RuleSource::File("x.wasm".into()));
        assert_eq!(source("./a/b"), RuleSource::File("./a/b".into()));
    }

    #[test]
    fn the_template_has_no_placeholder_left() {
        for (file, text) in TEMPLATE {
            let filled = text
                .replace("{{name}}", "n")
                .replace("{{crate}}", "n")
                .replace("{{Struct}}", "N")
                .replace("{{sdk_dependency}}", "d");
            assert!(!filled.contains("{{"), "{file}");
        }
    }
}

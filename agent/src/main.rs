//! `logmon-agent`: tails access logs and ships them to the collector.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use logmon_agent::config::Overrides;
use logmon_agent::{Agent, AgentConfig};

/// Tails access logs, parses them and ships batches to a logmon collector.
///
/// Settings come from the TOML file, then LOGMON_* environment variables
/// (LOGMON_AGENT_TOKEN, LOGMON_AGENT_TOKEN_FILE, LOGMON_COLLECTOR_URL,
/// LOGMON_AGENT_ID, LOGMON_AGENT_HOST, LOGMON_AGENT_CHECKPOINT_DIR,
/// LOGMON_AGENT_METRICS_LISTEN, LOGMON_LOG_FORMAT, LOGMON_LOG), then these
/// flags.
#[derive(Debug, Parser)]
#[command(name = "logmon-agent", version)]
struct Cli {
    /// TOML configuration file.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Collector base URL (repeat for failover, tried in order).
    #[arg(long = "collector", value_name = "URL")]
    collectors: Vec<String>,
    /// Bearer token.
    #[arg(long, value_name = "T")]
    token: Option<String>,
    /// Files to tail, as GLOB or GLOB:FORMAT (auto, csv, clf, combined,
    /// json); replaces the file's sources.
    #[arg(long = "file", value_name = "GLOB[:FORMAT]")]
    files: Vec<String>,
    /// Where acknowledged offsets are kept.
    #[arg(long, value_name = "DIR")]
    checkpoint_dir: Option<PathBuf>,
    /// Address of /metrics and /health ("" disables them).
    #[arg(long, value_name = "ADDR")]
    metrics_listen: Option<String>,
    /// The agent's log on stderr: text or json (one object per line).
    #[arg(long, env = "LOGMON_LOG_FORMAT", value_name = "text|json")]
    log_format: Option<logmon_io::log::LogFormat>,
    /// Which log events: a `tracing` filter (`info,logmon_agent::ship=debug`).
    #[arg(long = "log", env = "LOGMON_LOG", value_name = "FILTER")]
    log_filter: Option<String>,
    /// Print the effective configuration as TOML and exit.
    #[arg(long)]
    print_config: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Edge filters: list the shipped ones, test one on a log file, create one.
    Filters {
        #[command(subcommand)]
        command: logmon_agent::cli::FiltersCommand,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Filters { command }) = cli.command {
        let mut out = std::io::stdout().lock();
        return match logmon_agent::cli::filters(command, &mut out) {
            Ok(()) => ExitCode::SUCCESS,
            // A closed stdout (`| head`) ends the listing quietly.
            Err(e) if e.contains("Broken pipe") => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("logmon-agent: error: {e}");
                ExitCode::from(2)
            }
        };
    }
    let mut config = match &cli.config {
        Some(path) => match AgentConfig::load(path) {
            Ok(config) => config,
            Err(e) => return fail(&e, 2),
        },
        None => AgentConfig::default(),
    };
    config.apply_env(|k| std::env::var(k).ok());
    config.apply(Overrides {
        collector_urls: cli.collectors,
        token: cli.token,
        files: cli.files,
        checkpoint_dir: cli.checkpoint_dir,
        metrics_listen: cli.metrics_listen,
        log_format: cli.log_format,
        log_filter: cli.log_filter,
    });
    if cli.print_config {
        match toml::to_string_pretty(&config) {
            Ok(text) => {
                print!("{text}");
                return ExitCode::SUCCESS;
            }
            Err(e) => return fail(&e, 1),
        }
    }
    let settings = match config.validate() {
        Ok(settings) => settings,
        Err(e) => return fail(&e, 2),
    };
    if let Err(e) = settings.log.init() {
        eprintln!("logmon-agent: error: {e}");
        return ExitCode::from(2);
    }
    // One thread for HTTP and timers; the reader has its own thread.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => return fail(&e, 1),
    };
    runtime.block_on(async move {
        let mut agent = match Agent::start(settings).await {
            Ok(agent) => agent,
            Err(e) => return fail(&e, 1),
        };
        if let Some(addr) = agent.metrics_addr() {
            tracing::info!(%addr, "serving /metrics and /health");
        }
        let stop = agent.shutdown_token();
        tokio::select! {
            () = logmon_io::signal::terminated() => tracing::info!("shutting down"),
            () = stop.cancelled() => {}
        }
        stop.cancel();
        match agent.wait().await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(&e, 1),
        }
    })
}

/// Prints `error` with its chain of causes and returns `code`.
fn fail(error: &dyn std::error::Error, code: u8) -> ExitCode {
    let mut text = format!("logmon-agent: error: {error}");
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(&format!("\n  caused by: {cause}"));
        source = cause.source();
    }
    eprintln!("{text}");
    ExitCode::from(code)
}

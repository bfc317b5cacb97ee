use clap::Parser as _;
use logmon_collector::cli::{Cli, Command};
use std::io::Write as _;
use std::process::ExitCode;

fn main() -> ExitCode {
    let command = Cli::parse().command;
    if !matches!(command, Command::Serve(_)) {
        // `serve` sets up its log from its configuration; the other commands
        // print their results themselves and log only warnings.
        let filter = std::env::var("LOGMON_LOG").unwrap_or_else(|_| "warn".into());
        if let Err(e) = logmon_io::log::init(logmon_io::log::LogFormat::Text, &filter) {
            eprintln!("logmon-collector: {e}");
            return ExitCode::FAILURE;
        }
    }
    let command = match command {
        // Its own exit codes: 1 when the rule faults, 2 for bad input.
        Command::Rules(args) => return logmon_collector::cli::rules::main(args),
        command => command,
    };
    match run(command) {
        Ok(()) => ExitCode::SUCCESS,
        // The reader of stdout went away (`replay … | head`): the output is
        // not wanted any more, which is no error to report.
        Err(e) if broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("logmon-collector: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Rules(_) => unreachable!("handled in main"),
        Command::Replay(args) => {
            let opts = args.options()?;
            let stdout = std::io::stdout().lock();
            let out = std::io::LineWriter::new(stdout);
            let mut stderr = std::io::stderr().lock();
            logmon_collector::console::replay::run(&opts, out, &mut stderr)?;
        }
        Command::Serve(args) => {
            if args.print_config {
                print!("{}", args.config()?.to_toml());
                return Ok(());
            }
            let options = args.options()?;
            logmon_io::log::init(options.log.format, &options.log.filter)
                .map_err(anyhow::Error::msg)?;
            logmon_collector::serve::run(options)?;
        }
        Command::Bus(args) => logmon_collector::cli::bus::run(args, &mut std::io::stdout().lock())?,
        Command::Lake(args) => {
            let mut out = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
            let complete =
                logmon_collector::cli::lake::run(args, &mut out, &mut std::io::stderr().lock())?;
            out.flush()?;
            anyhow::ensure!(
                complete,
                "some lake files could not be read and were skipped (named above)"
            );
        }
        Command::Generate(args) => {
            let spec = args.spec();
            match &args.output {
                Some(path) => {
                    let file = if args.live {
                        std::fs::OpenOptions::new()
                            .create(true)
                            .append(true)
                            .open(path)?
                    } else {
                        std::fs::File::create(path)?
                    };
                    let mut file = std::io::BufWriter::new(file);
                    logmon_protocol::generate::generate(&spec, &mut file)?;
                    file.flush()?;
                }
                None => {
                    let mut out = std::io::stdout().lock();
                    logmon_protocol::generate::generate(&spec, &mut out)?;
                    out.flush()?;
                }
            }
        }
    }
    Ok(())
}

/// Whether `e` comes from writing to a closed pipe.
fn broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

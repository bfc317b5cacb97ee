use clap::Parser as _;
use logmon_collector::cli::{Cli, Command};
use std::io::Write as _;
use std::process::ExitCode;

fn main() -> ExitCode {
    let command = match Cli::parse().command {
        // Its own exit codes: 1 when the rule faults, 2 for bad input.
        Command::Rules(args) => return logmon_collector::rules_cli::main(args),
        command => command,
    };
    match run(command) {
        Ok(()) => ExitCode::SUCCESS,
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
            logmon_collector::replay::run(&opts, out, &mut stderr)?;
        }
        Command::Serve(args) => logmon_collector::serve::run(args.options()?)?,
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
                    logmon_collector::generate::generate(&spec, &mut file)?;
                    file.flush()?;
                }
                None => {
                    let mut out = std::io::stdout().lock();
                    logmon_collector::generate::generate(&spec, &mut out)?;
                    out.flush()?;
                }
            }
        }
    }
    Ok(())
}

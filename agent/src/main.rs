fn main() {
    eprintln!(
        "logmon-agent: tailing and shipping are not built yet (formats: {}); use `logmon-collector replay` meanwhile",
        logmon_agent::supported_formats().join(", ")
    );
    std::process::exit(2);
}

#!/usr/bin/env bash
# make fuzz: runs each fuzz target for $1 seconds (default 60), or only the
# targets named after it. Each starts from the committed corpus
# (fuzz/corpus/<target>) and keeps what it adds in fuzz/target/work/<target>,
# so a run leaves the repo clean; a crash is written to
# fuzz/artifacts/<target>/ and stops the run with its path. To keep a crash
# fixed: fix it, then copy the file into fuzz/regressions/<target>/ (make
# test runs every file there).
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-60}
shift || true
all=$(sed -n 's/^name = "\([a-z_]*\)"$/\1/p' fuzz/Cargo.toml | grep -v '^logmon-fuzz$' || true)
targets=${*:-$all}

for target in $targets; do
    mkdir -p "fuzz/target/work/$target" "fuzz/corpus/$target"
    printf 'fuzz: %s for %s s\n' "$target" "$seconds"
    (cd fuzz && cargo fuzz run --sanitizer none --release --debug-assertions "$target" \
        "target/work/$target" "corpus/$target" -- \
        -max_total_time="$seconds" -rss_limit_mb=4096 -timeout=30 -print_final_stats=1)
done

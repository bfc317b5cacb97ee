#!/usr/bin/env bash
# The demo, until the live pipeline lands: generate realistic traffic with
# bursts (so the high-traffic alert fires and recovers), a quiet spell and a
# struggling section, then replay it through the event-time engine and the
# WebAssembly rules, printing statistics and alerts as the original console
# program did.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=target/release/logmon-collector
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

"$bin" generate --format combined --lines 12000 --rate 6 \
    --burst 120:200:18 --gap 700:180 --burst 900:150:30 \
    --error-rate 0.03 --disorder 2 --seed 7 -o "$work/access.log"
echo "demo: generated $(wc -l <"$work/access.log") lines of combined log in $work/access.log"
echo "demo: replaying with high-traffic (10 req/s over 120 s) and error-rate"
echo
"$bin" replay "$work/access.log" --rule error-rate:threshold=0.1,window=120,min_requests=100

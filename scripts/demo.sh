#!/usr/bin/env bash
# The live demo: a private InfluxDB, the collector (ingest, durable bus, live
# engine with the WebAssembly rules, InfluxDB writer), a traffic generator
# writing a live access log with bursts and a quiet spell, and an agent
# tailing it. Statistics and alerts print here as they happen, and the web
# dashboard (served by the collector) shows them live; Ctrl-C stops
# everything. DEMO_SECONDS=N stops after N seconds; DEMO_DASHBOARD_TOKEN=T
# puts the dashboard's API behind a read-only token.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=target/release
work=$(mktemp -d /tmp/logmon-demo.XXXXXX)
influx_port=${DEMO_INFLUX_PORT:-18086}
collector_port=${DEMO_COLLECTOR_PORT:-8470}
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    [ -f "$work/influx/influxd.pid" ] && kill "$(cat "$work/influx/influxd.pid")" 2>/dev/null || true
    wait 2>/dev/null || true
    echo "demo: stopped; files kept in $work"
}
trap cleanup EXIT INT TERM

bash scripts/influxd.sh "$work/influx" "$influx_port"
echo "demo: InfluxDB on http://127.0.0.1:$influx_port (database logmon)"

# $1 for a URL's query: every byte but RFC 3986's unreserved ones as %XX.
percent_encode() {
    local LC_ALL=C s=$1 out='' c i
    for ((i = 0; i < ${#s}; i++)); do
        c=${s:i:1}
        case $c in
            [A-Za-z0-9._~-]) out+=$c ;;
            *) printf -v c '%%%02X' "'$c"; out+=$c ;;
        esac
    done
    printf '%s' "$out"
}

dashboard_flags=()
dashboard_url="http://127.0.0.1:$collector_port/"
if [ -n "${DEMO_DASHBOARD_TOKEN:-}" ]; then
    dashboard_flags=(--dashboard-token "$DEMO_DASHBOARD_TOKEN")
    dashboard_url="${dashboard_url}?token=$(percent_encode "$DEMO_DASHBOARD_TOKEN")"
fi
"$bin/logmon-collector" serve --listen "127.0.0.1:$collector_port" --data-dir "$work/collector" \
    --token demo-token --influx-url "http://127.0.0.1:$influx_port" \
    --rule error-rate:threshold=0.1,window=60,min_requests=100 "${dashboard_flags[@]}" &
pids+=($!)
echo "demo: collector on http://127.0.0.1:$collector_port (/metrics, /health)"

mkdir -p "$work/logs"
# 6 req/s, a burst to 25 req/s from 60 s for 150 s (high-traffic fires, then
# recovers), a silent minute at 300 s.
"$bin/logmon-collector" generate --live --format combined --lines 100000000 \
    --rate 6 --burst 60:150:25 --gap 300:60 --error-rate 0.03 --seed 7 \
    -o "$work/logs/access.log" &
pids+=($!)

"$bin/logmon-agent" --collector "http://127.0.0.1:$collector_port" --token demo-token \
    --file "$work/logs/*.log:combined" --checkpoint-dir "$work/agent" \
    --metrics-listen 127.0.0.1:9180 &
pids+=($!)
echo "demo: agent tailing $work/logs/access.log (metrics on http://127.0.0.1:9180/metrics)"
echo "demo: statistics every 10 s of event time; the high-traffic alert fires about 2 minutes in"
echo
echo "demo: dashboard: $dashboard_url"
echo

if [ -n "${DEMO_SECONDS:-}" ]; then
    sleep "$DEMO_SECONDS"
else
    wait "${pids[0]}"
fi

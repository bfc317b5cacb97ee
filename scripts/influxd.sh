#!/usr/bin/env bash
# Start a private InfluxDB (Debian's influxd) with all its files in DIR and
# its HTTP API on PORT (RPC on PORT+2). Prints nothing on success; waits for
# /ping. Usage: scripts/influxd.sh DIR PORT
set -euo pipefail
dir=$1 port=$2
mkdir -p "$dir"
cat >"$dir/influxdb.conf" <<CONF
reporting-enabled = false
bind-address = "127.0.0.1:$((port + 2))"
[meta]
  dir = "$dir/meta"
  logging-enabled = false
[data]
  dir = "$dir/data"
  wal-dir = "$dir/wal"
  query-log-enabled = false
[monitor]
  store-enabled = false
[http]
  bind-address = "127.0.0.1:$port"
  log-enabled = false
[logging]
  level = "warn"
  suppress-logo = true
CONF
influxd -config "$dir/influxdb.conf" >"$dir/influxd.log" 2>&1 &
echo $! >"$dir/influxd.pid"
for _ in $(seq 1 100); do
    if curl -fs "http://127.0.0.1:$port/ping" >/dev/null 2>&1; then exit 0; fi
    sleep 0.2
done
echo "influxd did not start; log:" >&2
cat "$dir/influxd.log" >&2
exit 1

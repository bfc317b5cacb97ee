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
# /ping answers 204 once the server is up (bash's /dev/tcp: no curl needed).
ping() {
    exec 3<>"/dev/tcp/127.0.0.1/$port" || return 1
    printf 'GET /ping HTTP/1.0\r\n\r\n' >&3
    read -r status <&3 || status=""
    exec 3<&- 3>&-
    case "$status" in "HTTP/1."?" 204"*) return 0 ;; esac
    return 1
}
for _ in $(seq 1 100); do
    if ping 2>/dev/null; then exit 0; fi
    sleep 0.2
done
echo "influxd did not start; log:" >&2
cat "$dir/influxd.log" >&2
exit 1

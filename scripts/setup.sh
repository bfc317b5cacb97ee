#!/usr/bin/env bash
# Installs what logmon's build and tests need and this machine lacks.
# Idempotent: every step checks before it installs, and prints nothing but
# "setup: ok" when nothing is missing. Needs only the Rust toolchain (rustup)
# to start with; Debian packages come from apt-get (as root, or with sudo).
# `--browser` also installs Chromium and playwright-core (dashboard tests).
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf 'setup: %s\n' "$*"; }
die() { printf 'setup: %s\n' "$*" >&2; exit 1; }

command -v cargo >/dev/null || die "cargo not found; install Rust with rustup first"

# Lists are read into variables before grep looks at them: `producer | grep -q`
# under pipefail fails when grep stops reading early (the producer gets SIGPIPE).
if command -v rustup >/dev/null; then
    targets=$(rustup target list --installed)
    if ! grep -qx wasm32-wasip2 <<<"$targets"; then
        log "adding the wasm32-wasip2 target (rules are WebAssembly components)"
        rustup target add wasm32-wasip2
    fi
    components=$(rustup component list --installed)
    for component in rustfmt clippy; do
        if ! grep -q "^${component}" <<<"$components"; then
            log "adding rustup component ${component}"
            rustup component add "${component}"
        fi
    done
else
    targets=$(rustc --print target-list)
    grep -qx wasm32-wasip2 <<<"$targets" || die "no rustup and no wasm32-wasip2 target"
fi

# Debian packages, installed only when the command they provide is missing.
apt_updated=""
apt_install() {
    export DEBIAN_FRONTEND=noninteractive
    local sudo_cmd=()
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null \
            || die "installing $* needs root: run this as root, or install sudo, or run \`apt-get install $*\` as root yourself"
        sudo_cmd=(sudo)
    fi
    if [ -z "$apt_updated" ]; then
        "${sudo_cmd[@]}" apt-get update
        apt_updated=1
    fi
    "${sudo_cmd[@]}" apt-get install -y "$@"
}

# The end-to-end tests run the real InfluxDB that Debian ships (1.6).
if ! command -v influxd >/dev/null; then
    log "installing InfluxDB (Debian package influxdb)"
    apt_install influxdb
fi

# The dashboard's chart library (uPlot) comes from the npm registry when the
# collector is built (collector/build.rs runs `npm ci`).
if ! command -v npm >/dev/null; then
    log "installing Node.js and npm (Debian packages nodejs, npm) for the dashboard's assets"
    apt_install nodejs npm
fi

# True when DIR/node_modules holds what DIR/package-lock.json pins: npm
# records what it installed in node_modules/.package-lock.json, the same
# packages without the root entry.
npm_installed() {
    node - "$1" <<'JS'
const fs = require('node:fs');
const packages = (file) => JSON.parse(fs.readFileSync(file, 'utf8')).packages || {};
try {
  const locked = packages(`${process.argv[2]}/package-lock.json`);
  delete locked[''];
  const installed = packages(`${process.argv[2]}/node_modules/.package-lock.json`);
  process.exit(JSON.stringify(locked) === JSON.stringify(installed) ? 0 : 1);
} catch (_) {
  process.exit(1); // nothing installed yet
}
JS
}

# --browser: what the dashboard's browser tests and bench need, Debian's
# Chromium (driven by playwright-core from tests/browser, which never
# downloads a browser of its own).
if [ "${1:-}" = "--browser" ]; then
    if [ ! -x /usr/bin/chromium ]; then
        log "installing Chromium (Debian package chromium) for the dashboard tests"
        apt_install chromium
    fi
    if [ ! -d tests/browser/node_modules/playwright-core ] || ! npm_installed tests/browser; then
        log "installing playwright-core in tests/browser (npm ci: package-lock.json changed or nothing installed)"
        (cd tests/browser && npm ci --no-audit --no-fund)
    fi
fi

log "ok"

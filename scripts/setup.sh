#!/usr/bin/env bash
# Installs what logmon's build and tests need and this machine lacks.
# Idempotent: every step checks before it installs. Needs only the Rust
# toolchain (rustup) to start with; Debian packages come from apt-get.
# `--browser` also installs Chromium and playwright-core (dashboard tests).
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf 'setup: %s\n' "$*"; }

command -v cargo >/dev/null || { echo "setup: cargo not found; install Rust with rustup first" >&2; exit 1; }

if command -v rustup >/dev/null; then
    if ! rustup target list --installed | grep -qx wasm32-wasip2; then
        log "adding the wasm32-wasip2 target (rules are WebAssembly components)"
        rustup target add wasm32-wasip2
    fi
    for component in rustfmt clippy; do
        if ! rustup component list --installed | grep -q "^${component}"; then
            log "adding rustup component ${component}"
            rustup component add "${component}"
        fi
    done
else
    rustc --print target-list | grep -qx wasm32-wasip2 \
        || { echo "setup: no rustup and no wasm32-wasip2 target" >&2; exit 1; }
fi

# Debian packages, installed only when the command they provide is missing.
apt_updated=""
apt_install() {
    export DEBIAN_FRONTEND=noninteractive
    local sudo_cmd=""
    [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
    if [ -z "$apt_updated" ]; then
        $sudo_cmd apt-get update
        apt_updated=1
    fi
    $sudo_cmd apt-get install -y "$@"
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

# --browser: what the dashboard's browser tests and bench need, Debian's
# Chromium (driven by playwright-core from tests/browser, which never
# downloads a browser of its own).
if [ "${1:-}" = "--browser" ]; then
    if [ ! -x /usr/bin/chromium ]; then
        log "installing Chromium (Debian package chromium) for the dashboard tests"
        apt_install chromium
    fi
    if [ ! -d tests/browser/node_modules/playwright-core ]; then
        log "installing playwright-core in tests/browser (npm ci)"
        (cd tests/browser && npm ci --no-audit --no-fund)
    fi
fi

log "ok"

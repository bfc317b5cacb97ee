#!/usr/bin/env bash
# Installs what logmon's build and tests need and this machine lacks.
# Idempotent: every step checks before it installs. Needs only the Rust
# toolchain (rustup) to start with; Debian packages come from apt-get.
set -euo pipefail

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

# The end-to-end tests run the real InfluxDB that Debian ships (1.6).
if ! command -v influxd >/dev/null; then
    log "installing InfluxDB (Debian package influxdb)"
    export DEBIAN_FRONTEND=noninteractive
    sudo_cmd=""
    [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
    $sudo_cmd apt-get update
    $sudo_cmd apt-get install -y influxdb
fi

log "ok"

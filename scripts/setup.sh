#!/usr/bin/env bash
# Installs what logmon's build and tests need and this machine lacks.
# Idempotent: every step checks before it installs, and prints nothing but
# "setup: ok" when nothing is missing. Needs only the Rust toolchain (rustup)
# to start with; Debian packages come from apt-get (as root, or with sudo).
# Always: DuckDB (PyPI) in a virtualenv at tests/lake/.venv, the
# independent reader the lake's end-to-end test checks the Parquet files with.
# `--browser` also installs Chromium and playwright-core (dashboard tests);
# `--rules` the Python and JavaScript rule toolchains (componentize-py in a
# virtualenv at wasm-rules/python/.venv, componentize-js and jco with npm in
# wasm-rules/js/node_modules), which `rules build` and the Python and
# JavaScript rules' tests run. Flags combine.
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

# A host clock that is wrong, for the clock-skew test: Debian's faketime
# runs the agent under a shifted clock.
if ! command -v faketime >/dev/null; then
    log "installing faketime (Debian package faketime) for the clock-skew test"
    apt_install faketime
fi

# The dashboard's chart library (uPlot) comes from the npm registry when the
# collector is built (collector/build.rs runs `npm ci`).
if ! command -v npm >/dev/null; then
    log "installing Node.js and npm (Debian packages nodejs, npm) for the dashboard's assets"
    apt_install nodejs npm
fi

# True when DIR/node_modules holds what DIR/package-lock.json pins: npm
# records what it installed in node_modules/.package-lock.json, the same
# packages without the root entry, and without the optional ones it skipped
# (other platforms' binaries).
npm_installed() {
    node - "$1" <<'JS'
const fs = require('node:fs');
const packages = (file) => JSON.parse(fs.readFileSync(file, 'utf8')).packages || {};
try {
  const locked = packages(`${process.argv[2]}/package-lock.json`);
  delete locked[''];
  const installed = packages(`${process.argv[2]}/node_modules/.package-lock.json`);
  const same = Object.entries(locked).every(([name, entry]) =>
    name in installed ? JSON.stringify(entry) === JSON.stringify(installed[name]) : entry.optional === true)
    && Object.keys(installed).every((name) => name in locked);
  process.exit(same ? 0 : 1);
} catch (_) {
  process.exit(1); // nothing installed yet
}
JS
}

# Makes the virtualenv $1 if it is not there (the project's, never the
# system's Python) and installs the requirements file $2 in it, for $3.
venv_install() {
    local venv=$1 requirements=$2 what=$3
    command -v python3 >/dev/null || apt_install python3 python3-venv
    if [ ! -x "$venv/bin/pip" ]; then
        log "creating the virtualenv $venv for $what"
        python3 -m venv "$venv" \
            || { apt_install python3-venv && rm -rf "$venv" && python3 -m venv "$venv"; }
    fi
    log "installing $what in $venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements"
}

# The lake tests' reader: DuckDB as tests/lake/requirements.txt pins it,
# installed only when the virtualenv lacks that version.
venv=tests/lake/.venv
wanted=$(grep -E '^duckdb==' tests/lake/requirements.txt | cut -d= -f3)
have=$("$venv/bin/python" -c 'import duckdb; print(duckdb.__version__)' 2>/dev/null || true)
if [ "$have" != "$wanted" ]; then
    venv_install "$venv" tests/lake/requirements.txt "DuckDB $wanted (the lake tests' Parquet reader)"
fi

browser="" rules="" fuzz=""
for flag in "$@"; do
    case "$flag" in
        --browser) browser=1 ;;
        --rules) rules=1 ;;
        --fuzz) fuzz=1 ;;
        *) die "unknown flag $flag (known: --browser, --rules, --fuzz)" ;;
    esac
done

# --browser: what the dashboard's browser tests and bench need, Debian's
# Chromium (driven by playwright-core from tests/browser, which never
# downloads a browser of its own).
if [ -n "$browser" ]; then
    if [ ! -x /usr/bin/chromium ]; then
        log "installing Chromium (Debian package chromium) for the dashboard tests"
        apt_install chromium
    fi
    if [ ! -d tests/browser/node_modules/playwright-core ] || ! npm_installed tests/browser; then
        log "installing playwright-core in tests/browser (npm ci: package-lock.json changed or nothing installed)"
        (cd tests/browser && npm ci --no-audit --no-fund)
    fi
fi

# --rules: componentize-py as wasm-rules/python/requirements.txt pins it, in
# a virtualenv of the project's (never the system's Python), and the npm
# packages wasm-rules/js/package-lock.json locks.
if [ -n "$rules" ]; then
    venv=wasm-rules/python/.venv
    wanted=$(grep -E '^componentize-py==' wasm-rules/python/requirements.txt | cut -d= -f3)
    have=$("$venv/bin/componentize-py" --version 2>/dev/null | awk '{print $2}' || true)
    if [ "$have" != "$wanted" ]; then
        venv_install "$venv" wasm-rules/python/requirements.txt "componentize-py $wanted"
    fi
    if [ ! -x wasm-rules/js/node_modules/.bin/componentize-js ] || ! npm_installed wasm-rules/js; then
        log "installing componentize-js and jco in wasm-rules/js (npm ci)"
        (cd wasm-rules/js && npm ci --no-audit --no-fund)
    fi
fi

# --fuzz: cargo-fuzz (libFuzzer), for `make fuzz`; it builds on stable with
# `--sanitizer none`. `make test` does not need it: it runs the committed
# corpus through the targets' bodies without a fuzzer.
if [ -n "$fuzz" ]; then
    wanted=0.13.2
    have=$(cargo fuzz --version 2>/dev/null | awk '{print $2}' || true)
    if [ "$have" != "$wanted" ]; then
        log "installing cargo-fuzz $wanted (cargo install --locked)"
        cargo install --locked --version "$wanted" cargo-fuzz
    fi
fi

log "ok"

# logmon: `make demo` and `make test` are the two set-up commands; both
# install what is missing first (scripts/setup.sh).

CARGO ?= cargo

# setup.sh installs npm, so every build here must embed the real dashboard
# (collector/build.rs stops instead of falling back to its "not built" page).
export LOGMON_REQUIRE_DASHBOARD := 1

.PHONY: setup setup-browser build test lint unit demo bench clean

setup:
	@bash scripts/setup.sh

# The dashboard's browser test and bench: Debian's chromium and
# playwright-core (tests/browser) as well.
setup-browser:
	@bash scripts/setup.sh --browser

build: setup
	$(CARGO) build --release -p logmon-collector -p logmon-agent

lint: setup
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

# `cargo test` builds the collector binary before any test runs (the
# collector has integration tests), so the end-to-end tests find it.
test: lint setup-browser
	$(CARGO) test --workspace

demo: build
	@bash scripts/demo.sh

# Every figure is printed next to a baseline measured in the same run. The
# agent and alert-latency benches run the release binaries, built first; the
# InfluxDB bench starts its own influxd.
bench: setup-browser
	$(CARGO) build --release -p logmon-collector -p logmon-agent
	$(CARGO) bench -p logmon-collector --bench replay
	$(CARGO) bench -p logmon-collector --bench rules
	$(CARGO) bench -p logmon-collector --bench wire
	$(CARGO) bench -p logmon-collector --bench ingest
	$(CARGO) bench -p logmon-tests --bench agent
	$(CARGO) bench -p logmon-tests --bench influx
	$(CARGO) bench -p logmon-tests --bench alert_latency
	$(CARGO) bench -p logmon-tests --bench dashboard

clean:
	$(CARGO) clean

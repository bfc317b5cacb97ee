# logmon: `make demo` and `make test` are the two set-up commands; both
# install what is missing first (scripts/setup.sh).

CARGO ?= cargo

# setup.sh installs npm, so every build here must embed the real dashboard
# (collector/build.rs stops instead of falling back to its "not built" page).
export LOGMON_REQUIRE_DASHBOARD := 1

.PHONY: setup setup-browser setup-rules build test lint unit demo bench fuzz clean

setup:
	@bash scripts/setup.sh

# The dashboard's browser test and bench: Debian's chromium and
# playwright-core (tests/browser) as well.
setup-browser:
	@bash scripts/setup.sh --browser

# The Python and JavaScript rule toolchains (componentize-py in a virtualenv
# under wasm-rules/python, componentize-js and jco under wasm-rules/js), for
# `rules build` and the tests and bench of rules in those languages.
setup-rules:
	@bash scripts/setup.sh --rules

build: setup
	$(CARGO) build --release -p logmon-collector -p logmon-agent

lint: setup
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy -p logmon-agent --no-default-features -- -D warnings
	python3 scripts/check-doc-links.py

# `cargo test` builds the collector binary before any test runs (the
# collector has integration tests), so the end-to-end tests find it.
test: lint
	@bash scripts/setup.sh --browser --rules
	$(CARGO) test --workspace

demo: build
	@bash scripts/demo.sh

# Each fuzz target for FUZZ_SECONDS (60) with libFuzzer (cargo fuzz, on
# stable with --sanitizer none), starting from fuzz/corpus; FUZZ_TARGETS
# picks some (default: all). See docs/security.md.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?=
fuzz:
	@bash scripts/setup.sh --fuzz
	@bash scripts/fuzz.sh $(FUZZ_SECONDS) $(FUZZ_TARGETS)

# Every figure is printed next to a baseline measured in the same run. The
# agent and alert-latency benches run the release binaries, built first; the
# InfluxDB bench starts its own influxd.
bench:
	@bash scripts/setup.sh --browser --rules
	$(CARGO) build --release -p logmon-collector -p logmon-agent
	$(CARGO) build --release -p logmon-agent --no-default-features --target-dir target/agent-nowasm
	@mkdir -p target/rules
	target/release/logmon-collector rules build wasm-rules/python/high-traffic -o target/rules/python-high-traffic.wasm
	target/release/logmon-collector rules build wasm-rules/js/high-traffic -o target/rules/js-high-traffic.wasm
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

# logmon: `make demo` and `make test` are the two set-up commands; both
# install what is missing first (scripts/setup.sh).

CARGO ?= cargo

.PHONY: setup build test lint unit demo bench clean

setup:
	@bash scripts/setup.sh

build: setup
	$(CARGO) build --release -p logmon-collector -p logmon-agent

lint: setup
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

# `cargo test` builds the collector binary before any test runs (the
# collector has integration tests), so the end-to-end tests find it.
test: lint
	$(CARGO) test --workspace

demo: build
	@bash scripts/demo.sh

bench: setup
	$(CARGO) bench -p logmon-collector --bench replay

clean:
	$(CARGO) clean

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

# The end-to-end tests run the real binaries, so they are built first.
test: lint
	$(CARGO) build -p logmon-collector -p logmon-agent
	$(CARGO) test --workspace

demo: build
	@bash scripts/demo.sh

bench: setup
	$(CARGO) bench -p logmon-collector --bench replay

clean:
	$(CARGO) clean

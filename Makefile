# The two commands a newcomer needs: `make run` and `make test`.
SHELL := /bin/bash
CARGO ?= cargo
GW_LISTEN ?= 127.0.0.1:8080
API_LISTEN ?= 127.0.0.1:8081

.PHONY: run test lint build build-release integration deps container-smoke bench bench-smoke autobahn fuzz clean

## run: build release, start ws-api and ws-gateway on loopback (Ctrl-C stops both)
run: build-release
	@set -m; \
	./target/release/ws-api --listen $(API_LISTEN) --handler echo & api=$$!; \
	trap 'kill $$api $$gw 2>/dev/null; wait 2>/dev/null' EXIT INT TERM; \
	./target/release/ws-gateway --listen $(GW_LISTEN) --upstream $(API_LISTEN) & gw=$$!; \
	sleep 1; \
	echo; \
	echo "Connect to ws://$(GW_LISTEN)/gateway/ws with a 'token' header (a number is the uid), e.g.:"; \
	echo "  websocat -H 'token: 42' ws://$(GW_LISTEN)/gateway/ws   then type: {\"type\":\"message\",\"payload\":\"aGVsbG8=\"}"; \
	echo "Browsers: new WebSocket('ws://$(GW_LISTEN)/gateway/ws?token=42'). ws-api (echo) sends every message back."; \
	echo "Ctrl-C stops both."; \
	wait $$gw

## test: formatting, lints, then every test (unit, integration, bench smoke)
test: deps lint build bench-smoke integration

## deps: what the tests need beyond cargo: Python websockets (an independent client), redis-server
deps:
	@python3 -c 'import websockets' 2>/dev/null || python3 -m pip install --quiet 'websockets>=13'
	@command -v redis-server >/dev/null || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null)

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

build:
	$(CARGO) build --workspace --bins

build-release:
	$(CARGO) build --release --workspace --bins

integration:
	@if $(CARGO) nextest --version >/dev/null 2>&1; then \
		$(CARGO) nextest run --workspace --no-fail-fast; \
	else \
		$(CARGO) test --workspace --no-fail-fast; \
	fi

## bench: the benchmark cases (gateway pinned to CPU 0); writes bench/results/<date>-<host>.md/.json
bench: build-release
	python3 bench/run.py

## bench-smoke: every bench case scaled down to seconds (part of make test)
bench-smoke: build-release
	python3 bench/run.py --smoke

## autobahn: RFC 6455 conformance (Autobahn|Testsuite fuzzingclient) against raw mode
autobahn:
	bash tools/autobahn.sh

## fuzz: libFuzzer on the client frame decoders and the upgrade parser, FUZZ_SECONDS each
FUZZ_SECONDS ?= 60
fuzz:
	@command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked
	@# cargo-fuzz passes nightly -Z flags; RUSTC_BOOTSTRAP lets the stable toolchain accept them.
	cd fuzz && for t in json_frame protobuf_frame http_upgrade; do \
		RUSTC_BOOTSTRAP=1 $(CARGO) fuzz run $$t corpus/$$t -- -max_total_time=$(FUZZ_SECONDS) || exit 1; \
	done

## container-smoke: FROM-scratch image, podman run pinned with io_uring seccomp, real client
container-smoke: deps
	@command -v podman >/dev/null && command -v runc >/dev/null || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman runc)
	bash deploy/container-smoke.sh

clean:
	$(CARGO) clean

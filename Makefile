# The two commands a newcomer needs: `make run` and `make test`.
SHELL := /bin/bash
CARGO ?= cargo
GW_LISTEN ?= 127.0.0.1:8080
API_LISTEN ?= 127.0.0.1:8081
ADMIN_LISTEN ?= 127.0.0.1:9090
DEMO_LISTEN ?= 127.0.0.1:8000
# make run's ws-api: insecure-dev (any token; a number is the uid) or jwt.
AUTH ?= insecure-dev
# The Python peers' venv (tests/requirements.txt); make run's client comes from it.
VENV := target/venv
# apt-get needs root: as another user, through sudo.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# Prometheus and promtool (tests/observability.rs), unpacked from Debian's
# package into target/ rather than installed: no service started on :9090.
PROMETHEUS := target/prometheus/usr/bin

.PHONY: run test lint build glommio-test fuzz-smoke build-release integration deps container-smoke bench bench-smoke bench-deflate-crates autobahn autobahn-smoke fuzz clean

## run: build release, start ws-api, ws-gateway and the JS client's demo page on loopback, print where to connect once ready (Ctrl-C stops them); AUTH=jwt for signed tokens
run: build-release $(VENV)/.websockets
	@GW_LISTEN=$(GW_LISTEN) API_LISTEN=$(API_LISTEN) ADMIN_LISTEN=$(ADMIN_LISTEN) DEMO_LISTEN=$(DEMO_LISTEN) AUTH=$(AUTH) bash tools/run.sh

## test: formatting, lints, then every test (glommio's, fuzz smoke, bench smoke, unit, integration)
test: deps lint build glommio-test fuzz-smoke bench-smoke autobahn-smoke integration

## deps: what the tests need beyond cargo, installed here so a fresh machine needs nothing by hand:
## a Python venv (tests/requirements.txt: websockets, grpcio, PyJWT), redis-server,
## Go with grpc-go from Debian (a grpc-go ws-api), Chromium and playwright-core (browser tests),
## Prometheus and promtool (the rules and a real scrape)
deps: $(VENV)/.installed tests/browser/node_modules/playwright-core/package.json $(PROMETHEUS)/promtool
	@command -v curl >/dev/null || \
		($(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq curl >/dev/null)
	@command -v redis-server >/dev/null || \
		($(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null)
	@bash tests/peers/grpc-go/install.sh

tests/browser/node_modules/playwright-core/package.json: tests/browser/package-lock.json
	@command -v chromium >/dev/null || \
		($(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null)
	cd tests/browser && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

$(PROMETHEUS)/promtool:
	@mkdir -p target/prometheus
	cd target/prometheus && { apt-get download prometheus 2>/dev/null || \
		{ $(SUDO) apt-get update -qq && apt-get download prometheus; }; } && \
		dpkg-deb -x prometheus_*.deb . && rm -f prometheus_*.deb

# The venv, with Debian's python3-venv first where python3 lacks it.
MAKE_VENV = python3 -m venv $(VENV) 2>/dev/null || \
	($(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null && \
	 python3 -m venv $(VENV))

# make run needs only websockets (the banner's client): not the tests' whole list.
$(VENV)/.websockets:
	@$(MAKE_VENV)
	$(VENV)/bin/pip install --quiet 'websockets>=13'
	@touch $@

$(VENV)/.installed: tests/requirements.txt
	@$(MAKE_VENV)
	$(VENV)/bin/pip install --quiet -r tests/requirements.txt
	@touch $@

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --workspace --all-targets -- -D warnings
	@# The fuzz targets (outside the workspace: cargo-fuzz builds them) must still compile.
	cd fuzz && CARGO_TARGET_DIR=../target $(CARGO) check --locked --bins

build:
	$(CARGO) build --locked --workspace --bins

## glommio-test: vendor/glommio-patches applied to glommio 0.9.0 give exactly vendor/glommio, and
## vendor/tungstenite-patches to tungstenite 0.30.0 vendor/tungstenite (vendor/check-patches.sh), then the vendored glommio's own net:: tests (the multishot receive's
## among them), in its own workspace and lockfile; tcp_connect_timeout_error is skipped: it dials
## 10.255.255.1, off loopback
glommio-test:
	bash vendor/check-patches.sh
	cd vendor/glommio && CARGO_TARGET_DIR=../../target/glommio $(CARGO) test --locked --lib net:: -- --skip tcp_connect_timeout_error

build-release:
	$(CARGO) build --locked --release --workspace --bins

integration:
	@if $(CARGO) nextest --version >/dev/null 2>&1; then \
		$(CARGO) nextest run --locked --workspace --no-fail-fast; \
	else \
		$(CARGO) test --locked --workspace --no-fail-fast; \
	fi

## bench: every case against ws-gateway and against the floor (ws-bench sink), both pinned to the
## first CPU, load on the second; about 11 minutes; writes bench/results/<date>-<host>.md/.json.
## perf (Debian: linux-perf) gives syscalls per message; without it those columns say n/a.
bench: build-release
	@command -v perf >/dev/null || ($(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive \
		apt-get install -y -qq linux-perf >/dev/null) || echo "perf absent: syscalls per message will be n/a"
	python3 bench/run.py

## bench-smoke: every bench case scaled down to seconds, on ephemeral ports (part of make test)
bench-smoke: build-release
	python3 bench/run.py --smoke

## bench-deflate-crates: the DEFLATE crates permessage-deflate could use (flate2 on zlib-rs, flate2 on
## miniz_oxide, libdeflater) on the test messages: size, ns per compress and per inflate
bench-deflate-crates:
	@for f in zlib-rs miniz libdeflate; do \
		cargo run -q --release --manifest-path bench/deflate-choice/Cargo.toml \
			--target-dir target/deflate-choice --features $$f -- testdata/*.txt || exit 1; \
	done

## autobahn: RFC 6455 and RFC 7692 conformance (Autobahn|Testsuite fuzzingclient) against raw
## mode with --compression deflate: every case (about 15 minutes)
autobahn:
	bash tools/autobahn.sh

## autobahn-smoke: the permessage-deflate cases that cover negotiation, fragments and window sizes
## (12.1.*, 13.1.*, 13.3.*, 13.5.*; part of make test, about a minute once its venv exists)
autobahn-smoke: build-release
	CASES='"12.1.*","13.1.*","13.3.*","13.5.*"' bash tools/autobahn.sh

## fuzz: libFuzzer on the client frame decoders and the upgrade parser, FUZZ_SECONDS each
## (AddressSanitizer on; new inputs go into the committed corpus, fuzz/corpus/)
FUZZ_TARGETS := json_frame protobuf_frame http_upgrade
FUZZ_SECONDS ?= 60
fuzz:
	@command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked
	@# cargo-fuzz passes nightly -Z flags; RUSTC_BOOTSTRAP lets the stable toolchain accept them.
	cd fuzz && for t in $(FUZZ_TARGETS); do \
		RUSTC_BOOTSTRAP=1 $(CARGO) fuzz run $$t corpus/$$t -- -max_total_time=$(FUZZ_SECONDS) || exit 1; \
	done

## fuzz-smoke: each fuzz target for FUZZ_SMOKE_SECONDS (part of make test), on a fresh copy of
## the committed corpus in target/fuzz-smoke/ (which a test run leaves unchanged), crash inputs
## in target/fuzz-smoke/artifacts/<target>/. No sanitizer: the gateway code the targets reach is
## safe Rust (unsafe_code is denied), where a bug is a panic, which libFuzzer catches without
## ASan; ASan would only watch the dependencies' unsafe (httparse's SIMD, bytes), which
## `make fuzz` still does. Without it the build is shorter and a run does several times the
## executions. -timeout: an input that takes 10 s is a hang, and fails the run.
FUZZ_SMOKE_SECONDS ?= 20
FUZZ_SMOKE_DIR := $(CURDIR)/target/fuzz-smoke
FUZZ_SMOKE_FLAGS := --sanitizer none --target-dir $(FUZZ_SMOKE_DIR)/build
fuzz-smoke:
	@command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked
	cd fuzz && RUSTC_BOOTSTRAP=1 $(CARGO) fuzz build $(FUZZ_SMOKE_FLAGS)
	@cd fuzz && for t in $(FUZZ_TARGETS); do \
		rm -rf $(FUZZ_SMOKE_DIR)/corpus/$$t $(FUZZ_SMOKE_DIR)/artifacts/$$t && \
		mkdir -p $(FUZZ_SMOKE_DIR)/corpus $(FUZZ_SMOKE_DIR)/artifacts/$$t && \
		cp -R corpus/$$t $(FUZZ_SMOKE_DIR)/corpus/$$t || exit 1; \
		echo "fuzz-smoke: $$t for $(FUZZ_SMOKE_SECONDS)s"; \
		if ! RUSTC_BOOTSTRAP=1 $(CARGO) fuzz run $(FUZZ_SMOKE_FLAGS) $$t $(FUZZ_SMOKE_DIR)/corpus/$$t -- \
			-max_total_time=$(FUZZ_SMOKE_SECONDS) -timeout=10 -artifact_prefix=$(FUZZ_SMOKE_DIR)/artifacts/$$t/ \
			-print_final_stats=1 </dev/null >$(FUZZ_SMOKE_DIR)/$$t.log 2>&1; then \
			grep -m1 -A6 'panicked at' $(FUZZ_SMOKE_DIR)/$$t.log; \
			grep -E '^SUMMARY|Test unit written|^Error' $(FUZZ_SMOKE_DIR)/$$t.log; \
			echo "fuzz-smoke: $$t FAILED; log $(FUZZ_SMOKE_DIR)/$$t.log; input(s):"; \
			ls -1 $(FUZZ_SMOKE_DIR)/artifacts/$$t/* 2>/dev/null | sed 's/^/  /'; \
			echo "  replay: cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run $(FUZZ_SMOKE_FLAGS) $$t <input>"; \
			exit 1; \
		fi; \
		grep -h -E '^stat::number_of_executed_units|^#[0-9]+[[:space:]]+DONE' $(FUZZ_SMOKE_DIR)/$$t.log | sed 's/^/  /'; \
	done

## container-smoke: FROM-scratch image, podman run pinned with io_uring seccomp, real client
container-smoke: deps
	@command -v podman >/dev/null && command -v runc >/dev/null || \
		($(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman runc)
	bash deploy/container-smoke.sh

clean:
	$(CARGO) clean

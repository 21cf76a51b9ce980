# Two entry points for a fresh machine: `make run` and `make test`.
# Both create the virtual environment in .venv and install what they need.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
HOST   ?= 127.0.0.1
PORT   ?= 8080
DATA   ?= ./data
CARRIER ?= sim

NODES  ?= 3
TEST_WORKERS ?= 2

.PHONY: run test lint typecheck unit e2e install clean bench bench-srtp deps-browser deps-sip deps-codecs cluster

# pip also compiles media/_srtp_call.c and _srtp_hmac.c (a C compiler and Python's headers): rebuilt when they change.
$(BIN)/.installed: pyproject.toml src/bridgeline/media/_srtp_call.c src/bridgeline/media/_srtp_hmac.c
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

install: $(BIN)/.installed

run: install deps-codecs
	$(BIN)/bridgeline serve --host $(HOST) --port $(PORT) --data-dir $(DATA) --carrier $(CARRIER)

# The rule between layers (docs/architecture.md): import contracts in pyproject.toml, then the
# clock, randomness and I/O calls in the pure packages that an import does not show.
lint: install
	$(BIN)/ruff check src tests bench tools
	$(BIN)/ruff format --check src tests bench tools
	$(BIN)/lint-imports --no-logo
	$(BIN)/python tools/check_purity.py

typecheck: install
	$(BIN)/mypy

# libopus for Opus SIP legs (media/opus.py calls it through opuslib-next's ctypes bindings, which
# bring no library of their own). Without it the server runs, and `rtp.codecs` may not name OPUS.
deps-codecs:
	@if ! ldconfig -p | grep -q 'libopus\.so\.0'; then \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends libopus0; \
	fi

# Headless Chromium for the console's browser tests (Debian packages; installed once, as root in CI).
deps-browser:
	@if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium chromium-driver; \
	fi

# Real SIP peers for tests/sip_e2e (sipp, baresip), tone files (sox), packet capture (tshark),
# test certificates for SIP over TLS (openssl), the SIP front of a cluster (kamailio: its base
# package has dispatcher, path, tm and rr)
# (MP3 hold music is decoded in-process by miniaudio: no decoder package).
deps-sip:
	@if [ ! -x /usr/bin/sipp ] || [ ! -x /usr/bin/baresip ] || [ ! -x /usr/bin/sox ] || [ ! -x /usr/bin/tshark ] || [ ! -x /usr/bin/openssl ] || [ ! -x /usr/sbin/dnsmasq ] || [ ! -x /usr/sbin/kamailio ]; then \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends sip-tester baresip sox tshark openssl dnsmasq-base kamailio; \
	fi

# A local cluster for development (docs/cluster.md): the local PostgreSQL, Kamailio in front and
# NODES nodes; Ctrl-C stops them all. CLUSTER_ARGS passes more options (tools/cluster.py --help).
cluster: install deps-sip
	$(BIN)/python tools/cluster.py --nodes $(NODES) $(CLUSTER_ARGS)

# Two pytest worker processes (pytest-xdist), a whole test file per worker: a file's module-scoped
# servers start once, and most of the suite waits on servers and peers rather than on a core.
# Each worker has its own session servers, loopback ports (per PID) and temporary databases.
# TEST_WORKERS=0 runs the suite in this one process.
test: lint typecheck deps-browser deps-sip deps-codecs
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadfile

# The benchmark suite (~12 minutes, loopback only): writes docs/benchmarks.md. Needs sipp (deps-sip)
# and py-spy (for the profiles, installed into the venv). BENCH_ONLY=http,sip reruns some figures.
bench: install deps-sip deps-codecs
	@test -x $(BIN)/py-spy || $(BIN)/pip install --quiet py-spy
	OPENBLAS_NUM_THREADS=1 $(BIN)/python bench/run_all.py --out docs/benchmarks.md $(if $(BENCH_ONLY),--only $(BENCH_ONLY))

# SRTP legs against plain ones, timed (docs/benchmarks.md 4b; 20-30 minutes, run as root on a quiet
# machine), for AES_CM_128_HMAC_SHA1_80, then for AEAD_AES_128_GCM: the ladders and 9 alternated
# pairs at 300 legs with the time inside libsrtp's calls, then 3 rounds of each mode's capacity.
# The load-independent figure is `.venv/bin/python bench/srtp_engine_cost.py` (valgrind).
bench-srtp: install
	for suite in AES_CM_128_HMAC_SHA1_80 AEAD_AES_128_GCM; do \
		OPENBLAS_NUM_THREADS=1 $(BIN)/python bench/bench_rtp_legs.py --budget 400 --run 5 --only 2-party \
			--legs 200,500,1000 --pairs 9 --srtp-call-times --realtime 10 --srtp-suite $$suite \
			--out artifacts/bench-srtp-$$suite.json || exit 1; \
		OPENBLAS_NUM_THREADS=1 $(BIN)/python bench/bench_rtp_legs.py --run 5 --capacity 3 \
			--capacity-range 400,1400,25 --realtime 10 --srtp-suite $$suite \
			--out artifacts/bench-srtp-capacity-$$suite.json || exit 1; \
	done

clean:
	rm -rf $(VENV) data .pytest_cache .mypy_cache .ruff_cache .import_linter_cache .grimp_cache

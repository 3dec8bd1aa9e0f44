# The README's two commands: `make demo` and `make test`. Each sets everything up on a fresh
# machine (virtual environment, Python dependencies, the Rust extension) before it runs.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
DEPS   := $(VENV)/.deps-installed
FASHION_DIR := /usr/share/datasets/fashion-mnist
# The oldest Python the package claims (requires-python >= 3.10): found on PATH or under pyenv.
PY310  ?= $(firstword $(wildcard $(HOME)/.pyenv/versions/3.10*/bin/python3.10) $(shell command -v python3.10 2>/dev/null))
VENV310 := .venv310

.PHONY: setup extension setup-py310 lint rust-lint py-lint stubtest demo test test-rust rust-checks test-python mutants bench fashion-data wheel docs clean

# Dependencies change rarely: install them once per pyproject.toml. torch is a few GB, and pip's
# cache serves it again on the next fresh venv.
$(DEPS): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "maturin>=1.7,<2"
	$(PYTHON) scripts/list_deps.py dev plot docs cluster eval > $(VENV)/requirements.txt
	$(BIN)/python -m pip install -q -r $(VENV)/requirements.txt
	touch $@

# The extension is rebuilt whenever Rust sources change (cargo decides what is stale).
setup: extension

extension: $(DEPS)
	MAKEFLAGS= $(BIN)/maturin develop --release > $(VENV)/maturin.log 2>&1 || (cat $(VENV)/maturin.log; exit 1)
	$(BIN)/python -c "import unlearnkit._core"

# Fashion-MNIST comes from Debian's package; install it where apt-get can, say why not elsewhere.
fashion-data:
	@if [ -f $(FASHION_DIR)/train-images-idx3-ubyte.gz ]; then :; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 || \
		(apt-get update -q >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1) || \
		echo "note: could not install dataset-fashion-mnist; Fashion-MNIST tests will be skipped"; \
	else echo "note: apt-get unavailable (or not root); Fashion-MNIST tests will be skipped"; fi

demo: setup
	$(BIN)/unlearnkit demo

# A small environment of the oldest claimed Python (numpy and tomli, no torch): the torch-free
# part of the package (CLI parsing, recipes' TOML, parameter schemas) is tested on it.
setup-py310:
	@if [ -n "$(PY310)" ]; then \
		test -x $(VENV310)/bin/python || $(PY310) -m venv $(VENV310); \
		test -f $(VENV310)/.ok || ($(VENV310)/bin/python -m pip install -q numpy tomli && touch $(VENV310)/.ok); \
	else echo "note: no python3.10 found; the Python 3.10 test will be skipped"; fi

# What `make test` runs, in three stages, each pair side by side on the 2 cores:
#   1. the Python dependencies (pip, 115 s alone) | the Rust checks (rustfmt, clippy, cargo test:
#      70 s alone), the Fashion-MNIST package and the Python 3.10 environment;
#   2. the extension (maturin, release build, 56 s) | ruff and mypy (30 s, one core);
#   3. stubtest (needs the extension), then the Python tests.
# A fresh clone here (warm pip and cargo caches): 206 s before the Python tests, 254 s one step after
# the other; make test 762 s against 821 s. (Moving the extension's build into stage 1, beside pip,
# measured the same 206 s: the stages are CPU-bound, so only side-by-side idle time is won.)
test:
	@$(MAKE) --no-print-directory -j2 --output-sync=target $(DEPS) rust-checks fashion-data setup-py310
	@$(MAKE) --no-print-directory -j2 --output-sync=target extension py-lint
	@$(MAKE) --no-print-directory stubtest test-python

# Gates: ruff (pycodestyle, pyflakes, import order, bugbear, pyupgrade, simplify), rustfmt, clippy;
# then mypy over the whole package (function bodies included: check_untyped_defs) and a check of the
# compiled engine against its hand-written stub (mypy.stubtest: a function added to or changed in
# rust/bindings.rs without _core.pyi fails here).
# rust-lint and py-lint run side by side.
lint: $(DEPS)
	@$(MAKE) --no-print-directory -j2 --output-sync=target rust-lint py-lint
	@$(MAKE) --no-print-directory stubtest

rust-lint:
	MAKEFLAGS= cargo fmt --check
	MAKEFLAGS= cargo clippy --quiet --all-targets -- -D warnings

# mypy takes ~27 s on one core from a cold cache.
py-lint: $(DEPS)
	$(BIN)/ruff check python tests scripts benchmarks docs
	$(BIN)/mypy

stubtest:
	$(BIN)/python -m mypy.stubtest unlearnkit._core

test-rust:
	MAKEFLAGS= cargo test --quiet

rust-checks: rust-lint test-rust

# The whole suite under one torch thread in two worker processes (pytest-xdist, a file's tests on one
# worker so its module fixtures run once), then the method tests again under two threads in one
# process: training runs drift apart between thread counts (float sums in another order), and the
# method tests must hold under both (tests/conftest.py reads UNLEARNKIT_TEST_THREADS). The reference
# models are trained once (one worker trains, the other waits and loads) and the second pass loads
# them (UNLEARNKIT_TEST_MODELS), so its methods run under two threads on models trained under one,
# as a user's models come from another machine. Two one-thread workers instead of one two-thread
# process: most tests are small models, subprocesses and Ray, where a second thread buys little
# (the suite: 757 s serially under one thread, 413 s in two workers, beside an audit on a core).
test-python:
	models=$$(mktemp -d /tmp/unlearnkit-test-models-XXXXXX) && \
	UNLEARNKIT_TEST_MODELS=$$models UNLEARNKIT_TEST_THREADS=1 OMP_NUM_THREADS=1 \
		$(BIN)/python -m pytest -q -p no:cacheprovider -n 2 --dist loadfile tests && \
	UNLEARNKIT_TEST_MODELS=$$models UNLEARNKIT_TEST_THREADS=2 \
		$(BIN)/python -m pytest -q -p no:cacheprovider tests/methods; \
	rc=$$?; rm -rf $$models; exit $$rc

# The mutation check (scripts/mutants.py): named bugs applied to a temporary copy of the package, each
# of which its tests must catch; the table of mutants and verdicts. Not part of `make test` (7 min on 2 cores
# at load ~2, 25 min at load ~12).
mutants: setup
	$(BIN)/python scripts/mutants.py

bench: setup fashion-data
	$(PYTHON) scripts/list_deps.py bench > $(VENV)/requirements-bench.txt
	$(BIN)/python -m pip install -q -r $(VENV)/requirements-bench.txt
	$(BIN)/python benchmarks/run_all.py

# The GPU check (scripts/gpu_check.py, under 8 minutes on one GPU): compiled kernels against the torch
# path, the Sinkhorn/covariance table (GeomLoss and flash-sinkhorn when pip can install them), a
# ResNet-18 bench. The first thing to run when a GPU is lent; `--dry-run` checks it on a CPU.
gpu-check: setup fashion-data
	-$(BIN)/python -m pip install -q geomloss flash-sinkhorn
	$(BIN)/python scripts/gpu_check.py

# The documentation site (mkdocs-material + mkdocstrings; method and metric pages generated from the code).
docs: setup
	NO_MKDOCS_2_WARNING=1 DISABLE_MKDOCS_2_WARNING=true $(BIN)/mkdocs build --strict --site-dir site

# Release artefacts: an abi3 wheel (one for every CPython >= 3.10) and an sdist, in dist/.
wheel: $(DEPS)
	$(BIN)/maturin build --release --sdist -o dist

clean:
	rm -rf target $(VENV) $(VENV310) dist

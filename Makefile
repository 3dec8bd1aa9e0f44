# The README's two commands: `make demo` and `make test`. Each sets everything up on a fresh
# machine (virtual environment, Python dependencies, the Rust extension) before it runs.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
DEPS   := $(VENV)/.deps-installed
FASHION_DIR := /usr/share/datasets/fashion-mnist

.PHONY: setup demo test test-rust test-python bench fashion-data wheel docs clean

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
setup: $(DEPS)
	$(BIN)/maturin develop --release > $(VENV)/maturin.log 2>&1 || (cat $(VENV)/maturin.log; exit 1)
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

test: setup fashion-data test-rust test-python

test-rust:
	cargo test --quiet

test-python:
	$(BIN)/python -m pytest -q -p no:cacheprovider tests

bench: setup fashion-data
	$(PYTHON) scripts/list_deps.py bench > $(VENV)/requirements-bench.txt
	$(BIN)/python -m pip install -q -r $(VENV)/requirements-bench.txt
	$(BIN)/python benchmarks/run_all.py

# The documentation site (mkdocs-material + mkdocstrings; method and metric pages generated from the code).
docs: setup
	NO_MKDOCS_2_WARNING=1 DISABLE_MKDOCS_2_WARNING=true $(BIN)/mkdocs build --strict --site-dir site

# Release artefacts: an abi3 wheel (one for every CPython >= 3.10) and an sdist, in dist/.
wheel: $(DEPS)
	$(BIN)/maturin build --release --sdist -o dist

clean:
	rm -rf target $(VENV) dist

# Set-up and everyday commands. `make demo` and `make test` need only Python 3.11.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
# TensorFlow flavour: cpu (tensorflow-cpu), tf (plain tensorflow) or gpu (tensorflow[and-cuda]).
TF ?= cpu
STAMP := $(VENV)/.installed-$(TF)
FASHION_MNIST := /usr/share/datasets/fashion-mnist

.PHONY: install demo test test-all lint fashion-mnist bench suite suite-quick clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[$(TF),dev,beam]"
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/keras-deepad demo

# Fashion-MNIST from Debian's dataset-fashion-mnist (tests on real data need it).
fashion-mnist:
	@if [ ! -d $(FASHION_MNIST) ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist) >/dev/null \
	      || echo "note: could not install dataset-fashion-mnist; its tests will be skipped"; \
	  else \
	    echo "note: $(FASHION_MNIST) is missing (sudo apt-get install dataset-fashion-mnist);" \
	         "Fashion-MNIST tests will be skipped"; \
	  fi; \
	fi

test: $(STAMP) fashion-mnist
	$(BIN)/ruff check keras_deepad tests scripts examples
	TF_ENABLE_ONEDNN_OPTS=0 TF_CPP_MIN_LOG_LEVEL=2 $(BIN)/python -m pytest -q -n 2 --dist loadfile

test-all: $(STAMP) fashion-mnist
	TF_ENABLE_ONEDNN_OPTS=0 TF_CPP_MIN_LOG_LEVEL=2 $(BIN)/python -m pytest -q -n 2 --dist loadfile -m ""

# Peers of the benchmark suite (PyOD on the CPU build of torch).
bench: $(STAMP)
	$(BIN)/python -m pip install --quiet "torch==2.13.0" || $(BIN)/python -m pip install --quiet "torch==2.13.0+cpu" --index-url https://download.pytorch.org/whl/cpu
	$(BIN)/python -m pip install --quiet -e ".[$(TF),dev,bench]"

suite-quick: bench fashion-mnist
	TF_ENABLE_ONEDNN_OPTS=0 TF_CPP_MIN_LOG_LEVEL=2 $(BIN)/python benchmarks/suite.py --quick

suite: bench fashion-mnist
	TF_ENABLE_ONEDNN_OPTS=0 TF_CPP_MIN_LOG_LEVEL=2 $(BIN)/python benchmarks/suite.py

lint: $(STAMP)
	$(BIN)/ruff check keras_deepad tests scripts benchmarks examples

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache

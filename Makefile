# Two commands do all the set-up on a fresh machine:
#   make demo   creates .venv, installs everything, runs the demo on embedded defaults
#   make test   the same set-up, then the whole test suite
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export OMP_NUM_THREADS ?= 1
export OPENBLAS_NUM_THREADS ?= 1
export MKL_NUM_THREADS ?= 1

.PHONY: demo test lint bench system clean

$(STAMP): pyproject.toml scripts/install.sh
	bash scripts/install.sh $(PY) $(VENV)
	touch $(STAMP)

system:
	bash scripts/system-packages.sh

demo: $(STAMP)
	$(BIN)/casemate demo

test: $(STAMP) system
	$(BIN)/ruff check src tests benchmarks
	bash scripts/test.sh

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks

bench: $(STAMP)
	$(BIN)/python -m benchmarks.run_all

clean:
	rm -rf $(VENV) build *.egg-info

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

.PHONY: demo test lint bench system clean bundle bundle-wheelhouse

$(STAMP): pyproject.toml scripts/install.sh
	bash scripts/install.sh $(PY) $(VENV)
	touch $(STAMP)

system:
	bash scripts/system-packages.sh

demo: $(STAMP)
	$(BIN)/casemate demo

test: $(STAMP) system build/.bundle-wheelhouse
	$(BIN)/ruff check src tests benchmarks
	bash scripts/test.sh

# The offline installation bundle (docs/install.md).
bundle: $(STAMP)
	rm -rf build/bundle build/casemate-bundle.tar
	$(BIN)/python -m casemate.ops.cli bundle --out build/bundle --tar build/casemate-bundle.tar

# Wheels the bundle test rebuilds from offline (the tests run with no network), fetched with network.
build/.bundle-wheelhouse: $(STAMP) pyproject.toml
	rm -rf build/bundle-wheelhouse
	$(BIN)/python -m casemate.ops.cli bundle --out build/bundle-wheelhouse --profile demo --key build/bundle-ci.pem
	touch $@

bundle-wheelhouse: build/.bundle-wheelhouse

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks

bench: $(STAMP)
	$(BIN)/python -m benchmarks.run_all

clean:
	rm -rf $(VENV) build *.egg-info

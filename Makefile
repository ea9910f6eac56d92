# Two commands for a fresh machine (see README):
#   make run    set up and start the standalone Train Tools UI on the demo model
#   make test   set up (incl. headless Chromium for the browser test) and run the whole suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# A local CPU torch wheel is used when the machine provides one.
FIND_LINKS := $(if $(wildcard /opt/wheels),--find-links /opt/wheels,)
PIP    := $(BIN)/python -m pip install --disable-pip-version-check -q $(FIND_LINKS) -c requirements/constraints.txt
HOST   ?= 127.0.0.1
PORT   ?= 7861
MODEL  ?= demo

.PHONY: setup setup-test setup-g4 run test test-g4 lint format bench clean

# The second venv: Forge's pins (gradio 4.40.0) for the UI and browser tests (tests/ui_tests.txt).
VENV4  ?= .venv-g4
BIN4   := $(VENV4)/bin
PIP4   := $(BIN4)/python -m pip install --disable-pip-version-check -q $(FIND_LINKS) -c requirements/constraints.txt

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# torch first, pinned; everything after is constrained to that same torch.
$(VENV)/.base-installed: $(BIN)/python requirements/base.txt requirements/constraints.txt
	$(PIP) torch==2.13.0
	$(PIP) -r requirements/base.txt
	touch $@

# stable-diffusion-sdkit provides the CompVis `ldm` package the WebUI runs; its own pins are not wanted.
$(VENV)/.test-installed: $(VENV)/.base-installed requirements/test.txt
	$(PIP) -r requirements/test.txt
	$(PIP) --no-deps stable-diffusion-sdkit==2.1.5
	touch $@

$(BIN4)/python:
	$(PYTHON) -m venv $(VENV4)

$(VENV4)/.test-installed: $(BIN4)/python requirements/forge.txt requirements/test-forge.txt requirements/constraints.txt
	$(PIP4) torch==2.13.0
	$(PIP4) -r requirements/test-forge.txt
	$(PIP4) --no-deps stable-diffusion-sdkit==2.1.5
	touch $@

setup: $(VENV)/.base-installed

setup-g4: $(VENV4)/.test-installed

# A Japanese font too: the browser tests' screenshots (the README's) show Japanese names and the Japanese page.
setup-test: $(VENV)/.test-installed
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null && [ -e /usr/share/fonts/opentype/ipafont-gothic ] || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium chromium-driver fonts-ipafont-gothic >/dev/null; }

run: setup
	$(BIN)/python -m lora_ext ui --model $(MODEL) --host $(HOST) --port $(PORT)

# pytest exits 5 when it collected no test: that is a failure too.
# Then the UI tests once more on gradio 4.40.0 (test-g4).
test: setup-test setup-g4
	$(BIN)/python -m pytest -q -p no:cacheprovider; rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "error: no tests were collected"; exit 1; fi; [ $$rc -eq 0 ] || exit $$rc
	$(MAKE) --no-print-directory test-g4

# The UI tests (listed in tests/ui_tests.txt) again on gradio 4.40.0.
test-g4: setup-g4 setup-test
	$(BIN4)/python -m pytest -q -p no:cacheprovider $$(grep -v '^#' tests/ui_tests.txt); rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "error: no tests were collected"; exit 1; fi; exit $$rc

lint: setup-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: setup-test
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: setup-test
	for b in bench/*.py; do $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) $(VENV4)

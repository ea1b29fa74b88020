# Two commands for a newcomer: `make run` and `make test`. `make serve` is for a team (README).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PORT ?= 8501
STAMP := $(VENV)/.installed

.PHONY: run serve test test-fast bench clean

# Reinstall only when a requirements file (or the browser runtime's lock file) changed since the last install.
# npm ci: ONNX Runtime Web at the version package-lock.json pins, copied into every web export (tlcore/export/web.py);
# without npm the web export says how to install it and its browser test skips.
$(STAMP): requirements.txt requirements-dev.txt package.json package-lock.json
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	if command -v npm >/dev/null 2>&1; then npm ci --ignore-scripts --no-audit --no-fund --loglevel=error; \
	else echo "warning: npm is missing (apt-get install npm): no web export, its browser test will be skipped"; fi
	touch $(STAMP)

# This machine only: nobody else on the network reaches it, so it has no access gate.
run: $(STAMP)
	$(PY) -m streamlit run app.py --server.address 127.0.0.1 --server.port $(PORT)

# For a team: every interface, behind an access code (or single sign-on); prints the address and the code.
serve: $(STAMP)
	$(PY) scripts/serve.py --port $(PORT)

# Compiled test modules are kept between runs (__pycache__, ignored by git) even where the environment sets
# PYTHONDONTWRITEBYTECODE: pytest otherwise rewrites every test module's asserts again on each run (5 s a worker).
PYTEST := PYTHONDONTWRITEBYTECODE= $(PY) -m pytest

# The whole suite, shared between one worker per core (tests/conftest.py says how); docs/TESTING.md.
test: $(STAMP)
	$(PYTEST) -n auto --dist loadscope

# The inner loop: the unit tests only (no browser, no slow integration test).
test-fast: $(STAMP)
	$(PYTEST) -n auto --dist loadscope -m "not slow and not browser" tests/core

bench: $(STAMP)
	$(PY) scripts/bench_core.py
	$(PY) scripts/bench_export.py
	$(PY) scripts/bench_attack.py
	$(PY) scripts/bench_perf.py
	$(PY) scripts/bench_data_tiers.py
	$(PY) scripts/bench_suggest.py
	$(PY) scripts/bench_learning_curve.py
	$(PY) scripts/bench_corruptions.py
	$(PY) scripts/bench_camera.py
	$(PY) scripts/bench_labels.py
	$(PY) scripts/bench_click_to_done.py

clean:
	rm -rf $(VENV) .pytest_cache node_modules

# foveanet: two commands on a fresh machine.
#   make demo   create the environment, install foveanet, run the main job
#   make test   the same set-up plus the test dependencies, then the whole test suite
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip

.PHONY: demo test install install-test clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

install: $(PY)
	$(PIP) install --quiet -e .

install-test: $(PY)
	$(PIP) install --quiet -e '.[test]'

demo: install
	$(PY) examples/xor.py
	$(PY) examples/mlp.py

test: install-test
	$(PY) -m pytest

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .hypothesis

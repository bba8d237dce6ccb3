# foveanet: two commands on a fresh machine.
#   make demo   create the environment, install foveanet, run the main job
#   make test   the same set-up plus the test dependencies, then the whole test suite
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip

.PHONY: demo test bench install install-test data browser clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

# the second line compiles the optional numba kernels (foveanet.backend.cpu.warm(); cached on disk:
# 20-35 s once, then ~1.5 s)
install: $(PY)
	$(PIP) install --quiet -e '.[train]'
	$(PY) -c 'import foveanet; print(foveanet.backend.cpu.warm())'

install-test: $(PY) browser
	$(PIP) install --quiet -e '.[test]'
	$(PY) -c 'import foveanet; print(foveanet.backend.cpu.warm())'

# Fashion-MNIST: found locally (see foveanet.data), else Debian's package when we are root on
# Debian, else downloaded (with checksums) by `foveanet train --download`.

data:
	@if $(PY) -c "import foveanet.data as d; d.FashionMNIST(train=False)" >/dev/null 2>&1; then \
	  echo "Fashion-MNIST: found"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "Fashion-MNIST: installing Debian's dataset-fashion-mnist"; \
	  (apt-get install -y -qq dataset-fashion-mnist || (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist)); \
	else \
	  echo "Fashion-MNIST: not found locally; it will be downloaded"; \
	fi

# the Playground's browser tests drive a headless Chromium: Debian's package when we are root on
# Debian (Playwright's own browser download is not used); without one those tests are skipped
browser:
	@if command -v chromium >/dev/null || [ -x /usr/bin/chromium ]; then \
	  echo "Chromium: found"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "Chromium: installing Debian's chromium"; \
	  (apt-get install -y -qq chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null)); \
	else \
	  echo "Chromium: not found; the browser tests will be skipped"; \
	fi

demo: install data
	$(VENV)/bin/foveanet train --download

test: install-test
	$(PY) -m pytest

# foveanet vs PyTorch side by side (benchmarks/README.md): the CNNs, the recurrent layers, the
# image-output networks (a DCGAN step, a small-SegNet step), style transfer, then the
# ImageNet-size zoo at 224x224; about 15-20 minutes on 2 quiet cores
bench: install-test
	$(PY) benchmarks/compare.py --json benchmarks/compare.json
	$(PY) benchmarks/rnn_compare.py --json benchmarks/rnn_compare.json
	$(PY) benchmarks/generative_compare.py --json benchmarks/generative_compare.json
	$(PY) benchmarks/style_compare.py --json benchmarks/style_compare.json
	$(PY) benchmarks/zoo_compare.py --plan --json benchmarks/zoo_compare.json

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .hypothesis

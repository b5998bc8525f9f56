# sshdist-kernel: `make demo` shows it working, `make test` proves it, `make bench` measures it,
# `make docs` builds the manual (build/docs/index.html).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# make test's pytest processes (xdist workers; each has its own local nodes, tmp dirs and
# IPYTHONDIR; tests/conftest.py says which files share a worker).  The tests mostly wait
# (on nodes, kernels, browsers: 2 min 15 s of CPU for 9 min of test time), so on the
# 2-core machine 4 workers beat 3: 2 min 30 s against about 3 min.  TEST_WORKERS=0: one
# process, no xdist.
TEST_WORKERS ?= 4

.PHONY: demo test bench docs lint system clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

system:
	bash scripts/install-system-deps

demo: system $(STAMP)
	$(PY) -m sshdist_kernel.demo
	$(PY) -m sshdist_magics.demo

test: system $(STAMP)
	bash scripts/install-system-deps chromium nftables guile-2.2 libpam-oath oathtool  # the browser test drives Debian's Chromium; nft drops traffic (and guards a local cluster's compute nodes); a Guile 2.2 node; the cluster's TOTP
	$(PY) -m ruff check sshdist_kernel magics tests bench
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile

bench: $(STAMP)
	bash scripts/install-system-deps guile-ssh nftables libpam-oath oathtool  # the anchor; the local cluster of the cluster rows
	$(PY) bench/run.py

# The manual, warnings as errors (the test extra has the docs extra's packages; -E: every
# page read again, since pages show docstrings and --help the build cannot see change).
docs: $(STAMP)
	$(PY) -m sphinx -E -W --keep-going -q -b html docs build/docs
	@echo "the manual: build/docs/index.html"

lint: $(STAMP)
	$(PY) -m ruff check sshdist_kernel magics tests bench
	$(PY) -m ruff format --check sshdist_kernel magics tests bench

clean:
	rm -rf $(VENV) .pytest_cache

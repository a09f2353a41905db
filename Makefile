# Set-up on a fresh machine is part of every target: `make demo` and `make test` just work.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean compiled asan

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[all,dev,bench]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/edgefilter demo

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy --strict src

# The compiled reader (src/edgefilter/_speedups.c), built in place next to the sources.
compiled: $(STAMP)
	$(BIN)/python hatch_build.py

# The compiled reader's tests on a build with AddressSanitizer and UBSan (any finding
# aborts the run), then the ordinary build again. Leak checks are off: CPython keeps
# memory until exit on purpose, and tests/test_speedups_safety.py counts references instead.
ASAN_RUNTIME = $$(gcc -print-file-name=libasan.so)
asan: $(STAMP)
	$(BIN)/python hatch_build.py --sanitize
	LD_PRELOAD=$(ASAN_RUNTIME) ASAN_OPTIONS=detect_leaks=0 PYTHONMALLOC=malloc \
		EDGEFILTER_REQUIRE_COMPILED=1 $(BIN)/pytest -q -p no:cacheprovider --capture=sys \
		tests/test_speedups_safety.py tests/test_compiled.py; \
	status=$$?; $(BIN)/python hatch_build.py; exit $$status

# The whole suite twice: on the compiled reader, which a user with a compiler gets (it must
# be there: EDGEFILTER_REQUIRE_COMPILED), then on the pure-Python one, the fallback.
test: lint compiled
	EDGEFILTER_REQUIRE_COMPILED=1 $(BIN)/pytest
	EDGEFILTER_PURE=1 $(BIN)/pytest -q

# Rybbit's loop in Node (benchmarks/rybbit) is measured too when node and npm are installed.
bench: compiled
	@if command -v node >/dev/null && command -v npm >/dev/null; then \
		npm ci --prefix benchmarks/rybbit --silent --no-audit --no-fund; fi
	@for script in benchmarks/bench_*.py; do \
		echo "== $$script"; $(BIN)/python $$script || exit 1; echo; \
	done

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis build
	rm -f src/edgefilter/_speedups*.so

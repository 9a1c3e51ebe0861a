# streammood: `make demo` sets up and runs the live tagger; `make test` sets up and runs the tests.
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.setup-done

.PHONY: setup demo test lint bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml scripts/setup.sh
	bash scripts/setup.sh
	touch $(STAMP)

demo: setup
	$(BIN)/python -m streammood.demo

# three test processes: most of the suite waits on real time (paced audio, Redis restarts,
# subprocesses), so three share two cores well (measured on a loaded machine: 31 min in one
# process, 13 min in three)
test: setup
	$(BIN)/python -m pytest -q -n 3

lint: setup
	$(BIN)/ruff check streammood tests benchmarks research scripts

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache

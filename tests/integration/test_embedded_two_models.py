"""The embedded launcher's two-model mode: ``python -m servers.embedded exec --explorer M1
--synthesizer M2 -- CMD`` serves each stage on its own engine and port, and ``a2r ask`` run
through it sends the explorers to one server and the synthesis to the other.

SmolLM2-135M plays both roles (the point is the plumbing, not the answers): on two vLLM engines
(the main path), and on two llama.cpp engines (the optional CPU engine).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.conftest import A2R

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
N = 2
MAX_TOKENS = 16

# Runs inside `exec`: what the command sees, each server's counters before and after `a2r ask`.
PROBE = """
import json, os, subprocess, sys, urllib.request
out, a2r = sys.argv[1], sys.argv[2]
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
stages = {
    stage: {key: os.environ.get(f"A2R_{stage.upper()}__{key}")
            for key in ("BASE_URL", "MODEL", "CONTEXT_WINDOW")}
    for stage in ("explorer", "synthesizer")
}
def read(url):
    with opener.open(url, timeout=10) as response:
        return response.read().decode()
def metrics():
    return {s: read(v["BASE_URL"].removesuffix("/v1") + "/metrics") for s, v in stages.items()}
report = {"stages": stages,
          "models": {s: json.loads(read(v["BASE_URL"] + "/models")) for s, v in stages.items()},
          "before": metrics()}
ask = subprocess.run(
    [a2r, "ask", "What is 2 + 3?", "--n", sys.argv[3], "--max-tokens", sys.argv[4],
     "--seed", "1", "--db", ":memory:", "--json"],
    capture_output=True, text=True, timeout=600,
)
report.update(after=metrics(), rc=ask.returncode, stdout=ask.stdout, stderr=ask.stderr[-3000:])
with open(out, "w") as fh:
    json.dump(report, fh)
"""

COUNTERS = {
    # engine -> (generated tokens, finished requests) counters of its /metrics
    "vllm": ("vllm:generation_tokens_total", "vllm:request_success_total"),
    "llamacpp": ("llamacpp:tokens_predicted_total", None),
}


def counter(text: str, name: str) -> float:
    pattern = re.compile(rf"^{re.escape(name)}(?:{{[^}}]*}})? ([0-9.e+]+)$", re.MULTILINE)
    return sum(float(value) for value in pattern.findall(text))


def run_two_models(tmp_path: Path, *launcher_args: str) -> tuple[dict, dict, str]:
    probe, out = tmp_path / "probe.py", tmp_path / "report.json"
    probe.write_text(PROBE)
    command = [
        sys.executable, "-m", "servers.embedded", "exec",
        "--explorer", "smollm2-135m", "--synthesizer", "smollm2-135m", *launcher_args,
        "--", sys.executable, str(probe), str(out), A2R, str(N), str(MAX_TOKENS),
    ]  # fmt: skip
    launched = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=900, check=False
    )
    assert launched.returncode == 0, launched.stderr[-4000:]
    report = json.loads(out.read_text())
    assert report["rc"] == 0, report["stderr"]
    return report, json.loads(report["stdout"]), launched.stderr


def check_stages(report: dict, result: dict, engine: str) -> None:
    explorer, synthesizer = report["stages"]["explorer"], report["stages"]["synthesizer"]
    # Two live servers on two loopback ports, each serving its stage's model.
    assert explorer["BASE_URL"] != synthesizer["BASE_URL"]
    for stage in ("explorer", "synthesizer"):
        url, model = report["stages"][stage]["BASE_URL"], report["stages"][stage]["MODEL"]
        assert url.startswith("http://127.0.0.1:") and url.endswith("/v1")
        assert model == "SmolLM2-135M-Instruct"
        assert [m["id"] for m in report["models"][stage]["data"]] == [model]

    usage = result["usage"]
    assert usage["explore"]["calls"] == N and usage["synthesize"]["calls"] == 1
    assert result["synthesis"]["model"] == synthesizer["MODEL"]
    tokens, requests = COUNTERS[engine]

    def delta(stage: str, name: str) -> float:
        return counter(report["after"][stage], name) - counter(report["before"][stage], name)

    # Each server generated exactly what the graph's usage says its stage generated: the
    # explorers went to one server, the synthesis to the other.
    assert delta("explorer", tokens) == usage["explore"]["output_tokens"] > 0
    assert delta("synthesizer", tokens) == usage["synthesize"]["output_tokens"] > 0
    if requests:
        assert delta("explorer", requests) == N
        assert delta("synthesizer", requests) == 1


def test_exec_serves_explorer_and_synthesizer_on_two_vllm_engines(tmp_path):
    report, result, log = run_two_models(tmp_path)
    check_stages(report, result, "vllm")
    assert report["stages"]["explorer"]["CONTEXT_WINDOW"] is None  # vLLM reports max_model_len
    assert log.count("starting vLLM (SmolLM2-135M-Instruct)") == 2
    assert log.count("vLLM ready in") == 2


def test_exec_serves_each_stage_on_its_own_llamacpp_engine(tmp_path):
    report, result, log = run_two_models(tmp_path, "--engine", "llamacpp")
    check_stages(report, result, "llamacpp")
    # llama.cpp's /v1/models has no max_model_len: the launcher exports each window instead.
    assert report["stages"]["explorer"]["CONTEXT_WINDOW"] == "2048"
    assert report["stages"]["synthesizer"]["CONTEXT_WINDOW"] == "2048"
    assert log.count("llama.cpp ready in") == 2

"""The eval harness over scripted fake models, for unit tests of its logic."""

from __future__ import annotations

import json

import pytest

from a2r_graph import build_graph, threads
from a2r_graph.eval.data import load_problems
from a2r_graph.eval.results import RESULTS_FILE, read_results
from a2r_graph.eval.runner import run_eval
from a2r_graph.eval.verify import Verifier
from tests.fakes import factory, make_context, reply


def needs(*modules: str) -> None:
    """Skip the test without an optional extra (``pytest tests/unit`` runs without them)."""
    for module in modules:
        pytest.importorskip(module, reason=f"{module} (pip install 'a2r-graph[eval]')")


def explorer_script(k, answers):
    """The first ``k`` explorer replies, each boxing its answer (10 output tokens)."""
    return [reply(f"<think>t</think>so \\boxed{{{a}}}", output_tokens=10) for a in answers[:k]]


def write_jsonl(tmp_path, rows):
    """A data file of ``(id, problem, answer)`` rows: ``tmp_path/problems.jsonl``."""
    path = tmp_path / "problems.jsonl"
    path.write_text("\n".join(json.dumps({"id": i, "problem": q, "answer": a}) for i, q, a in rows))
    return path


def problems(tmp_path, *rows):
    return load_problems(str(write_jsonl(tmp_path, rows)))


async def evaluate(tmp_path, todo, explorer, synthesizer, *, n=2, ns=(2,), variants=(), **context):
    async with threads.sqlite_checkpointer(tmp_path / "threads.sqlite") as checkpointer:
        graph = build_graph(factory(explorer, synthesizer), checkpointer=checkpointer)
        with Verifier(timeout_s=60) as verifier:
            await run_eval(
                graph,
                todo,
                ns=ns,
                context=make_context(n=n, max_attempts=1, **context),
                out_dir=tmp_path,
                concurrency=1,
                verifier=verifier,
                variants=variants,
            )
    return read_results(tmp_path / RESULTS_FILE)

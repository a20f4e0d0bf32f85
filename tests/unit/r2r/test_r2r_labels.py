"""The trained router's labels over scripted servers (tests/r2r_fakes.py): which positions are
candidates (the LLM's top-1 differs), which of those are divergent (continuing from the LLM's
token changes the final answer), how the unjudged ones count, and the command end to end."""

from __future__ import annotations

import argparse
import json

import pytest

from a2r_graph.errors import MalformedReplyError
from a2r_graph.r2r import command
from a2r_graph.r2r.client import read_prompt_top1
from a2r_graph.r2r.context import R2RContext
from a2r_graph.r2r.labels import (
    DIVERGENT,
    IDENTICAL,
    NEUTRAL,
    UNJUDGED,
    LabelSettings,
)
from a2r_graph.r2r.routers import LinearRouter, router_for
from tests.r2r_fakes import FakeServer, servers_for

SLM_TEXT = "So 6*7 is \\boxed{41}."
LLM_TEXT = "So 6*7 is \\boxed{42}!"
DIVERGE = SLM_TEXT.index("1}")
"""The LLM says "2" where the SLM says "1": the SLM, continued from "2", answers 42."""
HARMLESS = SLM_TEXT.index(".")
"""The LLM says "!" where the SLM says ".": the answer stays 41."""


def pair(engine="llamacpp") -> tuple[FakeServer, FakeServer]:
    slm = FakeServer(
        "slm-0.5b", SLM_TEXT, unsure={DIVERGE}, engine=engine, branches={DIVERGE: "}."}
    )
    return slm, FakeServer("llm-1.5b", LLM_TEXT, engine=engine)


def context(slm: FakeServer, llm: FakeServer) -> R2RContext:
    return R2RContext(
        explorer=slm.stage(),
        synthesizer=llm.stage(),
        r2r={"top_k": 3},
        max_attempts=1,
        request_timeout_s=5,
    )


async def label(slm, llm, questions=(("q1", "6*7?"),), **settings):
    return await command.label_all(
        list(questions), context(slm, llm), LabelSettings(**settings), servers_for(slm, llm)
    )


@pytest.mark.parametrize("engine", ["llamacpp", "vllm"])
async def test_candidates_are_where_the_llm_differs_and_divergent_where_the_answer_changes(
    engine,
):
    """Catches: the LLM's top-1 read one position off (every position a candidate, or the
    wrong ones), a harmless disagreement labelled divergent (the answer not compared), or a
    divergent one labelled neutral (the continuation not started from the LLM's token)."""
    slm, llm = pair(engine)
    [labels] = await label(slm, llm, judge_per_question=5)
    assert labels.answer == "41"
    assert labels.candidates == [DIVERGE, HARMLESS]
    assert labels.kinds[DIVERGE] == DIVERGENT and labels.kinds[HARMLESS] == NEUTRAL
    assert labels.kinds.count(IDENTICAL) == len(SLM_TEXT) + 1 - 2  # the EOS agrees too
    assert labels.continuations == 2
    # vLLM scores the whole answer in one prefill; llama.cpp a call per position
    assert labels.llm_calls == (1 if engine == "vllm" else len(SLM_TEXT) + 1)
    scoring = [r for r in llm.requests if r["max_tokens"] == 1]
    assert len(scoring) == labels.llm_calls
    assert all(r["temperature"] == 0 for r in slm.requests + llm.requests)


async def test_unjudged_candidates_follow_the_stated_rule():
    """Catches: unjudged candidates silently trained as agreeing tokens (negatives): with
    'drop' they must be left out, with 'divergent' counted as positives."""
    slm, llm = pair()
    [labels] = await label(slm, llm, judge_per_question=0)
    assert [labels.kinds[i] for i in labels.candidates] == [UNJUDGED, UNJUDGED]
    assert labels.continuations == 0
    dropped = labels.examples("drop")
    assert len(dropped) == len(labels.kinds) - 2 and not any(y for _, y in dropped)
    counted = labels.examples("divergent")
    assert [t.position for t, y in counted if y] == [DIVERGE, HARMLESS]


async def test_the_judged_sample_is_bounded_per_question_and_reproducible():
    """Catches: a judge budget ignored (a continuation per candidate, hours on a CPU) or a
    sample that changes from run to run (labels not reproducible)."""
    slm, llm = pair()
    first = await label(slm, llm, [("a", "x?"), ("b", "y?")], judge_per_question=1)
    again = await label(*pair(), [("a", "x?"), ("b", "y?")], judge_per_question=1)
    for labels in first:
        assert labels.continuations == 1
        assert sum(k in (DIVERGENT, NEUTRAL) for k in labels.kinds) == 1
    assert [q.kinds for q in first] == [q.kinds for q in again]


def test_vllm_prompt_logprobs_without_every_position_are_refused():
    """Catches: a vLLM reply without prompt_logprobs (an old server, the option dropped)
    read as no disagreement at all."""
    with pytest.raises(MalformedReplyError, match="prompt_logprobs"):
        read_prompt_top1({"choices": [{"text": "x"}]}, 3, 2)
    reply = {
        "choices": [
            {
                "prompt_logprobs": [
                    None,
                    {"5": {"logprob": -1.0, "rank": 2}, "9": {"logprob": -0.2, "rank": 1}},
                ]
            }
        ]
    }
    assert read_prompt_top1(reply, 1, 1) == [9]


def args(tmp_path, **overrides) -> argparse.Namespace:
    source = tmp_path / "questions.jsonl"
    source.write_text(
        "".join(
            json.dumps({"id": f"q{i}", "problem": f"{i}*7?", "answer": "x"}) + "\n"
            for i in range(5)
        ),
        encoding="utf-8",
    )
    values = dict(
        source=str(source),
        size=5,
        data_seed=1,
        out=tmp_path / "router.json",
        labels=None,
        recall=0.95,
        from_labels=None,
        judge_per_question=2,
        unjudged="drop",
        max_tokens=64,
        seed=0,
        id_field="id",
        problem_field="problem",
        answer_field="answer",
    )
    return argparse.Namespace(**(values | overrides))


def environment(monkeypatch, slm: FakeServer, llm: FakeServer) -> None:
    for role, fake in (("EXPLORER", slm), ("SYNTHESIZER", llm)):
        monkeypatch.setenv(f"A2R_{role}__BASE_URL", f"http://{fake.model}.test/v1")
        monkeypatch.setenv(f"A2R_{role}__MODEL", fake.model)
    monkeypatch.setenv("A2R_R2R__TOP_K", "3")


def test_the_command_writes_a_router_file_the_linear_router_runs(tmp_path, monkeypatch, capsys):
    """Catches: a router file the run cannot load (fields missing, weights not matching
    top_k), or a trained router that does not flag the divergent token it was trained on."""
    slm, llm = pair()
    environment(monkeypatch, slm, llm)
    assert (
        command.main(args(tmp_path, labels=tmp_path / "labels.jsonl"), servers_for(slm, llm)) == 0
    )
    printed = capsys.readouterr().out
    assert "linear" in printed and "entropy" in printed and "top1" in printed
    router = router_for("linear", None, tmp_path / "router.json")
    assert isinstance(router, LinearRouter) and router.top_k == 3
    [labels] = [json.loads(line) for line in (tmp_path / "labels.jsonl").open()][:1]
    assert labels["kinds"][DIVERGE] == DIVERGENT
    from a2r_graph.r2r.routers import TokenChoice

    tokens = [
        TokenChoice(t[0], t[1], tuple(map(tuple, t[2])), i) for i, t in enumerate(labels["tokens"])
    ]
    assert router.flags(tokens[DIVERGE])
    assert not any(router.flags(t) for i, t in enumerate(tokens) if i != DIVERGE)

    # retrained from the saved labels, no model call: the same router
    again = args(tmp_path, from_labels=tmp_path / "labels.jsonl", out=tmp_path / "again.json")
    assert command.main(again, servers_for()) == 0
    assert router_for("linear", None, tmp_path / "again.json") == router


def test_the_command_refuses_when_the_llm_never_disagrees(tmp_path, monkeypatch):
    """Catches: a router 'trained' on no positive at all (one model in both roles), written
    as if it were a router."""
    slm = FakeServer("slm-0.5b", SLM_TEXT)
    llm = FakeServer("llm-1.5b", SLM_TEXT)
    environment(monkeypatch, slm, llm)
    with pytest.raises(ValueError, match="no candidate"):
        command.main(args(tmp_path), servers_for(slm, llm))
    assert not (tmp_path / "router.json").exists()

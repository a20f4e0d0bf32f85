"""Curation of explorer samples into synthesizer training data (RL, issue #8's first step)."""

import json
import subprocess
import sys
from pathlib import Path

from a2r_graph import build_graph
from a2r_graph.train.curate import pool_queries, statistics, training_examples
from tests.fakes import factory, make_context, reply, scripted


def result_line(qid, answers, correct, repetition=0, gold="7"):
    return {
        "key": f"{qid}#{repetition}",
        "id": qid,
        "problem": f"problem {qid}",
        "gold": gold,
        "paths": [
            {"index": i, "answer": a, "error": None if a else "failed", "correct": ok}
            for i, (a, ok) in enumerate(zip(answers, correct, strict=True))
        ],
    }


def test_candidates_pool_over_repetitions_up_to_the_cap_and_skip_failed_paths():
    lines = [
        result_line("a", ["x \\boxed{7}", "", "y \\boxed{1}"], [True, False, False]),
        result_line("a", ["z \\boxed{7}", "w \\boxed{2}"], [True, False], repetition=1),
        result_line("b", ["\\boxed{7}", "\\boxed{7}"], [True, True]),
    ]
    a, b = pool_queries(lines, max_candidates=3)
    assert [text for text, _ in a.candidates] == ["x \\boxed{7}", "y \\boxed{1}", "z \\boxed{7}"]
    assert (a.correct, a.learnable, b.learnable) == (2, True, False)
    assert statistics([a, b]) == {
        "queries": 2,
        "candidates": 5,
        "candidate_accuracy": 0.8,
        "all_correct": 1,
        "all_wrong": 0,
        "learnable": 1,
    }


def test_examples_draw_n_shuffled_candidates_deterministically_per_seed():
    answers = [f"answer {i} \\boxed{{{i}}}" for i in range(8)]
    [query] = pool_queries([result_line("a", answers, [i == 3 for i in range(8)])])
    examples = training_examples([query], n=4, per_query=20, seed=1)
    assert examples == training_examples([query], n=4, per_query=20, seed=1)
    orders = set()
    for example in examples:
        content = example["prompt"][0]["content"]
        drawn = [a for a in answers if a in content]
        assert len(drawn) == 4 and content.count("</reference") == 4
        order = tuple(sorted(drawn, key=content.index))
        orders.add(order)
        assert example["references_correct"] == [a == answers[3] for a in order]
        assert example["answer"] == "7"
    assert len(orders) > 10 and any(list(o) != sorted(o) for o in orders)  # random, shuffled
    assert training_examples([query], n=9, per_query=1) == []  # too few candidates
    assert training_examples([query], n=2, per_query=1, learnable_only=True) != []


async def test_the_training_prompt_is_the_prompt_the_graph_sends():
    answers = ["first \\boxed{1}", "second \\boxed{2}"]
    explorer = scripted(*(reply(a) for a in answers))
    synthesizer = scripted(reply("\\boxed{2}"))
    graph = build_graph(factory(explorer, synthesizer))
    await graph.ainvoke({"question": "problem a"}, context=make_context(n=2))
    [query] = pool_queries([result_line("a", answers, [False, True])])
    for example in training_examples([query], n=2, per_query=10, seed=0):
        if example["references_correct"] == [False, True]:  # the graph's order
            assert example["prompt"] == [{"role": "user", "content": synthesizer.calls[0][0]}]
            return
    raise AssertionError("no example drew the references in the graph's order")


def test_cli_writes_examples_and_statistics(tmp_path):
    results = tmp_path / "results.jsonl"
    lines = [result_line(q, ["a \\boxed{7}", "b \\boxed{1}"], [True, False]) for q in "xyz"]
    results.write_text("\n".join(json.dumps(line) for line in lines) + "\n{torn")
    out = tmp_path / "train.jsonl"
    a2r = str(Path(sys.executable).with_name("a2r"))
    done = subprocess.run(
        [a2r, "curate", str(results), "--n", "2", "--per-query", "3", "--out", str(out)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert len(out.read_text().splitlines()) == 9
    assert json.loads(out.with_suffix(".stats.json").read_text())["learnable"] == 3
    missing = subprocess.run(
        [a2r, "curate", str(tmp_path / "nope.jsonl"), "--out", str(out)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert missing.returncode == 2 and "no such results file" in missing.stderr

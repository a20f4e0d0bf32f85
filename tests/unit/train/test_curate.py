"""Curation of explorer samples into synthesizer training data (RL, issue #8's first step)."""

import json
import subprocess
import sys
from pathlib import Path

from a2r_graph import build_graph
from a2r_graph.train.curate import (
    difficulty,
    example_statistics,
    majority_right,
    mix_examples,
    pool_queries,
    statistics,
    training_examples,
)
from tests.fakes import factory, make_context, reply, scripted
from tests.result_lines import result_line, saved_path


def curated_line(qid, answers, correct, repetition=0, gold="7"):
    paths = [
        saved_path(index=i, answer=a, error=None if a else "failed", correct=ok)
        for i, (a, ok) in enumerate(zip(answers, correct, strict=True))
    ]
    return result_line(qid, repetition, gold=gold, paths=paths)


def test_candidates_pool_over_repetitions_up_to_the_cap_and_skip_failed_paths():
    lines = [
        curated_line("a", ["x \\boxed{7}", "", "y \\boxed{1}"], [True, False, False]),
        curated_line("a", ["z \\boxed{7}", "w \\boxed{2}"], [True, False], repetition=1),
        curated_line("b", ["\\boxed{7}", "\\boxed{7}"], [True, True]),
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
        "easy": 2,
        "hard": 0,
    }


def test_examples_draw_n_shuffled_candidates_deterministically_per_seed():
    answers = [f"answer {i} \\boxed{{{i}}}" for i in range(8)]
    [query] = pool_queries([curated_line("a", answers, [i == 3 for i in range(8)])])
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
    [query] = pool_queries([curated_line("a", answers, [False, True])])
    for example in training_examples([query], n=2, per_query=10, seed=0):
        if example["references_correct"] == [False, True]:  # the graph's order
            assert example["prompt"] == [{"role": "user", "content": synthesizer.calls[0][0]}]
            return
    raise AssertionError("no example drew the references in the graph's order")


def test_cli_writes_examples_and_statistics(tmp_path):
    results = tmp_path / "results.jsonl"
    lines = [curated_line(q, ["a \\boxed{7}", "b \\boxed{1}"], [True, False]) for q in "xyz"]
    results.write_text("\n".join(line.model_dump_json() for line in lines) + "\n{torn")
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


def test_agglm_difficulty_is_whether_majority_voting_over_the_references_is_right():
    right, wrong_3, wrong_3b, wrong_5 = "\\boxed{7}", "so \\boxed{3}", "\\boxed{ 3 }", "\\boxed{5}"
    assert majority_right([(right, True)] * 2 + [(wrong_3, False), (wrong_5, False)])  # plurality
    assert not majority_right([(right, True), (wrong_3, False), (wrong_5, False)])  # 3-way tie
    assert not majority_right([(right, True), (wrong_3, False), (wrong_3b, False)])  # 3 twice
    assert not majority_right([(right, True), (wrong_3, False)])  # a tie is no right majority
    assert majority_right([(right, True), (right, True), ("no box", False), ("none", False)])
    assert difficulty([(right, True), (right, True), (wrong_3, False)]) == "easy"
    assert difficulty([(right, True), (wrong_3, False), (wrong_3b, False)]) == "hard"
    assert difficulty([(wrong_3, False), (wrong_5, False)]) == "none_right"


def examples_of(easy: int, hard: int, none_right: int) -> list[dict]:
    kinds = ["easy"] * easy + ["hard"] * hard + ["none_right"] * none_right
    return [{"query_id": f"q{i}", "difficulty": kind} for i, kind in enumerate(kinds)]


def test_agglm_mix_keeps_hard_and_easy_examples_in_the_asked_share():
    examples = examples_of(easy=30, hard=10, none_right=5)
    for fraction, easy, hard in [(0.5, 10, 10), (0.2, 2, 10), (0.75, 30, 10), (0.9, 30, 3)]:
        kept = mix_examples(examples, fraction, seed=1)
        counts = example_statistics(examples, kept, fraction)
        assert counts["written"] == {"easy": easy, "hard": hard, "none_right": 0}, fraction
        assert counts["written_easy_share"] == easy / (easy + hard)
        assert counts["examples"] == {"easy": 30, "hard": 10, "none_right": 5}
        assert kept == [e for e in examples if e in kept]  # original order
    assert mix_examples(examples, 0.5, seed=1) == mix_examples(examples, 0.5, seed=1)
    assert mix_examples(examples, 0.5, seed=1) != mix_examples(examples, 0.5, seed=2)
    assert {e["difficulty"] for e in mix_examples(examples, 0)} == {"hard"}
    assert len(mix_examples(examples, 0)) == 10 and len(mix_examples(examples, 1)) == 30
    assert mix_examples(examples_of(3, 0, 1), 0.5) == []  # no hard example: nothing in a mix


def test_examples_carry_their_difficulty():
    answers = ["a \\boxed{7}", "b \\boxed{7}", "c \\boxed{1}", "d \\boxed{1}"]
    [query] = pool_queries([curated_line("a", answers, [True, True, False, False])])
    for example in training_examples([query], n=3, per_query=8, seed=0):
        right = sum(example["references_correct"])
        assert example["difficulty"] == ("easy" if right == 2 else "hard")


def test_cli_easy_fraction_mixes_and_reports_easy_and_hard_counts(tmp_path):
    results = tmp_path / "results.jsonl"
    easy = [
        curated_line(q, ["\\boxed{7}", "\\boxed{7}", "\\boxed{1}"], [True, True, False])
        for q in "abcdef"
    ]
    hard = [curated_line(q, ["\\boxed{7}", "\\boxed{1}", "\\boxed{1}"], [True, False, False])
            for q in "xy"]  # fmt: skip
    results.write_text("\n".join(line.model_dump_json() for line in easy + hard) + "\n")
    out = tmp_path / "train.jsonl"
    a2r = str(Path(sys.executable).with_name("a2r"))
    done = subprocess.run(
        [a2r, "curate", str(results), "--n", "3", "--per-query", "1", "--easy-fraction", "0.5",
         "--out", str(out)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    written = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(e["difficulty"] for e in written) == ["easy", "easy", "hard", "hard"]
    stats = json.loads(out.with_suffix(".stats.json").read_text())
    assert (stats["easy"], stats["hard"]) == (6, 2)  # queries, over all their candidates
    assert stats["examples"] == {"easy": 6, "hard": 2, "none_right": 0}
    assert stats["written"] == {"easy": 2, "hard": 2, "none_right": 0}
    assert (stats["easy_fraction"], stats["written_easy_share"]) == (0.5, 0.5)
    bad = subprocess.run(
        [a2r, "curate", str(results), "--easy-fraction", "1.5", "--out", str(out)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert bad.returncode == 2 and "--easy-fraction must be within [0, 1]" in bad.stderr

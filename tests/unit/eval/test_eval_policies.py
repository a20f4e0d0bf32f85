"""The eval judges every policy on the same saved samples: replayed, not sampled again."""

import pytest

from a2r_graph.eval.report import markdown_table, summarize
from tests.eval_fakes import evaluate, problems
from tests.fakes import reply, scripted, token_logprobs

pytest.importorskip("math_verify", reason="math-verify (pip install 'a2r-graph[eval]')")

SURE, UNSURE = [-0.01, -5.0], [-0.7, -0.7]  # token confidence 2.505 and 0.7


def path(answer, top, tokens=10):
    return reply(f"so \\boxed{{{answer}}}", output_tokens=tokens, logprobs=token_logprobs(top, top))


async def test_policies_are_replayed_on_the_saved_samples(tmp_path):
    todo = problems(tmp_path, ("a", "q1", "5"), ("b", "q2", "7"))
    explorer = scripted(
        *[path(5, SURE)] * 4,  # a: all agree
        path(7, UNSURE),
        path(8, SURE),
        path(8, SURE),
        path(7, UNSURE),  # b: 2-2, 8 surer
    )
    synthesizer = scripted(
        *[reply("\\boxed{5}", output_tokens=50)] * 3,  # a: N=4, N=2, top-2 references
        reply("\\boxed{7}", output_tokens=50),  # b: N=4
        reply("\\boxed{8}", output_tokens=50),  # b: N=2
        reply("\\boxed{8}", output_tokens=50),  # b: top-2 references
    )
    lines = await evaluate(
        tmp_path, todo, explorer, synthesizer, n=4, ns=(2, 4), confidence={"top_logprobs": 2}
    )
    assert len(explorer.calls) == 8 and len(synthesizer.calls) == 6  # one more synthesis each
    a, b = sorted(lines, key=lambda line: line.id)
    assert a.paths[0].confidence["mean"] == pytest.approx(2.505)

    assert a.policies["shortcut"].model_dump(exclude_defaults=True) == {
        "boxed": "5",
        "usage": {"input_tokens": 40, "output_tokens": 40, "cost": 0.0},
        "shortcut": True,
        "correct": True,
    }
    assert a.policies["waves_shortcut"].usage.output_tokens == 20  # 2 paths, no synthesis
    assert a.policies["waves"].usage.output_tokens == 20 + 50  # the N=2 synthesis
    # b: no agreement, so the shortcut and the waves fall back to the synthesis at N=4
    assert b.policies["shortcut"].boxed == "7" and b.policies["shortcut"].correct
    assert b.policies["waves"].usage.output_tokens == 40 + 50
    # DeepConf: the two sure 8s outweigh the two unsure 7s; plain Cons@4's tie goes to 7
    assert b.by_n["4"].cons_correct is True
    assert b.policies["cons_weighted"].boxed == "8" and not b.policies["cons_weighted"].correct
    assert b.policies["cons_top50"].boxed == "8"
    # vote first: a's vote decides (no synthesis paid); b's 2-2 tie goes to the synthesizer
    assert a.policies["vote_first"].shortcut and a.policies["vote_first"].usage.output_tokens == 40
    assert not b.policies["vote_first"].shortcut and b.policies["vote_first"].boxed == "7"
    assert b.policies["vote_first"].usage.output_tokens == 40 + 50
    top = b.policies["top_references"]
    assert top.references == [1, 2] and top.boxed == "8"
    assert "\\boxed{7}" not in synthesizer.calls[5][0]  # the unsure paths stayed out

    summary = summarize(lines, (2, 4))
    assert summary["policies"]["shortcut"]["accuracy"] == 100.0
    assert summary["policies"]["shortcut"]["shortcut_share"] == 50.0
    assert summary["policies"]["cons_weighted"]["accuracy"] == 50.0
    # a: 2 paths of 10 in + 10 out; b: 4 paths and the N=4 synthesis (10 in + 50 out)
    assert summary["policies"]["waves_shortcut"]["tokens_per_query"] == (40 + (80 + 60)) / 2
    table = markdown_table(summary, "bench", "m")
    assert "| Policy (N=4) |" in table and "| shortcut (all agree) | 100.0 |" in table


async def test_without_confidence_only_the_agreement_policies_are_replayed(tmp_path):
    todo = problems(tmp_path, ("a", "q1", "5"))
    explorer = scripted(*[reply("\\boxed{5}")] * 2)
    lines = await evaluate(tmp_path, todo, explorer, scripted(reply("\\boxed{5}")), n=2, ns=(2,))
    assert set(lines[0].policies) == {"shortcut", "shortcut_75", "vote_first"}


async def test_synthesis_variants_are_one_more_synthesis_each_over_the_same_paths(tmp_path):
    todo = problems(tmp_path, ("a", "q1", "7"))
    explorer = scripted(path(8, SURE), path(7, SURE))
    synthesizer = scripted(
        reply("\\boxed{8}"),  # N=2, plain
        reply("\\boxed{7}", output_tokens=30),  # tally
        reply("the second: \\boxed{2}", output_tokens=40),  # select
        reply("mine is 7: \\boxed{7}"),  # solve_first
        reply("\\boxed{8}"),  # greedy
    )
    variants = ("tally", "select", "solve_first", "greedy")
    [line] = await evaluate(tmp_path, todo, explorer, synthesizer, n=2, ns=(2,), variants=variants)
    assert len(explorer.calls) == 2 and len(synthesizer.calls) == 5
    temperatures = [kwargs["temperature"] for _, kwargs in synthesizer.calls]
    assert temperatures == [0.6, 0.6, 0.6, 0.6, 0.0]  # greedy: the same prompt, temperature 0
    assert synthesizer.calls[4][0] == synthesizer.calls[0][0]
    assert line.policies["greedy"].correct is False
    assert synthesizer.calls[3][0].startswith("Solve the problem below yourself first")
    assert "<reference2>" in synthesizer.calls[3][0]
    assert line.policies["solve_first"].correct is True
    assert "Final answers of the references: 8 (1 of 2), 7 (1 of 2)." in synthesizer.calls[1][0]
    assert "Candidate solutions:" in synthesizer.calls[2][0]
    assert line.by_n["2"].a2r_correct is False
    assert line.policies["tally"].correct is True
    assert line.policies["select"].model_dump(exclude_defaults=True) | {"usage": None} == {
        "boxed": "7",
        "correct": True,
        "usage": None,
    }
    assert line.policies["select"].usage.output_tokens == 20 + 40
    summary = summarize([line], (2,))
    assert summary["policies"]["tally"]["accuracy"] == 100.0
    assert "| select mode (GenSelect) | 100.0 |" in markdown_table(summary, "b", "m")

"""The baseline a user would pick instead of A2R: the synthesizer's model alone, sampled K
times on the same problems (its Pass@1 and Cons@N), with its tokens and cost."""

from __future__ import annotations

import functools

import pytest

from a2r_graph import threads
from a2r_graph.eval.data import load_problems
from a2r_graph.eval.report import markdown_table, plot_accuracy_vs_cost, summarize
from a2r_graph.eval.results import read_results
from a2r_graph.eval.runner import run_eval
from a2r_graph.eval.verify import Verifier
from a2r_graph.graph import build_graph
from tests.eval_fakes import explorer_script, needs, write_jsonl
from tests.fakes import factory, make_context, reply, scripted


async def test_the_synthesizers_model_alone_is_sampled_and_scored(tmp_path):
    needs("math_verify", "matplotlib")
    problems = load_problems(str(write_jsonl(tmp_path, [("a", "What is 1+1?", "2")])))
    explorer = scripted(*explorer_script(4, ["1", "1", "2", "1"]))
    synthesizer = scripted(
        reply("\\boxed{2}"),  # A2R over 4 paths
        *explorer_script(4, ["2", "3", "2", "2"]),  # the synthesizer's model alone, K=4
        reply("\\boxed{3}"),  # A2R over its own 4 samples (the model in both stages)
        reply("\\boxed{1}"),  # A2R over the first 2 paths
    )
    context = make_context(
        n=4,
        synthesizer={
            "model": "synthesizer-model",
            "context_window": 32768,
            "input_price_per_mtok": 1.0,
            "output_price_per_mtok": 2.0,
        },
    )
    async with threads.sqlite_checkpointer(tmp_path / "threads.sqlite") as checkpointer:
        graph = build_graph(factory(explorer, synthesizer), checkpointer=checkpointer)
        with Verifier(timeout_s=60) as verifier:
            evaluate = functools.partial(
                run_eval, graph, problems, ns=(2, 4), context=context, out_dir=tmp_path
            )
            path = await evaluate(concurrency=1, verifier=verifier, alone=4)
            assert len(synthesizer.calls) == 7
            # the baseline answered the explorer's prompt, not the synthesizer's
            assert all("<reference" not in prompt for prompt, _ in synthesizer.calls[1:5])
            # then synthesized over its own samples' answers
            assert "<reference4>" in synthesizer.calls[5][0]
            [line] = read_results(path)
            own = line.policies["alone_a2r"]
            assert own.boxed == "3" and own.correct is False
            assert own.usage.output_tokens == 4 * 10 + 20
            assert [p.correct for p in line.alone] == [True, False, True, True]
            assert line.by_n["2"].alone_cons_correct is True  # tie: the first group
            usage = line.by_n["4"].alone_usage
            assert usage.output_tokens == 40 and usage.cost == pytest.approx(
                (4 * 10 * 1.0 + 40 * 2.0) / 1e6
            )

            # a rerun keeps every finished sample: nothing is asked again
            again = await evaluate(concurrency=1, verifier=verifier, alone=4)
            assert len(synthesizer.calls) == 7 and len(read_results(again)) == 1

    summary = summarize(read_results(path), [2, 4])
    assert summary["alone"]["pass_at_1"] == 75
    assert summary["by_n"]["4"]["alone_cons_at_n"] == 100
    assert summary["by_n"]["4"]["cons_at_n"] == 0  # the explorers' majority said 1
    assert summary["policies"]["alone_a2r"]["accuracy"] == 0
    table = markdown_table(summary, "toy", "small -> big")
    assert "Synthesizer alone: Pass@1 | Cons@N |" in table
    assert "| toy | small -> big | 4 | 25.0 | 0.0 | 100.0 | 100.0 | 75.0 | 100.0 |" in table
    plot_accuracy_vs_cost(summary, tmp_path / "plot.png", "toy")

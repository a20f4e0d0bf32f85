"""The eval's recommendation (a2r_graph.eval.recommend): every measured configuration as a
context, the accuracy/cost front, the objectives, and a choice made on development data."""

from __future__ import annotations

import json

import pytest

from a2r_graph.eval.recommend import (
    choose,
    configurations,
    env_lines,
    front,
    parse_objective,
    read_recommendation,
    recommend,
    recommendation_text,
)
from tests.fakes import make_context


def summary(a2r=30.0, cons=32.0, vote_first=33.0, alone=40.0):
    return {
        "pass_at_1": 20.0,
        "pass_at_1_cost_per_query": 1.0,
        "alone": {"pass_at_1": alone, "cost_per_query": 3.0, "tokens_per_query": 1},
        "by_n": {
            "4": {
                "a2r": a2r,
                "a2r_cost_per_query": 6.0,
                "cons_at_n": cons,
                "cons_cost_per_query": 4.0,
                "pass_at_n": 50.0,
            }
        },
        "policies": {
            "vote_first": {"accuracy": vote_first, "cost_per_query": 5.0},
            "cons_top50": {"accuracy": 99.0, "cost_per_query": 0.1},  # no graph setting
            "tally": {"accuracy": 31.0, "cost_per_query": 6.1},
        },
    }


def by_key(configs):
    return {c.key: c for c in configs}


def test_each_measured_configuration_is_a_context_that_runs_it():
    """Catches: a configuration recommended with settings that run something else (the vote
    as A2R, the synthesizer's model alone on the explorer's endpoint), or a replay that is no
    graph setting offered as one."""
    context = make_context()
    configs = by_key(configurations(summary(), context))
    assert set(configs) == {
        "pass_at_1",
        "alone_pass_at_1",
        "a2r@4",
        "cons@4",
        "vote_first",
        "tally",
    }
    assert configs["cons@4"].context == {"n": 4, "synthesis_mode": "vote"}
    assert configs["a2r@4"].context == {"n": 4, "synthesis_mode": "synthesize"}
    assert configs["vote_first"].context == {"n": 4, "synthesis_mode": "vote_first"}
    assert configs["tally"].context == {
        "n": 4,
        "synthesis_mode": "synthesize",
        "references": {"tally": True},
    }
    alone = configs["alone_pass_at_1"].context["explorer"]
    assert alone["model"] == "synthesizer-model"
    assert alone["base_url"] == str(context.synthesizer.base_url)


def test_the_front_keeps_only_configurations_nothing_beats_on_both():
    configs = configurations(summary(), make_context())
    # alone Pass@1 (40 at 3.0) beats A2R, Cons@4, vote_first and tally on both counts
    assert [c.key for c in front(configs)] == ["pass_at_1", "alone_pass_at_1"]


@pytest.mark.parametrize(
    ("objective", "key"),
    [
        ("accurate", "alone_pass_at_1"),
        ("cheap", "alone_pass_at_1"),
        ("cap:2", "pass_at_1"),
        ("cap:0.5", None),
    ],
)
def test_each_objective_picks_its_configuration(objective, key):
    picked = choose(configurations(summary(), make_context()), objective)
    assert (picked.key if picked else None) == key


def test_cheap_takes_the_cheapest_within_one_point_of_the_best():
    configs = configurations(summary(alone=10.0), make_context())  # best: vote_first 33
    assert choose(configs, "accurate").key == "vote_first"
    assert choose(configs, "cheap").key == "cons@4"  # 32 at 4.0, within a point, cheaper


def test_bad_objectives_are_refused_naming_the_choices():
    for bad in ("fast", "cap:", "cap:-1", "cap:x"):
        with pytest.raises(ValueError, match="accurate, cheap"):
            parse_objective(bad)


def test_a_choice_made_on_development_data_is_reported_with_held_out_figures(tmp_path):
    """Catches: the held-out eval choosing for itself when told to take the development
    split's choice (tuning on the test), or reporting the development figures."""
    context = make_context()
    dev = recommend(summary(alone=10.0), context, "accurate")  # dev: vote_first wins
    (tmp_path / "results.json").write_text(json.dumps({"recommendation": dev}))
    held_out = summary(alone=10.0, vote_first=29.0, cons=35.0)  # held out: cons is better
    rec = recommend(held_out, context, "accurate", read_recommendation(tmp_path))
    assert rec["chosen"]["key"] == "vote_first" and rec["chosen"]["accuracy"] == 29.0
    assert rec["chosen_on"] == f"chosen on {tmp_path}"
    text = recommendation_text(rec)
    assert "A2R_SYNTHESIS_MODE=vote_first" in text and "A2R_N=4" in text
    assert '"synthesis_mode": "vote_first"' in text


def test_an_eval_without_a_recommendation_cannot_be_chosen_on(tmp_path):
    (tmp_path / "results.json").write_text("{}")
    with pytest.raises(ValueError, match="has no recommendation"):
        read_recommendation(tmp_path)
    with pytest.raises(ValueError, match="cannot read"):
        read_recommendation(tmp_path / "missing")


def test_env_lines_name_each_fields_variable():
    lines = env_lines({"n": 4, "shortcut": True, "waves": [2], "agreement": {"min_share": 0.75}})
    assert lines == [
        "A2R_N=4",
        "A2R_SHORTCUT=true",
        "A2R_WAVES=[2]",
        "A2R_AGREEMENT__MIN_SHARE=0.75",
    ]

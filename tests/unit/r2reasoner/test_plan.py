"""Plans (a2r_graph.r2reasoner.plan): what a decomposer wrote, refused with the reason when
it cannot run, and ordered in levels that run in parallel."""

from __future__ import annotations

import json

import pytest

from a2r_graph.r2reasoner.plan import Plan, PlanError, levels, parse_plan, plan_schema, ready


def plan_json(*steps: tuple[int, list[int]]) -> str:
    return json.dumps(
        {"subtasks": [{"id": i, "task": f"step {i}", "depends_on": deps} for i, deps in steps]}
    )


def test_levels_put_each_subtask_after_its_dependencies():
    """Catches: a subtask run before a result it needs, or independent ones serialized."""
    plan = parse_plan(plan_json((1, []), (2, []), (3, [1, 2]), (4, [3]), (5, [1])), 6, 4)
    assert levels(plan) == [[1, 2], [3, 5], [4]]
    assert [s.id for s in ready(plan, {1})] == [2, 5]


def test_a_fenced_reply_is_read():
    """Catches: a plan lost because the model wrapped its JSON in a code fence."""
    assert len(parse_plan(f"```json\n{plan_json((1, []))}\n```", 6, 4).subtasks) == 1


@pytest.mark.parametrize(
    ("reply", "why"),
    [
        ("Step 1: add the prices.", "not a plan"),
        ('{"subtasks": []}', "subtasks"),
        (plan_json((1, [2]), (2, [1])), "cycle"),
        (plan_json((1, [1])), "cycle"),
        (plan_json((1, []), (2, [7])), "unknown subtask(s) [7]"),
        (plan_json((1, []), (1, [])), "ids repeat"),
        (plan_json(*((i, []) for i in range(1, 8))), "more than max_subtasks=6"),
        (plan_json((1, []), (2, [1]), (3, [2]), (4, [3]), (5, [4])), "more than max_depth=4"),
    ],
)
def test_an_unusable_plan_is_refused_saying_why(reply, why):
    """Catches: a cyclic, dangling or oversized plan run (or run forever)."""
    with pytest.raises(PlanError, match=None) as refused:
        parse_plan(reply, 6, 4)
    assert why in str(refused.value)


def test_the_schema_caps_the_subtasks():
    """Catches: structured outputs that let a model write more subtasks than allowed."""
    schema = plan_schema(3)
    assert schema["properties"]["subtasks"]["maxItems"] == 3
    assert Plan.model_json_schema()["properties"]["subtasks"]["maxItems"] == 16

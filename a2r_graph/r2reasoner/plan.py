"""A decomposition: the subtasks a model wrote, checked, in the order they can run.

The decomposer answers in JSON (``Plan``'s schema, which the servers' structured outputs
constrain it to where they can); ``parse_plan`` refuses what cannot be run, saying why:
not JSON, not the schema, too many subtasks, a dependency on an unknown subtask, a cycle, or
more levels than allowed. ``levels`` orders the subtasks: each level's subtasks depend only on
earlier levels', so a level runs in parallel.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

Difficulty = Literal["easy", "hard"]


class Subtask(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: int = Field(ge=1, le=99, description="1, 2, 3 ... in order.")
    task: str = Field(min_length=1, max_length=600, description="One step, self-contained.")
    depends_on: list[int] = Field(
        default_factory=list, max_length=16, description="Ids of the steps whose results it uses."
    )
    difficulty: Difficulty = Field("easy", description="hard: needs a stronger model.")


class Plan(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    subtasks: list[Subtask] = Field(min_length=1, max_length=16)


class PlanError(ValueError):
    """A decomposition that cannot be run, and why."""


def plan_schema(max_subtasks: int) -> dict:
    """``Plan``'s JSON schema, its list capped at ``max_subtasks`` (for structured outputs)."""
    schema = Plan.model_json_schema()
    schema["properties"]["subtasks"]["maxItems"] = max_subtasks
    return schema


def parse_plan(text: str, max_subtasks: int, max_depth: int) -> Plan:
    """The plan in a decomposer's reply (its JSON, fenced or not), or ``PlanError``."""
    body = text.strip()
    if body.startswith("```"):
        body = body.strip("`").removeprefix("json").strip()
    try:
        plan = Plan.model_validate_json(body)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "the reply"
        raise PlanError(f"not a plan: {where}: {first['msg']} (reply {text[:120]!r})") from None
    if len(plan.subtasks) > max_subtasks:
        raise PlanError(f"{len(plan.subtasks)} subtasks, more than max_subtasks={max_subtasks}")
    depth = len(levels(plan))
    if depth > max_depth:
        raise PlanError(f"{depth} levels of dependencies, more than max_depth={max_depth}")
    return plan


def levels(plan: Plan) -> list[list[int]]:
    """The subtask ids by level (a subtask's level is after all its dependencies');
    ``PlanError`` on a duplicate id, an unknown dependency or a cycle."""
    ids = [subtask.id for subtask in plan.subtasks]
    if len(set(ids)) != len(ids):
        raise PlanError(f"subtask ids repeat: {ids}")
    needs = {subtask.id: set(subtask.depends_on) for subtask in plan.subtasks}
    for subtask_id, deps in needs.items():
        if unknown := deps - set(ids):
            raise PlanError(f"subtask {subtask_id} depends on unknown subtask(s) {sorted(unknown)}")
    ordered: list[list[int]] = []
    placed: set[int] = set()
    while len(placed) < len(ids):
        level = [i for i in ids if i not in placed and needs[i] <= placed]
        if not level:
            cycle = sorted(set(ids) - placed)
            raise PlanError(f"subtasks {cycle} depend on each other in a cycle")
        ordered.append(level)
        placed.update(level)
    return ordered


def ready(plan: Plan, done: set[int]) -> list[Subtask]:
    """The subtasks not done whose dependencies all are: the next level."""
    return [s for s in plan.subtasks if s.id not in done and set(s.depends_on) <= done]

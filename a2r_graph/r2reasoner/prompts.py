"""The prompts of the plan, a subtask and the summary."""

from __future__ import annotations

from collections.abc import Iterable

DECOMPOSE = """Break the problem below into a few short steps that together solve it.
Each step is one calculation, written out in full with the numbers it needs (never a step \
that only restates a given fact).
List in depends_on the earlier steps whose results a step uses. Mark a step "hard" only when \
it needs careful reasoning. The last step gives the final answer. Use at most {max_subtasks} \
steps.

Problem: {question}

Do not solve the steps. Reply with compact JSON on one line, like:
{{"subtasks": [{{"id": 1, "task": "...", "depends_on": [], "difficulty": "easy"}}, \
{{"id": 2, "task": "...", "depends_on": [1], "difficulty": "easy"}}]}}"""

SUBTASK = """You are solving one step of a larger problem.

Problem: {question}
{known}
Step: {task}

Solve only this step, briefly. Put the step's result in \\boxed{{}}."""

SUMMARY = """Problem: {question}

Steps solved so far:
{steps}

Check these results against the problem, then give the problem's final answer. End with \
the final answer alone in \\boxed{{}}, for example \\boxed{{42}}."""


def results_text(results: Iterable[tuple[int, str, str | None]]) -> str:
    """``- Step i (task): result`` lines."""
    return "\n".join(f"- Step {i} ({task}): {result or 'no result'}" for i, task, result in results)


def subtask_prompt(question: str, task: str, known: list[tuple[int, str, str | None]]) -> str:
    lines = f"\nResults of earlier steps:\n{results_text(known)}\n" if known else ""
    return SUBTASK.format(question=question, known=lines, task=task)

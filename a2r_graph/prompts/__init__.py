"""Prompt files and how they are filled in.

``explorer.txt`` and ``synthesizer.txt`` are plain text with ``{question}`` and
``{references}`` placeholders; anything else (LaTeX braces included) is literal.
Point ``A2RContext.prompts_dir`` at a directory holding edited copies to override them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache
from importlib import resources
from pathlib import Path

PLACEHOLDERS = {"explorer": ("question",), "synthesizer": ("question", "references")}
_PLACEHOLDER = re.compile(r"\{(question|references)\}")


@lru_cache(maxsize=32)
def load_prompt(name: str, prompts_dir: Path | None = None) -> str:
    """Read prompt ``name`` from ``prompts_dir`` if it has one, else the packaged file."""
    override = prompts_dir / f"{name}.txt" if prompts_dir else None
    if override is not None and override.is_file():
        source, template = str(override), override.read_text(encoding="utf-8")
    else:
        source = f"a2r_graph/prompts/{name}.txt"
        template = resources.files(__package__).joinpath(f"{name}.txt").read_text("utf-8")
    template = template.rstrip()
    missing = [p for p in PLACEHOLDERS[name] if "{" + p + "}" not in template]
    if missing:
        raise ValueError(
            f"prompt file {source} lacks the placeholder(s) "
            + ", ".join("{" + p + "}" for p in missing)
            + ": add them where the text should go"
        )
    return template


def _fill(template: str, **values: str) -> str:
    # One pass, so a question that itself contains "{references}" stays as written.
    return _PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), template)


def format_references(answers: Sequence[str]) -> str:
    """The paper's reference block: ``<reference1>A_1</reference1>...`` (answers only)."""
    return "\n".join(
        f"<reference{k}>\n{answer.strip()}\n</reference{k}>" for k, answer in enumerate(answers, 1)
    )


def render_explorer_prompt(question: str, prompts_dir: Path | None = None) -> str:
    return _fill(load_prompt("explorer", prompts_dir), question=question)


def render_synthesizer_prompt(
    question: str, answers: Sequence[str], prompts_dir: Path | None = None
) -> str:
    """The synthesizer's prompt Q' = instruction + Q + references (shared with RL curation)."""
    return _fill(
        load_prompt("synthesizer", prompts_dir),
        question=question,
        references=format_references(answers),
    )

"""Prompt files and how they are filled in.

``explorer.txt``, ``synthesizer.txt`` and ``selector.txt`` (the select mode's) are plain text
with ``{question}`` and ``{references}`` placeholders; anything else (LaTeX braces included)
is literal.
Point ``A2RContext.prompts_dir`` at a directory holding edited copies to override them, or
give one as text (``A2RContext.prompts``: a run's or an assistant's own, which wins).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache
from importlib import resources
from pathlib import Path

PLACEHOLDERS = {
    "explorer": ("question",),
    "synthesizer": ("question", "references"),
    "selector": ("question", "references"),
}
_PLACEHOLDER = re.compile(r"\{(question|references)\}")


def load_prompt(name: str, prompts_dir: Path | None = None, text: str | None = None) -> str:
    """Prompt ``name``: ``text`` if given, else from ``prompts_dir`` if it has the file, else
    the packaged file.

    ``ValueError`` saying what to fix when ``prompts_dir`` is not a directory, or its file
    cannot be read as UTF-8 text or lacks one of the prompt's placeholders. A file is read
    again once it changed (a long-lived server sees the edit; checks see the file as is)."""
    if text is not None:
        return checked_template(name, f"prompts.{name}", text)
    if prompts_dir is None:
        return _template(name, None, None)
    if not prompts_dir.is_dir():
        why = "is not a directory" if prompts_dir.exists() else "does not exist"
        raise ValueError(
            f"prompts_dir {prompts_dir} {why}: point it at a directory holding edited "
            f"copies of {', '.join(f'{n}.txt' for n in PLACEHOLDERS)}, or unset it"
        )
    override = prompts_dir / f"{name}.txt"
    try:
        stat = override.stat()
    except FileNotFoundError:
        return _template(name, None, None)
    except OSError as error:
        raise ValueError(f"prompt file {override} cannot be read: {error}") from None
    return _template(name, override, (stat.st_mtime_ns, stat.st_size, stat.st_ino))


@lru_cache(maxsize=32)
def _template(name: str, override: Path | None, version: tuple[int, ...] | None) -> str:
    if override is not None:
        try:
            source, template = str(override), override.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise ValueError(
                f"prompt file {override} cannot be read as UTF-8 text: {error}"
            ) from None
    else:
        source = f"a2r_graph/prompts/{name}.txt"
        template = resources.files(__package__).joinpath(f"{name}.txt").read_text("utf-8")
    return checked_template(name, f"prompt file {source}", template)


def checked_template(name: str, source: str, template: str) -> str:
    """``template`` (trailing space stripped) once it has prompt ``name``'s placeholders;
    else ``ValueError`` naming ``source`` and what to add."""
    template = template.rstrip()
    missing = [p for p in PLACEHOLDERS[name] if "{" + p + "}" not in template]
    if missing:
        raise ValueError(
            f"{source} lacks the placeholder(s) "
            + ", ".join("{" + p + "}" for p in missing)
            + ": add them where the text should go"
        )
    return template


def packaged_prompt(filename: str) -> str:
    """The text of a packaged prompt file (``a2r_graph/prompts/FILENAME.txt``), e.g. the
    ``synthesizer_solve_first`` variant, to set as ``A2RContext.prompts.synthesizer``."""
    return resources.files(__package__).joinpath(f"{filename}.txt").read_text("utf-8").rstrip()


def check_prompts_dir(prompts_dir: Path) -> Path:
    """``prompts_dir``, once every prompt loads from it (its own files, the packaged ones for
    the rest) with its placeholders; else the ``ValueError`` of ``load_prompt``."""
    for name in PLACEHOLDERS:
        load_prompt(name, prompts_dir)
    return prompts_dir


def _fill(template: str, **values: str) -> str:
    # One pass, so a question that itself contains "{references}" stays as written.
    return _PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), template)


def format_references(answers: Sequence[str]) -> str:
    """The paper's reference block: ``<reference1>A_1</reference1>...`` (answers only)."""
    return "\n".join(
        f"<reference{k}>\n{answer.strip()}\n</reference{k}>" for k, answer in enumerate(answers, 1)
    )


def render_explorer_prompt(
    question: str, prompts_dir: Path | None = None, text: str | None = None
) -> str:
    return _fill(load_prompt("explorer", prompts_dir, text), question=question)


def render_synthesizer_prompt(
    question: str,
    answers: Sequence[str],
    prompts_dir: Path | None = None,
    *,
    template: str = "synthesizer",
    note: str = "",
    text: str | None = None,
) -> str:
    """The synthesizer's prompt Q' = instruction + Q + references (shared with RL curation);
    ``template`` "selector" for the select mode, ``note`` a line after the references,
    ``text`` the template's text (else read as ``load_prompt`` does)."""
    references = format_references(answers) + (f"\n\n{note}" if note else "")
    template_text = load_prompt(template, prompts_dir, text)
    return _fill(template_text, question=question, references=references)

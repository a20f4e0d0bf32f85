"""``results.jsonl``, the eval's saved samples: the schema of its lines, and their one reader.

Each finished (problem, repetition) is one ``ResultLine``: its explorer paths, each N's
synthesis, the replayed policies and variants, the synthesizer alone; or, in an eval of
another registered strategy (``a2r eval --graph NAME``), its one run (``StrategyCell``).
A problem that failed is a line marked ``failed`` with its ``error`` (and no samples); a rerun
retries it. The report, ``--paths-from``, ``--keep-syntheses`` and RL curation all read lines
through ``read_results``, which refuses a line that is not one of these, naming the file and
line.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from a2r_graph.confidence import PathConfidence
from a2r_graph.stages import GRAPH
from a2r_graph.state import sum_usage

RESULTS_FILE = "results.jsonl"
SUMMARY_FILE = "results.json"


class Record(BaseModel):
    """A part of a results line: exactly these fields, of exactly these JSON types."""

    model_config = ConfigDict(extra="forbid", strict=True)


class Usage(Record):
    input_tokens: int
    output_tokens: int
    cost: float

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    @classmethod
    def total(cls, usages: Iterable[Usage | Mapping[str, Any]]) -> Usage:
        """The sum of some calls' usage (the graph's ``TokenUsage`` or saved ``Usage``)."""
        return cls(**sum_usage(dict(u) for u in usages))


class SavedPath(Record):
    """One explorer sample: its answer component, boxed answer, usage and correctness."""

    index: int
    boxed: str | None
    answer: str
    error: str | None
    usage: Usage
    confidence: PathConfidence | None = None
    correct: bool


class AloneSample(Record):
    """One sample of the synthesizer's model answering alone (``--alone``)."""

    index: int
    boxed: str | None
    usage: Usage
    correct: bool


class Synthesis(Record):
    """One N's cell: A2R's synthesis over the first N paths, and the vote of the same paths."""

    a2r_boxed: str | None
    a2r_finish_reason: str | None = None
    a2r_correct: bool
    cons_answer: str | None
    cons_correct: bool
    pass_at_n: bool
    explore_usage: Usage
    synthesize_usage: Usage
    alone_cons_correct: bool | None = None
    """With ``--alone`` K >= N: the vote of the synthesizer's first N samples alone."""
    alone_usage: Usage | None = None


class PolicyCell(Record):
    """A replayed policy's or variant's answer on this problem (``eval.policies``)."""

    boxed: str | None
    usage: Usage
    correct: bool
    shortcut: bool = False
    """Answered without the synthesizer."""
    references: list[int] | None = None
    """``top_references``: the paths it synthesized over."""


class StageCalls(Usage):
    """One stage of a strategy's run: its calls and their usage (the graph's ``StageUsage``)."""

    calls: int


class StrategyCell(Record):
    """One run of another registered strategy (``a2r eval --graph NAME``) on this problem."""

    boxed: str | None
    correct: bool
    usage: dict[str, StageCalls]
    """Per stage of the run, and ``total``."""
    metrics: dict[str, float] = {}
    """The run's own numbers: its output's other numeric fields (a nested one's parts are
    named ``outer.inner``)."""

    @property
    def total(self) -> Usage:
        """The run's usage: its ``total`` stage (or, without one, the sum of its stages)."""
        if "total" in self.usage:
            return self.usage["total"]
        return Usage.total(stage.model_dump(exclude={"calls"}) for stage in self.usage.values())


class ResultLine(Record):
    key: str
    id: str
    repetition: int
    problem: str
    gold: str
    group: str = ""
    k: int
    thread_id: str
    failed: bool = False
    error: str | None = None
    paths: list[SavedPath]
    alone: list[AloneSample] = []
    by_n: dict[str, Synthesis]
    """Keyed by N as a string (JSON's object keys)."""
    policies: dict[str, PolicyCell] = {}
    verify_timeouts: int = 0
    """Answer checks that overran math-verify's time limit (counted not equivalent)."""
    wall_s: float | None = None
    graph: str = GRAPH
    """The registered strategy evaluated (``a2r eval --graph``)."""
    strategy: StrategyCell | None = None
    """Another strategy's run, when ``graph`` is not A2R (``paths`` and ``by_n`` are empty);
    None on a failed line."""

    @property
    def finished(self) -> bool:
        """Not a failed attempt (older versions left ``failed`` out: an ``error`` says so)."""
        return not self.failed and self.error is None

    def to_json(self) -> str:
        return self.model_dump_json(exclude_defaults=True)


class ResultsError(ValueError):
    """A line of a results file is not a line ``a2r eval`` writes; the message says where."""


def result_key(problem_id: str, repetition: int) -> str:
    return f"{problem_id}#{repetition}"


def read_results(results_path: Path, *, failed: bool = False) -> list[ResultLine]:
    """The finished lines of ``results.jsonl`` (none if it is missing); with ``failed=True``
    the lines of failed attempts too. An unended last line is what a crash mid-write leaves: it
    is skipped (the next eval removes it); any other line that is not a ``ResultLine`` is
    refused with ``ResultsError``."""
    if not results_path.is_file():
        return []
    text = results_path.read_text(encoding="utf-8")
    lines = text.split("\n")
    rows = []
    for number, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        try:
            row = ResultLine.model_validate_json(raw)
        except ValidationError as error:
            if number == len(lines) and _torn(raw):
                continue
            raise ResultsError(_refusal(results_path, number, raw, error)) from None
        if failed or row.finished:
            rows.append(row)
    return rows


def _torn(raw: str) -> bool:
    try:
        json.loads(raw)
    except ValueError:
        return True
    return False


def _refusal(path: Path, number: int, raw: str, error: ValidationError) -> str:
    where = f"{path}, line {number}"
    if _torn(raw):
        return (
            f"{where} is not JSON (cut off by a crash?): delete that line; a2r eval then "
            "runs its problem again"
        )
    problems = [
        f"{'.'.join(map(str, problem['loc'])) or 'the line'}: {problem['msg']}"
        for problem in error.errors()
    ]
    if len(problems) > _SHOWN:
        problems[_SHOWN:] = [f"{len(problems) - _SHOWN} more"]
    return (
        f"{where} is not a line of a2r eval's results ({'; '.join(problems)}): name the "
        "results.jsonl of an a2r eval of this version, or delete that line to run its "
        "problem again"
    )


_SHOWN = 3
"""Problems named per refused line (a foreign file's line may have dozens)."""


def finished_keys(results_path: Path) -> set[str]:
    """Keys of the problems finished in ``results.jsonl`` (failed ones are not: rerun them)."""
    return {row.key for row in read_results(results_path)}


def drop_torn_line(results_path: Path) -> None:
    """A crash mid-write leaves a partial last line: cut it, so the next line starts clean."""
    if results_path.is_file() and results_path.stat().st_size:
        with results_path.open("rb+") as results:
            data = results.read()
            results.truncate(data.rfind(b"\n") + 1)


def append_result(results_path: Path, line: ResultLine) -> None:
    with results_path.open("a", encoding="utf-8") as results:
        results.write(line.to_json() + "\n")

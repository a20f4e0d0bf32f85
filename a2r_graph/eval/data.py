"""Evaluation problems: (id, problem, gold answer) from files, built-in generators or the Hub.

Sources:

- ``path.jsonl`` / ``path.csv`` / ``path.parquet``, fields named by ``Fields`` (defaults
  ``id``, ``problem``, ``answer``; a missing id field numbers the rows);
- ``builtin:NAME`` with a size and seed: a seeded reasoning-gym generator (``gsm_symbolic``,
  ``basic_arithmetic``, ``chain_sum``...), offline, the same problems for the same seed;
  ``builtin:NAME,NAME2`` mixes generators: ``size`` problems of each, taken in turn (so a run
  cut short has as many of each), each problem's ``group`` naming its generator;
- ``hf:DATASET[:SPLIT]``: a Hugging Face dataset (needs ``pip install datasets`` and a network),
  e.g. the paper's ``hf:HuggingFaceH4/aime_2024:train`` (fields ``id``/``problem``/``answer``),
  ``hf:opencompass/AIME2025`` or ``hf:ByteDance-Seed/BeyondAIME``; their field names vary: set
  them with ``--problem-field`` and ``--answer-field``.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Problem:
    id: str
    problem: str
    answer: str
    group: str = ""
    """The generator a built-in problem comes from (the report gives each group its rows)."""


@dataclass(frozen=True)
class Fields:
    id: str = "id"
    problem: str = "problem"
    answer: str = "answer"


class DataError(ValueError):
    """The data source cannot be read as problems; the message says what to change."""


def load_problems(
    source: str, fields: Fields = Fields(), *, size: int | None = None, seed: int = 0
) -> list[Problem]:
    """The problems of ``source`` (first ``size`` of them, if given)."""
    if source.startswith("builtin:"):
        rows = _builtin(source.removeprefix("builtin:"), size or 10, seed)
        fields = Fields(id="id", problem="question", answer="answer")
        size = None  # per generator, already applied
    elif source.startswith("hf:"):
        rows = _hub(source.removeprefix("hf:"))
    else:
        rows = _file(Path(source))
    problems = [_problem(row, i, fields, source) for i, row in enumerate(rows)]
    if size is not None:
        problems = problems[:size]
    if not problems:
        raise DataError(f"{source} holds no problems")
    ids = [p.id for p in problems]
    if len(set(ids)) != len(ids):
        raise DataError(f"{source}: ids repeat; give each row a unique {fields.id!r}")
    return problems


def _problem(row: dict[str, Any], index: int, fields: Fields, source: str) -> Problem:
    missing = [name for name in (fields.problem, fields.answer) if row.get(name) in (None, "")]
    if missing:
        raise DataError(
            f"{source}, row {index}: no {' or '.join(map(repr, missing))} field "
            f"(it has {sorted(row)}): name the fields with --problem-field / --answer-field"
        )
    return Problem(
        id=str(row.get(fields.id, index)),
        problem=str(row[fields.problem]),
        answer=str(row[fields.answer]).strip(),
        group=str(row.get("group", "")),
    )


def _file(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise DataError(
            f"no such data file: {path} (use a .jsonl, .csv or .parquet file, builtin:NAME "
            "or hf:DATASET)"
        )
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        with path.open(encoding="utf-8") as lines:
            return [json.loads(line) for line in lines if line.strip()]
    if suffix == ".csv":
        with path.open(encoding="utf-8", newline="") as table:
            return list(csv.DictReader(table))
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    raise DataError(f"{path}: unknown format {suffix!r}; use .jsonl, .csv or .parquet")


def _builtin(names: str, size: int, seed: int) -> list[dict[str, Any]]:
    import reasoning_gym

    generated = []
    for name in names.split(","):
        try:
            dataset = reasoning_gym.create_dataset(name, size=size, seed=seed)
        except (KeyError, ValueError) as error:
            raise DataError(
                f"builtin:{name}: not a reasoning-gym generator ({error}); name one or more, "
                "comma-separated, e.g. builtin:gsm_symbolic,number_sequence"
            ) from error
        generated.append(
            [
                {
                    "id": f"{name}-{seed}-{i}",
                    "question": row["question"],
                    "answer": row["answer"],
                    "group": name,
                }
                for i, row in enumerate(dataset)
            ]
        )
    return [row for turn in zip(*generated, strict=True) for row in turn]


def _hub(name: str) -> list[dict[str, Any]]:
    try:
        import datasets
    except ImportError as error:
        raise DataError(
            f"hf:{name} needs the datasets package and a network: pip install datasets"
        ) from error
    dataset_name, _, split = name.partition(":")
    return list(datasets.load_dataset(dataset_name, split=split or "train"))

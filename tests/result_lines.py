"""Valid ``results.jsonl`` lines for tests, every field defaulted but those a test sets."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from a2r_graph.eval.results import ResultLine, SavedPath, Synthesis

NO_USAGE = {"input_tokens": 0, "output_tokens": 0, "cost": 0.0}


def saved_path(**fields: Any) -> SavedPath:
    defaults = {"index": 0, "boxed": None, "answer": "", "error": None, "correct": False}
    return SavedPath(**{"usage": NO_USAGE, **defaults, **fields})


def synthesis(**fields: Any) -> Synthesis:
    defaults = {"a2r_boxed": None, "a2r_correct": False, "cons_answer": None}
    defaults |= {"cons_correct": False, "pass_at_n": False}
    return Synthesis(
        **{"explore_usage": NO_USAGE, "synthesize_usage": NO_USAGE, **defaults, **fields}
    )


def result_line(qid: str = "a", repetition: int = 0, **fields: Any) -> ResultLine:
    defaults = {"problem": f"problem {qid}", "gold": "7", "k": 4, "paths": [], "by_n": {}}
    return ResultLine(
        key=f"{qid}#{repetition}",
        id=qid,
        repetition=repetition,
        thread_id=f"eval/{qid}/{repetition}",
        **{**defaults, **fields},
    )


def as_json(record: BaseModel) -> dict[str, Any]:
    """``record`` as the JSON object a results file holds."""
    return record.model_dump(mode="json", exclude_defaults=True)

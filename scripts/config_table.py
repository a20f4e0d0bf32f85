"""The README's configuration table, generated from ``A2RContext``'s fields (their types,
defaults, bounds and descriptions), so that it cannot drift from the code.

    python -m scripts.config_table          # rewrite the table in README.md
    python -m scripts.config_table --check  # exit 1 if README.md's table is stale (make lint)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from a2r_graph.context import A2RContext, StageConfig
from a2r_graph.fields import ENV_DELIMITER, bounds, env_variable, nested_model
from a2r_graph.stages import ENDPOINTS

README = Path(__file__).resolve().parents[1] / "README.md"
START, END = "<!-- config-table: start -->", "<!-- config-table: end -->"


def _default(info: FieldInfo) -> str:
    if info.default is PydanticUndefined and info.default_factory is None:
        return "required"
    value: Any = info.get_default(call_default_factory=True)
    if isinstance(value, BaseModel):
        return ", ".join(f"{k}={v!r}" for k, v in value.model_dump().items()) or "–"
    return "none" if value is None else f"`{value}`"


def _bounds(info: FieldInfo) -> str:
    found = bounds(info)
    return f" ({', '.join(found)})" if found else ""


def _row(field: str, env: str, info: FieldInfo) -> str:
    meaning = (" ".join((info.description or "").split()) + _bounds(info)).replace("|", r"\|")
    return f"| `{field}` | `{env}` | {_default(info)} | {meaning} |"


def rows() -> list[str]:
    lines = ["| field | env | default | meaning |", "|---|---|---|---|"]
    for name, info in A2RContext.model_fields.items():
        if name in ENDPOINTS:
            continue
        nested = nested_model(info)
        env = env_variable(name)
        if nested is not None:
            env += ENV_DELIMITER + f", {ENV_DELIMITER}".join(
                sub.upper() for sub in nested.model_fields
            )
        lines.append(_row(name, env, info))
    for name, info in StageConfig.model_fields.items():
        stages = "/".join(ENDPOINTS)
        lines.append(_row(f"{stages}.{name}", env_variable(f"*.{name}"), info))
    return lines


def table() -> str:
    return "\n".join([START, *rows(), END])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if README.md is stale")
    args = parser.parse_args(argv)
    text = README.read_text()
    if START not in text or END not in text:
        print(f"{README}: no {START} ... {END} block to fill", file=sys.stderr)
        return 2
    head, rest = text.split(START, 1)
    current, tail = rest.split(END, 1)
    wanted = head + table() + tail
    if args.check:
        if wanted != text:
            print(
                "README.md's configuration table is stale: run `make config-table`",
                file=sys.stderr,
            )
            return 1
        return 0
    README.write_text(wanted)
    return 0


if __name__ == "__main__":
    sys.exit(main())

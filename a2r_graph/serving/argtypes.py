"""argparse helpers: ``type=`` converters that refuse out-of-range values, for the options
that are no ``A2RContext`` field (those are checked by their field: ``flags.py``), and a
subcommand described by its handler's docstring."""

from __future__ import annotations

import argparse
import inspect
from collections.abc import Callable
from typing import Any


def subcommand(commands: Any, name: str, main: Callable[..., Any], **options: Any) -> Any:
    """The subcommand ``name`` of ``main``: its help is the first paragraph of ``main``'s
    docstring, its description the rest (so both are written once, beside the code)."""
    summary, _, rest = inspect.cleandoc(main.__doc__ or "").partition("\n\n")
    description = " ".join(rest.split()) or None
    return commands.add_parser(
        name, help=" ".join(summary.split()), description=description, **options
    )


def _checked(name: str, convert: type, valid: Any, rule: str) -> Any:
    """An argparse ``type=``: ``convert``, then refuse what ``valid`` rejects, so argparse
    prints "argument --x: must be RULE, got VALUE" and exits 2."""

    def parse(text: str) -> Any:
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {rule}, got {text!r}") from None
        if not valid(value):
            raise argparse.ArgumentTypeError(f"must be {rule}, got {text}")
        return value

    parse.__name__ = name
    return parse


INF = float("inf")
positive_int = _checked("positive_int", int, lambda v: v > 0, "a positive integer")
positive_float = _checked(
    "positive_float", float, lambda v: 0 < v < INF, "a positive finite number"
)  # a nan fails every comparison

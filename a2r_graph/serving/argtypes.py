"""argparse ``type=`` converters that refuse out-of-range values, for the options that are
no ``A2RContext`` field (those are checked by their field: ``flags.py``)."""

from __future__ import annotations

import argparse
from typing import Any


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

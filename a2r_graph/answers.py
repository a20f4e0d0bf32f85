"""Splitting a completion into reasoning trace and answer component; boxed answers."""

from __future__ import annotations

import re
from fractions import Fraction

THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"
_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")
_BOXED_SPACE = re.compile(r"\\boxed +([^\s$]+)")


def split_reasoning(content: str, reasoning: str | None = None) -> tuple[str, str]:
    """Return ``(trace, answer)`` for one completion.

    ``reasoning`` is the server's separate reasoning field (vLLM's ``--reasoning-parser``);
    without it an inline ``<think>...</think>`` block is the trace. A ``<think>`` that is
    never closed (the completion ran out of tokens while thinking) leaves no answer.
    A completion with no thinking at all is all answer.
    """
    if THINK_CLOSE in content:
        inline_trace, _, answer = content.rpartition(THINK_CLOSE)
        inline_trace = inline_trace.replace(THINK_OPEN, "", 1).strip()
    elif content.lstrip().startswith(THINK_OPEN):
        inline_trace, answer = content.lstrip()[len(THINK_OPEN) :].strip(), ""
    else:
        inline_trace, answer = "", content
    trace = "\n".join(part for part in ((reasoning or "").strip(), inline_trace) if part)
    return trace, answer.strip()


def last_boxed(text: str) -> str | None:
    r"""The content of the last complete ``\boxed{...}`` (or ``\fbox{...}``) in ``text``.

    Braces nest (``\boxed{\frac{1}{2}}`` gives ``\frac{1}{2}``); an unclosed box is ignored,
    as is ``\boxed 5`` unless no braced box exists. None when there is no box.
    """
    for match in reversed(list(_BOXED.finditer(text))):
        depth, start = 1, match.end()
        for pos in range(start, len(text)):
            char = text[pos]
            if char == "{" and text[pos - 1] != "\\":
                depth += 1
            elif char == "}" and text[pos - 1] != "\\":
                depth -= 1
                if depth == 0:
                    return text[start:pos].strip()
    spaced = _BOXED_SPACE.findall(text)
    return spaced[-1] if spaced else None


_LATEX_NOISE = re.compile(r"\\[,;:! $%]|\\left|\\right|\\displaystyle|\$|%|\s")
_TEXT = re.compile(r"\\(?:text|mathrm|textbf|mbox)\s*\{([^{}]*)\}")
_FRAC = re.compile(r"^-?\\[dt]?frac\{(-?\d+)\}\{(-?\d+)\}$")
_NUMBER = re.compile(r"^[-+]?(\d+(,\d{3})*|\d*)(\.\d+)?$")


def canonical_answer(boxed: str | None) -> str | None:
    r"""A boxed answer in one spelling, so equal answers compare equal without a math
    verifier (the graph's agreement test; the eval judges with math-verify):
    ``\text{}`` and spacing dropped, numbers as exact fractions (``1,000``, ``1000.0``,
    ``\frac{2}{4}`` and ``1/2``-style ``a/b`` all normalize). None for no answer."""
    if boxed is None:
        return None
    text = _LATEX_NOISE.sub("", _TEXT.sub(r"\1", boxed)).rstrip(".")
    if not text:
        return None
    try:
        if match := _FRAC.match(text):
            sign = -1 if text.startswith("-") else 1
            value = sign * Fraction(int(match[1]), int(match[2]))
        elif _NUMBER.match(text):
            value = Fraction(text.replace(",", ""))
        elif re.fullmatch(r"-?\d+/-?\d+", text):
            value = Fraction(text)
        else:
            return text
    except (ValueError, ZeroDivisionError):
        return text
    return str(value)

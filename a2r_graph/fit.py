"""The overflow policy: make the synthesizer's prompt fit its context window.

The prompt must leave ``synthesizer.max_tokens`` free in the window: vLLM answers 400 to a
prompt longer than the window, and caps ``max_tokens`` to what a long prompt leaves (a
synthesis cut short). When it would not, ``A2RContext.overflow`` decides:

- ``truncate`` (default): cut the longest references from the front, all to one common length
  (water-filling), so each keeps its end, where its final ``\\boxed{}`` answer is; when even
  ``MIN_REFERENCE_CHARS`` each is too much, also leave out the longest;
- ``drop``: leave out the longest references until the rest fit (one is always kept);
- ``error``: raise ``ContextOverflowError`` before any synthesizer call.

Sizes are the server's own token counts (vLLM's ``/tokenize``). A prompt that fits even at one
token per byte (byte-level BPE never yields more) is sent without counting.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Sequence

from a2r_graph.context import A2RContext
from a2r_graph.errors import ContextOverflowError
from a2r_graph.policies import tally_note
from a2r_graph.prompts import render_synthesizer_prompt
from a2r_graph.state import ReferenceFit

TEMPLATE_MARGIN = 256
"""Tokens a chat template may add around the prompt (role markers, a default system line)."""
TRUNCATION_MARK = "[...] "
MIN_REFERENCE_CHARS = 160
"""A truncated reference keeps at least this many characters of its end."""
MAX_ROUNDS = 6

Reference = tuple[int, str]
"""(path index, answer component)."""
TokenCount = Callable[[str], Awaitable[int | None]]


async def fit_references(
    question: str,
    references: Sequence[Reference],
    context: A2RContext,
    window: int | None,
    count: TokenCount,
) -> tuple[str, ReferenceFit]:
    """The synthesizer prompt over ``references``, made to fit ``window`` by the policy."""

    template = "selector" if context.synthesis_mode == "select" else "synthesizer"

    def render(refs: Sequence[Reference]) -> str:
        answers = [a for _, a in refs]
        note = tally_note(answers) if context.references.tally else ""
        return render_synthesizer_prompt(
            question,
            answers,
            context.prompts_dir,
            template=template,
            note=note,
            text=getattr(context.prompts, template),
        )

    prompt = render(references)
    fit = ReferenceFit(
        context_window=window, prompt_tokens=None, policy=context.overflow, truncated=[], dropped=[]
    )
    if window is None:
        return prompt, fit
    max_tokens = context.synthesizer.max_tokens
    budget = window - max_tokens
    if budget <= TEMPLATE_MARGIN:
        raise ContextOverflowError(
            f"synthesizer.max_tokens ({max_tokens}) leaves no room for a prompt in the "
            f"synthesizer's {window}-token context window: lower synthesizer.max_tokens"
        )
    if len(prompt.encode()) + TEMPLATE_MARGIN <= budget:
        return prompt, fit

    async def size(text: str) -> int:
        # Without a tokenizer route, one token per byte is an upper bound.
        return await count(text) or len(text.encode()) + TEMPLATE_MARGIN

    tokens = await size(prompt)
    refs, removal = list(references), 0
    for _ in range(MAX_ROUNDS):
        if tokens <= budget:
            kept = dict(refs)
            fit["prompt_tokens"] = tokens
            fit["truncated"] = [i for i, a in references if i in kept and kept[i] != a]
            fit["dropped"] = [i for i, _ in references if i not in kept]
            return prompt, fit
        if context.overflow == "error":
            break
        # Characters to take off, from the measured tokens per character, 5% to spare.
        removal += math.ceil((tokens - budget) * len(prompt) / tokens * 1.05) + 16
        cut = truncate_then_drop if context.overflow == "truncate" else drop_longest
        shorter = cut(references, removal)
        if shorter == refs:
            break
        refs = shorter
        prompt = render(refs)
        tokens = await size(prompt)
    raise ContextOverflowError(
        f"the synthesizer prompt needs {tokens} tokens but only {budget} of the {window}-token "
        f"context window are left after max_tokens={max_tokens} (overflow policy "
        f"{context.overflow!r}): lower n or the explorers' max_tokens, lower "
        "synthesizer.max_tokens, serve the synthesizer with a larger --max-model-len"
        + (", or set overflow to 'truncate' or 'drop'" if context.overflow == "error" else "")
    )


def truncate_longest(references: Sequence[Reference], removal: int) -> list[Reference]:
    """Cut the references longer than a common cap to their last ``cap`` characters, the cap
    as high as takes ``removal`` characters off in all (never below ``MIN_REFERENCE_CHARS``)."""
    lengths = sorted((len(a) for _, a in references), reverse=True)
    cap = MIN_REFERENCE_CHARS
    for k in range(1, len(lengths) + 1):
        # Cut the k longest to one cap: they lose sum(top k) - k * (cap + mark) characters.
        best = (sum(lengths[:k]) - k * len(TRUNCATION_MARK) - removal) // k
        next_length = lengths[k] if k < len(lengths) else 0
        if best >= next_length:
            cap = max(best, MIN_REFERENCE_CHARS)
            break
    cut = cap + len(TRUNCATION_MARK)
    return [(i, TRUNCATION_MARK + a[-cap:] if len(a) > cut else a) for i, a in references]


def truncate_then_drop(references: Sequence[Reference], removal: int) -> list[Reference]:
    """``truncate_longest``; what the floor keeps it from removing, ``drop_longest`` removes."""
    truncated = truncate_longest(references, removal)
    removed = sum(len(a) for _, a in references) - sum(len(a) for _, a in truncated)
    return truncated if removed >= removal else drop_longest(truncated, removal - removed)


def drop_longest(references: Sequence[Reference], removal: int) -> list[Reference]:
    """Leave out the longest references until ``removal`` characters are gone (keep one)."""
    dropped: set[int] = set()
    removed = 0
    for i, answer in sorted(references, key=lambda ref: (-len(ref[1]), ref[0]))[:-1]:
        if removed >= removal:
            break
        dropped.add(i)
        removed += len(answer)
    return [(i, a) for i, a in references if i not in dropped]

"""Before the first token: which engine serves each model, a tokenizer both share, and the
question's chat prompt as token ids (rendered once, by the SLM's server)."""

from __future__ import annotations

from a2r_graph.errors import ConfigurationError
from a2r_graph.prompts import render_explorer_prompt
from a2r_graph.r2r.client import TokenServer
from a2r_graph.r2r.context import R2RContext
from a2r_graph.r2r.loop import with_retries

PROBE = (
    "Tokenizer probe: 3.14159 x 2 = 6.28318; naïve café, 東京, Ω≈ 🙂\n\tdef f(x):\n"
    "        return x**2  # \\boxed{\\frac{1}{2}} <|im_start|><|im_end|><|endoftext|>"
)
"""Text whose token ids both servers must agree on: digits, accents, CJK, an emoji,
whitespace runs, LaTeX and the chat-format special tokens."""


async def check_shared_tokenizer(slm: TokenServer, llm: TokenServer, context: R2RContext) -> None:
    """Refuse (``ConfigurationError``, naming both models) when the two servers' tokenizers
    differ: their vocabulary sizes (where reported) or the ids of ``PROBE``. The LLM
    continues the SLM's token ids, so they must mean the same text to both."""
    slm_info = await with_retries(context, "slm", slm.stage, slm.describe)
    llm_info = await with_retries(context, "llm", llm.stage, llm.describe)
    problem = None
    if None not in (slm_info.vocab_size, llm_info.vocab_size) and (
        slm_info.vocab_size != llm_info.vocab_size
    ):
        problem = f"vocabularies of {slm_info.vocab_size} and {llm_info.vocab_size} tokens"
    else:
        slm_ids = await with_retries(context, "slm", slm.stage, lambda: slm.tokenize(PROBE))
        llm_ids = await with_retries(context, "llm", llm.stage, lambda: llm.tokenize(PROBE))
        if slm_ids != llm_ids:
            at = next(
                (i for i, (a, b) in enumerate(zip(slm_ids, llm_ids, strict=False)) if a != b),
                min(len(slm_ids), len(llm_ids)),
            )
            problem = (
                f"a probe text tokenized as {len(slm_ids)} and {len(llm_ids)} tokens, first "
                f"different at token {at} ({slm_ids[at : at + 3]} vs {llm_ids[at : at + 3]})"
            )
    if problem:
        raise ConfigurationError(
            f"R2R needs the SLM and the LLM to share a tokenizer, but the SLM "
            f"{slm.stage.model!r} ({slm.stage.display_url}) and the LLM {llm.stage.model!r} "
            f"({llm.stage.display_url}) differ: {problem}. Pair models of one family (e.g. "
            "Qwen2.5 0.5B with 1.5B): set A2R_EXPLORER__* and A2R_SYNTHESIZER__* to such models"
        )


async def prompt_ids(
    slm: TokenServer, context: R2RContext, question: str, prompt: str | None = None
) -> list[int]:
    """The user message ``prompt`` (default: the question in the package's explorer prompt),
    as the SLM's chat template renders it."""
    content = prompt if prompt is not None else render_explorer_prompt(question, None, None)
    messages = [{"role": "user", "content": content}]
    return await with_retries(context, "slm", slm.stage, lambda: slm.render(messages))

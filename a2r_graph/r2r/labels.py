"""Labels for a trained router, from the run's own two models (R2R's "path-following" rule,
arXiv 2505.21600 Algorithm 1, sized to a CPU).

For each question:

1. the SLM writes its greedy answer (temperature 0) from the question's chat prompt, with the
   top-k logprobs of every token: exactly what a router sees at run time;
2. the LLM scores that whole sequence: its top-1 at every position given the SLM's prefix
   (vLLM: one prefill with ``prompt_logprobs``; llama.cpp: a 1-token call per position over
   its cached prompt, see ``TokenServer.top1_after``);
3. a position is **identical** where the LLM's top-1 is the SLM's token, else a **candidate**;
4. up to ``judge_per_question`` candidates, drawn at random, are **judged**: the SLM continues
   greedily from its prefix plus the LLM's token; the candidate is **divergent** when the final
   answer (last ``\\boxed{}``, in ``canonical_answer``'s form) differs from the SLM's own
   answer, else **neutral**. R2R continues both branches (with the LLM, a judge model comparing
   them); here the SLM continues, as it would in a routed run after the LLM's token, and the
   SLM's own branch is its greedy answer already written: one continuation per judged
   candidate.

The unjudged candidates are labelled by ``unjudged``:

- ``drop`` (default): left out of training and evaluation. The labels are then an unbiased
  sample of divergent-vs-the-rest (the judged candidates are drawn at random), so the router
  learns R2R's target; fewer judged candidates only means fewer positives.
- ``divergent``: every unjudged candidate counts as divergent ("candidate" labels): the router
  learns where the LLM *disagrees*, divergent or not, so it flags more tokens (R2R's data: 6%
  neutral beside 5% divergent) and its precision on truly divergent tokens is lower; its recall
  target is met on disagreements, which include the divergent ones.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Literal

from a2r_graph.answers import canonical_answer, last_boxed
from a2r_graph.r2r.client import TokenServer
from a2r_graph.r2r.context import R2RContext
from a2r_graph.r2r.loop import with_retries
from a2r_graph.r2r.prepare import prompt_ids
from a2r_graph.r2r.routers import TokenChoice

Unjudged = Literal["drop", "divergent"]
IDENTICAL, NEUTRAL, DIVERGENT = "identical", "neutral", "divergent"
UNJUDGED = "unjudged"


@dataclass(frozen=True)
class LabelSettings:
    max_tokens: int = 256
    """The SLM's output tokens per question (and per continuation, counted from position 0)."""
    judge_per_question: int = 2
    """Candidates judged per question (one SLM continuation each); 0 judges none."""
    unjudged: Unjudged = "drop"
    seed: int = 0


@dataclass
class QuestionLabels:
    """One question's positions: what the router saw, and each position's label."""

    question_id: str
    tokens: list[TokenChoice]
    llm_top1: list[int]
    kinds: list[str]
    """Per position: identical, neutral, divergent or unjudged (a candidate not judged)."""
    answer: str | None
    """The SLM's own final answer (canonical form)."""
    continuations: int = 0
    llm_calls: int = 0

    @property
    def candidates(self) -> list[int]:
        return [i for i, kind in enumerate(self.kinds) if kind != IDENTICAL]

    def examples(self, unjudged: Unjudged) -> list[tuple[TokenChoice, int]]:
        """(token, 1 if the router should flag it) for training, under the unjudged rule."""
        out = []
        for token, kind in zip(self.tokens, self.kinds, strict=True):
            if kind == UNJUDGED and unjudged == "drop":
                continue
            out.append((token, int(kind in (DIVERGENT, UNJUDGED))))
        return out


@dataclass
class LabelCounts:
    positions: int = 0
    by_kind: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys((IDENTICAL, NEUTRAL, DIVERGENT, UNJUDGED), 0)
    )

    def add(self, labels: QuestionLabels) -> None:
        self.positions += len(labels.kinds)
        for kind in labels.kinds:
            self.by_kind[kind] += 1


def final_answer(text: str) -> str | None:
    """The answer a text ends on: its last ``\\boxed{}`` in canonical form."""
    return canonical_answer(last_boxed(text))


async def label_question(
    question_id: str,
    question: str,
    slm: TokenServer,
    llm: TokenServer,
    context: R2RContext,
    settings: LabelSettings,
    progress: Callable[[str], None] = lambda _: None,
) -> QuestionLabels:
    """One question's labels (servers already described: their ``engine`` is known)."""
    top_k = context.r2r.top_k
    prompt = await prompt_ids(slm, context, question)
    reply = await with_retries(
        context, "slm", slm.stage, lambda: slm.complete(prompt, settings.max_tokens, top_k)
    )
    tokens = [replace(t.choice, position=i) for i, t in enumerate(reply.tokens)]
    output = [t.id for t in tokens]
    answer = final_answer(await slm.detokenize(output))
    llm_top1 = await with_retries(context, "llm", llm.stage, lambda: llm.top1_after(prompt, output))
    kinds = [IDENTICAL if a == b else UNJUDGED for a, b in zip(output, llm_top1, strict=True)]
    labels = QuestionLabels(question_id, tokens, llm_top1, kinds, answer)
    labels.llm_calls = 1 if llm.engine != "llamacpp" else len(output)
    candidates = labels.candidates
    rng = random.Random(f"{settings.seed}:{question_id}")
    judged = rng.sample(candidates, min(settings.judge_per_question, len(candidates)))
    for position in sorted(judged):
        branch = [*output[:position], llm_top1[position]]
        room = settings.max_tokens - len(branch)
        rest: list[int] = []
        if room > 0:
            continued = await with_retries(
                context,
                "slm",
                slm.stage,
                partial(slm.complete, [*prompt, *branch], room),
            )
            rest = [t.choice.id for t in continued.tokens]
        labels.continuations += 1
        theirs = final_answer(await slm.detokenize([*branch, *rest]))
        kinds[position] = DIVERGENT if theirs != answer else NEUTRAL
        progress(f"{question_id} @{position}: {kinds[position]} ({answer!r} -> {theirs!r})")
    return labels


def greedy(context: R2RContext) -> R2RContext:
    """The context with both models greedy (temperature 0): labels describe greedy decoding."""
    stages = {
        name: getattr(context, name).model_copy(update={"temperature": 0.0})
        for name in ("explorer", "synthesizer")
    }
    return context.model_copy(update=stages)

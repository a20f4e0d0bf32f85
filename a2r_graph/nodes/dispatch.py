"""Map step: validate the question and send it to the explorer branches that are missing
(those of the first wave, with ``A2RContext.waves``)."""

from __future__ import annotations

import logging
import uuid
from typing import Literal

from langgraph.config import get_config
from langgraph.runtime import Runtime
from langgraph.types import Command, Overwrite, Send

from a2r_graph.context import A2RContext
from a2r_graph.errors import ConfigurationError
from a2r_graph.policies import wave_size
from a2r_graph.prompts import check_prompts_dir
from a2r_graph.runtime import context_of
from a2r_graph.state import (
    A2RState,
    ExplorerTask,
    changed_settings,
    explorer_settings,
    reusable_paths,
    validated_question,
)

logger = logging.getLogger(__name__)


def dispatch(
    state: A2RState, runtime: Runtime[A2RContext]
) -> Command[Literal["explore", "decide"]]:
    question = validated_question(state.get("question"))
    context = context_of(runtime)
    n = context.n
    if context.prompts_dir is not None:  # gone or edited since the context was built
        try:
            check_prompts_dir(context.prompts_dir)
        except ValueError as error:
            raise ConfigurationError(f"prompts_dir: {error}") from None
    # Rerunning the question of an unfinished run keeps its usable paths (and, while they
    # reach min_paths, its answered unusable ones), so only failed, unusable or missing
    # explorers are paid for again. Otherwise, and on a thread's next question, the run
    # starts from empty results.
    settings = explorer_settings(context, question)
    kept = reusable_paths(state, question, n, context.min_paths)
    if kept and (changed := changed_settings(state, settings)):
        # Paths of another model, prompt or sampling would mix into this run's references.
        logger.warning(
            "the explorer's %s changed since this thread's %d kept path(s) were sampled: "
            "sampling them again (to keep them, resume with the settings the run started with)",
            ", ".join(changed),
            len(kept),
        )
        kept = []
    missing = sorted(set(range(n)) - {path["index"] for path in kept})
    wave = missing[: wave_size(context, len(kept))]
    session = str(get_config().get("configurable", {}).get("thread_id") or uuid.uuid4())
    return Command(
        update={
            "question": question,
            "explored_question": question,
            "explored_with": settings,
            "session": session,
            "paths": Overwrite(kept),
            "usage": Overwrite({}),
            "synthesis": None,
            "decisions": {"waves": [wave]} if context.waves and wave else {},
        },
        goto=[
            Send("explore", ExplorerTask(question=question, index=i, session=session)) for i in wave
        ]
        or "decide",
    )

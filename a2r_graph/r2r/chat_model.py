"""R2R as a LangChain chat model: ``ChatR2R`` answers a conversation's last user message with
a routed run (the SLM writes, the LLM takes the flagged tokens), anywhere a chat model goes,
A2R's explorer included (``routed_explorer``: A2R over routed paths).

The reply's ``usage_metadata`` sums both models' tokens; its ``response_metadata`` carries
the run's cost at both models' prices (``a2r_cost``, which A2R's accounting takes), the
switches, and the tokens each model wrote. A call's ``temperature``, ``top_p``, ``seed`` and
``max_tokens`` apply to both models (A2R's explorer paths differ by seed).
"""

from __future__ import annotations

from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import ConfigDict, Field

from a2r_graph.chat_models import ChatModelFactory, vllm_chat_model
from a2r_graph.context import StageConfig
from a2r_graph.r2r.context import R2RContext
from a2r_graph.r2r.graph import build_r2r_graph

SAMPLING = ("temperature", "top_p", "seed")


class ChatR2R(BaseChatModel):
    """A routed run per call, over ``context``'s two endpoints (default: the deployment's
    ``A2R_*``)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    context: R2RContext | None = None
    graph: Any = Field(default_factory=build_r2r_graph, exclude=True)

    @property
    def _llm_type(self) -> str:
        return "r2r"

    def _generate(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> ChatResult:
        raise NotImplementedError("ChatR2R is async: use ainvoke / astream")

    async def _agenerate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kwargs: Any
    ) -> ChatResult:
        prompt = next((m.text for m in reversed(messages) if isinstance(m, HumanMessage)), None)
        if not prompt:
            raise ValueError("ChatR2R answers a user message: pass at least one HumanMessage")
        context = self.run_context(**kwargs)
        out = await self.graph.ainvoke({"question": prompt, "prompt": prompt}, context=context)
        total = out["usage"]["total"]
        message = AIMessage(
            content=out["answer"],
            usage_metadata={
                "input_tokens": total["input_tokens"],
                "output_tokens": total["output_tokens"],
                "total_tokens": total["input_tokens"] + total["output_tokens"],
            },
            response_metadata={
                "model_name": f"r2r:{context.explorer.model}+{context.synthesizer.model}",
                "finish_reason": out["finish_reason"],
                "a2r_cost": total["cost"],
                "r2r": {"switches": out["switches"], "tokens": out["tokens"]},
            },
        )
        return ChatResult(generations=[ChatGeneration(message=message)])

    def run_context(self, **call: Any) -> R2RContext:
        """The context of one call: ``context`` with the call's sampling on both models."""
        context = self.context or R2RContext()
        sampling = {key: call[key] for key in SAMPLING if call.get(key) is not None}
        routing = {"max_tokens": call["max_tokens"]} if call.get("max_tokens") else {}
        return context.model_copy(
            update={
                "explorer": context.explorer.model_copy(update=sampling),
                "synthesizer": context.synthesizer.model_copy(update=sampling),
                "r2r": context.r2r.model_copy(update=routing),
            }
        )


def routed_explorer(routed: ChatR2R | None = None) -> ChatModelFactory:
    """A2R's chat model factory with R2R as the explorer: ``build_graph(chat_model=
    routed_explorer())`` samples each path with a routed run (``routed``, default
    ``ChatR2R()`` over the deployment's ``A2R_*``: the same two endpoints); the synthesizer
    stays the synthesizer endpoint's model."""
    routed = routed or ChatR2R()
    explorer = (routed.context or R2RContext()).explorer

    def chat_model(stage: StageConfig, timeout_s: float) -> BaseChatModel:
        same = (stage.url, stage.model) == (explorer.url, explorer.model)
        return routed if same else vllm_chat_model(stage, timeout_s)

    return chat_model

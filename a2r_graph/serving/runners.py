"""How the HTTP front ends (the OpenAI-compatible API, the MCP tool) run a strategy's graph.

Two runners with one interface:

- ``ServerRunner`` inside LangGraph Server: every request becomes a run of the server's own
  (``langgraph_sdk.get_client()`` without a URL talks to the server in-process), so it is
  queued, persisted and traced like any other run, and presets are the server's assistants.
- ``LocalRunner`` for ``a2r serve``: the graphs in this process (each strategy's
  ``served_graph()``, the same graphs LangGraph Server serves), with this process's ``A2R_*``.

Either serves every strategy of ``a2r_graph.serving.registry``: a preset names the graph it
runs. A request chooses only that strategy's options (for A2R, ``RunOptions``: how to sample):
the front ends check the preset's context merged with the request's options with
:func:`request_problem` before anything runs, and the graph resolves them on every run again.
"""

from __future__ import annotations

import copy
import re
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from pydantic import ValidationError

from a2r_graph.errors import (
    A2RError,
    ConfigurationError,
    describe_validation_error,
    error_class,
)
from a2r_graph.serving.registry import DEFAULT, Strategy, strategies, strategy
from a2r_graph.serving.run_options import parse_options
from a2r_graph.state import A2RInputModel

_TOOL_NAME_INVALID = re.compile(r"[^a-zA-Z0-9_\-.]")


@dataclass(frozen=True)
class Preset:
    """A named starting context of a strategy's graph: the strategy's own (named after it),
    or a LangGraph Server assistant."""

    name: str
    assistant_id: str
    context: Mapping[str, Any] = field(default_factory=dict)
    description: str | None = None
    graph: str = DEFAULT
    """The strategy it runs (``a2r_graph.serving.registry``)."""


class RunFailure(Exception):
    """A run that failed, as a door answers it: the error's class name (``error``), its
    message, and the HTTP ``status``, OpenAI ``kind`` and ``code`` of ``a2r_graph.errors``."""

    def __init__(
        self,
        error: str,
        message: str,
        status: int = A2RError.http_status,
        kind: str = A2RError.openai_type,
        code: str | None = A2RError.openai_code,
    ) -> None:
        self.error, self.message = error, message
        self.status, self.kind, self.code = status, kind, code
        super().__init__(f"{error}: {message}")

    @classmethod
    def of(cls, error: A2RError) -> RunFailure:
        return cls(
            type(error).__name__,
            str(error),
            error.http_status,
            error.openai_type,
            error.openai_code,
        )

    @classmethod
    def named(cls, name: str, message: str) -> RunFailure:
        """A run's error as LangGraph Server reports it: its class's name and message."""
        known = error_class(name) or A2RError
        return cls(name, message, known.http_status, known.openai_type, known.openai_code)


@dataclass(frozen=True)
class Token:
    """A piece of the synthesizer's reply as it streams: answer text or reasoning."""

    text: str
    reasoning: bool = False


@dataclass(frozen=True)
class Finished:
    """The run's result (``A2ROutput``)."""

    output: Mapping[str, Any]


class Runner(Protocol):
    async def presets(self) -> list[Preset]:
        """The presets a request may name: one per strategy (``a2r`` first), then others."""
        ...

    async def invoke(self, preset: Preset, question: str, context: dict) -> Mapping[str, Any]:
        """Run A2R to the end; ``RunFailure`` if the run fails."""
        ...

    def stream(
        self, preset: Preset, question: str, context: dict
    ) -> AsyncIterator[Token | Finished]:
        """The synthesizer's tokens as they come, then ``Finished``; ``RunFailure`` if the run
        fails."""
        ...


def tool_name(name: str) -> str:
    """A preset's name as an MCP tool name (``^[a-zA-Z0-9_.-]{1,128}$``), as LangGraph names
    its assistants' tools."""
    return _TOOL_NAME_INVALID.sub("", re.sub(r"\s+", "_", name.strip()))[:128]


def merged(*layers: Mapping[str, Any] | None) -> dict[str, Any]:
    """Context layers merged, later over earlier, one level deep per stage (a request's
    ``synthesizer.max_tokens`` keeps the preset's ``synthesizer.temperature``)."""
    result: dict[str, Any] = {}
    for layer in layers:
        for key, value in (layer or {}).items():
            if isinstance(value, Mapping) and isinstance(result.get(key), Mapping):
                result[key] = {**result[key], **value}
            else:
                result[key] = copy.deepcopy(value)
    return result


def options_problem(options: Any, where: str, graph: str = DEFAULT) -> str | None:
    """What is wrong with ``options`` as ``graph``'s options on their own (fields, types,
    ranges), naming each field as ``where`` + its path; None if nothing."""
    chosen = strategy(graph)
    try:
        parse_options(options, chosen.options)
    except ValidationError as error:
        return chosen.describe_error(error, prefix=where)
    return None


def request_problem(question: Any, context: dict[str, Any], graph: str = DEFAULT) -> str | None:
    """What is wrong with this run of ``graph`` (the question, the merged context against the
    deployment), the way LangGraph Server's 422 says it; None if it may run."""
    try:
        A2RInputModel(question=question)
    except ValidationError as error:
        return describe_validation_error(error, field_prefix="input.", env_prefix=None)
    try:
        strategy(graph).resolve(context)
    except ConfigurationError as error:
        return str(error)
    return None


def reasoning_only(preset: Preset, context: Mapping[str, Any]) -> bool:
    """Whether runs of ``preset`` with ``context`` stream only deliberation (A2R's select
    mode: its answer is the chosen reference's), streamed as reasoning."""
    try:
        chosen = strategy(preset.graph)
        return chosen.reasoning_only(chosen.resolve({**preset.context, **context}))
    except A2RError:
        return False  # the run itself reports the bad context


def _stream(preset: Preset, parts: AsyncIterator[Part], context: dict) -> AsyncIterator[Any]:
    return tokens_then_output(
        parts, strategy(preset.graph), all_reasoning=reasoning_only(preset, context)
    )


Part = tuple[str, Any]
"""A run's stream, as both runners read it: ``("values", state)``, ``("message", (metadata,
content, additional_kwargs))`` for each streamed message chunk, or ``("custom", event)``."""


async def tokens_then_output(
    parts: AsyncIterator[Part], chosen: Strategy, *, all_reasoning: bool = False
) -> AsyncIterator[Token | Finished]:
    """The answer node's tokens as they come (chunks of other nodes are skipped), then
    ``Finished`` with the run's last state."""
    final: Mapping[str, Any] = {}
    async for kind, data in parts:
        if kind == "values":
            final = data
            continue
        if kind == "custom":  # a node's own events: text its strategy streams that way
            text = data.get("text") if isinstance(data, Mapping) else None
            if chosen.streams == "custom" and isinstance(text, str) and text:
                yield Token(text, reasoning=all_reasoning)
            continue
        metadata, content, additional_kwargs = data
        if (metadata or {}).get("langgraph_node") == chosen.answer_node:
            for token in token_of(content, additional_kwargs, all_reasoning=all_reasoning):
                yield token
    yield Finished(chosen.output_of(final))


def token_of(
    content: Any, additional_kwargs: Mapping[str, Any] | None, *, all_reasoning: bool = False
) -> list[Token]:
    """The tokens one streamed message chunk carries (reasoning first; all of them with
    ``all_reasoning``)."""
    tokens = []
    reasoning = (additional_kwargs or {}).get("reasoning_content")
    if isinstance(reasoning, str) and reasoning:
        tokens.append(Token(reasoning, reasoning=True))
    if isinstance(content, list):  # content blocks
        content = "".join(
            block.get("text", "") if isinstance(block, Mapping) else str(block) for block in content
        )
    if isinstance(content, str) and content:
        tokens.append(Token(content, reasoning=all_reasoning))
    return tokens


class LocalRunner:
    """The strategies in this process (``a2r serve``): each one's served graph, built when
    first run, with this process's ``A2R_*``."""

    def __init__(self, graphs: Mapping[str, Any] | None = None) -> None:
        self.graphs = dict(graphs or {})

    def graph(self, name: str) -> Any:
        if name not in self.graphs:
            self.graphs[name] = strategy(name).served_graph()
        return self.graphs[name]

    async def presets(self) -> list[Preset]:
        return [
            Preset(name, name, {}, found.description, name) for name, found in strategies().items()
        ]

    async def invoke(self, preset: Preset, question: str, context: dict) -> Mapping[str, Any]:
        graph = self.graph(preset.graph)
        try:
            return await graph.ainvoke({"question": question}, context=context)
        except A2RError as error:
            raise RunFailure.of(error) from error

    def stream(
        self, preset: Preset, question: str, context: dict
    ) -> AsyncIterator[Token | Finished]:
        return _stream(preset, self._parts(preset, question, context), context)

    async def _parts(self, preset: Preset, question: str, context: dict) -> AsyncIterator[Part]:
        graph = self.graph(preset.graph)
        modes = [strategy(preset.graph).streams, "values"]
        try:
            async for mode, data in graph.astream(
                {"question": question}, context=context, stream_mode=modes
            ):
                if mode in ("values", "custom"):
                    yield mode, data
                else:
                    chunk, metadata = data
                    yield "message", (metadata, chunk.content, chunk.additional_kwargs)
        except A2RError as error:
            raise RunFailure.of(error) from error


class ServerRunner:
    """Runs of this LangGraph Server (in-process client): queued, persisted, traced."""

    def __init__(self, client: Any = None) -> None:
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            from langgraph_sdk import get_client

            self._client = get_client()  # no URL: this server, in-process, no auth hop
        return self._client

    async def presets(self) -> list[Preset]:
        served = list(strategies().values())
        names = [strategy.name for strategy in served]

        def own(assistant: Mapping[str, Any]) -> bool:  # the server's, named after its graph
            return assistant.get("name") == assistant["graph_id"] and (
                (assistant.get("metadata") or {}).get("created_by") == "system"
            )

        found = await self.client.assistants.search(limit=1000)
        found = sorted(  # the strategies' own assistants in their order, then oldest first
            (a for a in found if a.get("graph_id") in names),
            key=lambda a: (not own(a), names.index(a["graph_id"]), str(a.get("created_at"))),
        )
        presets: dict[str, Preset] = {}
        for assistant in found:
            name, graph = assistant.get("name") or assistant["assistant_id"], assistant["graph_id"]
            if name in presets:
                continue  # the same name twice: the older one keeps it (use the id for others)
            description = assistant.get("description")
            if own(assistant):
                description = description or served[names.index(graph)].description
            presets[name] = Preset(
                name, assistant["assistant_id"], assistant.get("context") or {}, description, graph
            )
        return list(presets.values())

    async def invoke(self, preset: Preset, question: str, context: dict) -> Mapping[str, Any]:
        # A stream, not runs.wait: the server cancels a streamed run when its reader goes, so
        # a caller who leaves (and cancels this) stops the run and its model calls.
        final: Mapping[str, Any] = {}
        async for _, state in self._parts(preset, question, context, ["values"]):
            final = state
        return strategy(preset.graph).output_of(final)

    def stream(
        self, preset: Preset, question: str, context: dict
    ) -> AsyncIterator[Token | Finished]:
        streams = strategy(preset.graph).streams
        modes = ["messages-tuple" if streams == "messages" else streams, "values"]
        parts = self._parts(preset, question, context, modes)
        return _stream(preset, parts, context)

    async def _parts(
        self, preset: Preset, question: str, context: dict, modes: list[str]
    ) -> AsyncIterator[Part]:
        import httpx

        try:
            async for part in self.client.runs.stream(
                None,
                preset.assistant_id,
                input={"question": question},
                context=context,
                stream_mode=modes,
                on_disconnect="cancel",
            ):
                if part.event in ("values", "custom"):
                    yield part.event, part.data
                elif part.event == "error":
                    data = part.data if isinstance(part.data, dict) else {}
                    raise RunFailure.named(
                        str(data.get("error")), str(data.get("message", part.data))
                    )
                elif part.event == "messages":
                    chunk, metadata = part.data
                    yield (
                        "message",
                        (
                            metadata,
                            chunk.get("content"),
                            chunk.get("additional_kwargs"),
                        ),
                    )
        except httpx.HTTPStatusError as error:
            raise _refused(error) from error


def _refused(error: Any) -> RunFailure:
    """The server refused to create the run (the 422 of a2r_graph.serving.webapp, a vanished
    assistant...): a RunFailure named after the status."""
    response = error.response
    try:
        detail = response.json().get("detail", response.text)
    except ValueError:
        detail = response.text
    if response.status_code in (400, 422):
        return RunFailure(
            "InvalidRequest", str(detail), 400, "invalid_request_error", "invalid_value"
        )
    if response.status_code == 404:
        return RunFailure("NotFound", str(detail), 404, "invalid_request_error", "model_not_found")
    return RunFailure("ServerError", str(detail))

"""An OpenAI-compatible chat-completions API in front of A2R (``/v1/chat/completions``,
``/v1/models``), in optillm's manner: any OpenAI client or framework calls A2R as a "model",
a preset with run options (``a2r:n=8,min_paths=6``). The same routes serve LangGraph Server
and ``a2r serve`` (``a2r_graph.serving.runners``). What each request field does, the reply
and the errors: docs/serving.md, "OpenAI-compatible endpoint".
"""

from __future__ import annotations

import contextlib
import json
import logging
import operator
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ValidationError, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError
from sse_starlette import EventSourceResponse
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from a2r_graph.answers import THINK_CLOSE, THINK_OPEN
from a2r_graph.serving.guard import cancel_on_disconnect
from a2r_graph.serving.registry import DEFAULT
from a2r_graph.serving.render import openai_usage, summary
from a2r_graph.serving.runners import (
    Finished,
    Preset,
    RunFailure,
    Runner,
    Token,
    merged,
    options_problem,
    request_problem,
)

logger = logging.getLogger(__name__)
KEEPALIVE_S = 15.0  # while the explorers run, an SSE comment this often keeps proxies from closing
OPTION_KEY = re.compile(r"^[a-z_][a-z0-9_]*(?:\.[a-z_][a-z0-9_]*)?$")


@dataclass
class OpenAIError(Exception):
    """An error answered with OpenAI's body: ``{"error": {message, type, param, code}}``."""

    status: int
    message: str
    param: str | None = None
    type: str = "invalid_request_error"
    code: str | None = None

    def __str__(self) -> str:
        return self.message

    def body(self) -> dict[str, Any]:
        return {"error": {key: getattr(self, key) for key in ("message", "type", "param", "code")}}

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status)


def bad_request(
    message: str, param: str | None = None, code: str | None = "invalid_value"
) -> OpenAIError:
    return OpenAIError(400, message, param, code=code)


def failure_error(failure: Exception) -> OpenAIError:
    """The OpenAI error for a failed run: its status, type and code are its error's
    (``a2r_graph.errors``); any other exception is logged and answered as an internal error."""
    if not isinstance(failure, RunFailure):
        logger.error("a2r: chat completion failed", exc_info=failure)
        return OpenAIError(500, "internal error", type="server_error")
    message = failure.message if failure.status != 500 else f"the A2R run failed: {failure}"
    return OpenAIError(failure.status, message, type=failure.kind, code=failure.code)


def rule(ok: Callable[[Any], Any], message: str, required: bool = False) -> BeforeValidator:
    """A field's own check, before its type's: ``message`` (``{got}``: the value) unless
    ``ok(value)``; null passes unless ``required``. Of several, the last checks first."""

    def check(value: Any) -> Any:
        if (value is None and required) or (value is not None and not ok(value)):
            raise PydanticCustomError("refused", message.replace("{got}", repr(value)))
        return value

    return BeforeValidator(check)


def _is(*types: type) -> Callable[[Any], bool]:
    return lambda value: isinstance(value, types)


Flag = Annotated[bool | None, rule(_is(bool), "must be true or false, got {got}")]
Unavailable = Annotated[Any, rule(operator.not_, "not available from A2R")]
SAMPLING = {p: p for p in ("temperature", "top_p", "max_tokens", "seed")} | {
    "max_completion_tokens": "max_tokens"  # OpenAI's sampling parameter: the run option it sets
}
ONE_CHOICE = (
    "A2R returns one choice, got {got}; its explorer count is the run option n (model "
    "'a2r:n=8' or extra_body {'a2r': {'n': 8}})"
)
NO_TOOLS = (
    "A2R answers in text and never calls tools; {got} cannot be honored (with 'auto' or 'none' "
    "the tools are ignored)"
)


class Message(BaseModel, extra="allow"):
    """A chat message; A2R reads the text of the last ``user`` one."""

    role: str
    content: Annotated[
        str | list[Any] | None, rule(_is(str, list), "must be a string or a list of text parts")
    ] = None


class StreamOptions(BaseModel, extra="allow"):
    include_usage: Flag = None


class ChatCompletionRequest(BaseModel, extra="allow", strict=True):
    """OpenAI's chat-completions request as A2R reads it (vLLM's ``ChatCompletionRequest``,
    cut to what A2R honors), strictly: ``"4"`` is no count and ``1`` no flag. Parameters it
    does not name (penalties, ``stop``, ``user``, ``metadata``, ``tools``...) are accepted and
    ignored; those whose meaning A2R cannot honor are refused."""

    model: Annotated[
        str,
        rule(
            lambda m: isinstance(m, str) and m.strip(),
            "required: a preset such as 'a2r' (GET /v1/models)",
            required=True,
        ),
    ]
    messages: Annotated[
        list[
            Annotated[
                Message,
                rule(
                    lambda m: isinstance(m, dict) and isinstance(m.get("role"), str),
                    "must be an object with a role",
                    required=True,
                ),
            ]
        ],
        rule(
            lambda m: isinstance(m, list) and m,
            "required: a list with at least one user message",
            required=True,
        ),
    ]
    stream: Flag = None
    stream_options: Annotated[StreamOptions | None, rule(_is(dict), "must be an object")] = None
    # what A2R cannot honor
    n: Annotated[int | None, rule(lambda n: n == 1 and type(n) is int, ONE_CHOICE)] = None
    logprobs: Unavailable = None
    top_logprobs: Unavailable = None
    tool_choice: Annotated[Any, rule(lambda choice: choice in ("auto", "none"), NO_TOOLS)] = None
    response_format: Annotated[
        dict[str, Any] | None,
        rule(lambda f: f.get("type") in (None, "text"), "A2R answers in text, got {got}"),
        rule(_is(dict), "must be an object such as {'type': 'text'}, got {got}"),
    ] = None
    modalities: Annotated[
        list[str] | None,
        rule(lambda m: "audio" not in m, "A2R answers in text"),
        rule(lambda m: _is(list)(m) and all(map(_is(str), m)), "must be a list such as ['text']"),
    ] = None
    # the synthesizer's sampling (seed: both stages'), then any run options
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    seed: int | None = None
    a2r: Annotated[
        dict[str, Any] | None,
        rule(_is(dict), "must be an object of run options, e.g. {'n': 8, 'min_paths': 6}"),
    ] = None

    @field_validator(*SAMPLING, mode="before")
    @classmethod
    def _as_run_options(cls, value: Any, info: ValidationInfo) -> Any:
        """Checked as the synthesizer's run options: their types and ranges."""
        name = SAMPLING[str(info.field_name)]
        if value is not None and (problem := options_problem({"synthesizer": {name: value}}, "")):
            sets = "" if name == "seed" else f"sets the synthesizer's {name}: "
            raise PydanticCustomError("refused", sets + problem)
        return value

    @field_validator("a2r")
    @classmethod
    def _run_options(cls, options: dict[str, Any] | None) -> dict[str, Any] | None:
        if options is not None and (problem := options_problem(options, "a2r.")):
            raise PydanticCustomError("refused", problem)  # naming a2r.FIELD itself
        return options

    @cached_property
    def question(self) -> str:
        """The text of the last ``user`` message: the question A2R answers."""
        users = [i for i, message in enumerate(self.messages) if message.role == "user"]
        if not users:
            message = "messages: no user message: A2R answers the last user message"
            raise bad_request(message, "messages")
        where, content = f"messages[{users[-1]}].content", self.messages[users[-1]].content
        if content is None:
            raise bad_request(f"{where}: must be a string or a list of text parts", where)
        for j, part in enumerate(content if isinstance(content, list) else []):
            if not (_is(dict)(part) and part.get("type") == "text" and _is(str)(part.get("text"))):
                kind = part.get("type") if isinstance(part, dict) else type(part).__name__
                message = f"{where}[{j}]: only text parts are supported, got {kind!r}"
                raise bad_request(message, f"{where}[{j}]")
        text = content if isinstance(content, str) else "\n".join(p["text"] for p in content)
        if not text.strip():
            message = "the question (the last user message) is blank: send the complete, "
            raise bad_request(f"{where}: {message}self-contained problem", where)
        return text.strip()

    @property
    def options(self) -> dict[str, Any]:
        """The run options of the request's own fields: the sampling parameters (the
        synthesizer's; ``seed`` both stages'), then ``a2r`` over them."""
        sampled = {
            name: value for p, name in SAMPLING.items() if (value := getattr(self, p)) is not None
        }
        seed = {"explorer": {"seed": self.seed}} if self.seed is not None else {}
        return merged(seed, {"synthesizer": sampled} if sampled else {}, self.a2r)

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)


def parse_request(body: Any) -> ChatCompletionRequest:
    """Read a chat-completions request body; ``OpenAIError`` (400) naming the field."""
    if not isinstance(body, dict):
        raise bad_request("the request body must be a JSON object", None, None)
    try:  # absent model and messages: refused as null
        request = ChatCompletionRequest.model_validate({"model": None, "messages": None, **body})
    except ValidationError as error:
        problem = error.errors(include_url=False)[0]
        loc = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in problem["loc"])
        param, message = loc.lstrip("."), problem["msg"]
        named = message.startswith(f"{param}.")  # a2r's run options name their own fields
        raise bad_request(message if named else f"{param}: {message}", param) from None
    request.model, _ = request.model.strip(), request.question  # refused now if it has none
    return request


def parse_options(text: str, model: str, graph: str = DEFAULT) -> dict[str, Any]:
    """``n=8,min_paths=6,synthesizer.temperature=0.7`` as run options (values are JSON
    scalars where they read as one, else strings)."""
    options: dict[str, Any] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, raw = (part.strip() for part in item.partition("="))
        if not sep or not OPTION_KEY.match(key):
            write = "write PRESET:KEY=VALUE,... (e.g. a2r:n=8,synthesizer.temperature=0.7)"
            raise bad_request(f"model {model!r}: {item!r} is not an option; {write}", "model")
        value: Any = raw
        with contextlib.suppress(ValueError):
            if (parsed := json.loads(raw)) is None or isinstance(parsed, bool | int | float):
                value = parsed
        stage, _, name = key.rpartition(".")
        target = options.setdefault(stage, {}) if stage else options
        if not isinstance(target, dict):
            raise bad_request(f"model {model!r}: {stage} is set and has fields", "model")
        target[name] = value
    if problem := options_problem(options, f"model {model!r}: ", graph):
        raise bad_request(problem, "model")
    return options


def resolve_model(model: str, presets: list[Preset]) -> tuple[Preset, dict[str, Any]]:
    """The preset ``model`` names and the options it carries after ``:``."""
    by_name = {key: preset for preset in presets for key in (preset.name, preset.assistant_id)}
    if model in by_name:
        return by_name[model], {}
    name, sep, options = model.partition(":")
    if name in by_name and sep:
        return by_name[name], parse_options(options, model, by_name[name].graph)
    known = ", ".join(preset.name for preset in presets)
    use = f"use one of {known} (GET /v1/models), optionally with options: a2r:n=8,min_paths=6"
    raise OpenAIError(
        404, f"The model {name!r} does not exist: {use}", "model", code="model_not_found"
    )


def finish_reason(output: Mapping[str, Any]) -> str:
    """The answer's: A2R's synthesizer's, or a strategy's own ``finish_reason``."""
    reason = (output.get("synthesis") or {}).get("finish_reason") or output.get("finish_reason")
    return reason or "stop"


class ThinkSplitter:
    """Splits a streamed reply into reasoning and answer as ``split_reasoning`` splits a whole
    one (a reply that opens with ``<think>`` is reasoning until ``</think>``): each ``feed``
    re-reads the reply so far and sends what it had not sent (what may begin a marker waits)."""

    def __init__(self) -> None:
        self.text, self.reasoning, self.answer = "", "", ""  # the reply; what was sent of it

    def feed(self, text: str, final: bool = False) -> list[Token]:
        self.text += text
        head, reasoning, answer = self.text.lstrip(), "", ""
        if head.startswith(THINK_OPEN):
            reasoning, closed, answer = head[len(THINK_OPEN) :].partition(THINK_CLOSE)
            if not (closed or final):  # what may begin </think> waits
                ends = [k for k in range(len(THINK_CLOSE)) if reasoning.endswith(THINK_CLOSE[:k])]
                reasoning = reasoning[: len(reasoning) - max(ends)]
        elif final or not THINK_OPEN.startswith(head):  # else: blank, or perhaps "<thi"
            answer = head
        parts = ((reasoning, self.reasoning), (answer.lstrip(), self.answer))
        tokens = [
            Token(new[len(old) :], i == 0) for i, (new, old) in enumerate(parts) if new != old
        ]
        self.reasoning, self.answer = reasoning, answer.lstrip()
        return tokens

    def flush(self) -> list[Token]:
        return self.feed("", final=True)


async def stream_completion(
    runner: Runner, preset: Preset, request: ChatCompletionRequest, context: dict, base: dict
) -> AsyncIterator[str]:
    """The SSE events: the synthesizer's tokens as ``chat.completion.chunk``s, a last chunk
    with the finish reason (and the ``a2r`` summary), then ``usage`` if asked for."""
    base = {**base, "object": "chat.completion.chunk"}
    usage = request.include_usage

    def chunk(delta: dict, finish: str | None = None, **extra: Any) -> str:
        choice = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
        extra = ({"usage": None} if usage else {}) | extra
        return json.dumps({**base, "choices": [choice], **extra}, ensure_ascii=False)

    def sent(tokens: list[Token]) -> list[str]:
        return [chunk({"reasoning_content" if t.reasoning else "content": t.text}) for t in tokens]

    yield chunk({"role": "assistant", "content": ""})
    splitter, output = ThinkSplitter(), {}
    try:
        async for event in runner.stream(preset, request.question, context):
            if isinstance(event, Finished):
                output = dict(event.output)
            else:
                for line in sent([event] if event.reasoning else splitter.feed(event.text)):
                    yield line
    except Exception as error:
        yield json.dumps(failure_error(error).body())
        return
    for line in sent(splitter.flush()):
        yield line
    if not splitter.answer and output.get("answer"):  # the synthesizer's reply did not stream
        yield chunk({"content": output["answer"]})
    yield chunk({}, finish_reason(output), a2r=summary(output))
    if usage:
        yield json.dumps({**base, "choices": [], "usage": openai_usage(output)})
    yield "[DONE]"


def routes(runner: Runner) -> list[Route]:
    """``POST /v1/chat/completions`` and ``GET /v1/models`` over ``runner``."""

    async def chat_completions(request: Request) -> Response:
        try:
            try:
                body = json.loads(await request.body() or b"null")
            except ValueError:
                raise bad_request("the request body is not valid JSON", None, None) from None
            chat = parse_request(body)
            preset, model_options = resolve_model(chat.model, await runner.presets())
            context = merged(preset.context, model_options, chat.options)
            if problem := request_problem(chat.question, context, preset.graph):
                raise bad_request(problem)
        except OpenAIError as error:
            return error.response()
        base = {"id": f"chatcmpl-{uuid.uuid4().hex}", "created": int(time.time())}
        base["model"] = chat.model
        if chat.stream:
            events = stream_completion(runner, preset, chat, context, base)
            return EventSourceResponse(events, ping=KEEPALIVE_S, sep="\n")
        try:
            output = await runner.invoke(preset, chat.question, context)
        except Exception as error:
            return failure_error(error).response()
        trace = (output.get("synthesis") or {}).get("trace") or None
        message = {"role": "assistant", "content": output.get("answer") or ""}
        choice = {"index": 0, "message": message | {"reasoning_content": trace}}
        choice |= {"finish_reason": finish_reason(output), "logprobs": None}
        reply = {**base, "object": "chat.completion", "choices": [choice]}
        return JSONResponse(reply | {"usage": openai_usage(output), "a2r": summary(output)})

    async def models(request: Request) -> Response:
        data = [
            {"id": preset.name, "object": "model", "created": 0, "owned_by": "a2r-graph"}
            for preset in await runner.presets()
        ]
        return JSONResponse({"object": "list", "data": data})

    return [
        Route("/v1/chat/completions", cancel_on_disconnect(chat_completions), methods=["POST"]),
        Route("/v1/models", models, methods=["GET"]),
    ]

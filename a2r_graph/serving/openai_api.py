"""An OpenAI-compatible chat-completions API in front of A2R (``/v1/chat/completions``,
``/v1/models``), in optillm's manner: any OpenAI client or framework calls A2R as a "model".

The same Starlette routes serve LangGraph Server (``a2r_graph.serving.webapp``, every request a run
of the server's own) and ``a2r serve`` (the graph in-process); see ``a2r_graph.serving.runners``.

- ``model`` names a preset (``a2r``, or a LangGraph Server assistant by name or id),
  optionally followed by run options: ``a2r:n=8,min_paths=6,synthesizer.temperature=0.7``.
  ``extra_body={"a2r": {...}}`` passes the same options as an object.
- The question is the last ``user`` message. System and developer messages and earlier
  turns are not sent to the models (A2R's prompts are the deployment's; the question must be
  self-contained).
- ``temperature``, ``top_p`` and ``max_tokens`` / ``max_completion_tokens`` set the
  synthesizer's (the stage whose reply is returned); ``seed`` seeds both stages.
- ``usage`` totals every model call of the run (explorers and synthesizer); ``usage.cost``
  and the top-level ``a2r`` object give the cost and the per-stage figures.
- Errors use OpenAI's error body, with the status of the run's error (``a2r_graph.errors``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from a2r_graph.answers import THINK_CLOSE, THINK_OPEN
from a2r_graph.serving.guard import cancel_on_disconnect
from a2r_graph.serving.registry import DEFAULT
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
KEEPALIVE_S = 15.0
"""While the explorers run nothing streams; an SSE comment this often keeps proxies from
closing the connection."""

OPTION_KEY = re.compile(r"^[a-z_]+(?:\.[a-z_]+)?$")
REFUSED_TOOL_CHOICE = "A2R answers in text and never calls tools"


class OpenAIError(Exception):
    """An error answered with OpenAI's body: ``{"error": {message, type, param, code}}``."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        type: str = "invalid_request_error",
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.type, self.code = (
            status,
            message,
            param,
            type,
            code,
        )

    def body(self) -> dict[str, Any]:
        error = {"message": self.message, "type": self.type, "param": self.param, "code": self.code}
        return {"error": error}

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status)


def bad_request(
    message: str, param: str | None = None, code: str | None = "invalid_value"
) -> OpenAIError:
    return OpenAIError(400, message, param=param, code=code)


def failure_error(failure: RunFailure) -> OpenAIError:
    """The OpenAI error for a failed run: its status, type and code are its error's
    (``a2r_graph.errors``)."""
    message = failure.message if failure.status != 500 else f"the A2R run failed: {failure}"
    return OpenAIError(failure.status, message, type=failure.kind, code=failure.code)


# ------------------------------------------------------------------------------------------
# the request


@dataclass
class ChatRequest:
    """A chat-completions request, read: what to run and how to answer."""

    model: str
    question: str
    options: dict[str, Any] = field(default_factory=dict)
    """Run options from the request's own fields (sampling parameters, ``a2r``)."""
    stream: bool = False
    include_usage: bool = False


def parse_options(text: str, model: str, graph: str = DEFAULT) -> dict[str, Any]:
    """``n=8,min_paths=6,synthesizer.temperature=0.7`` as run options (values are JSON
    scalars where they read as one, else strings)."""
    options: dict[str, Any] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not OPTION_KEY.match(key):
            raise bad_request(
                f"model {model!r}: {item!r} is not an option; write PRESET:KEY=VALUE,... "
                "(e.g. a2r:n=8,synthesizer.temperature=0.7)",
                "model",
            )
        value: Any = raw.strip()
        with contextlib.suppress(ValueError):
            parsed = json.loads(value)
            if parsed is None or isinstance(parsed, bool | int | float):
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
    raise OpenAIError(
        404,
        f"The model {name!r} does not exist: use one of {known} (GET /v1/models), optionally "
        "with options: a2r:n=8,min_paths=6",
        param="model",
        code="model_not_found",
    )


def parse_request(body: Any) -> ChatRequest:
    """Read a chat-completions request body; ``OpenAIError`` (400) naming the field."""
    if not isinstance(body, dict):
        raise bad_request("the request body must be a JSON object", None, None)
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise bad_request("model: required: a preset such as 'a2r' (GET /v1/models)", "model")
    request = ChatRequest(model=model.strip(), question=question_of(body.get("messages")))
    request.stream = _flag(body, "stream")
    stream_options = body.get("stream_options")
    if stream_options is not None:
        if not isinstance(stream_options, dict):
            raise bad_request("stream_options: must be an object", "stream_options")
        request.include_usage = _flag(
            stream_options, "include_usage", "stream_options.include_usage"
        )
    _refuse_unsupported(body)
    request.options = merged(sampling_options(body), _a2r_options(body))
    return request


def question_of(messages: Any) -> str:
    """The text of the last ``user`` message: the question A2R answers."""
    if not isinstance(messages, list) or not messages:
        raise bad_request("messages: required: a list with at least one user message", "messages")
    for i in range(len(messages) - 1, -1, -1):
        message = messages[i]
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise bad_request(f"messages[{i}]: must be an object with a role", f"messages[{i}]")
        if message["role"] != "user":
            continue
        text = _text_of(message.get("content"), f"messages[{i}].content")
        if not text.strip():
            raise bad_request(
                f"messages[{i}].content: the question (the last user message) is blank: "
                "send the complete, self-contained problem",
                f"messages[{i}].content",
            )
        return text.strip()
    raise bad_request("messages: no user message: A2R answers the last user message", "messages")


def _text_of(content: Any, where: str) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for j, part in enumerate(content):
            if (
                not isinstance(part, dict)
                or part.get("type") != "text"
                or not isinstance(part.get("text"), str)
            ):
                kind = part.get("type") if isinstance(part, dict) else type(part).__name__
                raise bad_request(
                    f"{where}[{j}]: only text parts are supported, got {kind!r}", f"{where}[{j}]"
                )
            parts.append(part["text"])
        return "\n".join(parts)
    raise bad_request(f"{where}: must be a string or a list of text parts", where)


def _flag(body: Mapping[str, Any], key: str, name: str | None = None) -> bool:
    value = body.get(key)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise bad_request(f"{name or key}: must be true or false, got {value!r}", name or key)
    return value


def _refuse_unsupported(body: Mapping[str, Any]) -> None:
    """Parameters whose meaning A2R cannot honor. The rest (penalties, ``stop``, ``user``,
    ``metadata``, ``tools`` with ``tool_choice`` auto or none...) are accepted and ignored."""
    if body.get("n") is not None and (type(body["n"]) is not int or body["n"] != 1):
        raise bad_request(
            f"n: A2R returns one choice, got {body['n']!r}; its explorer count is the run "
            "option n (model 'a2r:n=8' or extra_body {'a2r': {'n': 8}})",
            "n",
        )
    if body.get("logprobs") or body.get("top_logprobs"):
        raise bad_request("logprobs: not available from A2R", "logprobs")
    tool_choice = body.get("tool_choice")
    if tool_choice not in (None, "auto", "none"):
        raise bad_request(
            f"tool_choice: {REFUSED_TOOL_CHOICE}; {tool_choice!r} cannot be honored (with "
            "'auto' or 'none' the tools are ignored)",
            "tool_choice",
        )
    response_format = body.get("response_format")
    if response_format is not None and not isinstance(response_format, dict):
        raise bad_request(
            f"response_format: must be an object such as {{'type': 'text'}}, got "
            f"{response_format!r}",
            "response_format",
        )
    if isinstance(response_format, dict) and response_format.get("type") not in (None, "text"):
        raise bad_request(
            f"response_format: A2R answers in text, got {response_format.get('type')!r}",
            "response_format",
        )
    modalities = body.get("modalities")
    if modalities is not None and (
        not isinstance(modalities, list) or not all(isinstance(m, str) for m in modalities)
    ):
        raise bad_request("modalities: must be a list such as ['text']", "modalities")
    if "audio" in (modalities or []):
        raise bad_request("modalities: A2R answers in text", "modalities")


def sampling_options(body: Mapping[str, Any]) -> dict[str, Any]:
    """OpenAI's sampling parameters as run options: the synthesizer's, ``seed`` both stages'."""
    synthesizer: dict[str, Any] = {}
    options: dict[str, Any] = {}
    for param, name in (
        ("temperature", "temperature"),
        ("top_p", "top_p"),
        ("max_tokens", "max_tokens"),
        ("max_completion_tokens", "max_tokens"),
    ):
        if body.get(param) is not None:
            synthesizer[name] = body[param]
            if problem := options_problem({"synthesizer": {name: body[param]}}, ""):
                raise bad_request(f"{param}: sets the synthesizer's {name}: {problem}", param)
    if body.get("seed") is not None:
        seed = {"seed": body["seed"]}
        if problem := options_problem({"synthesizer": seed}, ""):
            raise bad_request(f"seed: {problem}", "seed")
        options["explorer"] = dict(seed)
        synthesizer.update(seed)
    if synthesizer:
        options["synthesizer"] = synthesizer
    return options


def _a2r_options(body: Mapping[str, Any]) -> dict[str, Any]:
    options = body.get("a2r")
    if options is None:
        return {}
    if not isinstance(options, dict):
        raise bad_request(
            "a2r: must be an object of run options, e.g. {'n': 8, 'min_paths': 6}", "a2r"
        )
    if problem := options_problem(options, "a2r."):
        raise bad_request(problem, "a2r")
    return options


# ------------------------------------------------------------------------------------------
# the reply


def usage_of(output: Mapping[str, Any]) -> dict[str, Any]:
    """OpenAI's ``usage``, over every model call of the run, with its cost."""
    total = (output.get("usage") or {}).get("total") or {}
    prompt, completion = total.get("input_tokens", 0), total.get("output_tokens", 0)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "cost": total.get("cost", 0.0),
    }


def summary_of(output: Mapping[str, Any]) -> dict[str, Any]:
    """The ``a2r`` object of a reply: the boxed answer, per-stage usage, each path's answer."""
    return {
        "boxed_answer": output.get("boxed_answer"),
        "usage": output.get("usage") or {},
        "paths": [
            {"index": path["index"], "boxed": path.get("boxed"), "error": path.get("error")}
            for path in output.get("paths") or []
        ],
    }


def completion_body(
    model: str, output: Mapping[str, Any], completion_id: str, created: int
) -> dict:
    synthesis = output.get("synthesis") or {}
    message = {
        "role": "assistant",
        "content": output.get("answer") or "",
        "reasoning_content": synthesis.get("trace") or None,
    }
    choice = {
        "index": 0,
        "message": message,
        "finish_reason": synthesis.get("finish_reason") or "stop",
        "logprobs": None,
    }
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [choice],
        "usage": usage_of(output),
        "a2r": summary_of(output),
    }


class ThinkSplitter:
    """Splits a streamed reply into reasoning and answer as ``split_reasoning`` splits a whole
    one: a reply that opens with ``<think>`` is reasoning until ``</think>``."""

    def __init__(self) -> None:
        self.state, self.buffer = "start", ""

    def feed(self, text: str) -> list[Token]:
        self.buffer += text
        out: list[Token] = []
        while self.buffer:
            if self.state in ("start", "after_think"):
                stripped = self.buffer.lstrip()
                if not stripped:
                    if self.state == "after_think":
                        self.buffer = ""
                    return out
                if self.state == "start" and THINK_OPEN.startswith(stripped):
                    return out  # perhaps "<thi": wait for more
                if self.state == "start" and stripped.startswith(THINK_OPEN):
                    self.state, self.buffer = "think", stripped[len(THINK_OPEN) :]
                    continue
                self.state = "answer"
                self.buffer = stripped
            elif self.state == "think":
                end = self.buffer.find(THINK_CLOSE)
                if end >= 0:
                    if end:
                        out.append(Token(self.buffer[:end], reasoning=True))
                    self.state, self.buffer = "after_think", self.buffer[end + len(THINK_CLOSE) :]
                    continue
                keep = _partial_suffix(self.buffer, THINK_CLOSE)
                if len(self.buffer) > keep:
                    out.append(Token(self.buffer[: len(self.buffer) - keep], reasoning=True))
                    self.buffer = self.buffer[len(self.buffer) - keep :]
                return out
            else:
                out.append(Token(self.buffer))
                self.buffer = ""
        return out

    def flush(self) -> list[Token]:
        rest, self.buffer = self.buffer, ""
        if self.state == "think" and rest:
            return [Token(rest, reasoning=True)]
        return [Token(rest.strip() if self.state != "answer" else rest)] if rest.strip() else []


def _partial_suffix(text: str, marker: str) -> int:
    """How many trailing characters of ``text`` could begin ``marker``."""
    for size in range(min(len(marker) - 1, len(text)), 0, -1):
        if marker.startswith(text[-size:]):
            return size
    return 0


async def _with_keepalive(events: AsyncIterator[Any], every_s: float) -> AsyncIterator[Any]:
    """``events``, with a None whenever nothing came for ``every_s`` seconds."""
    queue: asyncio.Queue = asyncio.Queue()
    done = object()

    async def pump() -> None:
        try:
            async for event in events:
                await queue.put(event)
        except Exception as error:  # noqa: BLE001 - handed to the consumer
            await queue.put(error)
        else:
            await queue.put(done)

    task = asyncio.create_task(pump())
    get: asyncio.Task | None = None
    try:
        while True:
            get = get or asyncio.ensure_future(queue.get())
            finished, _ = await asyncio.wait({get}, timeout=every_s)
            if not finished:
                yield None
                continue
            event, get = get.result(), None
            if event is done:
                return
            if isinstance(event, Exception):
                raise event
            yield event
    finally:
        for pending in (get, task):
            if pending is not None:
                pending.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _sse(data: Any) -> str:
    return f"data: {json.dumps(data, ensure_ascii=False)}\n\n"


async def stream_completion(
    runner: Runner,
    preset: Preset,
    request: ChatRequest,
    context: dict,
    completion_id: str,
    created: int,
) -> AsyncIterator[str]:
    """The SSE stream: the synthesizer's tokens as ``chat.completion.chunk``s, a last chunk
    with the finish reason (and the ``a2r`` summary), then ``usage`` if asked for."""
    base = {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": request.model,
    }
    usage_field = {"usage": None} if request.include_usage else {}

    def chunk(delta: dict, finish_reason: str | None = None, **extra: Any) -> str:
        choice = {"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}
        return _sse({**base, "choices": [choice], **usage_field, **extra})

    def delta_of(token: Token) -> dict:
        return {"reasoning_content": token.text} if token.reasoning else {"content": token.text}

    yield chunk({"role": "assistant", "content": ""})
    splitter, answered = ThinkSplitter(), False
    output: Mapping[str, Any] = {}
    try:
        async for event in _with_keepalive(
            runner.stream(preset, request.question, context), KEEPALIVE_S
        ):
            if event is None:
                yield ": keep-alive\n\n"
            elif isinstance(event, Token):
                for token in [event] if event.reasoning else splitter.feed(event.text):
                    answered = answered or not token.reasoning
                    yield chunk(delta_of(token))
            elif isinstance(event, Finished):
                output = event.output
    except RunFailure as failure:
        yield _sse(failure_error(failure).body())
        return
    except Exception:
        logger.exception("a2r: streamed chat completion failed")
        yield _sse(OpenAIError(500, "internal error", type="server_error").body())
        return
    for token in splitter.flush():
        answered = answered or not token.reasoning
        yield chunk(delta_of(token))
    if not answered and output.get("answer"):  # the synthesizer's reply did not stream
        yield chunk({"content": output["answer"]})
    finish = (output.get("synthesis") or {}).get("finish_reason") or "stop"
    yield chunk({}, finish, a2r=summary_of(output))
    if request.include_usage:
        yield _sse({**base, "choices": [], "usage": usage_of(output)})
    yield "data: [DONE]\n\n"


# ------------------------------------------------------------------------------------------
# the routes


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
        completion_id, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
        if chat.stream:
            return StreamingResponse(
                stream_completion(runner, preset, chat, context, completion_id, created),
                media_type="text/event-stream",
                headers={"cache-control": "no-cache", "x-accel-buffering": "no"},
            )
        try:
            output = await runner.invoke(preset, chat.question, context)
        except RunFailure as failure:
            return failure_error(failure).response()
        except Exception:
            logger.exception("a2r: chat completion failed")
            return OpenAIError(500, "internal error", type="server_error").response()
        return JSONResponse(completion_body(chat.model, output, completion_id, created))

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

"""Loopback: a fast, deterministic OpenAI-compatible server, for load, fault and overhead tests.

Real HTTP and real server-sent events on a loopback port, shaped like ``vllm serve`` (the same
routes, error bodies, ``usage``, ``/tokenize`` and ``max_model_len``), with no model behind it:
replies come from a tiny oracle, so a test can tell whose answer came back.

- Explorer prompts (no ``<reference…>``): the last ``A+B``, ``A-B`` or ``A*B`` in the prompt is
  computed, and the reply is ``<think>…</think>… \\boxed{result}`` (a stable hash when the prompt
  holds no arithmetic).
- Synthesizer prompts (with references): the majority of the references' ``\\boxed{}`` answers.
- Tokens are whitespace-separated words: ``usage``, ``/tokenize`` and ``--max-model-len`` agree.

Test hooks, besides the OpenAI routes: ``POST /admin/faults`` (fail the next requests with a
status, optionally with ``Retry-After``, hang them, or answer 200 with a malformed reply: see
``MALFORMED_REPLIES``; per model, after letting some through), ``DELETE /admin/faults``,
``GET /admin/stats`` (requests, completions and tokens per model; a fault counts as failed).

    python -m tests.loopback serve [--port P] [--model NAME ...] [--latency-ms MS]

From Python (standard library only; the server process needs starlette and uvicorn)::

    with LoopbackServer(models=("explorer", "synthesizer"), latency_ms=50) as server:
        server.base_url                       # "http://127.0.0.1:PORT/v1"
        server.inject_fault(model="synthesizer", status=500, count=-1)
        server.inject_fault(model="explorer", reply="empty-choices", count=1)
        server.stats()["completed"]           # {"explorer": 4}
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import re
import signal
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from servers import _common
from servers._common import DEFAULT_HOST, NO_PROXY_OPENER, ManagedServer, ServerError

__all__ = ["LoopbackServer", "LoopbackServerError", "main"]

_LOG_PREFIX = "[loopback]"
REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MODELS = ("loopback",)

_ARITHMETIC = re.compile(r"(-?\d+)\s*([-+*])\s*(-?\d+)")
_REFERENCE = re.compile(r"<reference\d+>(.*?)</reference\d+>", re.DOTALL)
_BOXED = re.compile(r"\\boxed\{([^{}]*)\}")

MALFORMED_REPLIES = {
    "not-json": "HTTP 200 with an HTML page (as a proxy's error page), streamed or not",
    "invalid-json": "a JSON body cut short (streamed: one chunk, then a cut-short data line)",
    "empty-choices": '`"choices": []` with usage (streamed: only the usage chunk)',
    "null-message": "`choices[0].message` null (streamed: every delta null)",
    "bad-usage": 'token counts that are not integers (`"n/a"`)',
    "no-usage": "the whole completion, without `usage` (streamed: no usage chunk)",
}
"""Fault ``reply`` kinds: answers with status 200 that an OpenAI client cannot use."""


class LoopbackServerError(ServerError):
    """The loopback server could not start or be queried."""


# --------------------------------------------------------------------------------------------
# the oracle (pure functions; what the server answers)


def count_tokens(text: str) -> int:
    """The loopback tokenizer: whitespace-separated words."""
    return len(text.split())


def prompt_text(messages: Sequence[Mapping[str, Any]]) -> str:
    parts = []
    for message in messages:
        content = message.get("content") or ""
        if isinstance(content, list):  # OpenAI content parts
            content = " ".join(p.get("text", "") for p in content if isinstance(p, Mapping))
        parts.append(str(content))
    return "\n".join(parts)


def oracle_answer(prompt: str) -> str:
    """What the loopback "model" puts in ``\\boxed{}`` for an explorer prompt."""
    matches = _ARITHMETIC.findall(prompt)
    if not matches:
        return hashlib.sha256(prompt.encode()).hexdigest()[:8]
    a, op, b = matches[-1]
    x, y = int(a), int(b)
    return str(x + y if op == "+" else x - y if op == "-" else x * y)


def oracle_reply(prompt: str, trace_words: int, answer_words: int) -> tuple[str, str]:
    """(reasoning trace, answer component) for ``prompt``."""
    references = _REFERENCE.findall(prompt)
    if references:
        votes = Counter(b for ref in references for b in _BOXED.findall(ref)[-1:] if b.strip())
        answer = min(votes, key=lambda a: (-votes[a], a)) if votes else oracle_answer(prompt)
        lead = f"Checked {len(references)} references."
    else:
        answer = oracle_answer(prompt)
        lead = "Worked it out."
    trace = " ".join(["step"] * trace_words)
    filler = " ".join(["so"] * max(answer_words - 6, 0))
    return trace, f"{lead} {filler} The answer is \\boxed{{{answer}}}".replace("  ", " ")


def cut_to_tokens(trace: str, answer: str, max_tokens: int) -> tuple[str, str, str]:
    """The reply as a model capped at ``max_tokens`` would give it, and its finish reason."""
    words = trace.split()
    if len(words) >= max_tokens:
        return " ".join(words[:max_tokens]), "", "length"
    budget = max_tokens - len(words)
    answer_words = answer.split()
    if len(answer_words) > budget:
        return trace, " ".join(answer_words[:budget]), "length"
    return trace, answer, "stop"


# --------------------------------------------------------------------------------------------
# the server process


@dataclass
class Fault:
    status: int = 500
    count: int = -1
    """Requests to fail; -1: every one until cleared."""
    after: int = 0
    """Requests to let through before failing."""
    hang: bool = False
    """Never answer (until the client gives up) instead of answering ``status``."""
    model: str | None = None
    retry_after: str | None = None
    """The ``Retry-After`` header sent with ``status`` (e.g. ``"1"``), if any."""
    reply: str | None = None
    """Answer 200 with this malformed reply (a ``MALFORMED_REPLIES`` kind), not ``status``."""


@dataclass
class ServerState:
    models: tuple[str, ...]
    latency_s: float
    trace_words: int
    answer_words: int
    max_model_len: int
    api_key: str | None
    faults: list[Fault] = field(default_factory=list)
    requests: Counter = field(default_factory=Counter)
    completed: Counter = field(default_factory=Counter)
    failed: Counter = field(default_factory=Counter)
    prompt_tokens: Counter = field(default_factory=Counter)
    completion_tokens: Counter = field(default_factory=Counter)

    def fault_for(self, model: str) -> Fault | None:
        for fault in self.faults:
            if fault.model not in (None, model):
                continue
            if fault.after > 0:
                fault.after -= 1
                return None
            if fault.count == 0:
                continue
            if fault.count > 0:
                fault.count -= 1
            return fault
        return None

    def stats(self) -> dict[str, Any]:
        return {
            name: dict(getattr(self, name))
            for name in ("requests", "completed", "failed", "prompt_tokens", "completion_tokens")
        }


def _error(status: int, message: str, kind: str, headers: Mapping[str, str] | None = None):
    from starlette.responses import JSONResponse

    body = {"error": {"message": message, "type": kind, "param": None, "code": status}}
    return JSONResponse(body, status_code=status, headers=headers)


def malformed_reply(kind: str, common: dict, message: dict, finish: str, usage: dict, stream: bool):
    """The body (text) and media type of a ``MALFORMED_REPLIES`` fault."""
    if kind == "not-json":
        return "<html><body><h1>502 Bad Gateway</h1></body></html>", "text/html"
    if kind == "bad-usage":
        usage = {name: "n/a" for name in usage}
    choice = {"index": 0, "message": message, "finish_reason": finish}
    if not stream:
        body: dict[str, Any] = {**common, "object": "chat.completion", "choices": [choice]}
        body["usage"] = usage
        if kind == "invalid-json":
            return json.dumps(body)[:40], "application/json"
        if kind == "empty-choices":
            body["choices"] = []
        elif kind == "null-message":
            choice["message"] = None
        elif kind == "no-usage":
            del body["usage"]
        return json.dumps(body), "application/json"

    def chunk(delta: dict | None, finish_reason: str | None = None, **extra: Any) -> str:
        choices = [{"index": 0, "delta": delta, "finish_reason": finish_reason}]
        payload = {**common, "object": "chat.completion.chunk", "choices": choices, **extra}
        return f"data: {json.dumps(payload)}\n\n"

    usage_payload = {**common, "object": "chat.completion.chunk", "choices": [], "usage": usage}
    usage_chunk = f"data: {json.dumps(usage_payload)}\n\n"
    if kind == "invalid-json":
        cut_short = chunk({"content": "x"})[:30] + "\n\n"
        events = [chunk({"role": "assistant", "content": ""}), cut_short]
    elif kind == "empty-choices":
        events = [usage_chunk]
    elif kind == "null-message":
        events = [chunk(None), chunk(None), usage_chunk]
    else:  # bad-usage, no-usage: the whole completion, then bad or no usage
        events = [
            chunk({"role": "assistant", "content": ""}),
            chunk({"reasoning_content": message.get("reasoning_content") or ""}),
            chunk({"content": message["content"]}),
            chunk({}, finish),
        ]
        if kind == "bad-usage":
            events.append(usage_chunk)
    return "".join(events) + "data: [DONE]\n\n", "text/event-stream"


def build_app(state: ServerState):
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response, StreamingResponse
    from starlette.routing import Route

    def unauthorized(request: Request):
        if state.api_key and request.headers.get("authorization") != f"Bearer {state.api_key}":
            return JSONResponse({"error": "Unauthorized"}, status_code=401)
        return None

    def unknown_model(model: str):
        if model not in state.models:
            return _error(404, f"The model `{model}` does not exist.", "NotFoundError")
        return None

    async def models(request: Request):
        if rejected := unauthorized(request):
            return rejected
        data = [
            {
                "id": m,
                "object": "model",
                "owned_by": "loopback",
                "max_model_len": state.max_model_len,
            }
            for m in state.models
        ]
        return JSONResponse({"object": "list", "data": data})

    async def tokenize(request: Request):
        body = await request.json()
        text = prompt_text(body["messages"]) if "messages" in body else str(body.get("prompt", ""))
        n = count_tokens(text)
        return JSONResponse(
            {"count": n, "max_model_len": state.max_model_len, "tokens": list(range(n))}
        )

    async def chat(request: Request):
        if rejected := unauthorized(request):
            return rejected
        body = await request.json()
        model = body.get("model", "")
        if rejected := unknown_model(model):
            return rejected
        state.requests[model] += 1
        if fault := state.fault_for(model):
            state.failed[model] += 1
            if fault.hang:
                await asyncio.Event().wait()  # until the client disconnects
            if fault.reply is None:
                headers = {"Retry-After": fault.retry_after} if fault.retry_after else None
                message = f"loopback fault injected (HTTP {fault.status})"
                return _error(fault.status, message, "Fault", headers)
        prompt = prompt_text(body.get("messages", []))
        prompt_tokens = count_tokens(prompt)
        max_tokens = body.get("max_completion_tokens") or body.get("max_tokens") or 1024
        if prompt_tokens + max_tokens > state.max_model_len:
            return _error(
                400,
                f"'max_tokens' or 'max_completion_tokens' is too large: {max_tokens}. This "
                f"model's maximum context length is {state.max_model_len} tokens and your "
                f"request has {prompt_tokens} input tokens "
                f"({max_tokens} > {state.max_model_len} - {prompt_tokens}).",
                "BadRequestError",
            )
        trace, answer, finish = cut_to_tokens(
            *oracle_reply(prompt, state.trace_words, state.answer_words), max_tokens
        )
        completion_tokens = count_tokens(trace) + count_tokens(answer)
        if state.latency_s:
            await asyncio.sleep(state.latency_s)
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }
        ident = f"chatcmpl-{state.requests.total()}"
        common = {"id": ident, "created": int(time.time()), "model": model}
        message = {"role": "assistant", "content": answer, "reasoning_content": trace or None}
        if fault:  # a malformed reply: counted as failed, its tokens as never served
            content, media_type = malformed_reply(
                fault.reply, common, message, finish, usage, bool(body.get("stream"))
            )
            return Response(content, media_type=media_type)
        state.completed[model] += 1
        state.prompt_tokens[model] += prompt_tokens
        state.completion_tokens[model] += completion_tokens
        if not body.get("stream"):
            choice = {"index": 0, "message": message, "finish_reason": finish}
            return JSONResponse(
                {**common, "object": "chat.completion", "choices": [choice], "usage": usage}
            )

        def chunk(delta: dict, finish_reason: str | None = None, **extra: Any) -> str:
            choices = [{"index": 0, "delta": delta, "finish_reason": finish_reason}]
            payload = {**common, "object": "chat.completion.chunk", "choices": choices, **extra}
            return f"data: {json.dumps(payload)}\n\n"

        def events():
            yield chunk({"role": "assistant", "content": ""})
            if trace:
                yield chunk({"reasoning_content": trace})
            for word in answer.split(" "):
                yield chunk({"content": word + " "})
            yield chunk({}, finish)
            if (body.get("stream_options") or {}).get("include_usage"):
                payload = {
                    **common,
                    "object": "chat.completion.chunk",
                    "choices": [],
                    "usage": usage,
                }
                yield f"data: {json.dumps(payload)}\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    async def add_fault(request: Request):
        fault = Fault(**(await request.json()))
        if fault.reply is not None and fault.reply not in MALFORMED_REPLIES:
            return _error(400, f"unknown reply {fault.reply!r}", "BadRequestError")
        state.faults.append(fault)
        return JSONResponse({"faults": len(state.faults)})

    async def clear_faults(request: Request):
        state.faults.clear()
        return JSONResponse({"faults": 0})

    async def stats(request: Request):
        return JSONResponse(state.stats())

    async def health(request: Request):
        return Response(status_code=200)

    return Starlette(
        routes=[
            Route("/health", health),
            Route("/v1/models", models),
            Route("/tokenize", tokenize, methods=["POST"]),
            Route("/v1/chat/completions", chat, methods=["POST"]),
            Route("/admin/faults", add_fault, methods=["POST"]),
            Route("/admin/faults", clear_faults, methods=["DELETE"]),
            Route("/admin/stats", stats),
        ]
    )


def run_server(args: argparse.Namespace) -> None:
    import uvicorn

    state = ServerState(
        models=tuple(args.model or DEFAULT_MODELS),
        latency_s=args.latency_ms / 1000,
        trace_words=args.trace_words,
        answer_words=args.answer_words,
        max_model_len=args.max_model_len,
        api_key=os.environ.get(args.api_key_env) if args.api_key_env else None,
    )
    uvicorn.run(
        build_app(state),
        host=args.host,
        port=args.port,
        log_level="warning",
        access_log=False,
        loop=os.environ.get("A2R_LOOPBACK_LOOP", "auto"),
        http=os.environ.get("A2R_LOOPBACK_HTTP", "auto"),
        timeout_graceful_shutdown=1,
    )


# --------------------------------------------------------------------------------------------
# the managed process


class LoopbackServer(ManagedServer):
    """The loopback server in a subprocess on a free 127.0.0.1 port; a context manager.

    ``port`` fixes the port, so a test can stop the server and start it again where clients
    expect it. ``api_key_env`` names an environment variable of this process holding the key the
    server requires (as ``vllm serve --api-key``); the key itself never appears on a command line.
    """

    name = "loopback"
    display_name = "loopback server"
    log_prefix = _LOG_PREFIX
    error_class = LoopbackServerError
    ready_path = "/health"
    startup_timeout = 30.0
    poll_interval = 0.1
    stop_grace = 5.0

    def __init__(
        self,
        models: Sequence[str] = DEFAULT_MODELS,
        *,
        latency_ms: float = 0.0,
        trace_words: int = 40,
        answer_words: int = 12,
        max_model_len: int = 32768,
        api_key_env: str | None = None,
        port: int | None = None,
        log_path: str | os.PathLike[str] | None = None,
        host: str = DEFAULT_HOST,
        startup_timeout: float | None = None,
    ) -> None:
        super().__init__(port, log_path, host=host, startup_timeout=startup_timeout)
        self.models = tuple(models)
        self.options = {
            "--latency-ms": latency_ms,
            "--trace-words": trace_words,
            "--answer-words": answer_words,
            "--max-model-len": max_model_len,
        }
        self.api_key_env = api_key_env

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    def kill(self) -> None:
        """SIGKILL the server, as a crash would (no graceful shutdown)."""
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGKILL)
        self.stop(0)

    # -- test hooks -------------------------------------------------------------------------
    def _call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.url + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        with NO_PROXY_OPENER.open(request, timeout=10) as response:
            return json.loads(response.read())

    def inject_fault(
        self,
        *,
        model: str | None = None,
        status: int = 500,
        count: int = -1,
        after: int = 0,
        hang: bool = False,
        retry_after: float | str | None = None,
        reply: str | None = None,
    ) -> None:
        """Fail ``count`` chat requests (-1: all until cleared) of ``model`` (None: any) with
        ``status`` (and a ``Retry-After: retry_after`` header), or hang them, or answer them
        200 with a malformed ``reply`` (a ``MALFORMED_REPLIES`` kind), after letting ``after``
        through."""
        if reply is not None and reply not in MALFORMED_REPLIES:
            raise ValueError(f"unknown reply {reply!r}: one of {sorted(MALFORMED_REPLIES)}")
        fault = {"model": model, "status": status, "count": count, "after": after, "hang": hang}
        if retry_after is not None:
            fault["retry_after"] = str(retry_after)
        if reply is not None:
            fault["reply"] = reply
        self._call("POST", "/admin/faults", fault)

    def clear_faults(self) -> None:
        self._call("DELETE", "/admin/faults")

    def stats(self) -> dict[str, dict[str, int]]:
        """Per model: ``requests``, ``completed``, ``failed``, ``prompt_tokens``,
        ``completion_tokens``."""
        return self._call("GET", "/admin/stats")

    # -- ManagedServer hooks ----------------------------------------------------------------
    def _prepare(self) -> Path:
        return Path(sys.executable)

    def _command(self, program: Path, tmp_dir: Path) -> list[str]:
        command = [str(program), "-m", "tests.loopback", "_run", "--host", self.host]
        command += ["--port", str(self.port)]
        for model in self.models:
            command += ["--model", model]
        for option, value in self.options.items():
            command += [option, str(value)]
        if self.api_key_env:
            command += ["--api-key-env", self.api_key_env]
        return command

    def server_env(self) -> dict[str, str]:
        env = _common.clean_subprocess_env()
        if self.api_key_env and self.api_key_env in os.environ:
            env[self.api_key_env] = os.environ[self.api_key_env]
        return env

    def _server_cwd(self) -> Path:
        return REPO_ROOT


# --------------------------------------------------------------------------------------------
# CLI


def _add_server_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default=DEFAULT_HOST)
    parser.add_argument("--model", action="append", help="served model name (repeatable)")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="delay of every reply")
    parser.add_argument("--trace-words", type=int, default=40, help="reasoning trace length")
    parser.add_argument("--answer-words", type=int, default=12, help="answer component length")
    parser.add_argument("--max-model-len", type=int, default=32768, help="context window")
    parser.add_argument("--api-key-env", help="env var holding the API key to require")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.loopback", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run in the foreground on a free port")
    serve.add_argument("--port", type=int, default=None)
    _add_server_options(serve)
    run = commands.add_parser("_run", help=argparse.SUPPRESS)
    run.add_argument("--port", type=int, required=True)
    _add_server_options(run)
    args = parser.parse_args(argv)
    if args.command == "_run":
        run_server(args)
        return 0
    server = LoopbackServer(
        models=args.model or DEFAULT_MODELS,
        latency_ms=args.latency_ms,
        trace_words=args.trace_words,
        answer_words=args.answer_words,
        max_model_len=args.max_model_len,
        api_key_env=args.api_key_env,
        port=args.port,
        host=args.host,
    )

    models = ", ".join(server.models)
    return _common.serve(
        server, lambda: [f"# loopback server: {server.base_url} (models {models})"]
    )


if __name__ == "__main__":
    sys.exit(main())

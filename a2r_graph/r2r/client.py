"""Token-level calls to one OpenAI-compatible server (vLLM or llama.cpp): render a chat prompt
into token ids, tokenize and detokenize, and complete a token-id prompt with each sampled
token's id and top-k logprobs, streamed or whole.

``/v1/completions`` takes a token-id ``prompt`` on both engines. They describe tokens
differently: llama.cpp in ``logprobs.content[i]`` (``id``, ``logprob``, ``top_logprobs[j].id``),
vLLM in the legacy lists (``tokens[i]``, ``token_logprobs[i]``, ``top_logprobs[i]`` keyed by
token) where ``return_tokens_as_token_ids`` spells each token ``token_id:N``. Both are read.

Each method raises what ``a2r_graph.calls.is_transient`` sorts: ``openai.APIStatusError`` for
an HTTP error status (the reply's status, headers and body kept), httpx's transport errors,
``MalformedReplyError`` for a reply that cannot be read. Retries are the caller's.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx
import openai

from a2r_graph.chat_models import api_key_for
from a2r_graph.context import StageConfig
from a2r_graph.errors import MalformedReplyError
from a2r_graph.r2r.routers import TokenChoice

Engine = Literal["llamacpp", "vllm"]
TOKEN_ID_PREFIX = "token_id:"


@dataclass(frozen=True)
class Sampled:
    """One sampled token: what a router sees, and its text when the server gave it."""

    choice: TokenChoice
    text: str


@dataclass
class Chunk:
    """One streamed event (or a whole reply): its tokens, and what ends a completion."""

    tokens: list[Sampled] = field(default_factory=list)
    text: str = ""
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    cached_tokens: int | None = None
    completion_tokens: int | None = None


@dataclass(frozen=True)
class ServerInfo:
    engine: Engine
    vocab_size: int | None
    """The vocabulary size when the server reports it (llama.cpp's ``meta.n_vocab``)."""


class TokenServer:
    """One server's token-level endpoints. Use as ``async with``: it owns an HTTP client."""

    def __init__(
        self,
        stage: StageConfig,
        timeout_s: float,
        transport: httpx.AsyncBaseTransport | None = None,
        engine: Engine | None = None,
    ) -> None:
        self.stage, self.engine = stage, engine
        self._client = httpx.AsyncClient(
            base_url=stage.url.removesuffix("/v1"),
            headers={"Authorization": f"Bearer {api_key_for(stage)}"},
            timeout=timeout_s,
            transport=transport,
        )

    async def __aenter__(self) -> TokenServer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._client.aclose()

    async def describe(self) -> ServerInfo:
        """Which engine serves ``stage.model`` (llama.cpp's listing says ``owned_by:
        llamacpp``; anything else is taken for vLLM), and its vocabulary size if reported."""
        listing = await self._json("GET", "/v1/models")
        models = listing.get("data") if isinstance(listing, dict) else None
        entries = [m for m in models if isinstance(m, dict)] if isinstance(models, list) else []
        entry = next((m for m in entries if m.get("id") == self.stage.model), None)
        entry = entry or (entries[0] if entries else {})
        self.engine = "llamacpp" if entry.get("owned_by") == "llamacpp" else "vllm"
        vocab = (entry.get("meta") or {}).get("n_vocab")
        return ServerInfo(self.engine, vocab if isinstance(vocab, int) else None)

    async def render(self, messages: list[dict[str, str]]) -> list[int]:
        """The chat prompt of ``messages`` (the model's template, generation prompt added)
        as token ids, exactly as the server's chat completions would tokenize it."""
        if self.engine == "llamacpp":
            templated = await self._json("POST", "/apply-template", {"messages": messages})
            text = _field(templated, "prompt", str, "/apply-template")
            body = {"content": text, "add_special": True, "parse_special": True}
            return _ids(await self._json("POST", "/tokenize", body), "/tokenize")
        body = {"model": self.stage.model, "messages": messages, "add_generation_prompt": True}
        return _ids(await self._json("POST", "/tokenize", body), "/tokenize")

    async def tokenize(self, text: str) -> list[int]:
        """``text`` as token ids, special-token names parsed, nothing added."""
        if self.engine == "llamacpp":
            body: dict[str, Any] = {"content": text, "add_special": False, "parse_special": True}
        else:
            body = {"model": self.stage.model, "prompt": text, "add_special_tokens": False}
        return _ids(await self._json("POST", "/tokenize", body), "/tokenize")

    async def detokenize(self, ids: list[int]) -> str:
        if self.engine == "llamacpp":
            reply = await self._json("POST", "/detokenize", {"tokens": ids})
            return _field(reply, "content", str, "/detokenize")
        reply = await self._json("POST", "/detokenize", {"model": self.stage.model, "tokens": ids})
        return _field(reply, "prompt", str, "/detokenize")

    def _completion_body(
        self, prompt: list[int], max_tokens: int, top_k: int, stream: bool
    ) -> dict[str, Any]:
        stage = self.stage
        body: dict[str, Any] = {
            "model": stage.model,
            "prompt": prompt,
            "max_tokens": max_tokens,
            "temperature": stage.temperature,
            "top_p": stage.top_p,
            "logprobs": top_k,
            "return_tokens_as_token_ids": True,
            "stream": stream,
            **({"seed": stage.seed} if stage.seed is not None else {}),
            **stage.extra_body,
        }
        if stream:
            body["stream_options"] = {"include_usage": True}
            if self.engine == "llamacpp":
                body["timings_per_token"] = True  # cache_n on the first chunk, before any abort
        return body

    async def complete(self, prompt: list[int], max_tokens: int, top_k: int = 1) -> Chunk:
        """Up to ``max_tokens`` tokens after ``prompt``, in one reply."""
        reply = await self._json(
            "POST", "/v1/completions", self._completion_body(prompt, max_tokens, top_k, False)
        )
        return read_chunk(reply)

    async def top1_after(self, prompt: list[int], output: list[int]) -> list[int]:
        """The model's most likely token at each position of ``output`` after ``prompt``
        (teacher-forced: position i given ``prompt + output[:i]``).

        vLLM scores the whole sequence in one prefill (``prompt_logprobs``). llama.cpp has no
        per-prompt-token logprobs (its ``/v1/completions`` ignores ``echo`` and
        ``prompt_logprobs``; ``n_probs`` covers generated tokens only: checked on xllamacpp),
        so it takes one 1-token call per position; each extends the last, so the slot's
        cached prompt is reused and each call prefills one token."""
        if self.engine != "llamacpp":
            body = self._completion_body([*prompt, *output], 1, 1, False)
            body |= {"temperature": 0.0, "prompt_logprobs": 1}
            reply = await self._json("POST", "/v1/completions", body)
            return read_prompt_top1(reply, len(prompt), len(output))
        top1 = []
        for i in range(len(output)):
            body = self._completion_body([*prompt, *output[:i]], 1, 1, False)
            body |= {"temperature": 0.0, "cache_prompt": True}
            chunk = read_chunk(await self._json("POST", "/v1/completions", body))
            if not chunk.tokens:
                raise MalformedReplyError(f"no token scored at output position {i}")
            token = chunk.tokens[0].choice
            top1.append(token.top[0][0] if token.top else token.id)
        return top1

    async def stream(self, prompt: list[int], max_tokens: int, top_k: int) -> AsyncGenerator[Chunk]:
        """The tokens after ``prompt`` as the server streams them. Leaving the iteration early
        (close it: ``contextlib.aclosing``) closes the HTTP response, and the server stops
        generating once it sees the connection gone."""
        body = self._completion_body(prompt, max_tokens, top_k, True)
        async with self._client.stream("POST", "/v1/completions", json=body) as response:
            if response.is_error:
                await response.aread()
                raise _status_error(response)
            async for line in response.aiter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[len("data:") :].strip()
                if data == "[DONE]":
                    return
                yield read_chunk(_parse(data, "a streamed chunk"))
        raise MalformedReplyError(
            f"the stream of {self.stage.display_url} ended without [DONE]: cut short"
        )

    async def _json(self, method: str, path: str, body: Any = None) -> Any:
        response = await self._client.request(method, path, json=body)
        if response.is_error:
            raise _status_error(response)
        return _parse(response.text, f"the reply to {path}")


def _status_error(response: httpx.Response) -> openai.APIStatusError:
    try:
        body: Any = response.json()
    except ValueError:
        body = response.text[:500]
    detail = body.get("error", body) if isinstance(body, dict) else body
    message = detail.get("message") if isinstance(detail, dict) else None
    return openai.APIStatusError(
        f"HTTP {response.status_code}: {message or detail}",
        response=response,  # type: ignore[arg-type]  # the SDK's own httpx build: same API
        body=body,
    )


def _parse(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as error:
        raise MalformedReplyError(f"{what} is not JSON: {text[:200]!r}") from error


def _field(reply: Any, name: str, kind: type, where: str) -> Any:
    value = reply.get(name) if isinstance(reply, dict) else None
    if not isinstance(value, kind):
        raise MalformedReplyError(f"{where} answered without a {name!r}: {str(reply)[:200]}")
    return value


def _ids(reply: Any, where: str) -> list[int]:
    tokens = _field(reply, "tokens", list, where)
    ids = [t["id"] if isinstance(t, dict) else t for t in tokens]  # llama.cpp with_pieces
    if not all(_is_count(i) for i in ids):
        raise MalformedReplyError(f"{where} answered tokens that are not ids: {tokens[:20]}")
    return ids


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _token_id(token: object) -> int:
    """A vLLM token spelt ``token_id:N`` (``return_tokens_as_token_ids``), or an id."""
    if isinstance(token, str) and token.startswith(TOKEN_ID_PREFIX):
        token = int(token[len(TOKEN_ID_PREFIX) :])
    if not _is_count(token):
        raise MalformedReplyError(
            f"a token {token!r} is not an id: the server must return token ids (vLLM: "
            "return_tokens_as_token_ids, llama.cpp: logprobs)"
        )
    return int(token)  # type: ignore[call-overload]


def _tokens(logprobs: Any, text: str) -> list[Sampled]:
    if not isinstance(logprobs, dict):
        return []
    if isinstance(content := logprobs.get("content"), list):  # llama.cpp
        entries = [
            (
                _token_id(e.get("id")),
                e.get("logprob"),
                [(_token_id(t.get("id")), t.get("logprob")) for t in e.get("top_logprobs") or []],
                str(e.get("token") or ""),
            )
            for e in content
            if isinstance(e, dict)
        ]
    else:  # vLLM's legacy completion logprobs
        tokens, sampled = logprobs.get("tokens") or [], logprobs.get("token_logprobs") or []
        tops = logprobs.get("top_logprobs") or []
        entries = [
            (
                _token_id(token),
                sampled[i] if i < len(sampled) else None,
                [(_token_id(t), lp) for t, lp in (tops[i] if i < len(tops) else {}).items()],
                "",
            )
            for i, token in enumerate(tokens)
        ]
    if len(entries) == 1:
        entries[0] = (*entries[0][:3], text)
    return [
        Sampled(
            TokenChoice(
                token_id,
                float(logprob) if isinstance(logprob, int | float) else None,
                tuple(sorted(((i, float(lp)) for i, lp in top), key=lambda t: -t[1])),
                position=-1,
            ),
            piece,
        )
        for token_id, logprob, top, piece in entries
    ]


def read_chunk(reply: Any) -> Chunk:
    """One streamed chunk or whole reply of ``/v1/completions``, on either engine."""
    if not isinstance(reply, dict):
        raise MalformedReplyError(f"a completion reply is not an object: {str(reply)[:200]}")
    if "error" in reply:
        raise MalformedReplyError(f"the server reported an error: {str(reply['error'])[:300]}")
    choices = reply.get("choices") or []
    choice = choices[0] if isinstance(choices, list) and choices else {}
    if not isinstance(choice, dict):
        raise MalformedReplyError(f"a completion choice is not an object: {str(choice)[:200]}")
    text = str(choice.get("text") or "")
    chunk = Chunk(_tokens(choice.get("logprobs"), text), text, choice.get("finish_reason"))
    usage = _object(reply.get("usage"))
    timings = _object(reply.get("timings"))
    details = usage.get("prompt_tokens_details") or {}
    cached = details.get("cached_tokens") if isinstance(details, dict) else None
    if not _is_count(cached):
        cached = timings.get("cache_n")  # llama.cpp: on every chunk with timings_per_token
    chunk.cached_tokens = cached if _is_count(cached) else None
    if usage:
        for name in ("prompt_tokens", "completion_tokens"):
            if not _is_count(usage.get(name)):
                raise MalformedReplyError(f"usage.{name} is not a token count: {usage}")
        chunk.prompt_tokens, chunk.completion_tokens = (
            usage["prompt_tokens"],
            usage["completion_tokens"],
        )
    return chunk


def read_prompt_top1(reply: Any, start: int, count: int) -> list[int]:
    """vLLM's ``choices[0].prompt_logprobs`` (per prompt position: None, then
    ``{token id: {"logprob", "rank"}}`` holding the prompt's token and the top ones): the
    top-1 id at positions ``start .. start + count - 1``."""
    choices = reply.get("choices") if isinstance(reply, dict) else None
    choice = choices[0] if isinstance(choices, list) and choices else {}
    scored = choice.get("prompt_logprobs") if isinstance(choice, dict) else None
    if not isinstance(scored, list) or len(scored) < start + count:
        raise MalformedReplyError(
            "the reply has no prompt_logprobs for every prompt token (vLLM's prompt_logprobs "
            f"needed): {str(reply)[:200]}"
        )
    top1 = []
    for position in range(start, start + count):
        entry = scored[position]
        if not isinstance(entry, dict) or not entry:
            raise MalformedReplyError(f"prompt_logprobs[{position}] is empty: {entry!r}")
        ranked = [
            (_object(v).get("rank", 10**9), -float(_object(v).get("logprob", 0.0)), key)
            for key, v in entry.items()
        ]
        key = min(ranked)[2]
        top1.append(_token_id(int(key) if key.isdigit() else key))
    return top1


ServerFactory = Callable[[StageConfig, float, "Engine | None"], TokenServer]
"""Opens a ``TokenServer`` for an endpoint (tests pass one over a fake transport)."""


def token_server(stage: StageConfig, timeout_s: float, engine: Engine | None) -> TokenServer:
    """The default ``ServerFactory``: HTTP to the endpoint."""
    return TokenServer(stage, timeout_s, engine=engine)

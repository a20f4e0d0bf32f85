"""A scripted token-level server (llama.cpp's or vLLM's dialect) behind an httpx transport.

Characters are tokens: a token's id is its character's code point, and id 0 is the
end-of-turn token (no text). The model writes ``script`` one character per position after
the rendered prompt; at the positions in ``unsure`` it is uncertain (top-1 probability 0.4,
entropy ~1.08 nats), elsewhere sure (0.98, ~0.11 nats). Faults come on cue: a status for the
first requests, a stream that dies or stalls after some tokens.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx

from a2r_graph.context import StageConfig
from a2r_graph.r2r.client import Engine, TokenServer

EOS = 0
SURE = (0.98, 0.01, 0.01)
UNSURE = (0.4, 0.35, 0.25)


def ids(text: str) -> list[int]:
    return [ord(c) for c in text]


@dataclass
class Fault:
    status: int | None = None
    """Answer the first ``times`` completion requests with this status."""
    die_after: int | None = None
    """Streams: break the connection after this many tokens (``times`` times)."""
    stall_after: int | None = None
    """Streams: stop sending (without closing) after this many tokens (``times`` times)."""
    times: int = 1


class _Stream(httpx.AsyncByteStream):
    def __init__(self, server: FakeServer, events: AsyncIterator[bytes]) -> None:
        self.server, self.events = server, events

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for event in self.events:
            yield event

    async def aclose(self) -> None:
        self.server.closed_streams += 1


@dataclass
class FakeServer:
    model: str
    script: str
    unsure: set[int] = field(default_factory=set)
    engine: Engine = "llamacpp"
    vocab: int = 50_000
    shift: int = 0
    """Added to every id ``/tokenize`` answers: another tokenizer."""
    cached: bool = True
    fault: Fault | None = None
    prompt_text: str = "<user>"
    branches: dict[int, str] = field(default_factory=dict)
    """Where a prompt's output departs from ``script`` at position p (another model's token
    there) and p is a key, the model writes ``branches[p]`` after it instead of the script's
    rest (labels' continuations). Empty: the script whatever the prompt."""
    # what the server counted
    generated: int = 0
    """Tokens generated, as the server's own counter (streams it aborted included)."""
    requests: list[dict] = field(default_factory=list)
    closed_streams: int = 0
    finished_streams: int = 0
    peers: list[FakeServer] = field(default_factory=list)
    """The servers of one run: they learn where its output starts from the render."""
    _last_prompt: list[int] = field(default_factory=list)
    _prompt_len: int | None = None
    _active: str | None = None

    def stage(self, **overrides: Any) -> StageConfig:
        return StageConfig(
            base_url=f"http://{self.model}.test/v1", model=self.model, temperature=0, **overrides
        )

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def token_at(self, position: int) -> int:
        script = self.script if self._active is None else self._active
        return ord(script[position]) if position < len(script) else EOS

    def top(self, position: int) -> list[tuple[int, float]]:
        token = self.token_at(position)
        probs = UNSURE if position in self.unsure else SURE
        others = [token + 1, token + 2]
        return [(t, math.log(p)) for t, p in zip([token, *others], probs, strict=True)]

    async def handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        body = json.loads(request.content) if request.content else {}
        if path == "/v1/models":
            owner = "llamacpp" if self.engine == "llamacpp" else "vllm"
            entry: dict[str, Any] = {"id": self.model, "owned_by": owner}
            if self.engine == "llamacpp":
                entry["meta"] = {"n_vocab": self.vocab}
            return httpx.Response(200, json={"data": [entry]})
        if path == "/apply-template":
            return httpx.Response(200, json={"prompt": self._template(body["messages"])})
        if path == "/tokenize":
            text = body.get("content") if self.engine == "llamacpp" else body.get("prompt")
            if "messages" in body:
                text = self._template(body["messages"])
            tokens = [i + self.shift for i in ids(text)]
            if "messages" in body or body.get("add_special"):  # the rendered chat prompt
                for server in self.peers:
                    server._prompt_len = len(tokens)
            return httpx.Response(200, json={"tokens": tokens})
        if path == "/detokenize":
            text = "".join(chr(i) if i != EOS else "<|im_end|>" for i in body["tokens"])
            return httpx.Response(
                200, json={"content" if self.engine == "llamacpp" else "prompt": text}
            )
        if path == "/v1/completions":
            return self._complete(body)
        return httpx.Response(404, json={"error": {"message": f"no route {path}"}})

    def _template(self, messages: list[dict]) -> str:
        return self.prompt_text + messages[-1]["content"] + "\n"

    def _complete(self, body: dict) -> httpx.Response:
        self.requests.append(body)
        fault = self.fault
        if fault and fault.status and fault.times > 0:
            fault.times -= 1
            return httpx.Response(fault.status, json={"error": {"message": "scripted failure"}})
        prompt = body["prompt"]
        assert self._prompt_len is not None, "render the prompt first"
        start = len(prompt) - self._prompt_len
        self._active = self._branch(prompt[self._prompt_len :])
        cached = self._common(prompt) if self.cached else 0
        self._last_prompt = list(prompt)
        count = body["max_tokens"]
        positions = []
        for position in range(start, start + count):
            positions.append(position)
            if self.token_at(position) == EOS:
                break
        finish = "stop" if self.token_at(positions[-1]) == EOS else "length"
        if not body.get("stream"):
            self.generated += len(positions)
            reply = self._reply(positions, finish, len(prompt), cached)
            if body.get("prompt_logprobs") and self.engine == "vllm":
                reply["choices"][0]["prompt_logprobs"] = self._prompt_logprobs(prompt)
            return httpx.Response(200, json=reply)
        return httpx.Response(
            200,
            stream=_Stream(self, self._events(positions, finish, len(prompt), cached)),
            headers={"content-type": "text/event-stream"},
        )

    def _branch(self, output: list[int]) -> str | None:
        """The script the model follows after ``output`` (None: its own)."""
        for p, token in enumerate(output):
            if token != self.token_at_script(p):
                tail = self.branches.get(p)
                return None if tail is None else "".join(map(chr, output[: p + 1])) + tail
        return None

    def token_at_script(self, position: int) -> int:
        return ord(self.script[position]) if position < len(self.script) else EOS

    def _prompt_logprobs(self, prompt: list[int]) -> list[dict | None]:
        """vLLM's: None for the first token, then the prompt's token and the model's top-1
        (over the output, its script's token at each position: teacher-forced)."""
        scored: list[dict | None] = [None]
        assert self._prompt_len is not None
        for j in range(1, len(prompt)):
            top = self.token_at_script(j - self._prompt_len) if j >= self._prompt_len else prompt[j]
            entry = {str(top): {"logprob": -0.1, "rank": 1, "decoded_token": f"token_id:{top}"}}
            if prompt[j] != top:
                entry[str(prompt[j])] = {"logprob": -2.5, "rank": 7, "decoded_token": "x"}
            scored.append(entry)
        return scored

    def _common(self, prompt: list[int]) -> int:
        n = 0
        for a, b in zip(prompt, self._last_prompt, strict=False):
            if a != b:
                break
            n += 1
        return min(n, len(prompt) - 1)

    def _logprobs(self, positions: list[int]) -> dict:
        if self.engine == "llamacpp":
            return {
                "content": [
                    {
                        "id": self.token_at(p),
                        "token": chr(self.token_at(p)) if self.token_at(p) != EOS else "",
                        "logprob": self.top(p)[0][1],
                        "top_logprobs": [{"id": t, "logprob": lp} for t, lp in self.top(p)],
                    }
                    for p in positions
                ]
            }
        return {
            "tokens": [f"token_id:{self.token_at(p)}" for p in positions],
            "token_logprobs": [self.top(p)[0][1] for p in positions],
            "top_logprobs": [{f"token_id:{t}": lp for t, lp in self.top(p)} for p in positions],
        }

    def _text(self, positions: list[int]) -> str:
        return "".join(chr(self.token_at(p)) for p in positions if self.token_at(p) != EOS)

    def _usage(self, prompt: int, completion: int, cached: int) -> dict:
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "prompt_tokens_details": {"cached_tokens": cached},
        }

    def _reply(self, positions: list[int], finish: str, prompt: int, cached: int) -> dict:
        choice = {"text": self._text(positions), "logprobs": self._logprobs(positions)}
        return {
            "choices": [choice | {"finish_reason": finish}],
            "usage": self._usage(prompt, len(positions), cached),
        }

    async def _events(
        self, positions: list[int], finish: str, prompt: int, cached: int
    ) -> AsyncIterator[bytes]:
        fault = self.fault if self.fault and self.fault.times > 0 else None
        for sent, position in enumerate(positions):
            if fault and sent == fault.die_after:
                fault.times -= 1
                raise httpx.RemoteProtocolError("peer closed connection mid-stream")
            if fault and sent == fault.stall_after:
                fault.times -= 1
                await asyncio.sleep(3600)
            self.generated += 1
            last = position == positions[-1]
            choice = {"text": self._text([position]), "logprobs": self._logprobs([position])}
            # vLLM ends on its last token's chunk, llama.cpp on a chunk of its own
            choice["finish_reason"] = finish if last and self.engine == "vllm" else None
            chunk: dict[str, Any] = {"choices": [choice]}
            if self.engine == "llamacpp":
                chunk["timings"] = {"cache_n": cached, "prompt_n": prompt - cached}
            yield f"data: {json.dumps(chunk)}\n\n".encode()
        end: dict[str, Any] = {"choices": []}
        if self.engine == "llamacpp":
            end["choices"] = [{"text": "", "logprobs": None, "finish_reason": finish}]
        end["usage"] = self._usage(prompt, len(positions), cached)
        self.finished_streams += 1
        yield f"data: {json.dumps(end)}\n\ndata: [DONE]\n\n".encode()


def servers_for(*fakes: FakeServer):
    """A ``ServerFactory`` opening each fake by its model name."""
    by_model = {fake.model: fake for fake in fakes}
    for fake in fakes:
        fake.peers = list(fakes)

    def factory(stage: StageConfig, timeout_s: float, engine: Engine | None) -> TokenServer:
        fake = by_model[stage.model]
        return TokenServer(stage, timeout_s, transport=fake.transport(), engine=engine)

    return factory

"""Errors an A2R run raises. Each message says what went wrong and what to do.

Each class says how a door answers it: its ``http_status``, and the OpenAI error body's
``openai_type`` and ``openai_code`` (set as class keywords: ``status=``, ``kind=``,
``code=``). 400: the run cannot go as asked. 502: a model server rejected a call or answered
with a reply that cannot be used. 503: a model server stayed unreachable (or failed) through
every retry, or too few explorer paths succeeded; 504: what failed was a timeout.
Anything else is a 500.

    A2RError (500)
    ├── ConfigurationError, InvalidQuestionError, ContextOverflowError (400)
    ├── UnknownThreadError (404)
    ├── ModelRequestError, MissingUsageError, MalformedReplyError (502)
    ├── EndpointUnavailableError, NotEnoughPathsError (503)
    │   └── EndpointTimeoutError (504)
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import ValidationError


class A2RError(RuntimeError):
    """Base class of every error this package raises on purpose.

    A ``RuntimeError``, so LangGraph Server shows a failed run's message (it hides the
    messages of unknown exception types). Messages hold URLs, model names and the server's
    own words, never an API key.
    """

    http_status: ClassVar[int] = 500
    openai_type: ClassVar[str] = "server_error"
    openai_code: ClassVar[str | None] = None

    def __init_subclass__(
        cls, status: int | None = None, kind: str | None = None, code: str | None = None
    ) -> None:
        super().__init_subclass__()
        if status is not None:
            cls.http_status, cls.openai_type, cls.openai_code = (
                status,
                kind or cls.openai_type,
                code,
            )


class ConfigurationError(
    A2RError, ValueError, status=400, kind="invalid_request_error", code="invalid_value"
):
    """The configuration cannot work as given (e.g. it names an API key variable that is unset)."""


class InvalidQuestionError(
    A2RError, ValueError, status=400, kind="invalid_request_error", code="invalid_value"
):
    """The input question is missing or empty."""


class ModelRequestError(A2RError, status=502, kind="upstream_error", code="model_request_rejected"):
    """The server rejected a request (HTTP 4xx). Never retried: retrying cannot fix it."""

    def __init__(self, stage: str, url: str, model: str, status: int, server_message: str):
        self.stage, self.url, self.model = stage, url, model
        self.status, self.server_message = status, server_message
        super().__init__(
            f"{stage} request to {url} (model {model!r}) was rejected with HTTP {status}: "
            f"{server_message}"
        )


class EndpointUnavailableError(
    A2RError, status=503, kind="service_unavailable", code="model_server_unavailable"
):
    """A transient failure (connection, timeout, 429, 5xx) persisted through every retry."""

    def __init__(
        self, stage: str, url: str, model: str, attempts: int, cause: BaseException | None
    ):
        self.stage, self.url, self.model, self.attempts = stage, url, model, attempts
        detail = str(cause or "") or type(cause).__name__
        super().__init__(
            f"{stage} endpoint {url} (model {model!r}) failed after {attempts} attempt(s): "
            f"{type(cause).__name__}: {detail}"
        )


class EndpointTimeoutError(
    EndpointUnavailableError, status=504, kind="timeout", code="model_server_timeout"
):
    """Every attempt of a call ran out of time (``request_timeout_s``)."""


class MissingUsageError(A2RError, status=502, kind="upstream_error", code="model_usage_missing"):
    """The server's response carried no token usage; A2R accounts only what servers report."""


class MalformedReplyError(
    A2RError, status=502, kind="upstream_error", code="malformed_model_reply"
):
    """A server answered with a reply that cannot be read: not JSON, invalid JSON, no
    ``choices``, a null message, non-integer token counts, a stream cut short (no chunk or
    no ``usage``). A server fault: retried like a 5xx, and once the retries are spent it is
    the cause of an ``EndpointUnavailableError`` (an explorer path fails, the synthesizer
    fails the run). The message says what was wrong, never an API key."""


class NotEnoughPathsError(
    A2RError, status=503, kind="service_unavailable", code="not_enough_paths"
):
    """Fewer explorer paths succeeded than ``min_paths`` requires."""

    def __init__(self, succeeded: int, min_paths: int, failures: dict[int, str]):
        self.succeeded, self.min_paths, self.failures = succeeded, min_paths, failures
        lines = "\n".join(f"  path {i}: {why}" for i, why in sorted(failures.items()))
        super().__init__(
            f"only {succeeded} explorer path(s) succeeded but min_paths={min_paths}; "
            f"failed paths:\n{lines}"
        )


class ContextOverflowError(
    A2RError, status=400, kind="invalid_request_error", code="context_length_exceeded"
):
    """The synthesizer's prompt cannot be made to fit its context window."""


class UnknownThreadError(
    A2RError, KeyError, status=404, kind="invalid_request_error", code="thread_not_found"
):
    """No run was saved under this thread id."""

    def __str__(self) -> str:
        return str(self.args[0])


def error_class(name: str) -> type[A2RError] | None:
    """The error class called ``name`` (a run's error as LangGraph Server reports it), if
    it is one of this module's."""
    classes, seen = [A2RError], {}
    while classes:
        cls = classes.pop()
        seen[cls.__name__] = cls
        classes.extend(cls.__subclasses__())
    return seen.get(name)


def describe_validation_error(
    error: ValidationError, *, field_prefix: str = "", env_prefix: str | None = "A2R_"
) -> str:
    """One line per problem: the field, what is wrong, the value, and the variable to set."""
    lines = [f"invalid {error.title} ({error.error_count()} problem(s)):"]
    for problem in error.errors():
        field = field_prefix + (".".join(str(part) for part in problem["loc"]) or "value")
        env = (
            env_prefix + "__".join(str(part).upper() for part in problem["loc"])
            if env_prefix
            else None
        )
        if problem["type"] == "missing":
            fix = f"set {env} or pass the matching --option" if env else "add it"
            lines.append(f"  {field}: required: {fix}")
        else:
            where = f"; env {env}" if env else ""
            lines.append(f"  {field}: {problem['msg']} (got {problem['input']!r}{where})")
    return "\n".join(lines)

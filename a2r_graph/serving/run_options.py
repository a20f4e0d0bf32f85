"""What an untrusted run may choose, and how it combines with the deployment's configuration.

A run that arrives over HTTP (LangGraph Server, MCP, a cron, an assistant's preset) is
somebody else's input. It may choose how to sample (``RUN_FIELDS``, ``RUN_STAGE_FIELDS``); the
deployment, through its environment (``A2R_*``), decides everything else: which endpoints
are called, with which key, prompts, prices, timeouts. A run may point a stage at another
endpoint only if the operator lists it in ``A2R_SERVER_ALLOWED_BASE_URLS``, and then no key is
sent there: a key only ever goes to the endpoint it was configured with.
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from typing import Annotated, Any, Literal, Optional

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    HttpUrl,
    SecretStr,
    ValidationError,
    create_model,
    field_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, EnvSettingsSource, NoDecode, SettingsConfigDict

from a2r_graph.context import A2RContext, StageConfig, same_endpoint
from a2r_graph.errors import ConfigurationError, describe_validation_error
from a2r_graph.r2r.context import R2RContext, R2RSettings
from a2r_graph.r2reasoner.context import ReasonerContext, ReasonerSettings
from a2r_graph.stages import ENDPOINTS

RUN_FIELDS = (
    "n",
    "min_paths",
    "overflow",
    "confidence",
    "agreement",
    "shortcut",
    "waves",
    "top_references",
    "budget",
    "references",
    "synthesis_mode",
    "vote_first",
    "prompts",
)
"""Top-level context fields a run may set."""
RUN_STAGE_FIELDS = ("model", "base_url", "temperature", "top_p", "max_tokens", "seed")
"""Per-stage fields a run may set (``base_url`` only to an allowed endpoint)."""


def _optional(model: type[BaseModel], names: tuple[str, ...]) -> dict[str, Any]:
    """``model``'s fields ``names``, same types and bounds, unset by default."""
    fields = {}
    for name in names:
        info = model.model_fields[name]
        fields[name] = (
            Optional[info.annotation],  # noqa: UP045 (a type built at run time)
            FieldInfo.merge_field_infos(info, default=None, default_factory=None),
        )
    return fields


_FORBID = ConfigDict(extra="forbid", frozen=True)
StageOptions = create_model(
    "StageOptions",
    __config__=_FORBID,
    __doc__="What a run may set of one stage: the model on it and how to sample.",
    **_optional(StageConfig, RUN_STAGE_FIELDS),
)
_STAGE_FIELDS: dict[str, Any] = {stage: (StageOptions | None, Field(None)) for stage in ENDPOINTS}


class _Resolves(BaseModel):
    model_config = _FORBID

    def to_context(self) -> A2RContext:
        """The deployment's context with these options applied (``run_context``)."""
        return run_context(self)


RunOptions = create_model(
    "RunOptions",
    __base__=_Resolves,
    __doc__="The context a run on LangGraph Server may pass; the rest is the deployment's.",
    **_optional(A2RContext, RUN_FIELDS),
    **_STAGE_FIELDS,
)


R2R_RUN_FIELDS = ("router", "threshold", "top_k", "max_tokens", "llm_tokens_per_switch")
"""Routing settings an R2R run may set (the router's file is the deployment's)."""
R2R_STAGE_FIELDS = ("temperature", "top_p", "seed")
"""Per-model sampling an R2R run may set (the models and endpoints are the deployment's)."""


R2RRouting = create_model(
    "R2RRouting", __config__=_FORBID, **_optional(R2RSettings, R2R_RUN_FIELDS)
)
R2RSampling = create_model(
    "R2RSampling", __config__=_FORBID, **_optional(StageConfig, R2R_STAGE_FIELDS)
)


def _resolving(context_class: type[BaseModel]) -> type[BaseModel]:
    """A base for options whose ``to_context()`` is the deployment's ``context_class``
    (``A2R_*``) with them applied."""

    class Resolves(BaseModel):
        model_config = _FORBID

        def to_context(self) -> Any:
            try:
                return context_class(**self.model_dump(exclude_none=True))
            except ValidationError as error:
                raise ConfigurationError(
                    describe_validation_error(error, field_prefix="context.", env_prefix="A2R_")
                ) from None

    return Resolves


R2ROptions = create_model(
    "R2ROptions",
    __base__=_resolving(R2RContext),
    __doc__="The context an R2R run on a server may pass; the rest is the deployment's.",
    r2r=(R2RRouting | None, None),
    explorer=(R2RSampling | None, None),
    synthesizer=(R2RSampling | None, None),
)

REASONER_RUN_FIELDS = (
    "decomposer",
    "summarizer",
    "start",
    "escalate_below",
    "measure",
    "budget",
    "max_subtasks",
    "max_depth",
    "plan_attempts",
)
"""R2-Reasoner settings a run may set (tiers by the deployment's names, never an endpoint)."""
ReasonerPlanning = create_model(
    "ReasonerPlanning", __config__=_FORBID, **_optional(ReasonerSettings, REASONER_RUN_FIELDS)
)
ReasonerOptions = create_model(
    "ReasonerOptions",
    __base__=_resolving(ReasonerContext),
    __doc__="The context an R2-Reasoner run on a server may pass; the rest is the deployment's.",
    r2reasoner=(ReasonerPlanning | None, None),
)


class ServerSettings(BaseSettings):
    """A deployment's own settings (``A2R_SERVER_*``); no run can change them."""

    model_config = SettingsConfigDict(env_prefix="A2R_SERVER_", extra="ignore", frozen=True)

    api_key: SecretStr | None = Field(
        None,
        description="The key clients send (``x-api-key`` or ``Authorization: Bearer``) to "
        "LangGraph Server (a2r_graph.serving.server.auth). Unset: every request is refused, unless "
        "auth is 'none'.",
    )
    auth: Literal["api-key", "none"] = Field(
        "api-key",
        description="'none' serves without authentication: only for a server that nobody "
        "else can reach (a loopback development server).",
    )

    allowed_base_urls: Annotated[list[HttpUrl], NoDecode] = Field(
        default_factory=list,
        description="Endpoints besides the configured ones that runs may choose "
        "(comma- or space-separated); no API key is ever sent to them.",
    )
    allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Host names (without port) requests may be addressed to, e.g. "
        "a2r.example.com; '*' any. Unset: any with a key, only loopback names with auth 'none' "
        "(against DNS rebinding).",
    )
    allowed_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Web origins (scheme://host:port) whose pages may call the server; others "
        "are refused, same-origin requests always allowed.",
    )
    max_body_bytes: int = Field(
        1 << 20, ge=1024, description="Largest request body accepted (bytes); larger: 413."
    )

    @field_validator("allowed_base_urls", "allowed_hosts", "allowed_origins", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        return value.replace(",", " ").split() if isinstance(value, str) else value


def describe_run_error(error: ValidationError, prefix: str = "context.") -> str:
    """One line per problem, naming the field and what to do. Values are echoed only for
    fields a run sets: the deployment's own (URLs, variable names) stay unseen."""
    lines = []
    for problem in error.errors():
        loc = [str(part) for part in problem["loc"]]
        field, env = prefix + ".".join(loc), "A2R_" + "__".join(part.upper() for part in loc)
        message = problem["msg"].removeprefix("Value error, ")
        if problem["type"] == "extra_forbidden" and _is_deployment_field(loc):
            lines.append(
                f"{field}: set by the server's deployment ({env}), not by a run; a run may "
                f"set {', '.join(RUN_FIELDS)} and, per stage, {', '.join(RUN_STAGE_FIELDS)}"
            )
        elif problem["type"] == "extra_forbidden" and len(loc) > 1 and loc[0] in RUN_FIELDS:
            lines.append(f"{field}: unknown field")
        elif problem["type"] == "extra_forbidden":
            known = StageOptions.model_fields if len(loc) > 1 else RunOptions.model_fields
            lines.append(f"{field}: unknown field; a run may set {', '.join(known)}")
        elif problem["type"] == "missing":
            lines.append(f"{field}: required: the deployment sets {env}, or the run passes it")
        elif not loc:
            lines.append(f"context: {message}")
        elif _is_run_field(loc):
            lines.append(f"{field}: {message} (got {problem['input']!r})")
        else:
            lines.append(f"{field}: {message} (the deployment's {env} is invalid)")
    return "\n".join(lines)


def _is_run_field(loc: list[str]) -> bool:
    if loc[0] in RUN_FIELDS:
        return True
    if len(loc) == 1:
        return loc[0] in ENDPOINTS
    return loc[0] in ENDPOINTS and loc[1] in RUN_STAGE_FIELDS


def _is_deployment_field(loc: list[str]) -> bool:
    if len(loc) == 1:
        return loc[0] in A2RContext.model_fields
    return len(loc) == 2 and loc[0] in ENDPOINTS and loc[1] in StageConfig.model_fields


def parse_options(options: Any, schema: type[BaseModel] = RunOptions) -> BaseModel:
    """``options`` (JSON values, as a request carries them) as ``schema``, strictly as
    OpenAI reads a request: ``"4"`` or ``true`` is no count; ``ValidationError`` otherwise."""
    try:
        text = json.dumps(options, allow_nan=False)
    except (TypeError, ValueError):
        # not JSON (a Python caller's objects, NaN): validated as given, still strictly
        return schema.model_validate(options, strict=True)
    return schema.model_validate_json(text, strict=True)


def run_context(options: BaseModel | dict | None) -> A2RContext:
    """The deployment's context (``A2R_*``) with a run's options applied.

    Raises ``ConfigurationError`` naming the field for options a run may not set, values out
    of range, and endpoints the deployment does not allow.
    """
    try:
        if not isinstance(options, RunOptions):
            options = parse_options(options or {})
        # Every node of every run asks: cache per (options, A2R_* environment).
        environment = tuple(sorted(i for i in os.environ.items() if i[0].startswith("A2R_")))
        return _run_context(options, environment)
    except ValidationError as error:
        raise ConfigurationError(describe_run_error(error)) from None


@lru_cache(maxsize=256)
def _run_context(options: BaseModel, environment: tuple[tuple[str, str], ...]) -> A2RContext:
    values = options.model_dump(exclude_none=True)
    configured = EnvSettingsSource(A2RContext)()
    allowed = ServerSettings().allowed_base_urls
    default_url = StageConfig.model_fields["base_url"].default
    for stage in ENDPOINTS:
        url = values.get(stage, {}).get("base_url")
        if url is None or same_endpoint(
            url, configured.get(stage, {}).get("base_url", default_url)
        ):
            continue
        if not any(same_endpoint(url, allowed_url) for allowed_url in allowed):
            raise ConfigurationError(
                f"context.{stage}.base_url: {StageConfig(model='-', base_url=url).display_url} "
                "is not an endpoint this server allows; its operator can list it in "
                "A2R_SERVER_ALLOWED_BASE_URLS"
            )
    return A2RContext(**values)

"""Run configuration: the graph's LangGraph ``context_schema``.

One pydantic-settings model holds everything a run needs. Values come from, in
order of precedence: the context passed to ``invoke`` (or a LangGraph Server
assistant), environment variables (``A2R_N``, ``A2R_EXPLORER__BASE_URL``, ...),
and the defaults below.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    HttpUrl,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict


def token_cost(
    input_tokens: int, output_tokens: int, input_price_per_mtok: float, output_price_per_mtok: float
) -> float:
    """The paper's Tin * Pin + Tout * Pout, prices per 1M tokens."""
    return (input_tokens * input_price_per_mtok + output_tokens * output_price_per_mtok) / 1e6


def redact_url(url: str) -> str:
    """``url`` with any ``user:password@`` replaced by ``***@``, for anything printed."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc="***@" + parts.netloc.rpartition("@")[2]))


class StageConfig(BaseModel):
    """One model endpoint (explorer or synthesizer) and how to sample from it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    base_url: HttpUrl = Field(
        HttpUrl("http://127.0.0.1:8000/v1"),
        description="OpenAI-compatible base URL, e.g. http://gpu-host:8000/v1.",
    )
    model: str = Field(min_length=1, description="Model name as the server serves it.")
    api_key_env: str | None = Field(
        None,
        description="Name of the environment variable holding the API key "
        "(None: the server needs no key, as `vllm serve` without --api-key).",
    )
    temperature: float = Field(0.6, ge=0.0, le=2.0)
    top_p: float = Field(0.95, gt=0.0, le=1.0)
    max_tokens: int = Field(8192, ge=1, le=1_000_000, description="Completion token cap per call.")
    seed: int | None = Field(
        None,
        ge=0,
        description="Sampling seed. Explorer path i uses seed + i, so paths stay distinct.",
    )
    extra_body: dict[str, Any] = Field(
        default_factory=dict,
        description="Extra request fields for vLLM, e.g. {'top_k': 20}.",
    )
    input_price_per_mtok: float = Field(
        0.0,
        ge=0,
        allow_inf_nan=False,
        description="Price of 1M input (prompt) tokens, in your currency.",
    )
    output_price_per_mtok: float = Field(
        0.0,
        ge=0,
        allow_inf_nan=False,
        description="Price of 1M output (completion) tokens, in your currency.",
    )
    context_window: int | None = Field(
        None,
        ge=1,
        description="The model's context window in tokens (vLLM's --max-model-len). "
        "None: read max_model_len from the server's /v1/models.",
    )

    @property
    def url(self) -> str:
        """The base URL the client calls (credentials included)."""
        return str(self.base_url).rstrip("/")

    @property
    def display_url(self) -> str:
        """The base URL for logs, errors and spans: a ``user:password@`` part is redacted."""
        return redact_url(self.url)

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        """One call's cost at this endpoint's prices."""
        return token_cost(
            input_tokens, output_tokens, self.input_price_per_mtok, self.output_price_per_mtok
        )


STAGES = ("explorer", "synthesizer")
_SETTINGS_KWARGS = frozenset({"_case_sensitive", "_env_prefix", "_env_nested_delimiter"})


def same_endpoint(a: object, b: object) -> bool:
    """Whether two base URLs name the same endpoint (as ``StageConfig.url`` normalizes them)."""
    try:
        return str(HttpUrl(str(a))).rstrip("/") == str(HttpUrl(str(b))).rstrip("/")
    except ValueError:
        return False


def keys_follow_endpoints(given: dict[str, Any], environment: dict[str, Any]) -> dict[str, Any]:
    """The environment's settings, less each stage's ``api_key_env`` where ``given`` (the
    caller's values) points that stage at another endpoint: a key is only ever sent to the
    endpoint it was configured with. (pydantic-settings would otherwise merge the
    environment's key variable into a caller's ``{"base_url": ...}``.)"""
    default_url = StageConfig.model_fields["base_url"].default
    for stage in STAGES:
        caller, configured = given.get(stage), environment.get(stage)
        if (
            isinstance(caller, dict)
            and "base_url" in caller
            and isinstance(configured, dict)
            and "api_key_env" in configured
            and not same_endpoint(caller["base_url"], configured.get("base_url", default_url))
        ):
            environment[stage] = {k: v for k, v in configured.items() if k != "api_key_env"}
    return environment


class A2RContext(BaseSettings):
    """Everything one A2R run needs to know besides the question."""

    model_config = SettingsConfigDict(
        env_prefix="A2R_",
        env_nested_delimiter="__",
        extra="ignore",
        frozen=True,
    )

    explorer: StageConfig
    synthesizer: StageConfig
    n: int = Field(4, ge=1, le=64, description="Number of explorer paths (N).")
    min_paths: int = Field(
        1, ge=1, le=64, description="Explorer paths that must succeed for synthesis to run."
    )
    request_timeout_s: float = Field(
        600.0, gt=0, le=86_400, description="Wall-clock limit for one model call, in seconds."
    )
    max_attempts: int = Field(
        4, ge=1, le=20, description="Attempts per model call on transient errors (1 = no retry)."
    )
    retry_initial_wait_s: float = Field(0.5, ge=0, le=600, description="First backoff wait.")
    retry_max_wait_s: float = Field(20.0, ge=0, le=3600, description="Longest backoff wait.")
    overflow: Literal["truncate", "drop", "error"] = Field(
        "truncate",
        description="When the references would overflow the synthesizer's context window: "
        "truncate the longest from the front (each keeps its end, where its final answer is), "
        "drop the longest, or stop with ContextOverflowError.",
    )
    prompts_dir: Path | None = Field(
        None,
        description="Directory with explorer.txt / synthesizer.txt overriding the packaged prompts.",
    )

    def __init__(self, **values: Any) -> None:
        # extra="ignore" must stay, for unrelated A2R_* variables; a misspelt keyword
        # (``min_path=3``) is the caller's mistake, not the environment's: refuse it.
        if unknown := sorted(set(values) - set(type(self).model_fields) - _SETTINGS_KWARGS):
            raise ValidationError.from_exception_data(
                type(self).__name__,
                [{"type": "extra_forbidden", "loc": (name,), "input": values[name]} for name in unknown],
            )
        super().__init__(**values)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        given = getattr(init_settings, "init_kwargs", {})

        def environment() -> dict[str, Any]:
            return keys_follow_endpoints(given, env_settings())

        return (init_settings, environment, dotenv_settings, file_secret_settings)

    @field_validator("prompts_dir")
    @classmethod
    def _prompts_load(cls, prompts_dir: Path | None) -> Path | None:
        """A prompts_dir must exist, and each prompt in it load with its placeholders: found
        when the context is built, not after the explorers were paid for."""
        from a2r_graph.prompts import check_prompts_dir

        return None if prompts_dir is None else check_prompts_dir(prompts_dir)

    @model_validator(mode="after")
    def _min_paths_within_n(self) -> A2RContext:
        if self.min_paths > self.n:
            raise ValueError(
                f"min_paths ({self.min_paths}) must be <= n ({self.n}): lower min_paths or raise n"
            )
        return self

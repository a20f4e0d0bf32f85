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

from a2r_graph.confidence import Measure
from a2r_graph.prompts import PLACEHOLDERS, checked_template
from a2r_graph.stages import ENDPOINTS

SynthesisMode = Literal["synthesize", "select", "vote", "weighted_vote", "vote_first"]
VOTES: tuple[SynthesisMode, ...] = ("vote", "weighted_vote", "vote_first")
"""The modes whose vote may answer without the synthesizer."""

MAX_PROMPT_CHARS = 20_000
MAX_SEED = 2**63 - 1 - 1024
"""A signed 64-bit seed (vLLM's bound), with room for the path index added to it."""


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
    model: str = Field(
        min_length=1, max_length=256, description="Model name as the server serves it."
    )
    api_key_env: str | None = Field(
        None,
        description="Name of the environment variable holding the API key "
        "(None: the server needs no key, as `vllm serve` without --api-key); sent only to "
        "the base_url it was configured with.",
    )
    temperature: float = Field(0.6, ge=0.0, le=2.0, description="Sampling temperature.")
    top_p: float = Field(0.95, gt=0.0, le=1.0, description="Nucleus sampling mass.")
    max_tokens: int = Field(8192, ge=1, le=1_000_000, description="Completion token cap per call.")
    seed: int | None = Field(
        None,
        ge=0,
        le=MAX_SEED,
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


class ConfidenceConfig(BaseModel):
    """Path confidence (``a2r_graph.confidence``): explorers ask for top-k logprobs, and each
    path gets DeepConf's measures. Off (None) by default: no logprobs are asked for."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    top_logprobs: int = Field(
        5,
        ge=1,
        le=20,
        description="Candidates per token the explorer server returns (vLLM refuses more "
        "than its --max-logprobs, 20 by default).",
    )
    group_size: int = Field(
        256, ge=1, le=1_000_000, description="Tokens per sliding window of lowest_group."
    )
    tail_tokens: int = Field(256, ge=1, le=1_000_000, description="Tokens the tail measure covers.")
    measure: Measure = Field(
        "lowest_group",
        description="The measure the policies rank and threshold paths by: mean, "
        "lowest_group or tail.",
    )


class Agreement(BaseModel):
    """When the explorer paths agree: what the shortcut and waves test. The largest group
    of equivalent boxed answers among the usable paths (``answers.canonical_answer``) must
    hold ``min_paths`` paths and ``min_share`` of the usable ones, each at least
    ``min_confidence`` confident (when set)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    min_share: float = Field(
        1.0, gt=0.5, le=1.0, description="Share of the usable paths in the agreeing group."
    )
    min_paths: int = Field(2, ge=1, le=64, description="Paths in the agreeing group, at least.")
    min_confidence: float | None = Field(
        None,
        ge=0,
        allow_inf_nan=False,
        description="Each agreeing path's confidence (confidence.measure) at least this; "
        "needs confidence.",
    )


class VoteFirst(BaseModel):
    """When ``synthesis_mode="vote_first"`` answers by the vote: the most common answer
    among the usable paths must be the only one with its count (a tie goes to the
    synthesizer), and hold ``min_paths`` paths and ``min_share`` of the usable ones."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    min_paths: int = Field(2, ge=1, le=64, description="Paths holding the voted answer, at least.")
    min_share: float = Field(
        0.0, ge=0.0, le=1.0, description="Share of the usable paths holding it, at least."
    )


class Budget(BaseModel):
    """A per-run cap on the explorers' spend. It is checked before each wave (``waves``):
    once reached, no further explorer starts and the synthesizer runs over the finished
    paths (the result's ``decisions.budget`` says so)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_output_tokens: int | None = Field(None, ge=1, description="Explorer output tokens.")
    max_cost: float | None = Field(
        None, gt=0, allow_inf_nan=False, description="Explorer cost (the stage's prices)."
    )

    @model_validator(mode="after")
    def _a_limit(self) -> Budget:
        if self.max_output_tokens is None and self.max_cost is None:
            raise ValueError("a budget needs max_output_tokens or max_cost")
        return self


class PromptTexts(BaseModel):
    """Prompt templates given as text instead of files (``a2r_graph/prompts``): an assistant's
    or a run's own. Each needs the placeholders of its packaged file: ``{question}``, and
    ``{references}`` for the synthesizer and the selector."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    explorer: str | None = Field(None, max_length=MAX_PROMPT_CHARS)
    synthesizer: str | None = Field(None, max_length=MAX_PROMPT_CHARS)
    selector: str | None = Field(None, max_length=MAX_PROMPT_CHARS)

    @model_validator(mode="after")
    def _placeholders(self) -> PromptTexts:
        for name in PLACEHOLDERS:
            if (text := getattr(self, name)) is not None:
                checked_template(name, f"prompts.{name}", text)
        return self


class ReferenceOptions(BaseModel):
    """How the answer components are laid out for the synthesizer (``policies.arrange``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    order: Literal["index", "grouped"] = Field(
        "index",
        description="index: in path order; grouped: references with the same final answer "
        "together, the most common answer first.",
    )
    dedupe: bool = Field(
        False, description="One reference per distinct final answer (the first path's)."
    )
    tally: bool = Field(
        False,
        description="Tell the synthesizer how many references share each final answer.",
    )


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
    for stage in ENDPOINTS:
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


class StrictSettings(BaseSettings):
    """Settings that refuse a misspelt keyword and send an API key only to its endpoint: the
    base of every run's context (``A2RContext``, ``r2r.R2RContext``). Methods only: each
    subclass declares its fields."""

    def __init__(self, **values: Any) -> None:
        # extra="ignore" must stay, for unrelated A2R_* variables; a misspelt keyword
        # (``min_path=3``) is the caller's mistake, not the environment's: refuse it.
        if unknown := sorted(set(values) - set(type(self).model_fields) - _SETTINGS_KWARGS):
            raise ValidationError.from_exception_data(
                type(self).__name__,
                [
                    {"type": "extra_forbidden", "loc": (name,), "input": values[name]}
                    for name in unknown
                ],
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

        # pydantic-settings takes a callable returning the values as a source too
        return (init_settings, environment, dotenv_settings, file_secret_settings)  # type: ignore[return-value]


class A2RContext(StrictSettings):
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
        description="Directory with explorer.txt / synthesizer.txt / selector.txt overriding "
        "the packaged prompts.",
    )
    prompts: PromptTexts = Field(
        default_factory=lambda: PromptTexts(),
        description="Prompt templates as text, e.g. an assistant's own synthesizer prompt; "
        "each wins over prompts_dir and the packaged file.",
    )

    confidence: ConfidenceConfig | None = Field(
        None, description="Path confidence from top-k logprobs (None: off, no logprobs asked)."
    )
    agreement: Agreement = Field(
        default_factory=Agreement, description="When the paths agree (shortcut and waves)."
    )
    shortcut: bool = Field(
        False,
        description="Skip the synthesizer when the explored paths agree: the answer is theirs "
        "(decisions.shortcut says which paths agreed).",
    )
    waves: tuple[int, ...] = Field(
        (),
        max_length=64,
        description="Adaptive N: explore in waves, stopping once the paths agree. The path "
        "counts after which to check, e.g. [2] with n=4: 2 paths, the other 2 only if the "
        "first 2 disagree. Empty: all n at once.",
    )
    top_references: int | None = Field(
        None,
        ge=1,
        le=64,
        description="Pass only the k most confident answer components to the synthesizer "
        "(needs confidence).",
    )
    budget: Budget | None = Field(None, description="Cap on the explorers' spend per run.")
    session_header: str | None = Field(
        "X-Session-ID",
        pattern=r"^[A-Za-z0-9-]{1,64}$",
        description="HTTP header carrying the run's session id (its thread id, else a "
        "per-run id) on every model call, so that a router with consistent hashing "
        "(vllm-router --policy consistent_hash) keeps a run's explorers on one replica and "
        "its prefix cache; None: no header.",
    )
    references: ReferenceOptions = Field(
        default_factory=ReferenceOptions,
        description="Order, deduplication and an answer tally of the synthesizer's references.",
    )
    synthesis_mode: SynthesisMode = Field(
        "vote_first",
        description="How the paths become the answer. synthesize: the synthesizer writes its "
        "own (A2R); select: it names the best reference (GenSelect, prompt selector.txt); "
        "vote: the most common final answer, no synthesizer call; weighted_vote: DeepConf's "
        "vote weighted by path confidence (needs confidence); vote_first: the vote when one "
        "answer leads (vote_first sets by how much), else the synthesizer.",
    )
    vote_first: VoteFirst = Field(
        default_factory=VoteFirst,
        description="When vote_first's vote decides (a tie or a weak lead: the synthesizer).",
    )

    @field_validator("prompts_dir")
    @classmethod
    def _prompts_load(cls, prompts_dir: Path | None) -> Path | None:
        """A prompts_dir must exist, and each prompt in it load with its placeholders: found
        when the context is built, not after the explorers were paid for."""
        from a2r_graph.prompts import check_prompts_dir

        return None if prompts_dir is None else check_prompts_dir(prompts_dir)

    @model_validator(mode="after")
    def _consistent(self) -> A2RContext:
        if self.min_paths > self.n:
            raise ValueError(
                f"min_paths ({self.min_paths}) must be <= n ({self.n}): lower min_paths or raise n"
            )
        if any(b <= a for a, b in zip(self.waves, self.waves[1:], strict=False)) or any(
            not 1 <= wave < self.n for wave in self.waves
        ):
            raise ValueError(
                f"waves {list(self.waves)} must be increasing path counts below n ({self.n}), "
                "e.g. [2] for n=4"
            )
        needs = {
            "top_references": self.top_references,
            "agreement.min_confidence": self.agreement.min_confidence,
        }
        if self.confidence is None and (wanting := [k for k, v in needs.items() if v is not None]):
            raise ValueError(
                f"{', '.join(wanting)} ranks paths by confidence: set confidence "
                "(e.g. {'top_logprobs': 5}, or A2R_CONFIDENCE__TOP_LOGPROBS=5)"
            )
        if self.synthesis_mode == "weighted_vote" and self.confidence is None:
            raise ValueError(
                "synthesis_mode weighted_vote weighs each path's vote by its confidence: set "
                "confidence (e.g. {'top_logprobs': 5}, or A2R_CONFIDENCE__TOP_LOGPROBS=5), or "
                "use synthesis_mode vote"
            )
        if self.budget is not None and not self.waves:
            raise ValueError(
                "a budget is checked between waves: set waves too (e.g. [1, 2, 3] for n=4 "
                "checks after every path), or no budget"
            )
        return self

"""An R2R run's configuration: the two endpoints A2R already names (the explorer endpoint is
the small model, the synthesizer endpoint the large one, ``A2R_EXPLORER__*`` and
``A2R_SYNTHESIZER__*``), the same retry settings (``A2R_MAX_ATTEMPTS`` ...), and the routing
(``A2R_R2R__ROUTER``, ``A2R_R2R__THRESHOLD`` ...)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from a2r_graph.context import A2RContext, StageConfig, StrictSettings, token_cost
from a2r_graph.r2r.routers import ROUTERS, Router, router_for

MAX_OUTPUT_TOKENS = 32_768
_SHARED = A2RContext.model_fields


def _cached_price(model: str) -> Any:
    return Field(
        None,
        ge=0,
        allow_inf_nan=False,
        description=f"Price of 1M input tokens the {model} server had cached (None: its input "
        "price).",
    )


class R2RSettings(BaseModel):
    """How the tokens are routed."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    router: str = Field(
        "entropy",
        description="entropy: flag SLM tokens whose top-k entropy is above threshold (nats); "
        "top1: flag those whose top-1 probability is below threshold; linear: a trained "
        "logistic router read from router_file.",
    )
    router_file: Path | None = Field(
        None,
        description="The linear router's JSON file: top_k, weights over token_features, bias, "
        "threshold (a trusted setting: never a run option a server's caller may set).",
    )
    threshold: float | None = Field(
        None,
        ge=0,
        allow_inf_nan=False,
        description="The router's threshold (None: its default, 0.45 nats for entropy, 0.5 "
        "for top1).",
    )
    top_k: int = Field(
        10,
        ge=1,
        le=20,
        description="Candidates per SLM token the server returns (vLLM refuses more than its "
        "--max-logprobs, 20 by default).",
    )
    max_tokens: int = Field(
        4096, ge=1, le=MAX_OUTPUT_TOKENS, description="Output tokens of the run, both models'."
    )
    llm_tokens_per_switch: int = Field(
        1,
        ge=1,
        le=256,
        description="Tokens the LLM writes at each flagged position before the SLM resumes "
        "(R2R: 1).",
    )
    slm_cached_input_price_per_mtok: float | None = _cached_price("SLM")
    llm_cached_input_price_per_mtok: float | None = _cached_price("LLM")

    @field_validator("router")
    @classmethod
    def _known(cls, router: str) -> str:
        if router not in ROUTERS:
            raise ValueError(f"no router called {router!r}: choose one of {sorted(ROUTERS)}")
        return router

    @model_validator(mode="after")
    def _router_loads(self) -> R2RSettings:
        """A router file must load when the settings are made, not after the SLM was paid."""
        if self.router_file is not None and self.router != "linear":
            raise ValueError(f"router_file is the linear router's; router is {self.router!r}")
        self.make_router()
        return self

    def make_router(self) -> Router:
        return router_for(self.router, self.threshold, self.router_file)


class R2RContext(StrictSettings):
    """Everything one R2R run needs to know besides the question."""

    model_config = SettingsConfigDict(
        env_prefix="A2R_", env_nested_delimiter="__", extra="ignore", frozen=True
    )

    explorer: StageConfig = Field(description="The small model (SLM): it writes most tokens.")
    synthesizer: StageConfig = Field(
        description="The large model (LLM): it writes the flagged tokens. Its tokenizer must be "
        "the SLM's."
    )
    r2r: R2RSettings = Field(default_factory=R2RSettings, description="The routing.")
    request_timeout_s: float = _SHARED["request_timeout_s"]  # type: ignore[assignment]
    max_attempts: int = _SHARED["max_attempts"]  # type: ignore[assignment]
    retry_initial_wait_s: float = _SHARED["retry_initial_wait_s"]  # type: ignore[assignment]
    retry_max_wait_s: float = _SHARED["retry_max_wait_s"]  # type: ignore[assignment]

    def cost(self, model: str, input_tokens: int, cached_tokens: int, output_tokens: int) -> float:
        """One call's cost: its uncached input, cached input and output at ``model``'s
        (``slm`` or ``llm``) prices."""
        stage = self.explorer if model == "slm" else self.synthesizer
        cached_price = getattr(self.r2r, f"{model}_cached_input_price_per_mtok")
        if cached_price is None:
            cached_price = stage.input_price_per_mtok
        return token_cost(
            input_tokens - cached_tokens,
            output_tokens,
            stage.input_price_per_mtok,
            stage.output_price_per_mtok,
        ) + token_cost(cached_tokens, 0, cached_price, 0)

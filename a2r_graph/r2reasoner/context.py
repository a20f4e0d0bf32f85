"""An R2-Reasoner run's configuration: the model tiers, smallest first (``A2R_TIERS``, a JSON
list of endpoints with a ``name`` each; unset: the explorer endpoint as ``small`` and the
synthesizer endpoint as ``large``, ``A2R_EXPLORER__*`` and ``A2R_SYNTHESIZER__*``), the same
retry settings as A2R (``A2R_MAX_ATTEMPTS`` ...), and how subtasks are planned and allocated
(``A2R_R2REASONER__START``, ``A2R_R2REASONER__ESCALATE_BELOW`` ...)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_settings import SettingsConfigDict

from a2r_graph.confidence import Measure
from a2r_graph.context import A2RContext, ConfidenceConfig, StageConfig, StrictSettings

_SHARED = A2RContext.model_fields
Start = Literal["smallest", "tag", "largest"]


class Tier(StageConfig):
    """One model endpoint subtasks can be given to, with its prices."""

    name: str = Field(
        pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$", description="How results and metrics name it."
    )


class ReasonerSettings(BaseModel):
    """How a question is planned, its subtasks allocated, and the answer summarized."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    decomposer: str | None = Field(
        None, description="The tier that writes the subtasks (None: the largest)."
    )
    summarizer: str | None = Field(
        None,
        description="The tier that writes the final answer from the subtasks' results (None: "
        "the largest; without a plan the largest answers the whole question).",
    )
    start: Start = Field(
        "smallest",
        description="A subtask's first tier: smallest; tag (the decomposer's difficulty: easy "
        "the smallest, hard the largest); largest.",
    )
    escalate_below: float | None = Field(
        None,
        ge=0,
        allow_inf_nan=False,
        description="Give a subtask to the next tier when its answer's confidence (measure) is "
        "below this, or it wrote no result (None: never escalate).",
    )
    measure: Measure = Field("mean", description="The confidence measure escalation reads.")
    budget: float | None = Field(
        None,
        ge=0,
        allow_inf_nan=False,
        description="Cost per run past which no subtask escalates (None: no limit).",
    )
    max_subtasks: int = Field(6, ge=1, le=16, description="Most subtasks a plan may have.")
    max_depth: int = Field(6, ge=1, le=16, description="Most levels of dependencies.")
    plan_attempts: int = Field(
        2,
        ge=0,
        le=5,
        description="Decompositions tried before the question goes whole to the summarizer "
        "(0: none, the summarizer alone answers: the baseline the method is measured against).",
    )
    plan_max_tokens: int = Field(512, ge=16, le=8192, description="Output tokens of a plan.")
    confidence: ConfidenceConfig = Field(
        default_factory=lambda: ConfidenceConfig(group_size=32, tail_tokens=32),
        description="The logprobs subtask calls ask for, and the windows of the measures.",
    )


class ReasonerContext(StrictSettings):
    """Everything one R2-Reasoner run needs to know besides the question."""

    model_config = SettingsConfigDict(
        env_prefix="A2R_", env_nested_delimiter="__", extra="ignore", frozen=True
    )

    tiers: list[Tier] = Field(
        min_length=1,
        max_length=16,
        description="The models, smallest (cheapest) first (unset: explorer and synthesizer).",
    )
    explorer: StageConfig | None = Field(None, description="The ``small`` tier without tiers.")
    synthesizer: StageConfig | None = Field(None, description="The ``large`` tier without tiers.")
    r2reasoner: ReasonerSettings = Field(default_factory=ReasonerSettings)
    request_timeout_s: float = _SHARED["request_timeout_s"]  # type: ignore[assignment]
    max_attempts: int = _SHARED["max_attempts"]  # type: ignore[assignment]
    retry_initial_wait_s: float = _SHARED["retry_initial_wait_s"]  # type: ignore[assignment]
    retry_max_wait_s: float = _SHARED["retry_max_wait_s"]  # type: ignore[assignment]
    session_header: str | None = _SHARED["session_header"]  # type: ignore[assignment]

    @model_validator(mode="before")
    @classmethod
    def _default_tiers(cls, data: Any) -> Any:
        """No ``tiers``: A2R's two endpoints, the explorer as ``small``, the synthesizer as
        ``large``."""
        if isinstance(data, dict) and not data.get("tiers"):
            stages = [(name, data.get(role)) for name, role in TIER_ROLES]
            tiers = [_as_dict(stage) | {"name": name} for name, stage in stages if stage]
            data = {**data, "tiers": tiers}
        return data

    @model_validator(mode="after")
    def _names(self) -> ReasonerContext:
        names = [tier.name for tier in self.tiers]
        if len(set(names)) != len(names):
            raise ValueError(f"tier names repeat: {names}: give each tier a name of its own")
        for role in ("decomposer", "summarizer"):
            chosen = getattr(self.r2reasoner, role)
            if chosen is not None and chosen not in names:
                raise ValueError(f"r2reasoner.{role} is {chosen!r}: choose one of {names}")
        return self

    def tier(self, name: str | None) -> Tier:
        """The tier called ``name`` (None: the largest)."""
        return next((t for t in self.tiers if t.name == name), self.tiers[-1])


TIER_ROLES = (("small", "explorer"), ("large", "synthesizer"))


def _as_dict(stage: Any) -> dict[str, Any]:
    return stage.model_dump() if isinstance(stage, BaseModel) else dict(stage)

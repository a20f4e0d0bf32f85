"""The ``a2r`` command's run flags, written from ``A2RContext``'s fields.

Each flag names the field(s) it sets; the rest comes from the model: its help is the field's
description with its bounds, environment variable and default; its choices are a
``Literal``'s values, a ``bool`` is a switch, a tuple takes several values; and a value is
checked by the field's own validation, so that argparse refuses ``--n 0`` naming the bound
and the variable. The whole context is then built, and checked as a whole, by ``A2RContext``.
A field with no flag is listed in ``ENV_ONLY`` (set it by its variable or in the context).
"""

from __future__ import annotations

import argparse
import types
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import TypeAdapter, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from a2r_graph.fields import bounds, env_variable, field_at
from a2r_graph.stages import ENDPOINTS

POLICIES = "spend only what a question needs (README: Policies)"
SYNTHESIS = "how the paths become the answer (README: Configuration)"


@dataclass(frozen=True)
class Flag:
    """``--name`` sets the field at each of ``fields`` (dotted paths into ``A2RContext``);
    with ``sets``, it is a switch that sets its field to that value."""

    name: str
    fields: tuple[str, ...]
    metavar: str | None = None
    group: str | None = None
    sets: Any = None

    @property
    def dest(self) -> str:
        return self.name.removeprefix("--").replace("-", "_")

    @property
    def info(self) -> FieldInfo:
        return field_at(self.fields[0])

    @property
    def limits(self) -> list[str]:
        """Its field's bounds (one note, if any) and the variable(s) it stands for."""
        found = bounds(self.info)
        variables = " and ".join(env_variable(path) for path in self.fields)
        return [*([", ".join(found)] if found else []), f"env {variables}"]

    def help(self) -> str:
        """The field's description, then [its bounds; its variable(s); its default]."""
        text = description_of(self.fields[0])
        if self.sets is not None:
            return _escaped(f"{text} [{self.limits[-1]}={self.sets}]")
        default = _default(self.fields[0])
        notes = [*self.limits, *([f"default {default}"] if default is not None else [])]
        return _escaped(f"{text} [{'; '.join(notes)}]")

    def add_to(self, parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
        annotation = _without_none(self.info.annotation)
        if self.sets is not None or annotation is bool:
            parser.add_argument(self.name, action="store_true", default=None, help=self.help())
        elif get_origin(annotation) is Literal:
            parser.add_argument(self.name, choices=get_args(annotation), help=self.help())
        elif get_origin(annotation) is tuple:
            parser.add_argument(
                self.name,
                type=self._checked(get_args(annotation)[0], ()),
                nargs="+",
                metavar=self.metavar,
                help=self.help(),
            )
        else:
            parser.add_argument(
                self.name,
                type=self._checked(annotation, self.info.metadata),
                metavar=self.metavar,
                help=self.help(),
            )

    def _checked(self, annotation: Any, metadata: Any) -> Any:
        """An argparse ``type=``: the field's own validation of one value, whose failure
        argparse prints as "argument --n: Input should be ..., got 0 [≥ 1, ≤ 64; env A2R_N]"
        (exit status 2)."""
        adapter: TypeAdapter[Any] = TypeAdapter(
            Annotated[annotation, *metadata] if metadata else annotation
        )
        limits = "; ".join(self.limits)

        def parse(text: str) -> Any:
            try:
                return adapter.validate_python(text)
            except ValidationError as error:
                reason = error.errors()[0]["msg"]
                raise argparse.ArgumentTypeError(f"{reason}, got {text} [{limits}]") from None

        return parse

    def value(self, args: argparse.Namespace) -> Any:
        """What the command line gave, or None when it gave nothing."""
        given = getattr(args, self.dest, None)
        return self.sets if self.sets is not None and given else given


def _stages(name: str) -> tuple[str, ...]:
    return tuple(f"{stage}.{name}" for stage in ENDPOINTS)


FLAGS: tuple[Flag, ...] = (
    Flag("--n", ("n",)),
    Flag("--min-paths", ("min_paths",), "N"),
    *(
        Flag(f"--{stage}-{option}", (f"{stage}.{field}",), option.upper())
        for stage in ENDPOINTS
        for option, field in (("url", "base_url"), ("model", "model"))
    ),
    Flag("--max-tokens", _stages("max_tokens"), "N"),
    Flag("--temperature", _stages("temperature"), "T"),
    Flag("--seed", _stages("seed")),
    Flag("--timeout", ("request_timeout_s",), "SECONDS"),
    Flag("--overflow", ("overflow",)),
    *(
        Flag(f"--{stage}-{kind}-price", (f"{stage}.{kind}_price_per_mtok",), "PRICE")
        for stage in ENDPOINTS
        for kind in ("input", "output")
    ),
    Flag("--confidence", ("confidence.top_logprobs",), "K", POLICIES),
    Flag("--shortcut", ("shortcut",), group=POLICIES),
    Flag("--agree-share", ("agreement.min_share",), "S", POLICIES),
    Flag("--waves", ("waves",), "COUNT", POLICIES),
    Flag("--top-references", ("top_references",), "K", POLICIES),
    Flag("--budget-tokens", ("budget.max_output_tokens",), "TOKENS", POLICIES),
    Flag("--budget-cost", ("budget.max_cost",), "COST", POLICIES),
    Flag("--order", ("references.order",), group=SYNTHESIS),
    Flag("--dedupe", ("references.dedupe",), group=SYNTHESIS),
    Flag("--tally", ("references.tally",), group=SYNTHESIS),
    Flag("--mode", ("synthesis_mode",), group=SYNTHESIS),
    Flag("--select", ("synthesis_mode",), group=SYNTHESIS, sets="select"),
    Flag("--vote-first-paths", ("vote_first.min_paths",), "N", SYNTHESIS),
    Flag("--vote-first-share", ("vote_first.min_share",), "S", SYNTHESIS),
)

ENV_ONLY: tuple[str, ...] = (
    "max_attempts",
    "retry_initial_wait_s",
    "retry_max_wait_s",
    "prompts_dir",
    "prompts.explorer",
    "prompts.synthesizer",
    "prompts.selector",
    "confidence.group_size",
    "confidence.tail_tokens",
    "confidence.measure",
    "agreement.min_paths",
    "agreement.min_confidence",
    "session_header",
    *(
        f"{stage}.{field}"
        for stage in ENDPOINTS
        for field in ("api_key_env", "top_p", "extra_body", "context_window")
    ),
)
"""The fields the command line leaves to their environment variables (or the context)."""


def add_flags(parser: argparse.ArgumentParser) -> None:
    """Every flag of ``FLAGS``, in its order, the grouped ones under their group's title."""
    groups: dict[str, argparse._ArgumentGroup] = {}
    for flag in FLAGS:
        if flag.group is None:
            flag.add_to(parser)
            continue
        if flag.group not in groups:
            groups[flag.group] = parser.add_argument_group(flag.group)
        flag.add_to(groups[flag.group])


def context_values(args: argparse.Namespace) -> dict[str, Any]:
    """The fields the flags set, nested as ``A2RContext`` takes them. Each stage is always
    there (maybe empty), so that a missing model is reported as ``explorer.model``."""
    values: dict[str, Any] = {stage: {} for stage in ENDPOINTS}
    for flag in FLAGS:
        if (value := flag.value(args)) is None:
            continue
        for path in flag.fields:
            *parents, name = path.split(".")
            place = values
            for parent in parents:
                place = place.setdefault(parent, {})
            place[name] = value
    return values


def description_of(path: str) -> str:
    """A field's description on one line; under an optional part of the context (off by
    default, as ``confidence``), the part's description first: the flag turns it on."""
    *parents, _ = path.split(".")
    text = " ".join((field_at(path).description or "").split())
    if parents and field_at(".".join(parents)).default is None:
        text = f"{description_of('.'.join(parents))} {text}"
    return text


def _default(path: str) -> str | None:
    """A field's default as the help shows it; None where there is none worth showing (no
    default, None, empty, a switch's False, or the part of the context it is in is off)."""
    *parents, _ = path.split(".")
    if parents and field_at(".".join(parents)).default is None:
        return None
    info = field_at(path)
    default = info.default
    if default is PydanticUndefined or default is None or default is False or default == ():
        return None
    return str(default)


def _without_none(annotation: Any) -> Any:
    """``int | None`` -> ``int``."""
    if get_origin(annotation) in (Union, types.UnionType):
        kept = [arg for arg in get_args(annotation) if arg is not type(None)]
        return kept[0] if len(kept) == 1 else annotation
    return annotation


def _escaped(text: str) -> str:
    return text.replace("%", "%%")  # argparse formats help with %

"""``A2RContext``'s fields as data: each one's dotted path (``explorer.max_tokens``), its
environment variable and its bounds, read from the model and its ``Field`` metadata. The
command line's flags (``serving/flags.py``) and the README's configuration table
(``scripts/config_table.py``) are both written from them, so neither repeats the model."""

from __future__ import annotations

from annotated_types import Ge, Gt, Le, Lt, MaxLen, MinLen
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from a2r_graph.context import A2RContext

BOUNDS = ((Ge, "ge", "≥ {}"), (Gt, "gt", "> {}"), (Le, "le", "≤ {}"), (Lt, "lt", "< {}"))
LENGTHS = ((MinLen, "min_length", "at least {} long"), (MaxLen, "max_length", "at most {} long"))
ENV_PREFIX: str = A2RContext.model_config.get("env_prefix") or ""
ENV_DELIMITER: str = A2RContext.model_config.get("env_nested_delimiter") or "__"


def nested_model(info: FieldInfo) -> type[BaseModel] | None:
    """The model a field holds (``StageConfig`` for ``explorer``, also when optional), if any."""
    for candidate in (info.annotation, *getattr(info.annotation, "__args__", ())):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def field_at(path: str) -> FieldInfo:
    """The field at a dotted path into ``A2RContext``, e.g. ``agreement.min_share``."""
    model: type[BaseModel] | None = A2RContext
    info = None
    for part in path.split("."):
        if model is None or part not in model.model_fields:
            raise KeyError(f"A2RContext has no field {path}")
        info = model.model_fields[part]
        model = nested_model(info)
    assert info is not None  # a path has at least one part
    return info


def leaf_paths(model: type[BaseModel] = A2RContext, prefix: str = "") -> list[str]:
    """Every field's dotted path, nested models opened down to their own fields."""
    paths = []
    for name, info in model.model_fields.items():
        nested = nested_model(info)
        path = prefix + name
        paths += [path] if nested is None else leaf_paths(nested, f"{path}.")
    return paths


def env_variable(path: str) -> str:
    """The variable that sets the field at ``path``: ``explorer.max_tokens`` ->
    ``A2R_EXPLORER__MAX_TOKENS`` (the settings' prefix and nesting delimiter)."""
    return ENV_PREFIX + ENV_DELIMITER.join(part.upper() for part in path.split("."))


def bounds(info: FieldInfo) -> list[str]:
    """A field's bounds and length limits as text, e.g. ``["≥ 1", "≤ 64"]``."""
    found = []
    for item in info.metadata:
        for kind, attribute, text in (*BOUNDS, *LENGTHS):
            if isinstance(item, kind):
                found.append(text.format(getattr(item, attribute)))
    return found

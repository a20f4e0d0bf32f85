"""The run flags of ``a2r ask``/``resume``/``eval`` say and check what their ``A2RContext``
fields say and check: a flag cannot drift from its field, and a field gets a flag or is
left to its environment variable on purpose (``flags.ENV_ONLY``)."""

from __future__ import annotations

import argparse
from typing import Literal, get_args, get_origin

import pytest
from annotated_types import Ge, Gt, Le, Lt

from a2r_graph.fields import bounds, env_variable, field_at, leaf_paths
from a2r_graph.serving.cli import _context_options, _parser, context_from_args
from a2r_graph.serving.flags import ENV_ONLY, FLAGS, Flag

NOT_CONTEXT = {"-h", "--db"}  # the run database is the command's, not a field
MODELS = ["--explorer-model", "e", "--synthesizer-model", "s"]


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    import os

    for name in list(os.environ):
        if name.startswith("A2R_") and name != "A2R_CACHE_DIR":
            monkeypatch.delenv(name)


def context_actions() -> list[tuple[argparse.Action, Flag]]:
    """Each option of the command's context options, with the flag it was written from."""
    by_name = {flag.name: flag for flag in FLAGS}
    found = []
    for action in _context_options()._actions:
        name = action.option_strings[0]
        if name in NOT_CONTEXT:
            continue
        assert name in by_name, f"{name} is not written from an A2RContext field (flags.FLAGS)"
        found.append((action, by_name[name]))
    return found


def out_of_range(flag: Flag) -> list[tuple[str, str]]:
    """(value, bound) pairs just outside each numeric bound of the flag's field."""
    numeric = (int, float)
    values = []
    for item in field_at(flag.fields[0]).metadata:
        if isinstance(item, Ge) and isinstance(item.ge, numeric):
            values.append((str(item.ge - 1), f"≥ {item.ge}"))
        elif isinstance(item, Gt) and isinstance(item.gt, numeric):
            values.append((str(item.gt), f"> {item.gt}"))
        elif isinstance(item, Le) and isinstance(item.le, numeric):
            values.append((str(item.le + 1), f"≤ {item.le}"))
        elif isinstance(item, Lt) and isinstance(item.lt, numeric):
            values.append((str(item.lt), f"< {item.lt}"))
    return values


def test_each_flag_says_its_fields_description_bounds_and_variable():
    """Catches: a flag's help written by hand again, or a field's description, bounds or
    variable changed without its flag following."""
    for action, flag in context_actions():
        shown = (action.help or "").replace("%%", "%")
        for path in flag.fields:
            info = field_at(path)
            assert " ".join((info.description or "").split()) in shown, (flag.name, path)
            assert env_variable(path) in shown, (flag.name, path)
            assert all(bound in shown for bound in bounds(info)), (flag.name, path)


def test_every_field_has_a_flag_or_is_left_to_its_variable_on_purpose():
    """Catches: a field added to A2RContext that the command line silently cannot set."""
    flagged = [path for flag in FLAGS for path in flag.fields]
    fields = set(leaf_paths())
    assert not set(flagged) & set(ENV_ONLY), "a field both flagged and left to the environment"
    assert set(flagged) | set(ENV_ONLY) <= fields, "a flag or ENV_ONLY names no field"
    missing = fields - set(flagged) - set(ENV_ONLY)
    assert not missing, f"fields with no flag: {sorted(missing)} (add one, or to ENV_ONLY)"


@pytest.mark.parametrize("flag", [f for f in FLAGS if out_of_range(f)], ids=lambda f: f.name)
def test_a_flag_refuses_what_its_field_refuses_naming_the_bound_and_variable(flag, capsys):
    """Catches: a flag checked by a hand-written range (type=positive_int lets --n 65 through
    to fail later without the flag's name, or refuses what the field allows)."""
    for value, bound in out_of_range(flag):
        with pytest.raises(SystemExit) as exit_:
            _parser().parse_args(["ask", "q", flag.name, value])
        assert exit_.value.code == 2
        error = capsys.readouterr().err
        assert f"argument {flag.name}: " in error and f", got {value} [" in error
        assert bound in error and env_variable(flag.fields[0]) in error


NEEDS = {  # what the context needs beside a flag's value to be whole
    "--min-paths": ["--n", "64"],
    "--top-references": ["--confidence", "5"],
    "--budget-tokens": ["--waves", "2"],
}


@pytest.mark.parametrize("flag", [f for f in FLAGS if out_of_range(f)], ids=lambda f: f.name)
def test_a_flag_takes_its_fields_bounds_and_sets_each_of_its_fields(flag):
    """Catches: a bound tighter than the field's, or a flag that sets the wrong field."""
    for item in field_at(flag.fields[0]).metadata:
        if not isinstance(item, Ge | Le):
            continue
        bound = item.ge if isinstance(item, Ge) else item.le
        given = ["ask", "q", *MODELS, *NEEDS.get(flag.name, []), flag.name, str(bound)]
        context = context_from_args(_parser().parse_args(given))
        for path in flag.fields:
            value: object = context
            for part in path.split("."):
                value = getattr(value, part)
            assert value == bound, (flag.name, path)


def test_choices_are_the_literal_values_and_switches_are_booleans():
    """Catches: --overflow/--order choices copied by hand; a switch that takes a value."""
    for action, flag in context_actions():
        annotation = field_at(flag.fields[0]).annotation
        if get_origin(annotation) is Literal and flag.sets is None:
            assert tuple(action.choices or ()) == get_args(annotation), flag.name
        if annotation is bool or flag.sets is not None:
            assert action.nargs == 0 and action.default is None, flag.name


def test_switches_set_their_fields():
    args = _parser().parse_args(
        ["ask", "q", *MODELS, "--n", "4", "--waves", "2", "--shortcut", "--select", "--tally"]
    )
    context = context_from_args(args)
    assert (context.shortcut, context.synthesis_mode, context.references.tally) == (
        True,
        "select",
        True,
    )
    assert context.waves == (2,) and context.references.dedupe is False
    unset = context_from_args(_parser().parse_args(["ask", "q", *MODELS]))
    assert (unset.shortcut, unset.synthesis_mode) == (False, "vote_first")
    mode = _parser().parse_args(["ask", "q", *MODELS, "--mode", "vote", "--vote-first-paths", "3"])
    assert context_from_args(mode).synthesis_mode == "vote"
    assert context_from_args(mode).vote_first.min_paths == 3

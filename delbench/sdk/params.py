"""Plugin parameters: bound against the plugin's own signature and value-checked, before any work.

A plugin's parameters are the keyword parameters of one method (:func:`parameter_space`): a
dataset's, backbone's or task's constructor; a selector's ``choose`` (or its ``select`` when
it implements ``select`` itself, as duck-typed third-party selectors do). A ``**kwargs``
parameter stands for the same method of the next class up the hierarchy (the folder datasets
pass their common settings on), so the names of that whole chain count; a chain that ends
in ``**kwargs`` nothing checks accepts any name. What the harness passes itself (the pool,
ratio, seed, embeddings, a dataset's split, …: :data:`HARNESS_ARGUMENTS`) and names starting
with ``_`` are not parameters.

:func:`check_plugin_params` is the one mechanism every caller uses (``load_protocol``
for every plugin of a protocol, ``delbench select`` for ``--set``/``--dataset-param``, the
runner when it builds a plugin, ``Selector.select``): an unknown key is one error naming it,
its close matches and the valid keys; then the plugin's classmethod ``check_params(params)``
checks the values (raising :class:`~delbench.errors.ConfigError` naming the key). Plugins
write those rules with the small checkers below, and their constructors call the same
``check_params``, so a rule lives in one place.
"""
from __future__ import annotations

import difflib
import inspect
import math
import os
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from delbench.errors import ConfigError

#: arguments the harness passes itself, per plugin kind: never protocol parameters
HARNESS_ARGUMENTS: Mapping[str, frozenset[str]] = {
    "selector": frozenset({"pool", "ratio", "k", "seed", "embeddings", "backbone", "output_dir", "work"}),
    "dataset": frozenset({"split"}),
    "backbone": frozenset(),
    "task": frozenset(),
}
_KEYWORD_KINDS = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)


@dataclass(frozen=True)
class ParameterSpace:
    """The parameters a plugin accepts: ``names`` (sorted), ``required`` (no default),
    ``open`` (a ``**kwargs`` that no method checks: any further name is accepted) and
    ``defaults`` (name → default of each parameter that has one)."""

    names: tuple[str, ...]
    required: tuple[str, ...]
    open: bool
    defaults: Mapping[str, Any] = field(default_factory=dict)


def parameter_method(kind: str, cls: type) -> str:
    """The method whose keyword parameters are ``cls``'s parameters (see the module docstring):
    what the class says (``Plugin.parameter_method``: a template selector's ``choose``), else
    ``select`` for a selector and the constructor for the other kinds."""
    says = getattr(cls, "parameter_method", None)
    if callable(says):
        return says()
    return "select" if kind == "selector" else "__init__"


def parameter_space(kind: str, cls: type) -> ParameterSpace:
    """The keyword parameters of ``cls``'s parameter method, following ``**kwargs`` up the MRO."""
    method = parameter_method(kind, cls)
    harness = HARNESS_ARGUMENTS[kind]
    names: set[str] = set()
    required: set[str] = set()
    defaults: dict[str, Any] = {}

    def space(open_: bool) -> ParameterSpace:
        return ParameterSpace(tuple(sorted(names)), tuple(sorted(required)), open_, defaults)

    for klass in (cls.__mro__ if isinstance(cls, type) else type(cls).__mro__):
        function = klass.__dict__.get(method)
        if function is None:
            continue
        try:
            signature = inspect.signature(function)
        except (TypeError, ValueError):  # a builtin without a signature: it checks nothing
            return space(True)
        passes_on = False
        for parameter in signature.parameters.values():
            if parameter.kind is inspect.Parameter.VAR_KEYWORD:
                passes_on = True
            elif (parameter.kind in _KEYWORD_KINDS and parameter.name != "self"
                  and parameter.name not in harness and not parameter.name.startswith("_")):
                if parameter.default is inspect.Parameter.empty:
                    required.add(parameter.name)
                elif parameter.name not in names:  # the most derived class's default
                    defaults[parameter.name] = parameter.default
                names.add(parameter.name)
        if not passes_on:
            return space(False)
    return space(True)


def _listing(names: tuple[str, ...]) -> str:
    return ", ".join(names) if names else "none (it takes no parameters)"


def check_known_keys(given: Mapping[str, Any], allowed: tuple[str, ...] | frozenset[str], where: str, *,
                     noun: str = "key", hint: str = "") -> None:
    """Refuse the first key of ``given`` not in ``allowed``: one line naming it (after
    ``where``, when given), its close matches and every valid key (``hint`` follows the close
    matches)."""
    valid = tuple(sorted(allowed))
    for key in given:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), valid, n=2, cutoff=0.6)
            maybe = f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""
            place = f"{where}: " if where else ""
            raise ConfigError(f"{place}unknown {noun} {key!r}{maybe}{hint}; valid: {_listing(valid)}")


def check_plugin_params(kind: str, cls: type, params: Mapping[str, Any], where: str,
                        harness: Mapping[str, Any] | None = None) -> None:
    """Refuse unknown or missing keys of ``params`` and unusable values, in one line each.

    ``where`` says which plugin of the protocol it is (``selectors[2] (meddel)``); ``harness``
    holds what the harness will pass besides ``params`` (a dataset's ``split``, the
    backbone's ``image_size``): those names must be accepted too and are handed to
    ``check_params`` with the rest.
    """
    space = parameter_space(kind, cls)
    given = {**(harness or {}), **params}
    if not space.open:
        check_known_keys(params, frozenset(space.names), where, noun="parameter")
        check_known_keys({k: v for k, v in given.items() if k not in HARNESS_ARGUMENTS[kind]},
                         frozenset(space.names), where, noun="parameter", hint=" (passed by the harness)")
    missing = [name for name in space.required if name not in given]
    if missing:
        raise ConfigError(f"{where}: missing parameter {missing[0]!r}; valid: {_listing(space.names)}")
    check = getattr(cls, "check_params", None)
    if callable(check):
        try:
            check(given)
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None


# --- checkers for check_params: each looks at one key, when it is given ----------------------
def is_int(value: Any) -> bool:
    """An integer (numpy's included), not a bool."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def is_number(value: Any) -> bool:
    """A finite integer or float (numpy's included), not a bool."""
    return is_int(value) or (isinstance(value, (float, np.floating)) and math.isfinite(value))


def check_int(params: Mapping[str, Any], key: str, minimum: int | None = None,
              maximum: int | None = None, *, allow_none: bool = False) -> None:
    """``params[key]`` is an integer in [minimum, maximum] (booleans refused), or None when allowed."""
    if key not in params or (allow_none and params[key] is None):
        return
    value = params[key]
    if not is_int(value) or (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        bounds = (f" in {minimum}..{maximum}" if minimum is not None and maximum is not None
                  else f" ≥ {minimum}" if minimum is not None else f" ≤ {maximum}" if maximum is not None else "")
        none = " or None" if allow_none else ""
        raise ConfigError(f"{key} must be an integer{bounds}{none}, got {value!r}")


def check_number(params: Mapping[str, Any], key: str, low: float | None = None, high: float | None = None, *,
                 low_open: bool = False, high_open: bool = False, allow_none: bool = False) -> None:
    """``params[key]`` is a finite number in the interval from ``low`` to ``high`` (open ends
    where ``low_open``/``high_open``), or None when allowed."""
    if key not in params or (allow_none and params[key] is None):
        return
    value = params[key]
    inside = is_number(value) and not (
        (low is not None and (value <= low if low_open else value < low))
        or (high is not None and (value >= high if high_open else value > high)))
    if not inside:
        left = "(" if low_open else "["
        right = ")" if high_open else "]"
        interval = f" in {left}{'-inf' if low is None else low}, {'inf' if high is None else high}{right}"
        none = " or None" if allow_none else ""
        raise ConfigError(f"{key} must be a number{interval}{none}, got {value!r}")


def check_choice(params: Mapping[str, Any], key: str, choices: tuple[Any, ...]) -> None:
    """``params[key]`` is one of ``choices``."""
    if key in params and params[key] not in choices:
        raise ConfigError(f"{key} must be one of {', '.join(map(repr, choices))}, got {params[key]!r}")


def check_bool(params: Mapping[str, Any], key: str) -> None:
    """``params[key]`` is True or False."""
    if key in params and not isinstance(params[key], (bool, np.bool_)):
        raise ConfigError(f"{key} must be True or False, got {params[key]!r}")


def check_split(params: Mapping[str, Any], splits: tuple[str, ...]) -> None:
    """``params['split']`` is one of the dataset's ``splits``."""
    if "split" in params and params["split"] not in splits:
        raise ConfigError(f"split must be one of the dataset's splits {tuple(splits)}, got {params['split']!r}")


def check_path(params: Mapping[str, Any], key: str) -> None:
    """``params[key]`` is a path (a non-empty string or ``os.PathLike``) or None."""
    value = params.get(key)
    if key in params and value is not None and not (isinstance(value, os.PathLike) or (isinstance(value, str) and value)):
        raise ConfigError(f"{key} must be a path or None, got {value!r}")


def check_subset(params: Mapping[str, Any], key: str, choices: tuple[Any, ...]) -> None:
    """``params[key]`` is a non-empty list of distinct items of ``choices``."""
    if key not in params:
        return
    value = params[key]
    items = list(value) if isinstance(value, (list, tuple)) else None
    if not items or any(item not in choices for item in items) or len(set(items)) != len(items):
        raise ConfigError(f"{key} must be a non-empty list of distinct items of {tuple(choices)}, got {value!r}")

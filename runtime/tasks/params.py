"""Checks for request parameters: each rule says what it accepts, and the error names the value it got."""

from __future__ import annotations

import math
import reprlib
from collections.abc import Callable, Mapping
from typing import Any

from runtime.errors import InvalidParametersError

__all__ = ["InvalidParametersError", "boolean", "check", "direction", "integer", "number", "one_of", "strings", "text"]

Rule = Callable[[str, Any], Any]
_repr = reprlib.Repr()  # echo a value in an error, not megabytes of it
_repr.maxstring = _repr.maxother = 60
_short = _repr.repr
short = _short  # a value as an error message echoes it


def check(task: str, params: Mapping[str, Any], rules: Mapping[str, Rule]) -> dict[str, Any]:
    """Apply `rules` to `params`; unknown names and bad values raise InvalidParametersError."""
    unknown = sorted(set(params) - set(rules))
    if unknown:
        raise InvalidParametersError(
            f"unknown parameter {_short(unknown[0])} for {task}; accepted parameters: {', '.join(sorted(rules)) or 'none'}"
        )
    return {name: rules[name](name, value) for name, value in params.items() if value is not None}


def integer(lo: int, hi: int | None = None, *, why: str = "") -> Rule:
    """An integer in [lo, hi]; `why` explains the range in the error."""

    def rule(name: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < lo or (hi is not None and value > hi):
            bound = f"between {lo} and {hi}" if hi is not None else f">= {lo}"
            raise InvalidParametersError(
                f"parameter {name!r} must be an integer {bound}{_why(why)}, got {_short(value)}"
            )
        return value

    return rule


def number(lo: float, hi: float | None = None, *, lo_open: bool = False, why: str = "") -> Rule:
    """A finite number in [lo, hi] ((lo, hi] when lo_open); NaN and infinities never pass (JSON bodies may hold them:
    Python's json reads NaN and Infinity). `why` explains the range in the error."""

    def rule(name: str, value: Any) -> float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and _finite(value)
        ok = ok and (value > lo if lo_open else value >= lo) and (hi is None or value <= hi)
        if not ok:
            left = f"> {lo}" if lo_open else f">= {lo}"
            bound = f"{left} and <= {hi}" if hi is not None else left
            raise InvalidParametersError(f"parameter {name!r} must be a number {bound}{_why(why)}, got {_short(value)}")
        return float(value)

    return rule


def _finite(value: float) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer past float's range
        return False


def _why(why: str) -> str:
    return f" ({why})" if why else ""


def text(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise InvalidParametersError(f"parameter {name!r} must be a string, got {_short(value)}")
    return value


def boolean(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise InvalidParametersError(f"parameter {name!r} must be true or false, got {_short(value)}")
    return value


def direction(name: str, value: Any) -> str:
    """A truncation direction: TEI spells them "Right" / "Left"; either case is taken."""
    if not isinstance(value, str) or value.lower() not in ("right", "left"):
        raise InvalidParametersError(f"parameter {name!r} must be 'right' or 'left', got {_short(value)}")
    return value.lower()


def one_of(*choices: str) -> Rule:
    def rule(name: str, value: Any) -> str:
        if value not in choices:
            raise InvalidParametersError(f"parameter {name!r} must be one of {list(choices)}, got {_short(value)}")
        return value

    return rule


def strings(name: str, value: Any) -> list[str]:
    """A list of strings (possibly empty)."""
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidParametersError(f"parameter {name!r} must be a list of strings, got {_short(value)}")
    return list(value)

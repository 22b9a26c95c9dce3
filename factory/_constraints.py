"""Parameter constraints declared once; the check and its message are derived from them.

scikit-learn's ``_param_validation`` idea: a parameter is declared with the constraints it must
meet (``Interval(float, 0, None, closed="neither")``, ``StrOptions(("median", "knn"))``,
``None``...) and one function checks a value against them and writes the one message style
users see everywhere:

    The 'latency_budget_us' parameter of BuildConfig must be > 0. Got -5 instead.

The CLI reads the same declarations for its argument types and choices (``factory.cli``), so a
new option value is added in one place.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from numbers import Integral, Real
from typing import Literal

from factory.errors import FactoryInputError

__all__ = [
    "Constraint",
    "InstanceOf",
    "Interval",
    "MappingOf",
    "NoneOr",
    "PathLike",
    "StrOptions",
    "StrSequence",
    "Text",
    "check_param",
    "describe",
]


class Constraint:
    """A set of acceptable values: ``is_satisfied_by`` decides, ``__str__`` explains it."""

    def is_satisfied_by(self, value: object) -> bool:
        raise NotImplementedError

    def __str__(self) -> str:
        raise NotImplementedError


@dataclass(frozen=True)
class Interval(Constraint):
    """A finite number (``type`` int or float) between ``left`` and ``right`` (None = unbounded)."""

    type: type[int] | type[float]
    left: float | None
    right: float | None
    closed: Literal["left", "right", "both", "neither"] = "both"

    def is_satisfied_by(self, value: object) -> bool:
        if isinstance(value, bool) or not isinstance(value, Integral if self.type is int else Real):
            return False
        number = float(value)
        if not math.isfinite(number):
            return False
        if self.left is not None:
            if number < self.left or (number == self.left and self.closed not in ("left", "both")):
                return False
        if self.right is not None:
            if number > self.right or (number == self.right and self.closed not in ("right", "both")):
                return False
        return True

    def __str__(self) -> str:
        kind = "an int " if self.type is int else ""
        low = ">=" if self.closed in ("left", "both") else ">"
        high = "<=" if self.closed in ("right", "both") else "<"
        if self.left is None and self.right is None:
            return "an int" if self.type is int else "a finite number"
        if self.right is None:
            return f"{kind}{low} {self.left:g}"
        if self.left is None:
            return f"{kind}{high} {self.right:g}"
        opening = "[" if low == ">=" else "("
        closing = "]" if high == "<=" else ")"
        return f"{kind}in the range {opening}{self.left:g}, {self.right:g}{closing}"


@dataclass(frozen=True)
class StrOptions(Constraint):
    """One of a fixed tuple of strings (the tuple's order is the order the help shows)."""

    options: tuple[str, ...]

    def is_satisfied_by(self, value: object) -> bool:
        return isinstance(value, str) and value in self.options

    def __str__(self) -> str:
        return f"one of {self.options!r}"


@dataclass(frozen=True)
class StrSequence(Constraint):
    """A list or tuple of strings (not a bare string), optionally drawn from ``options``."""

    options: tuple[str, ...] | None = None
    non_empty: bool = False

    def is_satisfied_by(self, value: object) -> bool:
        if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
            return False
        if self.non_empty and not value:
            return False
        allowed = self.options
        return all(isinstance(v, str) and (allowed is None or v in allowed) for v in value)

    def __str__(self) -> str:
        size = "a non-empty list" if self.non_empty else "a list"
        return f"{size} of {self.options!r}" if self.options else f"{size} of column names"


@dataclass(frozen=True)
class Text(Constraint):
    """A non-empty string (a column name, a model name, a separator)."""

    def is_satisfied_by(self, value: object) -> bool:
        return isinstance(value, str) and value != ""

    def __str__(self) -> str:
        return "a non-empty string"


@dataclass(frozen=True)
class PathLike(Constraint):
    """A file-system path: ``str`` or ``os.PathLike`` (non-empty)."""

    def is_satisfied_by(self, value: object) -> bool:
        return isinstance(value, (str, os.PathLike)) and os.fspath(value) != ""

    def __str__(self) -> str:
        return "a path"


@dataclass(frozen=True)
class InstanceOf(Constraint):
    """An instance of ``cls``."""

    cls: type

    def is_satisfied_by(self, value: object) -> bool:
        return isinstance(value, self.cls)

    def __str__(self) -> str:
        return f"a {self.cls.__name__}"


@dataclass(frozen=True)
class MappingOf(Constraint):
    """A mapping (a JSON-like dict recorded in the manifest)."""

    def is_satisfied_by(self, value: object) -> bool:
        return isinstance(value, Mapping)

    def __str__(self) -> str:
        return "a mapping"


@dataclass(frozen=True)
class NoneOr(Constraint):
    """``None`` (the parameter's "not given"); listed last in the message."""

    def is_satisfied_by(self, value: object) -> bool:
        return value is None

    def __str__(self) -> str:
        return "None"


def describe(constraints: Sequence[Constraint]) -> str:
    """ "a, b or c" over the constraints, ``None`` last (as sklearn words it)."""
    ordered = sorted(constraints, key=lambda c: isinstance(c, NoneOr))
    words = [str(c) for c in ordered]
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]


def check_param(owner: str, name: str, value: object, constraints: Sequence[Constraint]) -> None:
    """Raise ``FactoryInputError`` naming the parameter, the owner, the constraint and the value."""
    if any(c.is_satisfied_by(value) for c in constraints):
        return
    raise FactoryInputError(
        f"The {name!r} parameter of {owner} must be {describe(constraints)}. Got {value!r} instead."
    )

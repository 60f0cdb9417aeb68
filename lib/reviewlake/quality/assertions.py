"""Assertions written as comparisons in YAML: ``">= 0.99"``, ``"== 1"``, ``"> 0 and <= 1"``.

A suite never carries code. An assertion is one or more comparisons of the metric value with a
number (or with a name from the suite's ``params``), joined by ``and``. The same object is
evaluated by the spark engine and handed to PyDeequ as a Python callable (PyDeequ wraps it in a
Scala ``Function1``), so both engines judge a metric alike.
"""
from __future__ import annotations

import math
import operator
import re
from dataclasses import dataclass
from typing import Any, Callable, Mapping

OPERATORS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge, "<=": operator.le, "==": operator.eq, "!=": operator.ne,
    ">": operator.gt, "<": operator.lt,
}
_TERM = re.compile(r"^\s*(>=|<=|==|!=|>|<)\s*([^\s]+)\s*$")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class AssertionSyntaxError(ValueError):
    """An assertion that is not a comparison; the message says what is expected."""


@dataclass(frozen=True)
class Comparison:
    op: str
    value: float

    def __call__(self, x: float) -> bool:
        return OPERATORS[self.op](float(x), self.value)

    def __str__(self) -> str:
        return f"{self.op} {format_number(self.value)}"


@dataclass(frozen=True)
class Assertion:
    """A conjunction of comparisons, callable on a metric value."""

    terms: tuple[Comparison, ...]
    text: str

    def __call__(self, x: Any) -> bool:
        if x is None or (isinstance(x, float) and math.isnan(x)):
            return False
        return all(term(x) for term in self.terms)

    def __str__(self) -> str:
        return " and ".join(str(t) for t in self.terms)

    def sql(self, expr: str) -> str:
        """The assertion as a SQL condition on ``expr`` (to find the values that break it)."""
        return "(" + " AND ".join(f"{expr} {'=' if t.op == '==' else t.op} "
                                  f"{format_number(t.value)}" for t in self.terms) + ")"

    def python(self, var: str = "x") -> str:
        """The assertion as Python source (what a PyDeequ user would write)."""
        return "lambda {0}: {1}".format(
            var, " and ".join(f"{var} {t.op} {format_number(t.value)}" for t in self.terms))


def format_number(value: float) -> str:
    """1.0 -> '1', 0.99 -> '0.99', 150000000.0 -> '150000000'."""
    if float(value).is_integer() and abs(value) < 1e16:
        return str(int(value))
    return repr(float(value))


def parse_assertion(text: Any, params: Mapping[str, Any] | None = None) -> Assertion:
    """``">= 0.99"`` -> Assertion. Numbers may be written as params names (``">= min_size"``)."""
    params = params or {}
    if isinstance(text, bool) or text is None:
        raise AssertionSyntaxError(
            f"assertion must be a comparison such as \">= 0.99\", got {text!r}")
    if isinstance(text, (int, float)):
        raise AssertionSyntaxError(
            f"assertion {text!r} has no operator; write it as \"== {text}\" (quoted)")
    raw = str(text).strip()
    if not raw:
        raise AssertionSyntaxError("assertion is empty; write a comparison such as \">= 0.99\"")
    try:
        float(raw)
    except ValueError:
        pass
    else:
        raise AssertionSyntaxError(
            f"assertion {raw!r} has no operator; write it as \"== {raw}\" (quoted)")
    terms = []
    for part in re.split(r"\s+and\s+", raw):
        m = _TERM.match(part)
        if not m:
            raise AssertionSyntaxError(
                f"bad assertion {raw!r}: each part must be an operator (>=, <=, ==, !=, >, <) "
                f"and a number, joined by 'and', e.g. \">= 0.99\" or \"> 0 and <= 1\"")
        op, operand = m.groups()
        terms.append(Comparison(op, _number(operand, raw, params)))
    return Assertion(tuple(terms), raw)


def _number(token: str, raw: str, params: Mapping[str, Any]) -> float:
    if _NAME.match(token):
        if token not in params:
            known = ", ".join(sorted(params)) or "none defined"
            raise AssertionSyntaxError(
                f"bad assertion {raw!r}: {token!r} is not a number nor a suite param ({known})")
        value = params[token]
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise AssertionSyntaxError(
                f"bad assertion {raw!r}: param {token!r} must be a number, got {value!r}")
        return float(value)
    try:
        value = float(token)
    except ValueError:
        raise AssertionSyntaxError(
            f"bad assertion {raw!r}: {token!r} is not a number") from None
    if math.isnan(value):
        raise AssertionSyntaxError(f"bad assertion {raw!r}: NaN is not a bound")
    return value


IS_ONE = Assertion((Comparison("==", 1.0),), "== 1")

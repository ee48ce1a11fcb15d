"""Field tests as Polars expressions: one small function per test of ``models.spec.FieldTest``,
registered in ``FIELD_TESTS`` under the test's name (the way pandera registers its built-in checks).

A test sees the value three ways (``Operand``): as it is, as trimmed lower-case text, and as a number
(null when it is not one). A new test is a field of ``FieldTest`` plus one registered function here.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import polars as pl

from models.spec import Condition, FieldTest


@dataclass(frozen=True)
class Operand:
    """The tested value: ``value`` as text, ``text`` trimmed and lower-cased, ``number`` parsed."""

    value: pl.Expr
    text: pl.Expr
    number: pl.Expr


FieldCheck = Callable[[Operand, Any], pl.Expr]
FIELD_TESTS: dict[str, FieldCheck] = {}


def field_test(name: str) -> Callable[[FieldCheck], FieldCheck]:
    """Register the decorated function as the expression of the ``FieldTest`` field ``name``."""

    def register(check: FieldCheck) -> FieldCheck:
        FIELD_TESTS[name] = check
        return check

    return register


def condition(tests: Condition, prefix: str, numeric: frozenset[str] = frozenset()) -> pl.Expr:
    """All tests of ``tests`` on the ``prefix``-named columns (``numeric`` ones hold numbers, not text)."""
    exprs = [check(pl.col(f"{prefix}{name}"), test, f"{prefix}{name}" in numeric) for name, test in tests.items()]
    return pl.all_horizontal(exprs) if exprs else pl.lit(True)


def check(value: pl.Expr, test: FieldTest, numeric: bool = False) -> pl.Expr:
    """``test`` on a text column, or on a number column as if it were its text (read back, a number is itself)."""
    number_ = number(value, numeric)
    if numeric:
        value = value.cast(pl.Utf8)
    operand = Operand(value, value.str.strip_chars().str.to_lowercase(), number_)
    given = [(expr, getattr(test, name)) for name, expr in FIELD_TESTS.items() if getattr(test, name) is not None]
    return pl.all_horizontal([expr(operand, argument) for expr, argument in given])


def number(value: pl.Expr, numeric: bool) -> pl.Expr:
    """A value as a number: number columns as they are, text parsed (null when it is not a finite
    number: ``inf`` and ``nan`` compare as nothing and add nothing)."""
    parsed = value.cast(pl.Float64) if numeric else value.str.strip_chars().cast(pl.Float64, strict=False)
    return pl.when(parsed.is_finite()).then(parsed)


def _equals(on: Operand, expected: str | float | bool) -> pl.Expr:
    if isinstance(expected, bool):
        return on.text.is_in(["true", "1", "yes"] if expected else ["false", "0", "no"])
    if isinstance(expected, int | float):
        return on.number == float(expected)
    return on.text == expected.strip().lower()


def _one_of(on: Operand, options: list[str | float]) -> pl.Expr:
    """Text options compare as trimmed lower-case text, numeric ones as numbers (``50`` matches "50.0")."""
    words = [v.strip().lower() for v in options if isinstance(v, str)]
    numbers = [float(v) for v in options if not isinstance(v, str)]
    hit = on.text.is_in(words)
    if numbers:
        hit = hit | on.number.is_in(numbers)
    return hit.fill_null(False)


@field_test("eq")
def _eq(on: Operand, expected: str | float | bool) -> pl.Expr:
    return _equals(on, expected).fill_null(False)


@field_test("ne")
def _ne(on: Operand, expected: str | float | bool) -> pl.Expr:
    return ~_equals(on, expected).fill_null(False)


@field_test("in_")
def _in(on: Operand, options: list[str | float]) -> pl.Expr:
    return _one_of(on, options)


@field_test("not_in")
def _not_in(on: Operand, options: list[str | float]) -> pl.Expr:
    return ~_one_of(on, options)


@field_test("lt")
def _lt(on: Operand, bound: float) -> pl.Expr:
    return (on.number < bound).fill_null(False)


@field_test("le")
def _le(on: Operand, bound: float) -> pl.Expr:
    return (on.number <= bound).fill_null(False)


@field_test("gt")
def _gt(on: Operand, bound: float) -> pl.Expr:
    return (on.number > bound).fill_null(False)


@field_test("ge")
def _ge(on: Operand, bound: float) -> pl.Expr:
    return (on.number >= bound).fill_null(False)


@field_test("between")
def _between(on: Operand, bounds: tuple[float, float]) -> pl.Expr:
    return on.number.is_between(bounds[0], bounds[1]).fill_null(False)


@field_test("matches")
def _matches(on: Operand, pattern: str) -> pl.Expr:
    return on.value.str.contains(pattern).fill_null(False)


@field_test("contains")
def _contains(on: Operand, part: str) -> pl.Expr:
    return on.text.str.contains(part.lower(), literal=True).fill_null(False)


@field_test("present")
def _present(on: Operand, present: bool) -> pl.Expr:
    known = (on.value.is_not_null() & (on.value.str.strip_chars() != "")).fill_null(False)
    return known if present else ~known

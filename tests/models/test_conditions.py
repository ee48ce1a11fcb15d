"""Field tests: one registered expression per test of the grammar, each over text and number columns."""

import polars as pl

from models.conditions import FIELD_TESTS, condition
from models.spec import FieldTest


def test_every_field_test_of_the_grammar_has_one_registered_expression() -> None:
    assert list(FIELD_TESTS) == list(FieldTest.model_fields)


def holds(values: list[str | None] | list[float | None], **test: object) -> list[bool]:
    """Where ``test`` holds on the attribute ``size`` (a number column when the values are numbers)."""
    frame = pl.DataFrame({"a:size": values}, strict=False)
    numbers = frozenset({"a:size"}) if frame.schema["a:size"].is_numeric() else frozenset()
    expr = condition({"size": FieldTest.model_validate(test)}, "a:", numbers)
    return frame.select(expr.alias("holds"))["holds"].to_list()


def test_each_test_on_text_values() -> None:
    values = [" 50 ", "Abc", None, "9", ""]
    assert holds(values, ge=10) == [True, False, False, False, False]
    assert holds(values, eq="abc") == [False, True, False, False, False]
    assert holds(values, ne="abc") == [True, False, True, True, True]
    assert holds(values, **{"in": ["ABC", 9]}) == [False, True, False, True, False]
    assert holds(values, not_in=[50]) == [False, True, True, True, True]
    assert holds(values, between=(9, 50)) == [True, False, False, True, False]
    assert holds(values, matches="^A") == [False, True, False, False, False]
    assert holds(values, contains="B") == [False, True, False, False, False]
    assert holds(values, present=True) == [True, True, False, True, False]
    assert holds(values, present=False, lt=100) == [False, False, False, False, False]


def test_tests_on_a_number_column_read_it_as_its_text() -> None:
    assert holds([50.0, 9.0, None], eq=50, gt=10) == [True, False, False]
    assert holds([50.0, 9.0, None], eq="50.0", present=True) == [True, False, False]

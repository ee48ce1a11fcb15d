"""Event properties as stored: the well-known ones promoted to typed columns (scoring reads them without
parsing JSON) beside the JSON text, worked out once per distinct properties object of a chunk."""

from typing import Any

import polars as pl

from store.bulk import json_text
from store.tables import PROMOTED_NUMBER_PROPERTIES, PROMOTED_PROPERTIES, PROMOTED_TEXT_PROPERTIES

_PROMOTED_KEYS = frozenset(PROMOTED_PROPERTIES)
_NUMBER_KEYS = frozenset(PROMOTED_NUMBER_PROPERTIES)


def _promoted_text(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)


def _promoted_number(value: Any) -> float | None:
    try:
        return None if value is None or value == "" or isinstance(value, bool) else float(value)
    except (TypeError, ValueError):
        return None


def promoted_properties(properties: dict[str, Any]) -> dict[str, Any]:
    """The well-known properties as typed column values (scoring reads them without parsing JSON)."""
    values: dict[str, Any] = {key: _promoted_text(properties.get(key)) for key in PROMOTED_TEXT_PROPERTIES}
    values.update((key, _promoted_number(properties.get(key))) for key in PROMOTED_NUMBER_PROPERTIES)
    return values


def _promoted_columns(properties: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """``promoted_properties`` column by column: only the keys a row has are looked at (most rows carry
    one or two of the seven), instead of a dict per row or seven look-ups per row."""
    size = len(properties)
    columns: dict[str, list[Any]] = {key: [None] * size for key in PROMOTED_PROPERTIES}
    wanted = _PROMOTED_KEYS.intersection
    for index, found in enumerate(properties):
        for key in wanted(found):
            value = found[key]
            if key in _NUMBER_KEYS:
                columns[key][index] = None if value is None else _promoted_number(value)
            else:
                columns[key][index] = value if value.__class__ is str and value else _promoted_text(value)
    return columns


def distinct_objects(values: list[Any]) -> tuple[list[Any], pl.Series | None]:
    """The distinct objects among ``values`` (by identity: rows whose cells held the same JSON text share
    one dict, ``ParsedProperties``) and each value's index among them (None: every value is distinct), so
    that work per properties object is done once per distinct one and gathered back by Polars."""
    ids = pl.Series(list(map(id, values)), dtype=pl.UInt64)
    if ids.n_unique() == len(ids):
        return values, None
    codes = ids.rank("dense").cast(pl.UInt32) - 1  # distinct objects numbered in the order of their ids
    rows = pl.DataFrame({"id": ids, "row": pl.int_range(len(ids), eager=True)})
    firsts = rows.group_by("id").agg(pl.col("row").min()).sort("id")["row"]
    return [values[row] for row in firsts.to_list()], codes


def stored_properties(distinct: list[dict[str, Any]], codes: pl.Series | None) -> pl.DataFrame:
    """The promoted columns and the stored JSON text of each row's properties, worked out once per
    distinct dict object: ``distinct`` and ``codes`` as ``distinct_objects`` gives them."""
    table = pl.DataFrame(
        {
            **{
                name: pl.Series(values, dtype=pl.Float64 if name in _NUMBER_KEYS else pl.String)
                for name, values in _promoted_columns(distinct).items()
            },
            "properties": pl.Series([json_text(p) for p in distinct], dtype=pl.String),
        }
    )
    return table if codes is None else table[codes]

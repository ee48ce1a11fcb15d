"""Event properties: read from a chunk's cells once per distinct text (``ParsedProperties``), and as stored,
the well-known ones promoted to typed columns (scoring reads them without parsing JSON) beside the JSON
text, worked out once per distinct properties object of a chunk."""

from typing import Any

import orjson
import polars as pl

from store.bulk import json_text
from store.ingest.rows import event_properties
from store.tables import PROMOTED_NUMBER_PROPERTIES, PROMOTED_PROPERTIES, PROMOTED_TEXT_PROPERTIES

_PROMOTED_KEYS = frozenset(PROMOTED_PROPERTIES)
_NUMBER_KEYS = frozenset(PROMOTED_NUMBER_PROPERTIES)

# A properties cell that is a flat JSON object of plain keys and values (texts without escapes or control
# characters, integers of up to 15 digits, decimals without exponent, true, false, null; JSON's whitespace
# between them), nothing around it: valid JSON, without NUL and with finite numbers only, so ``orjson.loads``
# alone gives what ``event_properties`` would (which a ``SPELLED_NUMBER`` still needs: "inf" as a duration).
_TEXT = r'"[^"\\\x00-\x1f]*"'
_VALUE = rf"(?:{_TEXT}|-?(?:0|[1-9][0-9]{{0,14}})(?:\.[0-9]{{1,15}})?|true|false|null)"
_PAIR = rf"[ \t\r\n]*{_TEXT}[ \t\r\n]*:[ \t\r\n]*{_VALUE}[ \t\r\n]*"
FLAT_OBJECT = rf"^\{{(?:{_PAIR}(?:,{_PAIR})*|[ \t\r\n]*)\}}$"
SPELLED_NUMBER = rf'[{{,][ \t\r\n]*"(?:{"|".join(PROMOTED_NUMBER_PROPERTIES)})"[ \t\r\n]*:[ \t\r\n]*"'


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


def _stripped(value: Any) -> Any:
    """A properties cell as the row model sees it: text stripped (blank: none), an object as it is."""
    return value.strip() if value.__class__ is str else value


def _properties_or_none(value: str | None, extra: dict[str, Any] | None) -> dict[str, Any] | None:
    """``event_properties`` for a row the columnar checks accepted (never a ``manual_adjustment``, the
    only type whose properties are checked further), None when the row model must explain the JSON."""
    try:
        return event_properties(value, extra, None)
    except ValueError:
        return None


class ParsedProperties:
    """Properties cells parsed once per distinct JSON text, not once per row: page views of one URL,
    deliveries of one campaign repeat the same text. Rows with the same text share one dict, which
    nobody mutates (extra cells merge into a new one); the write step computes the stored JSON and the
    promoted columns once per shared dict too. Bounded: cleared when it holds ``limit`` texts."""

    def __init__(self, limit: int = 200_000) -> None:
        self.limit = limit
        self.parsed: dict[Any, dict[str, Any] | None] = {}

    def of(self, value: Any, extra: dict[str, Any] | None) -> dict[str, Any] | None:
        """A row's properties (``value``: the cell's text or a JSON Lines object) merged with ``extra``.
        Extra texts (a CSV's other cells, a JSON row's ``url``) are part of the key: page views of one
        URL share one dict too. Other extra values are not (``1`` and ``True`` are equal keys)."""
        if value.__class__ is not str:
            return _properties_or_none(_stripped(value) or None, extra)
        key: Any = value
        if extra:
            if not all(item.__class__ is str for item in extra.values()):
                return _properties_or_none(value.strip() or None, extra)
            key = (value, *extra.items())
        found = self.parsed.get(key, _UNSEEN)
        if found is _UNSEEN:
            if len(self.parsed) >= self.limit:
                self.parsed.clear()
            found = self.parsed[key] = _properties_or_none(value.strip() or None, extra)
        return found  # type: ignore[return-value]

    def texts(self, values: pl.Series) -> list[dict[str, Any] | None]:
        """``of(text, None)`` for each of the distinct cell texts ``values``. A ``FLAT_OBJECT`` text goes
        straight to ``orjson.loads``, uncached: most texts of a chunk are distinct (a message id, a
        duration), and the per-text checks and cache cost more than the parse (the 77,600 distinct texts of
        a demo chunk: 66 CPU ms against 95)."""
        flat = values.str.contains(FLAT_OBJECT) & values.str.contains(SPELLED_NUMBER).not_()
        texts = values.to_list()
        if flat.all():
            return list(map(orjson.loads, texts))
        parse, loads = self.of, orjson.loads
        return [loads(text) if plain else parse(text, None) for text, plain in zip(texts, flat.to_list(), strict=True)]


_UNSEEN: Any = object()

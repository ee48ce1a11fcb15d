"""The plain rows of a chunk of JSON objects: those whose event fields are all text, with their text fields
as columns and their properties parsed (extra keys merged), for the columnar checks of ``columns``.

Rows are taken by shape (their keys in order): a client posts rows of one shape, whose keys are classified
once and whose values are checked a column at a time, not key by key in each row; a shape with a value
that needs a closer look is classified row by row. ``each``, ``plain_type`` and ``plain_line``: the checks
of the fields a batch repeats, made once per distinct value.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import repeat
from typing import Any

from store.ingest.reading import Raw
from store.ingest.split import Splitter

# A row's properties value and extra keys → its properties (``properties.ParsedProperties.of``, which keeps
# what it parsed), None when the row model must explain the JSON.
Parse = Callable[[Any, dict[str, Any] | None], dict[str, Any] | None]

JSON_ORDER = ["event_id", "lead_id", "type", "occurred_at", "product_line", "message_id", "properties"]
JSON_TEXTS = [name for name in JSON_ORDER if name != "properties"]
_JSON_PLAIN = frozenset(JSON_ORDER)
_TEXT_TYPES = frozenset({str, type(None)})
_STR = frozenset({str})
OWN_TEXTS = ("event_id", "lead_id", "message_id")  # a row's texts of its own (the others repeat in a batch)
REFUSED: Any = object()  # a product line the columnar checks refuse (None: the row has none)


def plain_json_rows(
    rows: list[Raw], splitter: Splitter, parse: Parse
) -> tuple[list[int], dict[str, list[str | None]], list[dict[str, Any] | None], list[int]]:
    """The positions of the plain rows, their text fields (``JSON_TEXTS``, None when absent), their
    properties with the extra keys merged (None: JSON the row model must explain), and the positions
    of the other rows (for the row model)."""
    by_shape: dict[tuple[str, ...], list[int]] = {}
    for position, row in enumerate(rows):
        by_shape.setdefault(tuple(row.data or ()), []).append(position)
    plain: list[int] = []
    slow: list[int] = []
    texts: dict[str, list[str | None]] = {name: [] for name in JSON_TEXTS}
    properties: list[dict[str, Any] | None] = []
    for shape, positions in by_shape.items():
        data = [rows[p].data or {} for p in positions]
        found = _Plain.of_shape(shape, positions, data, splitter) or _Plain.one_by_one(positions, data, splitter, slow)
        plain.extend(found.positions)
        for name in JSON_TEXTS:
            texts[name].extend(found.texts.get(name) or repeat(None, len(found.positions)))
        properties.extend(found.properties(parse))
    return plain, texts, properties, slow


@dataclass
class _Plain:
    """Plain rows: their positions, their text fields as columns (``texts``), each row's ``properties``
    value (``cells``) and extra keys: per row (``extras``, rows classified one by one), or as columns of
    stripped texts under ``extra_names`` (rows of one shape)."""

    positions: list[int]
    texts: dict[str, list[str | None]]
    cells: list[Any]
    extras: list[dict[str, Any] | None] | None
    extra_names: tuple[str, ...] = ()
    extra_columns: list[list[str]] = field(default_factory=list)

    @staticmethod
    def of_shape(
        shape: tuple[str, ...], positions: list[int], data: list[dict[str, Any]], splitter: Splitter
    ) -> _Plain | None:
        """The rows (``data``, all with the keys ``shape``) taken column by column, or None when a value
        needs the row-by-row look: a field that is not text, an extra key whose value is not non-blank
        text, a key that names another event field (``machine``, ``anonymous_id``, another spelling)."""
        texts: dict[str, list[str | None]] = {}
        names: list[str] = []
        extras: list[list[str]] = []
        cells: list[Any] = [None] * len(data)
        for key in shape:
            column = [row[key] for row in data]
            if key == "properties":
                cells = column
            elif key in _JSON_PLAIN:
                if not _TEXT_TYPES.issuperset(map(type, column)):
                    return None
                texts[key] = column
            elif splitter.role(key) is not None or not _STR.issuperset(map(type, column)):
                return None
            else:
                stripped = list(map(str.strip, column))
                if not all(stripped):
                    return None
                names.append(key)
                extras.append(stripped)
        return _Plain(positions, texts, cells, None, tuple(names), extras)

    @staticmethod
    def one_by_one(positions: list[int], data: list[dict[str, Any]], splitter: Splitter, slow: list[int]) -> _Plain:
        """The plain rows among ``data`` (rows at ``positions``), classified key by key; the others are
        added to ``slow``."""
        role = splitter.role
        plain: list[int] = []
        texts: dict[str, list[str | None]] = {name: [] for name in JSON_TEXTS}
        cells: list[Any] = []
        extras: list[dict[str, Any] | None] = []
        for position, row in zip(positions, data, strict=True):
            extra = {}
            for key, value in row.items():
                if key in _JSON_PLAIN:
                    if value.__class__ is str or value is None or key == "properties":
                        continue
                elif value is None or (value.__class__ is str and not value.strip()):
                    continue  # a blank key says nothing (an explicit blank machine too)
                elif role(key) is None:
                    extra[key] = value.strip() if value.__class__ is str else value
                    continue
                break  # a field that is not text, a machine value, a field named otherwise: the row model
            else:
                plain.append(position)
                for name, column in texts.items():
                    column.append(row.get(name))
                cells.append(row.get("properties"))
                extras.append(extra or None)
                continue
            slow.append(position)
        return _Plain(plain, texts, cells, extras)

    def properties(self, parse: Parse) -> list[dict[str, Any] | None]:
        """Each row's properties, extra keys merged (None: JSON the row model must explain); rows of one
        shape are parsed once per distinct properties text and extra values."""
        cells = [cell or "" for cell in self.cells]  # as ``split_event``: an empty properties value is none
        if self.extras is not None:
            return [parse(cell, extra) for cell, extra in zip(cells, self.extras, strict=True)]
        keys = list(zip(cells, *self.extra_columns, strict=True))
        if not _STR.issuperset(map(type, cells)):  # objects: each row's own
            return [self._parse(parse, key) for key in keys]
        found = {key: self._parse(parse, key) for key in dict.fromkeys(keys)}
        return [found[key] for key in keys]

    def _parse(self, parse: Parse, key: tuple[Any, ...]) -> dict[str, Any] | None:
        """``key``: a row's properties value, then its extra values (under ``extra_names``)."""
        return parse(key[0], dict(zip(self.extra_names, key[1:], strict=True)) or None)


def each(check: Callable[[str | None], Any], column: list[str | None]) -> list[Any]:
    """``check`` of each value of ``column``, called once per distinct value: a batch repeats its types,
    times and product lines."""
    found = {value: check(value) for value in set(column)}
    return [found[value] for value in column]


def plain_type(text: str | None, event_types: frozenset[str]) -> str | None:
    """A type, stripped, when the columnar checks take it (one of ``event_types``, not ``manual_adjustment``,
    whose properties the row model checks); else None."""
    kind = text.strip() if text else ""
    return kind if kind in event_types and kind != "manual_adjustment" else None


def plain_line(text: str | None, product_lines: frozenset[str] | None) -> Any:
    """A product line, stripped (blank: None), ``REFUSED`` when not one of ``product_lines`` (None: any)."""
    line = text.strip() if text else ""
    if not line:
        return None
    return line if product_lines is None or line in product_lines else REFUSED

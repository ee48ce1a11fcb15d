"""Personalised web content, the third nurture channel: a slot's variants chosen by a lead's journeys.

A variant's ``when`` names a product line and optionally stages, bands and qualifications; the first
variant one of the lead's journeys matches wins, the slot's default otherwise (and for visitors the
store does not know). The choice says why, so a marketer can check what a page showed and to whom.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import Field

from models.spec import Spec


class ContentWhen(Spec):
    product_line: str
    stages: list[str] | None = None
    bands: list[str] | None = None
    qualifications: list[str] | None = None


class ContentVariant(Spec):
    name: str
    when: ContentWhen | None = None  # only the default has none
    content: dict[str, Any] = Field(default_factory=dict)  # what the website renders: headline, image, link…


class ContentSlot(Spec):
    variants: list[ContentVariant] = Field(default_factory=list)
    default: ContentVariant


def _matches(when: ContentWhen, journey: Mapping[str, Any]) -> bool:
    tests = (("stages", "stage"), ("bands", "band"), ("qualifications", "qualification"))
    return journey.get("product_line") == when.product_line and all(
        getattr(when, name) is None or journey.get(key) in getattr(when, name) for name, key in tests
    )


def choose(slot: ContentSlot, journeys: Sequence[Mapping[str, Any]]) -> tuple[ContentVariant, str]:
    """The variant to show a lead with these journeys (``product_line, stage, band, qualification``), and why."""
    for variant in slot.variants:
        assert variant.when is not None
        for journey in journeys:
            if _matches(variant.when, journey):
                state = ", ".join(f"{k} {journey.get(k)}" for k in ("stage", "band", "qualification") if journey.get(k))
                return variant, f"first match: {journey['product_line']} ({state})"
    return slot.default, "no variant matches: the default" if journeys else "unknown visitor: the default"

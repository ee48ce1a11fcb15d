"""A model's rules said in words, for people who read scores without reading YAML (the console's models page):
one line per rule with its condition, its points, and how caps and decay apply to it."""

from __future__ import annotations

from typing import Any

from models.spec import BehaviourRule, ComboRule, Condition, Decay, FieldTest, FitRule, PointsModel

_TESTS = {
    "eq": "is {}",
    "ne": "is not {}",
    "in_": "is one of {}",
    "not_in": "is none of {}",
    "lt": "< {}",
    "le": "≤ {}",
    "gt": "> {}",
    "ge": "≥ {}",
    "between": "between {} and {}",
    "matches": "matches /{}/",
    "contains": "contains “{}”",
}


def _value(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(_value(item) for item in value)
    return f"{value:g}" if isinstance(value, float) else str(value)


def field_words(field: str, test: FieldTest) -> str:
    """``job_title matches /…/ and is not intern``: every test set on one field."""
    said = []
    for name, template in _TESTS.items():
        value = getattr(test, name)
        if value is None:
            continue
        said.append(template.format(*map(_value, value)) if name == "between" else template.format(_value(value)))
    if test.present is not None:
        said.append("is present" if test.present else "is missing")
    return f"{field} " + " and ".join(said)


def condition_words(condition: Condition) -> str:
    return " and ".join(field_words(field, test) for field, test in condition.items())


def fit_words(rule: FitRule) -> str:
    parts = [condition_words(rule.when)] if rule.when else []
    if rule.any_of:
        parts.append("either " + " or ".join(f"({condition_words(c)})" for c in rule.any_of))
    return " and ".join(parts)


def behaviour_words(rule: BehaviourRule) -> str:
    events = " or ".join(rule.event_types)
    where = f" where {condition_words(rule.where)}" if rule.where else ""
    window = f" in the last {rule.within_days:g} days" if rule.within_days else ""
    if rule.count_at_least is not None:
        said = f"at least {rule.count_at_least} {events}{where}{window}"
    elif rule.total_at_least is not None:
        (prop, total), *_ = rule.total_at_least.items()
        said = f"{events}{where} totalling {prop} ≥ {total:g}{window}"
    else:
        said = f"{'each' if rule.per == 'occurrence' else 'any'} {events}{where}{window}"
    machine = " (machine activity included)" if rule.include_machine else ""
    return said + machine


def combo_words(rule: ComboRule) -> str:
    return f"all of {', '.join(rule.all_of)} within {rule.within_days:g} days of each other"


def decay_words(decay: Decay | None) -> str:
    if decay is None:
        return "none"
    if decay.half_life_days is not None:
        return f"half-life {decay.half_life_days:g} days"
    return "; ".join(f"keep {step.keep:.0%} after {step.after_days:g} days" for step in decay.steps or [])


def rules(model: PointsModel) -> list[dict[str, Any]]:
    """Each rule: ``group`` (fit, behaviour, combo), ``index`` in its YAML list, ``rule``, ``condition``,
    ``points``, ``cap`` (its own max/min and its group's cap) and ``decay``."""
    decay = decay_words(model.decay)
    caps = model.caps
    group_cap = {"fit": caps.fit, "behaviour": caps.behaviour, "combos": caps.behaviour}
    found: list[dict[str, Any]] = []
    for group, listed in (("fit", model.fit), ("behaviour", model.behaviour), ("combos", model.combos)):
        for index, rule in enumerate(listed):
            own = []
            if isinstance(rule, BehaviourRule) and rule.per == "occurrence":
                bounds = (("max", rule.max), ("min", rule.min))
                own += [f"{rule.points:+g} each"] + [f"{name} {value:g}" for name, value in bounds if value is not None]
            if group_cap[group] is not None:
                own.append(f"{'behaviour' if group == 'combos' else group} total ≤ {group_cap[group]:g}")
            words = (
                fit_words(rule)
                if isinstance(rule, FitRule)
                else behaviour_words(rule)
                if isinstance(rule, BehaviourRule)
                else combo_words(rule)
            )
            decays = group != "fit" and getattr(rule, "decay", True)
            found.append(
                {"group": group, "index": index, "rule": rule.name, "condition": words, "points": rule.points,
                 "cap": "; ".join(own) or "none", "decay": decay if decays else "none"}
            )  # fmt: skip
    return found

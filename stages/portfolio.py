"""A loaded portfolio: the validated file (``stages.spec``) with each stage's model file read, as the
objects scoring, transitions and triggers work on.

Model files resolve relative to the portfolio file.
"""

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from models.files import SpecError, line_of, read_yaml, validate_file, validate_part
from models.spec import Bands, PointsModel, Scale
from stages.account_spec import AccountModelSpec, AccountsSpec
from stages.spec import BUILTIN_EVENT_TYPES, PortfolioSpec, ProductLineSpec, StageSpec, TriggerSpec


@dataclass(frozen=True)
class Stage:
    """A loaded stage; a terminal stage carries an empty model (it is never scored)."""

    name: str
    index: int
    spec: StageSpec
    model: PointsModel
    bands: Bands

    @property
    def terminal(self) -> bool:
        return self.spec.terminal

    @property
    def resets(self) -> bool:
        """Entering this stage restarts the score from the entry time."""
        return not self.terminal and self.spec.entry == "reset"


@dataclass(frozen=True)
class ProductLine:
    name: str
    spec: ProductLineSpec
    stages: list[Stage]
    account_model: AccountModelSpec | None = None

    @property
    def first_stage(self) -> Stage:
        return self.stages[0]

    def stage(self, name: str) -> Stage:
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise KeyError(f"product line {self.name!r} has no stage {name!r}; stages: {[s.name for s in self.stages]}")

    @property
    def qualifications(self) -> list[tuple[str, float]]:
        """Ascending by threshold."""
        return sorted(self.spec.qualifications.items(), key=lambda item: item[1])

    @property
    def funnel(self) -> list[Stage]:
        """The scored stages, in order (the terminal ones excluded)."""
        return [stage for stage in self.stages if not stage.terminal]

    def next_stage(self, name: str) -> Stage | None:
        """Where a promotion from ``name`` leads: the next funnel stage, if any."""
        funnel = self.funnel
        position = next((i for i, stage in enumerate(funnel) if stage.name == name), None)
        return funnel[position + 1] if position is not None and position + 1 < len(funnel) else None

    @property
    def triggers(self) -> list[TriggerSpec]:
        return self.spec.triggers


@dataclass(frozen=True)
class Portfolio:
    """A validated portfolio with its model files loaded.

    ``node`` is the file's YAML tree: the sections other rooms validate (``nurture:``) place their
    problems with it, without reading the file again."""

    path: Path
    spec: PortfolioSpec
    product_lines: dict[str, ProductLine] = field(default_factory=dict)
    node: yaml.Node | None = field(default=None, repr=False, compare=False)
    accounts: AccountsSpec = field(default_factory=AccountsSpec)

    @property
    def scale(self) -> Scale:
        return self.spec.scale

    @property
    def event_types(self) -> set[str]:
        return set(BUILTIN_EVENT_TYPES) | set(self.spec.event_types)

    @property
    def models(self) -> list[PointsModel]:
        return [stage.model for line in self.product_lines.values() for stage in line.funnel]

    @property
    def scored_event_types(self) -> list[str]:
        """Event types some model reads: scoring fetches only these."""
        return sorted(set().union(*(model.event_types() for model in self.models)))

    @property
    def scored_attributes(self) -> list[str]:
        """Lead attributes some model's fit rules read."""
        return sorted(set().union(*(model.attribute_names() for model in self.models)))

    @property
    def scored_properties(self) -> list[str]:
        """Event properties some model reads."""
        return sorted(set().union(*(model.property_keys() for model in self.models)))

    def line(self, name: str) -> ProductLine:
        try:
            return self.product_lines[name]
        except KeyError:
            raise KeyError(f"unknown product line {name!r}; known: {sorted(self.product_lines)}") from None


def load_portfolio(path: Path | str) -> Portfolio:
    """Read and validate a portfolio and every model file it names; errors name file, line and path."""
    path = Path(path)
    data, node = read_yaml(path)
    if data is None:
        raise SpecError(path, [("", None, "the file is empty")])
    spec = validate_part(path, node, data, PortfolioSpec)
    lines: dict[str, ProductLine] = {}
    problems: list[tuple[str, int | None, str]] = []
    for line_name, line_spec in spec.product_lines.items():
        stages = []
        for index, (stage_name, stage_spec) in enumerate(line_spec.stages.items()):
            if stage_spec.model is None:  # a terminal stage: never scored
                empty = PointsModel(manual_adjustments=False)
                stages.append(Stage(stage_name, index, stage_spec, empty, line_spec.bands))
                continue
            where = f"product_lines.{line_name}.stages.{stage_name}.model"
            model_path = (path.parent / stage_spec.model).resolve()
            folder = path.parent.resolve()
            # A relative path stays inside the portfolio's folder (no ../../etc/passwd); an absolute one is
            # the operator's explicit choice (shared model libraries).
            if not Path(stage_spec.model).is_absolute() and not model_path.is_relative_to(folder):
                message = f"model file {stage_spec.model!r} is outside the portfolio's folder {folder}"
                problems.append((where, _line(node, where), message))
                continue
            if not model_path.is_file():
                problems.append(
                    (where, _line(node, where), f"model file {stage_spec.model!r} not found ({model_path})")
                )
                continue
            model = load_model(model_path)
            if model.scale is not None and model.scale != spec.scale:
                problems.append(
                    (
                        where,
                        _line(node, where),
                        f"model scale [{model.scale.min}, {model.scale.max}] differs from "
                        f"the portfolio scale [{spec.scale.min}, {spec.scale.max}]",
                    )
                )
            unknown = model.event_types() - BUILTIN_EVENT_TYPES - set(spec.event_types)
            if unknown:
                problems.append(
                    (
                        where,
                        _line(node, where),
                        f"model {stage_spec.model!r} uses unknown event types "
                        f"{sorted(unknown)}; declare them under event_types",
                    )
                )
            stages.append(Stage(stage_name, index, stage_spec, model, stage_spec.bands or line_spec.bands))
        account_model = None
        if line_spec.account_model is not None:
            at = ("product_lines", line_name, "account_model")
            context = {"scale": spec.scale}
            try:
                account_model = validate_part(path, node, line_spec.account_model, AccountModelSpec, at, context)
            except SpecError as exc:
                problems += exc.problems
            else:
                unknown = set(account_model.engaged.events) - BUILTIN_EVENT_TYPES - set(spec.event_types)
                if unknown:
                    where = ".".join([*at, "engaged", "events"])
                    problems.append((where, _line(node, where), f"unknown event types {sorted(unknown)}"))
        lines[line_name] = ProductLine(line_name, line_spec, stages, account_model)
    try:
        accounts = validate_part(path, node, spec.accounts, AccountsSpec, ("accounts",))
    except SpecError as exc:
        problems += exc.problems
    if problems:
        raise SpecError(path, problems)
    return Portfolio(path=path, spec=spec, product_lines=lines, node=node, accounts=accounts)


def load_model(path: Path | str) -> PointsModel:
    """Read and validate one model file."""
    return validate_file(Path(path), PointsModel, context={"source": Path(path)})


def _line(node: yaml.Node | None, dotted: str) -> int | None:
    return line_of(node, dotted.split("."))

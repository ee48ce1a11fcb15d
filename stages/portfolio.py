"""The portfolio file: product lines, their funnels, bands, qualifications and the model of each stage.

Everything a marketer decides lives here (and in the model files it points to, resolved relative to
the portfolio file); the code holds no business constants.
"""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal, Self

import yaml
from pydantic import Field, model_validator

from models.files import SpecError, line_of, read_yaml, validate_file
from models.spec import Bands, PointsModel, Scale, Spec

BUILTIN_EVENT_TYPES = frozenset(
    {
        "page_view", "email_sent", "email_delivered", "email_open", "email_click", "email_reply",
        "email_bounce", "form_submit", "asset_download", "webinar_register", "webinar_attend",
        "demo_request", "trial_start", "meeting_booked", "unsubscribe", "manual_adjustment",
    }
)  # fmt: skip


class StageSpec(Spec):
    """One funnel step: its model, when a journey moves on, and what it keeps on entry."""

    model: str
    promote_at: float | None = None
    entry: Literal["reset", "carry"] = "carry"
    bands: Bands | None = None


class ProductLineSpec(Spec):
    title: str | None = None
    stages: Annotated[dict[str, StageSpec], Field(min_length=1)]
    bands: Bands
    qualifications: dict[str, float] = Field(default_factory=dict)


class IngestSpec(Spec):
    """How ingestion recognises machine activity (privacy proxies, link scanners)."""

    machine_window_seconds: Annotated[float, Field(ge=0)] = 2.0
    proxy_user_agents: list[str] | None = None


class ScoringSpec(Spec):
    partition_size: Annotated[int, Field(ge=1000)] = 50_000


class PortfolioSpec(Spec):
    name: str = "portfolio"
    scale: Scale = Field(default_factory=Scale)
    timezone: str = "UTC"
    event_types: list[str] = Field(default_factory=list)
    ingest: IngestSpec = Field(default_factory=IngestSpec)
    scoring: ScoringSpec = Field(default_factory=ScoringSpec)
    product_lines: Annotated[dict[str, ProductLineSpec], Field(min_length=1)]

    @model_validator(mode="after")
    def _within_scale(self) -> Self:
        lo, hi = self.scale.min, self.scale.max
        for line_name, line in self.product_lines.items():
            _check_bands(line.bands, self.scale, f"product_lines.{line_name}.bands")
            for qual, threshold in line.qualifications.items():
                if not lo <= threshold <= hi:
                    raise ValueError(
                        f"product_lines.{line_name}.qualifications.{qual}: threshold {threshold} is outside "
                        f"the scale [{lo}, {hi}]"
                    )
            for stage_name, stage in line.stages.items():
                where = f"product_lines.{line_name}.stages.{stage_name}"
                if stage.promote_at is not None and not lo <= stage.promote_at <= hi:
                    raise ValueError(f"{where}.promote_at: {stage.promote_at} is outside the scale [{lo}, {hi}]")
                if stage.bands is not None:
                    _check_bands(stage.bands, self.scale, f"{where}.bands")
        return self


def _check_bands(bands: Bands, scale: Scale, where: str) -> None:
    try:
        bands.check_covers(scale)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from exc


@dataclass(frozen=True)
class Stage:
    name: str
    index: int
    spec: StageSpec
    model: PointsModel
    bands: Bands


@dataclass(frozen=True)
class ProductLine:
    name: str
    spec: ProductLineSpec
    stages: list[Stage]

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


@dataclass(frozen=True)
class Portfolio:
    """A validated portfolio with its model files loaded."""

    path: Path
    spec: PortfolioSpec
    product_lines: dict[str, ProductLine] = field(default_factory=dict)

    @property
    def scale(self) -> Scale:
        return self.spec.scale

    @property
    def event_types(self) -> set[str]:
        return set(BUILTIN_EVENT_TYPES) | set(self.spec.event_types)

    @property
    def models(self) -> list[PointsModel]:
        return [stage.model for line in self.product_lines.values() for stage in line.stages]

    @property
    def scored_event_types(self) -> list[str]:
        """Event types some model reads: scoring fetches only these."""
        return sorted(set().union(*(model.event_types() for model in self.models)))

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
    spec = validate_file(path, PortfolioSpec)
    _, node = read_yaml(path)
    lines: dict[str, ProductLine] = {}
    problems: list[tuple[str, int | None, str]] = []
    for line_name, line_spec in spec.product_lines.items():
        stages = []
        for index, (stage_name, stage_spec) in enumerate(line_spec.stages.items()):
            where = f"product_lines.{line_name}.stages.{stage_name}.model"
            model_path = (path.parent / stage_spec.model).resolve()
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
        lines[line_name] = ProductLine(line_name, line_spec, stages)
    if problems:
        raise SpecError(path, problems)
    return Portfolio(path=path, spec=spec, product_lines=lines)


def load_model(path: Path | str) -> PointsModel:
    """Read and validate one model file."""
    return validate_file(Path(path), PointsModel)


def _line(node: yaml.Node | None, dotted: str) -> int | None:
    return line_of(node, dotted.split("."))

"""Fixtures for the funnel tests."""

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from stages.portfolio import ProductLine
from tests.stages.helpers import load_line


@pytest.fixture
def make_line(tmp_path: Path) -> Callable[..., ProductLine]:
    """``make_line(**overrides)``: the line ``w`` of ``line_spec(**overrides)``, loaded from files."""

    def make(**overrides: Any) -> ProductLine:
        return load_line(tmp_path, **overrides)

    return make

"""Run the ``>>>`` examples in sims/ (pytest's doctest collection covers only bandit/)."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["sims.presets", "sims.environment", "sims.report", "sims.evaluation"]


@pytest.mark.parametrize("name", MODULES)
def test_examples_in_docstrings_hold(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name))
    assert result.failed == 0

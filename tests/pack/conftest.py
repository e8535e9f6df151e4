from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

SCEN = Path(__file__).resolve().parents[2] / "src" / "casemate" / "pack" / "scenarios"


@pytest.fixture
def harbour() -> dict:
    return copy.deepcopy(yaml.safe_load((SCEN / "harbour-search.yaml").read_text()))

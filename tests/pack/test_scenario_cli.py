"""Scenario validation, the CLI faces, catalog storage with the scenario's label, the PettingZoo env."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from casemate.errors import UsageError
from casemate.pack.scenario import builtin_names, load_scenario, parse_scenario

CASEMATE = [sys.executable, "-m", "casemate.cli"]


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([*CASEMATE, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=300)


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda d: d["robots"][1].update(type="submarine"), "robots[1].type"),
        (lambda d: d["area"].update(polygon=[[0, 0], [10, 10]]), "area.polygon"),
        (lambda d: d.update(robot_types={"slowboat": {"base": "usv", "max_speed": -3}}), "robot_types.slowboat.max_speed"),
        (lambda d: d["targets"][0].update(position=[5000, 700]), "targets[0].position"),
        (lambda d: d["comms"].update(loss=1.5), "comms.loss"),
        (lambda d: d.update(colour="red"), "colour"),
    ],
)
def test_bad_scenario_names_the_field(harbour: dict, mutate, field: str) -> None:
    mutate(harbour)
    with pytest.raises(UsageError) as err:
        parse_scenario(harbour, "bad.yaml")
    assert field in err.value.message


def test_bad_scenario_on_the_cli_runs_nothing(harbour: dict, tmp_path: Path) -> None:
    harbour["robots"][0]["type"] = "submarine"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(harbour))
    out = tmp_path / "out"
    res = _cli("pack", "run", str(bad), "--out", str(out), cwd=tmp_path)
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "robots[0].type" in lines[0] and "submarine" in lines[0]
    assert "Traceback" not in res.stderr
    assert not out.exists()


def test_builtins_load() -> None:
    names = builtin_names()
    assert {"harbour-search", "convoy-recon", "coastal-surveillance"} <= set(names)
    big = load_scenario("coastal-surveillance")
    assert big.robot_count == 1000


def test_run_writes_outputs_and_stores_with_label(harbour: dict, tmp_path: Path, home: Path) -> None:
    from casemate.workspace import Workspace

    with Workspace.init(home) as ws:
        admin = ws.acting_user("admin")
        ws.users.add(admin, "nora", clearance="NP", roles=["analyst"])
    harbour["duration"] = 30
    harbour["label"] = "S"
    scen = tmp_path / "h.yaml"
    scen.write_text(yaml.safe_dump(harbour))
    out = tmp_path / "run"
    res = _cli("--home", str(home), "pack", "run", str(scen), "--seed", "2", "--out", str(out), "--quiet", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["seed"] == 2 and metrics["steps"] == 60 and metrics["collisions"] == 0
    lines = (out / "replay.jsonl").read_text().splitlines()
    assert json.loads(lines[0])["type"] == "header" and len(lines) > 2
    html = (out / "replay.html").read_text()
    assert "<canvas" in html and "http://" not in html and "https://" not in html and "/*DATA*/null" not in html
    with Workspace.open(home) as ws:
        admin, nora = ws.acting_user("admin"), ws.acting_user("nora")
        mine = ws.catalog.list(admin, kind="mission")
        assert len(mine) == 2 and all(str(v.label) == "S" for v in mine)
        results = next(v for v in mine if v.metadata.get("role") == "results")
        assert len(ws.catalog.get(admin, results.id).parents) == 1
        assert ws.catalog.list(nora, kind="mission") == []


def test_pettingzoo_parallel_api() -> None:
    from pettingzoo.test import parallel_api_test

    from casemate.pack.env import PackEnv

    parallel_api_test(PackEnv("harbour-search", max_steps=20), num_cycles=25)


def test_lonlat_area_and_geojson_points(tmp_path: Path) -> None:
    gj = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": {"type": "Point", "coordinates": [-4.49, 48.39]}, "properties": {}},
        {"type": "Feature", "geometry": {"type": "Point", "coordinates": [10.0, 10.0]}, "properties": {}},  # outside
    ]}
    (tmp_path / "poi.geojson").write_text(json.dumps(gj))
    scen = {
        "area": {"crs": "lonlat", "polygon": [[-4.50, 48.38], [-4.48, 48.38], [-4.48, 48.40], [-4.50, 48.40]]},
        "robots": [{"type": "quadcopter", "count": 2, "start": [-4.495, 48.385]}],
        "targets": [{"geojson": "poi.geojson", "level": "R"}],
        "failures": {"cuts": [{"start": 0, "end": 10, "x": -4.49}]},
        "duration": 5,
    }
    path = tmp_path / "brest.yaml"
    path.write_text(yaml.safe_dump(scen))
    sc = load_scenario(path)
    x0, y0, x1, y1 = sc.world.extent
    assert 1300 < x1 - x0 < 1600 and 2100 < y1 - y0 < 2300  # 0.02 deg lon at 48.4N, 0.02 deg lat, in metres
    assert len(sc.targets) == 1 and sc.targets[0].level == "R"
    assert abs(sc.targets[0].position[0] - sc.failures.cuts[0].value) < 1e-6  # same projection for both


def test_run_refused_before_running_when_label_above_clearance(harbour: dict, tmp_path: Path, home: Path) -> None:
    from casemate.workspace import Workspace

    with Workspace.init(home) as ws:
        ws.users.add(ws.acting_user("admin"), "nora", clearance="NP", roles=["analyst"])
    harbour["label"] = "TS"
    scen = tmp_path / "h.yaml"
    scen.write_text(yaml.safe_dump(harbour))
    out = tmp_path / "run"
    res = _cli("--home", str(home), "--as", "nora", "pack", "run", str(scen), "--out", str(out), cwd=tmp_path)
    assert res.returncode == 2 and "above your clearance" in res.stderr and "Traceback" not in res.stderr
    assert not out.exists()

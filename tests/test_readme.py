"""The README's usage block runs as written, command by command, on a scratch workspace: the
README cannot drift from the code again.

The block's `ID` is the asset id of a Secret//ALPHA report (made for the test, since the README leaves it to the
reader): dana (DR) gets "no such item" (exit 4, hidden == missing), sam declassifies it. The files
the block names (./reports, recording.wav, scene.tif) are made here; `serve` is started, asked for
its health, and stopped.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
CASEMATE = [sys.executable, "-m", "casemate.cli"]
EXPECTED_EXIT = {"show": 4}  # the README says: hidden == missing, exit code 4


def usage_block() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Using it", 1)[1]
    block = section.split("```sh", 1)[1].split("```", 1)[0]
    return [line for line in block.splitlines() if shlex.split(line, comments=True)]


def make_inputs(cwd: Path) -> None:
    reports = cwd / "reports"
    reports.mkdir()
    (reports / "convoi.txt").write_text(
        "Ordre de mouvement. Le convoi de ravitaillement en carburant part mardi à 6 h du dépôt de Brest "
        "vers Landivisiau, escorté par deux véhicules.\n", encoding="utf-8")
    (cwd / "plan-alpha.txt").write_text("Plan ALPHA : relève du détachement le 12.\n", encoding="utf-8")
    (reports / "meteo.txt").write_text("Bulletin météo : vent d'ouest, mer agitée au large d'Ouessant.\n",
                                       encoding="utf-8")
    subprocess.run(["espeak-ng", "-v", "fr", "-w", str(cwd / "recording.wav"),
                    "Le convoi part mardi à six heures."], check=True, capture_output=True)
    import rasterio
    from rasterio.transform import from_origin

    rng = np.random.default_rng(0)
    img = rng.integers(60, 120, size=(3, 256, 256), dtype=np.uint8)
    img[:, 100:112, 80:104] = 230  # something car-sized and bright
    with rasterio.open(cwd / "scene.tif", "w", driver="GTiff", width=256, height=256, count=3, dtype="uint8",
                       crs="EPSG:32630", transform=from_origin(389_000, 5_361_000, 0.3, 0.3)) as dst:
        dst.write(img)


@pytest.mark.slow
def test_readme_usage_block_runs_as_written(tmp_path) -> None:
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (run scripts/system-packages.sh): needed to make recording.wav")
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    make_inputs(cwd)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CASEMATE_")}
    env["HOME"] = str(tmp_path)  # `~/cm` lands in the scratch folder
    secret_id = None
    ran = []
    for line in usage_block():
        # `~` is the scratch folder (the shell would expand it with HOME, set to it below)
        words = [w.replace("~", str(tmp_path)) if w.startswith("~") or "=~" in w else w
                 for w in shlex.split(line, comments=True)]
        if words[0] == ".":
            continue  # activating the venv: this test runs its own interpreter
        if words[0] == "export":
            key, _, value = words[1].partition("=")
            env[key] = value
            continue
        assert words[0] == "casemate", f"README usage line not understood by this test: {line!r}"
        if "ID" in words and secret_id is None:
            made = subprocess.run([*CASEMATE, "--as", "sam", "ingest", str(cwd / "plan-alpha.txt"), "--label", "S//ALPHA",
                                   "--json", "--no-hooks"], cwd=cwd, env=env, capture_output=True, text=True)
            assert made.returncode == 0, made.stderr
            # an asset id: each command acts on the newest version its user may read
            secret_id = json.loads(made.stdout)["ingested"][0]["asset_id"]
        words = [secret_id if w == "ID" else w for w in words]
        command = next(w for w in words[1:] if not w.startswith("-") and w not in ("dana", "sam"))
        if command == "serve":
            _serve(words, cwd, env)
            ran.append(command)
            continue
        out = subprocess.run([*CASEMATE, *words[1:]], cwd=cwd, env=env, capture_output=True, text=True,
                             timeout=600)
        want = EXPECTED_EXIT.get(command, 0)
        assert out.returncode == want, f"{line!r} exited {out.returncode} (want {want}): {out.stderr[-2000:]}"
        assert "Traceback" not in out.stderr and "internal error" not in out.stderr, out.stderr
        if command == "show":
            assert "no such item" in out.stderr
        if "--json" in words:
            json.loads(out.stdout)
        ran.append(command)
    assert {"init", "ingest", "ls", "declassify", "audit", "search", "ask", "serve", "transcribe", "detect",
            "pack"} <= set(ran), ran


def _serve(words: list[str], cwd: Path, env: dict[str, str]) -> None:
    port = int(words[words.index("--port") + 1])
    proc = subprocess.Popen([*CASEMATE, *words[1:]], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, f"serve exited: {proc.stdout.read() if proc.stdout else ''}"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=2) as r:
                    assert json.loads(r.read())["status"] == "ok"
                    return
            except OSError:
                assert time.monotonic() < deadline, "serve did not answer on its port"
                time.sleep(0.3)
    finally:
        proc.terminate()
        proc.wait(30)

"""Run outputs: metrics JSON, replay JSON lines and a self-contained HTML replay (no network, no CDN).

Every file is written to a temporary name and renamed, so a crash never leaves half a file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from casemate.fileutil import write_atomic
from casemate.pack.sim import RunResult

_TEMPLATE = Path(__file__).parent / "replay.html"


def replay_lines(result: RunResult) -> str:
    lines = [json.dumps({"type": "header", **result.header}, separators=(",", ":"))]
    lines += [json.dumps({"type": "frame", **f}, separators=(",", ":")) for f in result.frames]
    return "\n".join(lines) + "\n"


def replay_html(result: RunResult, raster: dict[str, Any] | None = None) -> str:
    """The player with the run inside; `raster` ({"png": data URI, "extent": [x0, y0, x1, y1]} in the
    scenario's metres) is drawn under the robots (the image a mission came from)."""
    header = result.header if raster is None else {**result.header, "raster": raster}
    data = {"header": header, "frames": result.frames, "metrics": {k: v for k, v in result.metrics.items()
                                                                          if k not in ("coverage_curve", "targets")}}
    payload = json.dumps(data, separators=(",", ":")).replace("</", "<\\/")
    return _TEMPLATE.read_text(encoding="utf-8").replace("/*DATA*/null", payload)


def write_outputs(result: RunResult, out_dir: Path, raster: dict[str, Any] | None = None) -> dict[str, Path]:
    """metrics.json, replay.jsonl and replay.html in out_dir."""
    out_dir = Path(out_dir)
    paths = {"metrics": out_dir / "metrics.json", "replay": out_dir / "replay.jsonl", "html": out_dir / "replay.html"}
    write_atomic(paths["metrics"], json.dumps(result.metrics, indent=1) + "\n")
    write_atomic(paths["replay"], replay_lines(result))
    write_atomic(paths["html"], replay_html(result, raster))
    return paths
